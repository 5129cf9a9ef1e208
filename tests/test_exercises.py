"""The exercises (issue 12): the registry lists the chapter's 27, and each built exercise, run at a tiny
budget, gives numbers checked against values computed here independently — exact where the answer is
exact (shapes, counts, equality, alignment), directional where it is statistical."""

from __future__ import annotations

import threading
from dataclasses import fields

import numpy as np
import pytest

import engine.exercises as registry
from engine.errors import ConfigError
from engine.exercises.base import BUDGETS, Stopped

# D2L ch. 8's exercises, typed from the book: 4 + 2 + 6 + 4 + 6 + 3 + 2 = 27.
BOOK = {"8.1": 4, "8.2": 2, "8.3": 6, "8.4": 4, "8.5": 6, "8.6": 3, "8.7": 2}
BUILT = [ex_id for ex_id in registry.EXERCISES if registry.is_built(ex_id)]


def test_the_registry_lists_the_27_exercises_of_the_chapter() -> None:
    expected = [f"{section}.{i}" for section, n in BOOK.items() for i in range(1, n + 1)]
    assert len(expected) == 27
    assert list(registry.EXERCISES) == expected and list(registry.TITLES) == expected
    assert all(registry.TITLES[e].strip() for e in expected)


@pytest.mark.parametrize("ex_id", BUILT)
def test_a_built_exercise_has_its_id_budgets_and_references(ex_id: str) -> None:
    ex = registry.get(ex_id)
    assert ex.id == ex_id and ex.title == registry.TITLES[ex_id] and ex.question.strip()
    assert isinstance(ex.default, ex.Settings) and isinstance(ex.long, ex.Settings) and ex.default != ex.long
    for f in fields(ex.Settings):
        assert f.metadata.get("help"), f"{ex_id}: setting {f.name} has no help text"
    assert ex.references and all(r.budget in BUDGETS and r.tolerance >= 0 for r in ex.references)
    assert "default" in {r.budget for r in ex.references}  # the long budget's, where we have run it


def test_unknown_and_unbuilt_ids_say_so() -> None:
    with pytest.raises(registry.UnknownExercise, match="no exercise '9.9.9'"):
        registry.get("9.9.9")
    unbuilt = [e for e in registry.EXERCISES if not registry.is_built(e)]
    if unbuilt:
        with pytest.raises(registry.NotBuilt, match="not built yet"):
            registry.get(unbuilt[0])


def test_a_reference_agrees_within_its_tolerance_only() -> None:
    from engine.exercises.base import Reference

    ref = Reference("x", 1.0, 0.1)
    assert ref.agrees(1.05) is True and ref.agrees(0.9) is True
    assert ref.agrees(1.2) is False and ref.agrees(0.85) is False and ref.agrees(float("nan")) is None
    assert Reference("n", 13, 0).agrees(13.0) is True and Reference("n", 13, 0).agrees(14.0) is False


def test_settings_are_checked_and_a_stop_ends_the_run() -> None:
    ex = registry.get("8.4.1")
    with pytest.raises(ConfigError, match="num_hiddens"):
        ex.settings(num_hiddens=(0,))
    with pytest.raises(ConfigError, match="has no setting bogus"):
        ex.settings(bogus=1)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        ex.run(ex.default, stop=stop)


def _d2l_chars(corpus_dir) -> set[str]:
    from engine.corpus import load_corpus, preprocess

    return set("".join(preprocess(load_corpus(str(corpus_dir / "timemachine.txt")).text, "d2l")))


