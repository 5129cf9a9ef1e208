"""Exercises 8.5.2 and 8.6.2 (issue 12), built on the sweep runner: at a tiny budget each returns the rows its
settings call for, ranked by best validation perplexity as the runs' own metrics files record it, with the
figures its references name; the numbers they explain from (unigram perplexity, the epochs of the second
book, the embedding's scale, the gradient each layer gets) are checked against values computed here."""

from __future__ import annotations

import json
import math
import threading
from collections import Counter

import numpy as np
import pytest

import engine.exercises as registry
from engine.exercises.base import Stopped


def _best_val(run: str) -> float:
    """The run's lowest epoch-end validation perplexity, read from its metrics.jsonl here."""
    return min(r["val_ppl"] for r in _epoch_ends(run))


def _epoch_ends(run: str) -> list[dict]:
    from engine.paths import runs_dir

    lines = (runs_dir() / run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r.get("epoch_end")]


def _tags(run: str) -> dict[str, str]:
    from engine.paths import runs_dir

    return json.loads((runs_dir() / run / "config.json").read_text(encoding="utf-8"))["tags"]


def _references_are_figures(ex, result) -> None:
    for ref in ex.references:
        assert ref.name in result.figures, f"{ex.id}: reference {ref.name} names no figure"


# -- 8.6.2 ----------------------------------------------------------------------------------------------
def test_8_6_2_one_row_per_layer_count_and_remedy_ranked_by_validation() -> None:
    ex = registry.get("8.6.2")
    r = ex.run(ex.settings(layers=(1, 2, 4), num_hiddens=8, epochs=2, max_tokens=2000, loose_theta=50.0))
    assert r.columns[:3] == ["rank", "layers", "optimizer"]
    rows = {(row[1], row[2], row[3], row[4], row[5]) for row in r.rows}
    expected = {(n, "sgd", 1.0, 1.0, 0.0) for n in (1, 2, 4)} | {(n, "adam", 0.01, 1.0, 0.0) for n in (1, 2, 4)} | {
        (4, "sgd", 4.0, 1.0, 0.0), (4, "sgd", 4.0, 50.0, 0.0), (4, "adam", 0.01, 1.0, 0.2)}
    assert rows == expected and len(r.rows) == 9
    assert [row[0] for row in r.rows] == list(range(1, 10))
    done = [row for row in r.rows if row[-1] == "completed"]
    assert [row[6] for row in done] == sorted(row[6] for row in done)  # ranked by best validation perplexity
    assert r.rows[:len(done)] == done  # anything not completed comes after
    assert [_best_val(run) for run in r.runs[:len(done)]] == [row[6] for row in done]
    assert all(_tags(run)["exercise"] == "8.6.2" for run in r.runs) and len({_tags(run)["sweep"] for run in r.runs}) == 1
    assert r.figures["best_val_ppl_sgd_L4"] == next(row[6] for row in r.rows if row[1:6] == [4, "sgd", 1.0, 1.0, 0.0])
    _references_are_figures(ex, r)


def test_8_6_2_unigram_perplexity_and_layer_gradients_by_hand(pipeline) -> None:
    import torch

    from engine.config import ModelConfig, TrainConfig
    from engine.exercises.ex8_6_2 import layer_gradients, unigram_perplexity

    ids = np.asarray(pipeline.ids)
    cfg = TrainConfig(max_tokens=2000)  # 1,800 training characters, the last 200 held out
    counts = Counter(ids[:1800].tolist())
    V = int(ids[:2000].max()) + 1
    nll = -sum(math.log((counts[t] + 1) / (1800 + V)) for t in ids[1800:2000].tolist()) / 200
    assert unigram_perplexity(ids, cfg) == pytest.approx(math.exp(nll), rel=1e-9)
    model_cfg = ModelConfig(kind="gru", vocab_size=len(pipeline.vocab), num_hiddens=16, num_layers=3)
    norms = layer_gradients(model_cfg, ids, TrainConfig(max_tokens=2000, batch_size=4, num_steps=8))
    from engine.models.lm import build_model

    torch.manual_seed(0)  # by hand: the layer-0 gradient of the same model on the same first minibatch
    model = build_model(model_cfg)
    from engine.data import train_batches
    from engine.training import sequence_loss

    X, Y = next(iter(train_batches(ids[:1800], TrainConfig(max_tokens=2000, batch_size=4, num_steps=8),
                                   np.random.default_rng([0, 1]))))
    logits, _ = model(torch.as_tensor(X), model.begin_state(4))
    sequence_loss(logits, torch.as_tensor(Y)).backward()
    assert len(norms) == 3 and norms[0] == pytest.approx(float(model.rnn.weight_ih_l0.grad.norm()), rel=1e-6)
    assert norms[2] == pytest.approx(float(model.rnn.weight_ih_l2.grad.norm()), rel=1e-6)
    assert norms[0] < norms[2]  # the bottom layer hears less than the top at the start


