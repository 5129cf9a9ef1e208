"""Exercises 8.3.2, 8.5.5 and 8.7.2 (issue 12) at tiny budgets: counts checked exactly against counts made
here from the samplers' own minibatches, training outcomes checked in the direction the numbers must go."""

from __future__ import annotations

import math
from dataclasses import asdict, fields

import numpy as np
import pytest

import engine.exercises as registry
from engine.errors import ConfigError


# -- 8.3.2 ----------------------------------------------------------------------------------------------
def test_8_3_2_reserved_tokens_have_fixed_ids_and_a_turn_encodes_as_written() -> None:
    from engine.exercises.ex8_3_2 import DIALOGUES, build_stream, dialogue_tokens

    assert dialogue_tokens(("hi.", "yo")) == ["<bod>", "<A>", "h", "i", ".", "<eot>", "<B>", "y", "o", "<eod>"]
    vocab, ids = build_stream()
    assert vocab.idx_to_token[:6] == ["<unk>", "<bod>", "<eod>", "<eot>", "<A>", "<B>"]
    chars = sorted(set("".join(line for d in DIALOGUES for line in d)))
    assert len(vocab) == 6 + len(chars) and sorted(vocab.idx_to_token[6:]) == chars
    # the stream, decoded: one <bod> and one <eod> per dialogue, one end token per turn
    turns = sum(len(d) for d in DIALOGUES)
    assert int((ids == 1).sum()) == int((ids == 2).sum()) == len(DIALOGUES)
    assert int(np.isin(ids, [2, 3]).sum()) == turns
    assert len(ids) == sum(1 + sum(len(line) + 2 for line in d) for d in DIALOGUES)
    first = "".join(vocab.idx_to_token[i] for i in ids[: ids.tolist().index(3) + 1])
    assert first == "<bod><A>" + DIALOGUES[0][0] + "<eot>"
    ex = registry.get("8.3.2")
    r = ex.run()
    assert [r.figures[f"id_{t}"] for t in ("<bod>", "<eod>", "<eot>", "<A>", "<B>")] == [1, 2, 3, 4, 5]
    assert r.figures["tokens"] == len(ids) and r.figures["turns"] == turns


@pytest.mark.parametrize("batch_size,num_steps,seed", [(8, 32, 0), (4, 20, 3)])
def test_8_3_2_rows_across_boundaries_match_a_count_over_the_samplers_minibatches(batch_size: int, num_steps: int,
                                                                                  seed: int) -> None:
    """Each scheme's minibatches drawn here from engine.data with the exercise's (seed, epoch) generators; a
    row crosses a turn when its inputs X hold <eot> or <eod>, a dialogue when they hold <eod>."""
    from engine.data import data_iter
    from engine.exercises.ex8_3_2 import build_stream
    from engine.sentences import IGNORE_INDEX

    _, ids = build_stream()
    ex = registry.get("8.3.2")
    epochs = 2
    f = ex.run(ex.settings(batch_size=batch_size, num_steps=num_steps, seed=seed, epochs=epochs)).figures
    ends = {"sequential": (), "random": (), "turns": (3, 2), "dialogues": (2,)}
    for scheme, sampler in (("sequential", "sequential"), ("random", "random"), ("turns", "sentences"),
                            ("dialogues", "sentences")):
        rows = turn = dialogue = targets = 0
        padding = []
        for epoch in (1, 2):
            rng = np.random.default_rng([seed, epoch])
            padded = positions = 0
            for X, Y in data_iter(ids, batch_size, num_steps, sampler, rng=rng, sentence_end_ids=ends[scheme]):
                X, Y = X.numpy(), Y.numpy()
                real = Y != IGNORE_INDEX
                rows += len(X)
                turn += int(np.isin(np.where(real, X, 0), [2, 3]).any(axis=1).sum())
                dialogue += int(np.where(real, X == 2, False).any(axis=1).sum())
                targets, padded, positions = targets + int(real.sum()), padded + int((~real).sum()), positions + Y.size
            padding.append(padded / positions)
        assert f[f"rows_{scheme}"] == rows / epochs, scheme
        assert f[f"turn_straddling_{scheme}"] == turn / epochs, scheme
        assert f[f"dialogue_straddling_{scheme}"] == dialogue / epochs, scheme
        # no row reads a target twice within an epoch: targets read = share of the n - 1 predictable positions
        assert f[f"coverage_{scheme}"] == pytest.approx(targets / epochs / (len(ids) - 1), abs=1e-12), scheme
        assert f[f"padding_{scheme}"] == pytest.approx(np.mean(padding), abs=1e-12), scheme
    assert f["turn_straddling_turns"] == 0 and f["dialogue_straddling_dialogues"] == 0
    assert f["turn_straddling_sequential"] > 0.5 * f["rows_sequential"]  # blind windows mostly cross turns
    n_turns = int(np.isin(ids, [2, 3]).sum())
    assert f["coverage_turns"] == pytest.approx((len(ids) - n_turns) / (len(ids) - 1))  # each turn's first unread