# -- 8.4.1 ----------------------------------------------------------------------------------------------
def test_8_4_1_output_layer_maps_to_the_vocabulary_whatever_the_widths(corpus_dir) -> None:
    V = len(_d2l_chars(corpus_dir)) + 1  # the characters and <unk>
    assert V == 28
    ex = registry.get("8.4.1")
    r = ex.run(ex.settings(num_hiddens=(3, 7), embed_sizes=(2,), batch_size=2, num_steps=5))
    shapes = {(m, p): shape for m, p, shape, _ in r.rows}
    for h in (3, 7):  # nn.RNN stores W_xh as (h, input), nn.Linear W_hq as (V, h)
        one, emb = f"onehot h={h}", f"embedding h={h} e=2"
        assert shapes[(one, "rnn.weight_ih_l0")] == f"{h} × {V}" and shapes[(emb, "rnn.weight_ih_l0")] == f"{h} × 2"
        assert shapes[(one, "rnn.weight_hh_l0")] == f"{h} × {h}" and shapes[(emb, "embedding.weight")] == f"{V} × 2"
        for m in (one, emb):
            assert shapes[(m, "linear.weight")] == f"{V} × {h}" and shapes[(m, "linear.bias")] == f"{V}"
            assert shapes[(m, "logits (num_steps, batch, ·)")] == f"5 × 2 × {V}"
    assert r.figures == {"vocab_size": V, "models_with_V_outputs": 1.0} and r.budget is None
    numel = {(m, p): n for m, p, _, n in r.rows}
    assert numel[("onehot h=3", "linear.weight")] == 3 * V
    scratch = ex.run(ex.settings(kind="scratch", num_hiddens=(4,), embed_sizes=(2,)))
    s = {(m, p): shape for m, p, shape, _ in scratch.rows}
    assert s[("onehot h=4", "W_xh")] == f"{V} × 4" and s[("onehot h=4", "W_hq")] == f"4 × {V}"
    assert s[("embedding h=4 e=2", "W_xh")] == "2 × 4"


def test_8_4_1_default_budget_agrees_with_its_references() -> None:
    ex = registry.get("8.4.1")
    r = ex.run()
    assert r.budget == "default" and r.comparison() and all(c["agrees"] for c in r.comparison())
    assert "V = 28" in r.explanation


# -- 8.5.1 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["rnn", "scratch"])
def test_8_5_1_one_hot_times_w_equals_the_row_lookup(kind: str) -> None:
    ex = registry.get("8.5.1")
    r = ex.run(ex.settings(kind=kind, num_hiddens=6, batch_size=3, num_steps=4))
    rows = {(d, path, q): (a, rel) for d, path, q, a, rel in r.rows}
    assert {p for _, p, _ in rows} == {"W[x]", "nn.Embedding"}
    W = "rnn.weight_ih_l0" if kind == "rnn" else "W_xh"
    for dtype in ("float32", "float64"):
        for path in ("W[x]", "nn.Embedding"):
            assert rows[(dtype, path, "logits")] == (0.0, 0.0) and rows[(dtype, path, "loss")] == (0.0, 0.0)
            assert (dtype, path, W) in rows  # the embedding's gradient is compared with W_xh's
    assert max(rel for (d, _, q), (_, rel) in rows.items() if d == "float64") < 1e-13
    assert max(rel for (d, _, q), (_, rel) in rows.items() if d == "float32") < 1e-5
    assert r.figures["max_forward_diff"] == 0.0



# -- 8.3.1 ----------------------------------------------------------------------------------------------
def test_8_3_1_counts_match_a_brute_force_count(tmp_path) -> None:
    rng = np.random.default_rng(3)
    words = ["ab", "cd", "ef", "gh", "ij", "kl"]
    texts = [[str(w) for w in rng.choice(words, size=300, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05])] for _ in range(2)]
    texts[1].append("zz")  # a word seen once, last: every n-gram ending there is new, so no token may be lost
    paths = []
    for i, t in enumerate(texts):  # lower-case letters and spaces: d2l preprocessing keeps them as they are
        (tmp_path / f"t{i}.txt").write_text("\n".join(" ".join(t[j:j + 10]) for j in range(0, len(t), 10)) + "\n")
        paths.append(str(tmp_path / f"t{i}.txt"))
    stream = texts[0] + texts[1]
    ex = registry.get("8.3.1")
    r = ex.run(ex.settings(corpora=tuple(paths), max_n=4, words=len(stream)))
    V = len(set(stream))
    for row in r.rows:
        n = row[0]
        distinct = len(set(zip(*(stream[i:] for i in range(n)))))
        assert row[1] == distinct and row[2] == len(stream) - n + 1, n
        assert float(row[3]) == pytest.approx(V ** n, rel=1e-2) and row[4] == pytest.approx(distinct / V ** n)
        assert row[-2] == distinct  # words = N: the last columns are measured, not extrapolated
        assert r.figures[f"distinct_{n}"] == distinct
    assert r.figures["V"] == V == 7 and r.figures["words_read"] == 601