# -- 8.5.2 ----------------------------------------------------------------------------------------------
def test_8_5_2_grid_embedding_and_second_book_rows(pipeline) -> None:
    ex = registry.get("8.5.2")
    s = ex.settings(num_hiddens=(8,), num_steps=(5, 8), lrs=(1.0,), epochs=3, max_tokens=2000, embed_size=4,
                    other_tokens=3000)
    r = ex.run(s)
    ranked, other = r.rows[:-1], r.rows[-1]
    assert len(ranked) == 4 and [row[0] for row in ranked] == [1, 2, 3, 4]
    inputs = sorted(row[5] for row in ranked)
    assert inputs == ["embedding 4", "embedding 4, scaled 1/√d", "one-hot", "one-hot"]
    assert sorted(row[3] for row in ranked if row[5] == "one-hot") == [5, 8]
    vals = [row[6] for row in ranked]
    assert vals == sorted(vals) and vals == [_best_val(run) for run in r.runs[:4]]  # runs in the table's order
    # the embedding runs use the best one-hot run's setting
    onehot = [(row, run) for row, run in zip(ranked, r.runs) if row[5] == "one-hot"]
    best_onehot = min((row for row, _ in onehot), key=lambda row: row[6])
    assert all(row[2:5] == best_onehot[2:5] for row in ranked if row[5] != "one-hot")
    assert r.figures["best_val_ppl"] == best_onehot[6] == min(_best_val(run) for _, run in onehot)
    # the plot: the best setting's curves against characters read (3 epochs of 1,800, 2 of 2,700)
    best_run = min(onehot, key=lambda pair: pair[0][6])[1]
    curves = {se.name: se for se in r.plots[0].series}
    assert curves["validation, timemachine"].x == [1.8, 3.6, 5.4] and curves["train, war_of_the_worlds"].x == [2.7, 5.4]
    assert curves["validation, timemachine"].y == [e["val_ppl"] for e in _epoch_ends(best_run)]
    # the second book: as many training characters read as 3 epochs over the first book's 1,800 (of 2,700)
    assert other[0] is None and other[1] == "war_of_the_worlds (3,000)" and other[5] == "one-hot"
    assert r.figures["other_epochs"] == round(3 * 1800 / 2700) == 2
    assert other[6] == r.figures["other_val_ppl"] == _best_val(r.runs[-1])
    assert len(r.runs) == 5 and {_tags(run)["exercise"] for run in r.runs} == {"8.5.2"}
    # the scaled embedding trained from other weights than the plain one (prepare ran)
    assert r.figures["val_ppl_embedding"] != r.figures["val_ppl_embedding_scaled"]
    _references_are_figures(ex, r)


def test_8_5_2_a_shorter_run_is_the_start_of_a_longer_one(pipeline) -> None:
    """What lets 8.5.2 read the epoch sweep off each run's curve: same seed, no schedule, same first epochs."""
    from engine.config import ModelConfig, TrainConfig
    from engine.sweep import grid_points, run_sweep

    model_cfg = ModelConfig(kind="rnn", vocab_size=len(pipeline.vocab), num_hiddens=8)
    train_cfg = TrainConfig(max_tokens=2000, batch_size=4, num_steps=8, sample_every=0, threads=1, device="cpu")
    sweep = run_sweep(pipeline, model_cfg, train_cfg, grid_points({"epochs": (2, 3)}))
    short, long = sorted(sweep.rows, key=lambda r: r.epochs_done)
    from engine.runs import open_run

    curve = [[(m["train_ppl"], m["val_ppl"]) for m in open_run(r.run).metrics() if m.get("epoch_end")]
             for r in (short, long)]
    assert len(curve[0]) == 2 and len(curve[1]) == 3 and curve[1][:2] == curve[0]


def test_8_5_2_scaled_embedding_rows_have_one_hot_length() -> None:
    import torch

    from engine.config import ModelConfig
    from engine.exercises.ex8_5_2 import scale_embedding
    from engine.models.lm import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="rnn", vocab_size=28, num_hiddens=8, encoding="embedding", embed_size=256))
    before = model.embedding.weight.detach().clone()
    scale_embedding(model)
    lengths = model.embedding.weight.detach().norm(dim=1)
    assert torch.allclose(model.embedding.weight, before / 16)  # 1/√256
    assert float(lengths.mean()) == pytest.approx(1.0, abs=0.05)  # a one-hot vector's length


def test_a_stopped_sweep_exercise_raises_stopped_and_keeps_no_result() -> None:
    ex = registry.get("8.6.2")
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        ex.run(ex.settings(layers=(1, 2), num_hiddens=8, epochs=1, max_tokens=2000), stop=stop)
