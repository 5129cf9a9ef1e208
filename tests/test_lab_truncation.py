"""engine.labs.truncation: the comparison's figures are the trainer's own, its step counts match minibatches
counted by hand, and stepping between minibatches that share a graph is refused by PyTorch in two ways."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from engine.config import ModelConfig, TrainConfig
from engine.errors import ConfigError
from engine.events import Progress
from engine.labs.truncation import TruncationConfig, compare, compare_all, explain, refusals, replay_cuts
from engine.trainer import train

# 150 tokens: the last round(150 × 0.1) = 15 are validation, 135 train. Sequential partitioning at offset
# o ∈ 0..4 has rows of (135 - 1 - o) // 4 ∈ 32..33 tokens, so (row // 5) = 6 minibatches whatever the offset.
N, VOCAB, MINIBATCHES = 150, 6, 6
IDS = np.array([(i * 7 + i // 5) % VOCAB for i in range(N)], dtype=np.int64)
CFG = TruncationConfig(kind="rnn", num_hiddens=8, epochs=4, batch_size=4, num_steps=5, truncation_p=0.5, seed=3)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def comparison():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests that run the trainer to compare with it
    yield compare_all(IDS, VOCAB, CFG)
    torch.set_num_threads(before)


def trainer_epochs(truncation: str) -> list[Progress]:
    """The trainer's epoch-end Progress for the lab's setup, with the options written out by hand."""
    cfg = TrainConfig(lr=1.0, epochs=4, batch_size=4, num_steps=5, sampler="sequential", truncation=truncation,
                      truncation_p=0.5, seed=3, sample_every=0, device="cpu")
    model = ModelConfig(kind="rnn", num_hiddens=8, vocab_size=VOCAB)
    return [e for e in train(IDS, model, cfg) if isinstance(e, Progress) and e.epoch_end]


def test_steps_per_epoch_against_minibatches_counted_by_hand(comparison):
    by = {r.strategy: r for r in comparison.results}
    assert list(by) == ["regular", "random", "none"] and comparison.train_tokens == 135
    assert by["regular"].minibatches == [MINIBATCHES] * 4
    assert [e.steps for e in by["regular"].epochs] == [MINIBATCHES] * 4  # one step per minibatch
    assert [e.steps for e in by["none"].epochs] == [1] * 4  # one step per epoch
    random_steps = [e.steps for e in by["random"].epochs]
    assert all(1 <= s <= MINIBATCHES for s in random_steps) and len(set(random_steps)) > 1
    one = 4 * 5
    assert by["regular"].peak_positions == one and by["none"].peak_positions == MINIBATCHES * one
    assert by["none"].bound_positions == 135 and by["regular"].bound_positions == one
    assert one <= by["random"].peak_positions <= MINIBATCHES * one


def test_figures_are_the_trainers_epoch_end_progress(comparison):
    for result in comparison.results:
        ends = trainer_epochs(result.strategy)
        assert [e.epoch for e in result.epochs] == [1, 2, 3, 4] and result.status == "completed"
        assert [e.train_ppl for e in result.epochs] == [p.train_ppl for p in ends]
        assert [e.val_ppl for e in result.epochs] == [p.val_ppl for p in ends]
        assert [e.steps for e in result.epochs] == np.diff([0] + [p.step for p in ends]).tolist()
        assert all(e.seconds > 0 for e in result.epochs)


def test_replayed_cuts_take_the_trainers_steps(comparison):
    """The replay of random's cut decisions (peak graph) gives as many graphs per epoch as the trainer stepped."""
    by = {r.strategy: r for r in comparison.results}
    model = ModelConfig(kind="rnn", num_hiddens=8, vocab_size=VOCAB)
    replay = replay_cuts(IDS, model, CFG.train_config("random"), 4)
    assert replay.segments == [e.steps for e in by["random"].epochs]
    assert replay.longest * 20 == by["random"].peak_positions


def test_explanation_reads_the_figures(comparison):
    text = "\n".join(explain(comparison))
    by = {r.strategy: r for r in comparison.results}
    best = min(by, key=lambda s: by[s].best_val[0])
    assert f"Lowest validation perplexity after 4 epochs: {best} (" in text
    assert f"regular {by['regular'].best_val[0]:.2f}" in text
    assert "regular: 6 steps per epoch over 6 minibatches" in text
    assert "none: 1 step per epoch over 6 minibatches" in text
    assert "none updated the weights 6× less often than regular" in text


def test_stop_ends_the_comparison_after_the_current_strategy():
    stop = threading.Event()
    gen = compare(IDS, VOCAB, CFG, stop=stop)
    strategies = set()
    try:
        while True:
            ev = next(gen)
            strategies.add(ev.strategy)
            if isinstance(ev.event, Progress) and ev.event.epoch_end and ev.event.epoch == 2:
                stop.set()
    except StopIteration as done:
        result = done.value
    assert result.stopped and strategies == {"regular"}
    assert [r.strategy for r in result.results] == ["regular"] and result.results[0].status == "stopped"
    assert [e.epoch for e in result.results[0].epochs] == [1, 2]


def test_refusals_are_pytorchs_two_errors():
    plain, retained = refusals()
    assert plain.variant == "backward()" and retained.variant == "backward(retain_graph=True)"
    assert plain.error.startswith("Trying to backward through the graph a second time")
    assert "modified by an inplace operation" in retained.error
    assert "\n" not in plain.error + retained.error
    assert "freed" in plain.why and "in place" in retained.why


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs must be in 1..1000 (got 0)"),
    ({"strategies": ("regular", "full")}, "strategies must be some of regular, random, none"),
    ({"truncation_p": 0.0}, "truncation_p must be in (0, 1] (got 0.0)"),
    ({"kind": "transformer"}, "model kind must be one of"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        TruncationConfig(**kwargs)


def test_a_corpus_too_short_is_refused_before_training():
    with pytest.raises(ConfigError, match="num_steps|batch_size"):
        compare_all(IDS[:20], VOCAB, CFG)  # 18 training tokens: no minibatch of 4 × 5