def test_8_3_1_default_budget_reads_both_books() -> None:
    ex = registry.get("8.3.1")
    r = ex.run()
    assert all(c["agrees"] for c in r.comparison())
    d = [r.figures[f"distinct_{n}"] for n in range(1, 5)]
    assert d == sorted(d) and d[-1] < r.figures["words_read"]  # more kinds as n grows, never more than positions


# -- 8.3.3 ----------------------------------------------------------------------------------------------
def test_8_3_3_exponents_match_a_fit_done_here(corpus_dir) -> None:
    from collections import Counter

    from engine.corpus import load_corpus, preprocess

    words = " ".join(preprocess(load_corpus(str(corpus_dir / "timemachine.txt")).text, "d2l")).split()
    ex = registry.get("8.3.3")
    r = ex.run(ex.settings(max_n=2))
    for n in (1, 2):
        counts = np.array(sorted(Counter(zip(*(words[i:] for i in range(n)))).values(), reverse=True), float)
        ranks = np.arange(10, 1001)
        slope = np.polyfit(np.log(ranks), np.log(counts[9:1000]), 1)[0]
        assert r.figures[f"a_{n}"] == pytest.approx(-slope, abs=1e-9)
    assert r.figures["a_1"] > r.figures["a_2"]  # bigram curves are flatter
    assert r.plots and [s.name for s in r.plots[0].series] == ["n=1", "n=2"]


# -- 8.7.1 ----------------------------------------------------------------------------------------------
def test_8_7_1_power_iteration_aligns_with_v1_and_eigenvalues_are_powers() -> None:
    ex = registry.get("8.7.1")
    r = ex.run(ex.settings(n=6, gaps=(0.3, 0.7), steps=40))
    f = r.figures
    assert f["alignment_gap_0.3"] > 0.99 and f["alignment_gap_0.7"] > 0.99
    assert f["steps_to_0.99_gap_0.3"] <= f["steps_to_0.99_gap_0.7"]  # a larger gap |λ₂/λ₁| aligns later
    assert f["eig_rel_error"] < 1e-10
    assert f["perp_alignment_v2"] > 0.99  # x ⟂ v₁ lines up with v₂
    assert f["not_lambda_k_x"] > 0.5 and f["not_c1_lambda_k_v1"] < 1e-8  # M^k x ≈ c₁ λ₁^k v₁, not λ₁^k x
    assert f["log10_growth_per_step"] == pytest.approx(np.log10(1.1), abs=1e-3)


# -- 8.1.1, 8.1.2, 8.1.4 (the sequence lab) ----------------------------------------------------------------
TINY_SEQ = {"epochs": 1, "history_epochs": 2}


def test_8_1_1_sigma_zero_is_exact_and_one_value_is_not_enough() -> None:
    ex = registry.get("8.1.1")
    r = ex.run(ex.settings(**TINY_SEQ))
    exact = [row for row in r.rows if row[0] == "exact σ=0"]
    assert len(exact) == 1 and exact[0][2] == "τ=2" and max(exact[0][3:]) < 1e-15
    one_step = {row[2]: row[3] for row in r.rows if row[0] == "tau" and row[1] == "linear"}
    assert len(one_step) == 16 and one_step["τ=1"] > 1.2 * min(one_step.values())  # one noisy value is not enough
    assert min(one_step.values()) > 0.04 * 0.9  # nothing beats the noise floor σ² = 0.04 (up to sampling)
    from engine.exercises.ex8_1_1 import enough_tau

    assert r.figures["tau_needed_linear"] == enough_tau([(int(k[2:]), v) for k, v in one_step.items()])
    assert enough_tau([(1, 0.1), (2, 0.05), (3, 0.0501)]) == 2