def test_8_3_2_settings_too_large_for_the_dialogues_say_so() -> None:
    ex = registry.get("8.3.2")
    with pytest.raises(ConfigError, match="the dialogues hold 2419 tokens"):
        ex.run(ex.settings(batch_size=200, num_steps=100))
    with pytest.raises(ConfigError, match="num_steps must be an integer in 2..1024"):
        ex.settings(num_steps=1)


# -- 8.5.5 ----------------------------------------------------------------------------------------------
def test_8_5_5_keeping_the_graph_steps_once_per_epoch_over_a_graph_of_the_whole_epoch() -> None:
    from engine.data import seq_data_iter_sequential
    from engine.exercises.common import pipeline

    ex = registry.get("8.5.5")
    s = ex.settings(num_hiddens=8, epochs=2)
    r = ex.run(s)
    f = r.figures
    assert [row[0] for row in r.rows] == ["regular", "random", "none"]
    # minibatches per epoch counted here: D2L's sequential partitioning of the first 9,000 training characters
    train = np.asarray(pipeline("timemachine").ids[:10_000][:9_000])
    counts = [sum(1 for _ in seq_data_iter_sequential(train, 32, 35, rng=np.random.default_rng([0, e])))
              for e in (1, 2)]
    assert f["steps_per_epoch_regular"] == float(np.median(counts)) and f["steps_per_epoch_none"] == 1
    assert f["steps_per_epoch_regular"] > f["steps_per_epoch_random"] > f["steps_per_epoch_none"]
    assert f["peak_positions_regular"] == 32 * 35 and f["peak_positions_none"] == max(counts) * 32 * 35
    assert f["refused_backward"] == 1 and f["refused_retain_graph"] == 1
    assert "Trying to backward through the graph a second time" in r.explanation
    # 16 steps against 2 from the same start: detaching trains further in the same passes
    assert f["best_val_regular"] < f["best_val_none"]


def test_8_5_5_settings_refuse_what_the_lab_refuses() -> None:
    ex = registry.get("8.5.5")
    with pytest.raises(ConfigError, match="strategies must be some of regular, random, none"):
        ex.settings(strategies=("regular", "full"))
    with pytest.raises(ConfigError, match="truncation_p must be in"):
        ex.settings(truncation_p=0.0)


# -- 8.7.2 ----------------------------------------------------------------------------------------------
def test_8_7_2_each_remedy_changes_one_thing_of_the_plain_run() -> None:
    from engine.exercises.ex8_7_2 import REMEDIES, Settings, configs

    s = Settings()
    m0, t0, _ = configs(s, "none", 28)
    assert (m0.kind, m0.activation, m0.init, t0.clip, t0.lr, t0.weight_decay) == ("rnn", "tanh", "default", "off",
                                                                                   3.0, 0.0)
    changed = {}
    for remedy in REMEDIES:
        m, t, _ = configs(s, remedy, 28)
        changed[remedy] = sorted(k for k in asdict(m0) if getattr(m, k) != getattr(m0, k)) + sorted(
            k for k in asdict(t0) if getattr(t, k) != getattr(t0, k))
    assert changed == {"clip": ["clip"], "gru": ["kind"], "lstm": ["kind"], "small_lr": ["lr"],
                       "weight_decay": ["weight_decay"], "irnn": ["activation", "init"]}
    m, t, _ = configs(s, "irnn", 28)
    assert (m.activation, m.init, t.clip) == ("relu", "identity", "off")


