"""Exercises train in ordinary run folders (issue 12): ``train_lm(per_step=True)`` reads every optimizer step
back from the trainer's Progress events, checked against ``step_norms`` (a second, plain loop over the same
steps); 8.1.3's reversed text is a corpus file whose characters are checked against a reversal done here; 8.5.5's
strategies are tagged runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.config import ModelConfig, TrainConfig
from engine.exercises.training_runs import step_losses, train_lm
from engine.runs import open_run


def _quiet(*_args) -> None:
    return None


def test_step_losses_undo_the_running_mean_by_hand() -> None:
    # losses 2, 4, 3: running means 2, 3, 3 -> perplexities e^2, e^3, e^3
    assert step_losses([math.e ** 2, math.e ** 3, math.e ** 3]) == pytest.approx([2.0, 4.0, 3.0])
    assert step_losses([]) == []


@pytest.mark.parametrize("clip", ["norm", "off"])
def test_per_step_records_are_the_steps_a_plain_loop_takes(pipeline, clip) -> None:
    from engine.labs.bptt_grads import step_norms
    from engine.models.lm import build_model

    model_cfg = ModelConfig(kind="rnn", vocab_size=len(pipeline.vocab), num_hiddens=16)
    train_cfg = TrainConfig(lr=2.0, epochs=3, clip=clip, seed=3, device="cpu", sample_every=0)
    torch.manual_seed(3)
    plain = list(step_norms(pipeline.ids, model_cfg, train_cfg, 24, model=build_model(model_cfg)))
    t = train_lm(pipeline, model_cfg, train_cfg, _quiet, None, tags={"exercise": "test"}, per_step=True)
    assert t.diverged is None and len(t.steps) == len(plain) == 24  # 8 minibatches per epoch
    assert [(r.step, r.epoch, r.clipped) for r in t.steps] == [(r.step, r.epoch, r.clipped) for r in plain]
    np.testing.assert_allclose([r.grad_norm for r in t.steps], [r.grad_norm for r in plain], rtol=1e-5)
    np.testing.assert_allclose([r.loss for r in t.steps], [r.loss for r in plain], rtol=1e-5)
    # and the epoch's perplexity is the mean of its steps' losses
    for e in t.history:
        mean = np.mean([r.loss for r in t.steps if r.epoch == e.epoch])
        assert e.train_ppl == pytest.approx(math.exp(mean), rel=1e-6)
    assert open_run(t.run).tags == {"exercise": "test"}


def test_a_run_that_blows_up_ends_with_the_step_that_did(pipeline) -> None:
    model_cfg = ModelConfig(kind="rnn", vocab_size=len(pipeline.vocab), num_hiddens=16)
    train_cfg = TrainConfig(lr=500.0, epochs=3, clip="off", seed=0, device="cpu", sample_every=0)
    t = train_lm(pipeline, model_cfg, train_cfg, _quiet, None, tags={"exercise": "test"}, per_step=True)
    assert t.diverged is not None and t.steps[-1].step == t.diverged.step
    assert math.isnan(t.steps[-1].grad_norm) and all(math.isfinite(r.grad_norm) for r in t.steps[:-1])
    assert [r.step for r in t.steps] == list(range(1, len(t.steps) + 1))
    assert open_run(t.run).status() == "diverged"


def test_per_step_refuses_what_steps_more_than_once_per_minibatch(pipeline) -> None:
    from engine.errors import ConfigError

    model_cfg = ModelConfig(kind="rnn", vocab_size=len(pipeline.vocab), num_hiddens=8)
    with pytest.raises(ConfigError, match="truncation regular"):
        train_lm(pipeline, model_cfg, TrainConfig(sampler="sequential", truncation="none", epochs=1), _quiet, None,
                 per_step=True)


def test_the_reversed_corpus_holds_the_reversed_split_and_the_books_vocabulary(pipeline) -> None:
    from engine.exercises.ex8_1_3 import reversed_corpus

    cfg = TrainConfig(max_tokens=0)  # the split of the first n characters, as 8.1.3 makes it
    n = 5000
    back = reversed_corpus(pipeline, n, cfg)
    text = "".join(pipeline.vocab.idx_to_token[i] for i in np.asarray(pipeline.ids[:n]).tolist())
    cut = n - int(n * 0.1)  # the trainer's tail: the last tenth held out
    expected = text[:cut][::-1] + text[cut:][::-1]  # reversed here by slicing the string
    got = "".join(back.vocab.idx_to_token[i] for i in np.asarray(back.ids[:n]).tolist())
    assert got == expected
    assert back.vocab.idx_to_token == pipeline.vocab.idx_to_token  # the same counts: the same vocabulary
    assert len(back.ids) == len(pipeline.ids) and back.mode == "raw"
    again = reversed_corpus(pipeline, n, cfg)  # the same file, not a second one
    assert again.corpus.path == back.corpus.path and len(list(back.corpus.path.parent.iterdir())) == 1


def test_8_5_5_trains_each_strategy_in_a_tagged_run() -> None:
    import engine.exercises as registry

    ex = registry.get("8.5.5")
    r = ex.run(ex.settings(num_hiddens=8, epochs=1, strategies=("regular", "none")))
    assert [open_run(name).tags for name in r.runs] == [{"exercise": "8.5.5", "point": "regular"},
                                                        {"exercise": "8.5.5", "point": "none"}]
    assert [open_run(name).config["train"]["truncation"] for name in r.runs] == ["regular", "none"]