def test_8_1_2_a_model_fitted_before_the_change_fails_after_it() -> None:
    ex = registry.get("8.1.2")
    r = ex.run(ex.settings(**TINY_SEQ))
    after = {(row[0], row[1]): row for row in r.rows if row[3] == "after"}
    before = {(row[0], row[1]): row for row in r.rows if row[3] == "before"}
    level = ("level +2", "linear")
    assert after[level][6] > 2 * before[level][6]  # 16 steps ahead, the level change at least doubles the MSE
    assert r.figures["level_linear_16step_ratio"] == pytest.approx(after[level][6] / before[level][6])


def test_8_1_4_no_window_beats_the_bound_computed_by_hand() -> None:
    # Dwell 19, 20 or 21; a window of 16 sees the age while it is <= 14 (then the level cannot flip: cost 0).
    # Ages 15..20 look alike: weights P(dwell > a) = 1, 1, 1, 1, 2/3, 1/3 (of 20 in all), hazards 0, 0, 0, 1/3,
    # 1/2, 1; pooled hazard (1/3 + 1/3 + 1/3) / 5 = 1/5, so the bound is (5/20) · 4 · (1/5)(4/5) = 0.16.
    ex = registry.get("8.1.4")
    r = ex.run(ex.settings(**TINY_SEQ))
    assert r.figures["window_bound"] == pytest.approx(0.16, abs=1e-12)
    windows = [row for row in r.rows if row[1] != "history"]
    assert len(windows) == 33  # linear and MLP for τ = 1..16, and the recurrent window
    assert min(row[3] for row in windows) > 0.9 * 0.16  # (the test part is finite: a little below is chance)


# -- 8.3.4, 8.3.5, 8.3.6 (the samplers) --------------------------------------------------------------------
def test_8_3_4_every_sampler_is_compared_with_counts_from_engine_data() -> None:
    from engine.data import coverage

    ex = registry.get("8.3.4")
    r = ex.run(ex.settings(tokens=2000, batch_size=4, num_steps=10, epochs=3))
    rows = {row[0]: row for row in r.rows}
    assert set(rows) == {"random", "sequential", "sliding", "uniform", "fixed", "sentences"}
    assert [name for name, *_ in r.rows if rows[name][3]] == ["sequential"]  # only it carries the state
    for name in ("random", "uniform", "fixed"):
        c = coverage(2000, 4, 10, name, 3, 0)
        assert rows[name][7] == pytest.approx(c.std()) and rows[name][4:7] == [c.min(), c.max(), pytest.approx(c.mean())]
    assert 0 < rows["sentences"][9] < 0.5  # padding share


def test_8_3_5_a_random_offset_is_not_uniform_and_uniform_is_flatter() -> None:
    ex = registry.get("8.3.5")
    r = ex.run(ex.settings(tokens=3000, batch_size=4, num_steps=10, epochs=5, long_epochs=20))
    f = r.figures
    # offset 0 never reads the tail past the last whole subsequence: 3000 - 1 inputs hold 299 whole ones
    assert f["unseen_fixed_20"] == pytest.approx(10 / 3000)
    assert f["head_random_20"] < 0.8  # the offset skips the first positions
    assert f["cv_uniform_20"] < f["cv_random_20"] / 2 and f["unseen_uniform_20"] < f["unseen_fixed_20"]