def test_8_7_2_status_and_the_frequencies_baseline_by_hand() -> None:
    from engine.exercises.ex8_7_2 import status_of, unigram_perplexity

    assert unigram_perplexity(np.array([0, 0, 1]), np.array([0, 1]), 2) == pytest.approx(
        math.exp(-(math.log(3 / 5) + math.log(2 / 5)) / 2))
    run = dict(finite=True, best_val=9.0, final_val=9.0, train_ppl=7.0)
    assert status_of(run, 28, 17.0) == "ok"
    assert status_of({**run, "finite": False}, 28, 17.0) == "diverged"
    assert status_of({**run, "best_val": 28.5}, 28, 17.0) == "worse than uniform"
    assert status_of({**run, "best_val": 16.66}, 28, 17.0) == "no better than frequencies"  # 0.98 × 17 = 16.66
    assert status_of({**run, "best_val": 16.65}, 28, 17.0) == "ok"
    assert status_of({**run, "final_val": 13.5}, 28, 17.0) == "ok"  # 1.5 × the best, not above it
    assert status_of({**run, "final_val": 13.6}, 28, 17.0) == "ok, then overfits"  # training below the best
    assert status_of({**run, "final_val": 13.6, "train_ppl": 9.5}, 28, 17.0) == "ok, then thrown off"


def test_8_7_2_the_plain_rnn_blows_up_where_a_gru_and_a_smaller_lr_train() -> None:
    from engine.exercises.common import pipeline
    from engine.runs import open_run

    ex = registry.get("8.7.2")
    # 32 units, 4 epochs (32 steps) at lr 5: at seeds 0-3 the plain run and the IRNN diverged, the GRU and lr 1
    # trained
    r = ex.run(ex.settings(num_hiddens=32, epochs=4, lr=5.0, remedies=("gru", "small_lr", "irnn")))
    rows = {row[0]: row for row in r.rows}
    assert list(rows) == ["none", "gru", "small_lr", "irnn"]
    f = r.figures
    assert rows["none"][5] == "diverged" and f["ok_none"] == 0 and f["final_val_none"] == math.inf
    assert f["ok_gru"] == f["ok_small_lr"] == 1 and f["best_val_gru"] < f["unigram_ppl"] * 0.98
    assert f["max_norm_gru"] < 1.0 < f["max_norm_none"]  # the gated cell's gradient stays small
    assert f["remedies_ok"] == 2
    # the IRNN at lr 5 without clipping: ReLU with W_hh = I blows up within its first epoch
    assert rows["irnn"][5] == "diverged" and f["diverged_step_irnn"] < 8 and f["best_val_irnn"] == math.inf
    assert rows["gru"][2] == f["best_val_gru"] <= rows["gru"][3] == f["final_val_gru"]  # best, then final
    # every run is a run folder tagged with its remedy; the diverged ones are saved as diverged
    runs = [open_run(name) for name in r.runs]
    assert [run.tags for run in runs] == [{"exercise": "8.7.2", "point": n} for n in rows]
    assert [run.status() for run in runs] == ["diverged", "completed", "completed", "diverged"]
    assert len(pipeline("timemachine").vocab) == runs[0].model_config.vocab_size


def test_8_7_2_settings_are_checked() -> None:
    ex = registry.get("8.7.2")
    with pytest.raises(ConfigError, match="remedies must be some of clip, gru"):
        ex.settings(remedies=("clip", "dropout"))
    with pytest.raises(ConfigError, match="weight_decay must be a positive number"):
        ex.settings(weight_decay=0.0)
    assert {f.name for f in fields(ex.Settings)} >= {"lr", "small_lr", "weight_decay", "clip_theta", "remedies"}