def test_8_3_6_bucketing_cuts_padding_and_padding_share_by_hand() -> None:
    from engine.exercises.ex8_3_6 import padding_share

    assert padding_share(np.array([1, 3]), [np.array([0, 1])]) == pytest.approx(1 - 4 / 6)
    assert padding_share(np.array([1, 3, 2, 2]), [np.array([0, 2]), np.array([1, 3])]) == pytest.approx(1 - 8 / 10)
    ex = registry.get("8.3.6")
    r = ex.run(ex.settings(tokens=20000, num_steps_tried=(20, 200)))
    f = r.figures
    for n in (20, 200):
        assert f[f"padding_bucketed_{n}"] < f[f"padding_random_{n}"] / 3
    assert f["cut_20"] > f["cut_200"]  # longer rows cut fewer sentences …
    assert f["padding_random_200"] > f["padding_random_20"]  # … but pad more


# -- 8.2.1, 8.2.2 (tokenizers, min_freq) -------------------------------------------------------------------
def test_8_2_2_vocab_size_and_unk_share_against_a_count_done_here(corpus_dir) -> None:
    from collections import Counter

    from engine.corpus import load_corpus, preprocess

    words = " ".join(preprocess(load_corpus(str(corpus_dir / "timemachine.txt")).text, "d2l")).split()
    counts = Counter(words)
    ex = registry.get("8.2.2")
    r = ex.run(ex.settings(min_freqs=(0, 2, 7)))
    got = {(row[0], row[1]): (row[2], row[3]) for row in r.rows}
    for m in (0, 2, 7):
        kept = [w for w, c in counts.items() if c >= m]
        unk = sum(c for c in counts.values() if c < m) / len(words)
        assert got[("word", m)] == (1 + len(kept), pytest.approx(unk))  # <unk> and the words kept
    assert got[("char", 0)] == (28, 0.0)


def test_8_2_1_five_tokenizers_side_by_side() -> None:
    ex = registry.get("8.2.1")
    r = ex.run(ex.settings(vocab_size=300))
    rows = {row[0]: row for row in r.rows}
    assert list(rows) == ["char", "word", "bpe", "wordpiece", "unigram"]
    assert rows["char"][2] == 170580 and rows["word"][2] == 32775  # D2L's token counts
    for kind in ("bpe", "wordpiece", "unigram"):  # between the two: fewer tokens than characters, more than words
        assert rows["word"][2] < rows[kind][2] < rows["char"][2] and rows[kind][5] == 0.0  # and no <unk>
        assert rows[kind][1] <= 301
    assert rows["word"][6] == "the time traveller for so it will be convenient to speak of him"


# -- 8.5.3, 8.5.4 (trained models, tiny budgets: directional) ---------------------------------------------
def test_8_5_3_argmax_repeats_and_uniform_sampling_is_noise() -> None:
    from engine.exercises.ex8_5_3 import distinct_share, loop_period

    assert distinct_share("abab", 2) == pytest.approx(2 / 3) and loop_period("xabcabcabc", 6) == 3
    assert loop_period("abcdefgh", 6) is None and loop_period("xyaaaaaa", 6) == 1
    ex = registry.get("8.5.3")
    r = ex.run(ex.settings(num_hiddens=16, epochs=2, num_tokens=80, alphas=(0.0, 1.0, float("inf"))))
    f = r.figures
    assert not np.isnan(f["loop_inf"])  # argmax falls into a loop
    assert f["distinct4_inf"] < f["distinct4_0"]  # and repeats itself where uniform sampling does not
    assert f["sample_ppl_inf"] < f["sample_ppl_1"] < f["sample_ppl_0"]  # the model finds argmax likeliest
    assert [row[0] for row in r.rows] == ["0", "1", "inf"] and all(row[5].startswith("time traveller") for row in r.rows)
    _assert_tagged_runs(r.runs, "8.5.3", [None])


def test_8_5_4_clipping_never_fires_below_theta_and_fires_at_a_large_lr() -> None:
    ex = registry.get("8.5.4")
    r = ex.run(ex.settings(num_hiddens=8, epochs=2, lrs=(1.0, 10.0)))
    f = r.figures
    assert f["clipped_share_lr1"] == 0.0 and f["max_norm_clip_lr1"] < 1.0
    # never clipped: the two runs take the same steps, so they end with the same weights
    assert f["val_ppl_clip_lr1"] == f["val_ppl_noclip_lr1"] and f["train_ppl_clip_lr1"] == f["train_ppl_noclip_lr1"]
    assert f["clipped_share_lr10"] > 0.5
    assert [(row[0], row[1]) for row in r.rows] == [(1.0, "on"), (1.0, "off"), (10.0, "on"), (10.0, "off")]
    assert [row[4] for row in r.rows] == [0.0, None, f["clipped_share_lr10"], None]  # "steps clipped": on only
    _assert_tagged_runs(r.runs, "8.5.4", ["lr 1, clip on", "lr 1, clip off", "lr 10, clip on", "lr 10, clip off"],
                        epochs=2)


def _assert_tagged_runs(names: list[str], exercise: str, points: list[str], epochs: int | None = None) -> None:
    """Each run the exercise trained is a folder in the runs dir, tagged with the exercise and its point, and
    (with ``epochs``) its metrics hold one line per optimizer step besides the epoch ends."""
    import json

    from engine.runs import open_run

    assert len(names) == len(points) == len(set(names))
    for name, point in zip(names, points):
        run = open_run(name)
        assert run.tags == ({"exercise": exercise, "point": point} if point else {"exercise": exercise})
        if epochs is not None:
            lines = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
            ends = [x for x in lines if x["epoch_end"]]
            assert [x["epoch"] for x in ends] == list(range(1, len(ends) + 1)) and len(ends) <= epochs
            steps = [x["step"] for x in lines if not x["epoch_end"]]
            assert steps == list(range(1, len(steps) + 1))  # every step logged, once


# -- 8.4.3 ----------------------------------------------------------------------------------------------
def test_8_4_3_the_gradient_vanishes_for_a_small_w_hh_and_explodes_for_a_large_one() -> None:
    ex = registry.get("8.4.3")
    r = ex.run(ex.settings(models=("rnn:relu",), scales=(0.5, 4.0), num_steps=100, num_hiddens=16))
    f = r.figures
    assert f["rnn:relu_x0.5_at_100"] < -5 and f["rnn:relu_x4_at_100"] > 3
    assert f["rnn:relu_x0.5_at_10"] > f["rnn:relu_x0.5_at_50"] > f["rnn:relu_x0.5_at_100"]  # monotone decay
    rows = {row[1]: row for row in r.rows}
    assert rows["4"][2] == pytest.approx(8 * rows["0.5"][2])  # ρ(W_hh) scales with W_hh


# -- 8.6.3 ----------------------------------------------------------------------------------------------
def test_8_6_3_the_linear_row_matches_least_squares_done_here() -> None:
    t = np.arange(1, 1001)
    x = np.sin(0.01 * t) + 0.2 * np.random.default_rng(0).standard_normal(1000)  # D2L 8.1's data, seed 0
    tau, split = 4, 604
    F = np.stack([x[i:len(x) - tau + i] for i in range(tau)], axis=1)  # row j: x[j .. j+3] -> x[j + 4]
    A = np.hstack([F, np.ones((len(F), 1))])
    w = np.linalg.lstsq(A[:split - tau], x[tau:split], rcond=None)[0]
    one_step = float(np.mean((A[split - tau:] @ w - x[split:]) ** 2))
    ex = registry.get("8.6.3")
    r = ex.run(ex.settings(epochs=1, history_epochs=2, num_hiddens=4))
    rows = {row[0]: row for row in r.rows}
    assert list(rows) == ["linear", "mlp", "rnn window", "rnn history"]
    assert rows["linear"][3] == pytest.approx(one_step, rel=1e-6) and r.figures["linear_1"] == rows["linear"][3]


def test_8_6_3_runs_with_another_cell_and_names_it() -> None:
    # --long uses a GRU: its models are "gru window" and "gru history", which the explanation once looked up
    # as "rnn history" (a KeyError at the long budget only)
    from engine.exercises.sequence_runs import NAMES

    ex = registry.get("8.6.3")
    assert ex.long.kind == "gru"
    r = ex.run(ex.settings(kind="gru", epochs=1, history_epochs=2, num_hiddens=4))
    assert [row[0] for row in r.rows] == ["linear", "mlp", "gru window", "gru history"]
    assert f"{r.figures['gru_history_1']:.4f}" in r.explanation
    assert NAMES["gru history"] == "recurrent model (gru) over the history" and NAMES["mlp"] == "MLP"


# -- 8.5.6 ----------------------------------------------------------------------------------------------
def test_8_5_6_relu_runs_per_seed_with_and_without_clipping() -> None:
    ex = registry.get("8.5.6")
    r = ex.run(ex.settings(num_hiddens=32, epochs=2, seeds=(0, 1), lr=20.0))
    assert [(row[0], row[1]) for row in r.rows] == [(0, "on"), (0, "off"), (1, "on"), (1, "off")]
    _assert_tagged_runs(r.runs, "8.5.6", [f"relu, lr 20, clip {c}, seed {seed}" for seed in (0, 1) for c in ("on", "off")])
    f = r.figures
    # at lr 20 (seed 1) clipping fires and the clipped run trains where the unclipped one blows up
    assert f["clipped_share_seed1"] > 0 and not r.rows[2][6] and r.rows[3][6] and f["failed_noclip"] == 2
    assert f["failed_noclip"] == sum(row[6] for row in r.rows if row[1] == "off")
    for row in r.rows:  # failed means worse than uniform guessing over the 28 characters
        assert row[6] == (not np.isfinite(row[3]) or row[3] > 56)
    from engine.exercises.ex8_5_6 import run_failed

    assert not run_failed(55.0, 28) and run_failed(57.0, 28) and run_failed(float("inf"), 28)
    with pytest.raises(ConfigError, match="kind must be rnn or scratch"):
        ex.settings(kind="gru")


# -- 8.6.1 ----------------------------------------------------------------------------------------------
def test_8_6_1_validation_turns_while_training_keeps_falling() -> None:
    ex = registry.get("8.6.1")
    r = ex.run(ex.settings(max_tokens=1500, num_hiddens=64, epochs=40, lr=0.02))
    f = r.figures
    epochs = [row[0] for row in r.rows]
    assert epochs == list(range(1, 41))
    best = int(f["best_val_epoch"])
    assert 1 < best < 40 and f["best_val_ppl"] == min(row[2] for row in r.rows)
    assert f["final_val_ppl"] > 1.1 * f["best_val_ppl"]  # validation rose after its minimum …
    assert f["final_train_ppl"] < f["train_ppl_at_best"]  # … while training perplexity kept falling
    # The training is an ordinary run, tagged with the exercise: its logged epochs are the table's rows.
    from engine.runs import list_runs, open_run

    assert len(r.runs) == 1 and r.to_dict()["runs"] == r.runs
    run = open_run(r.runs[0])
    assert run.tags == {"exercise": "8.6.1"} and run.summary().status == "completed"
    assert [s.tags for s in list_runs() if s.name == run.name] == [{"exercise": "8.6.1"}]
    logged = [m for m in run.metrics() if m.get("epoch_end")]
    assert [m["epoch"] for m in logged] == epochs
    assert [m["val_ppl"] for m in logged] == pytest.approx([row[2] for row in r.rows], rel=1e-6)


# -- 8.4.4 ----------------------------------------------------------------------------------------------
def test_8_4_4_reset_perplexity_against_a_loop_written_here() -> None:
    import torch
    from torch.nn import functional as F

    from engine.config import ModelConfig
    from engine.exercises.ex8_4_4 import reset_perplexity
    from engine.models.lm import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="gru", vocab_size=28, num_hiddens=8)).eval()
    ids = np.random.default_rng(0).integers(0, 28, 41)  # 2 rows of 20 inputs
    X, Y = torch.as_tensor(ids[:-1]).reshape(2, 20), torch.as_tensor(ids[1:]).reshape(2, 20)

    def by_hand(every: int) -> float:
        nll = 0.0
        with torch.no_grad():
            for start in range(0, 20, every):
                logits, _ = model(X[:, start:start + every], model.begin_state(2))
                nll += float(F.cross_entropy(logits.reshape(-1, 28), Y[:, start:start + every].T.reshape(-1),
                                             reduction="sum"))
        return float(np.exp(nll / 40))

    assert reset_perplexity(model, ids, 1, rows=2) == pytest.approx(by_hand(1), rel=1e-6)
    assert reset_perplexity(model, ids, 7, rows=2) == pytest.approx(by_hand(7), rel=1e-6)
    assert reset_perplexity(model, ids, None, rows=2) == pytest.approx(by_hand(20), rel=1e-6)  # one unbroken pass
    assert reset_perplexity(model, ids, 1, rows=2) != pytest.approx(by_hand(20), rel=1e-6)


def test_8_4_4_a_tiny_run_lists_every_interval_and_never() -> None:
    ex = registry.get("8.4.4")
    r = ex.run(ex.settings(num_hiddens=16, epochs=1, max_tokens=2000, eval_tokens=1000, resets=(1, 4)))
    assert [row[0] for row in r.rows] == ["1", "4", "∞"] and r.rows[-1][2] == 1.0
    assert r.figures["ppl_reset_1"] == r.rows[0][1] and r.rows[0][2] == pytest.approx(r.rows[0][1] / r.rows[-1][1])


# -- 8.4.2 ----------------------------------------------------------------------------------------------
def test_8_4_2_influence_is_zero_without_a_change_and_falls_with_distance() -> None:
    import torch

    from engine.config import ModelConfig
    from engine.exercises.ex8_4_2 import influence, next_distributions
    from engine.models.lm import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="rnn", vocab_size=28, num_hiddens=16)).eval()
    contexts = np.random.default_rng(1).integers(1, 28, (50, 12))
    p = next_distributions(model, contexts)
    assert p.shape == (50, 28) and np.allclose(p.sum(axis=1), 1)
    tv1, _ = influence(model, contexts, 1, 28, np.random.default_rng(2))
    tv12, _ = influence(model, contexts, 12, 28, np.random.default_rng(2))
    assert tv1 > tv12 > 0  # the last character matters most; the first still a little
    ex = registry.get("8.4.2")
    r = ex.run(ex.settings(num_hiddens=16, epochs=1, max_tokens=2000, context=8, probes=20))
    assert [row[0] for row in r.rows] == [1, 2, 4, 8] and 0 <= r.figures["prompts_tv"] <= 1


# -- 8.1.3 ----------------------------------------------------------------------------------------------
def test_8_1_3_both_directions_hold_out_the_same_characters() -> None:
    from engine.config import TrainConfig
    from engine.exercises.ex8_1_3 import reversed_split
    from engine.training import split_ids

    ids = np.arange(400)
    cfg = TrainConfig(max_tokens=0, batch_size=2, num_steps=5)
    train, val = split_ids(ids, cfg)
    back_train, back_val = split_ids(reversed_split(ids, cfg), cfg)
    assert list(back_val) == list(val[::-1]) == list(range(399, 359, -1))
    assert list(back_train) == list(train[::-1])
    ex = registry.get("8.1.3")
    r = ex.run(ex.settings(num_hiddens=8, epochs=1, max_tokens=3000))
    assert [row[0] for row in r.rows] == ["forwards", "reversed"]
    _assert_tagged_runs(r.runs, "8.1.3", ["forwards", "reversed"])
    assert r.figures["reversed_over_forwards"] == pytest.approx(
        r.figures["best_val_ppl_reversed"] / r.figures["best_val_ppl_forwards"])
