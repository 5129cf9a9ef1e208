"""The sequence lab (engine.labs.sequence, sequence_models, series): values computed independently.

Oracles: the trigonometric identity sin(ω(t+1)) = 2cos(ω) sin(ωt) − sin(ω(t−1)) for the exact case;
D2L 8.1's own code (its ``features`` matrix for k-step predictions, its ``multistep_preds`` loop)
for the indexing of the predictions; the normal equations for least squares; a step-by-step loop
over ``RecurrentCore`` for the history model's predictions (every registered cell); D2L's printed
MLP loss; and, for the switching series, the smallest error any window of τ ≤ 16 can reach,
computed from the dwell distribution alone.
"""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest
import torch

from engine.config import MODEL_KINDS
from engine.errors import ConfigError
from engine.labs import series as S
from engine.labs.sequence import (EXPERIMENTS, KS, LabProgress, SequenceConfig, block_layouts, run_lab)
from engine.labs.sequence_models import HistoryRNN, LinearWindow, MLPWindow, RNNWindow, Window, windows


def finish(gen):
    """Drain a generator; return (events, its return value)."""
    events = []
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        return events, stop.value


def fitted(model, x, split):
    span = model.window.span
    list(model.fit(windows(x, span)[: split - span], x[span:split]))
    return model


# --- data ------------------------------------------------------------------------------------------------
def test_sine_is_d2ls_data() -> None:
    s = S.sine(1000, 0.01, 0.2, seed=3)
    t = np.arange(1, 1001)
    assert np.array_equal(s.signal, np.sin(0.01 * t))
    noise = s.x - s.signal
    assert abs(noise.mean()) < 0.02 and 0.18 < noise.std() < 0.22
    assert np.array_equal(S.sine(1000, 0.01, 0.0, seed=3).x, np.sin(0.01 * t))  # σ = 0: no noise at all


def test_regime_change_keeps_the_past_and_changes_the_future() -> None:
    base = S.sine(500, 0.02, 0.1, seed=1)
    level = S.regime_change(500, 0.02, 0.1, 1, 300, level=2.0)
    faster = S.regime_change(500, 0.02, 0.1, 1, 300, speed=3.0)
    assert np.array_equal(level.x[:300], base.x[:300]) and np.array_equal(faster.x[:300], base.x[:300])
    assert np.allclose(level.x[300:] - base.x[300:], 2.0)
    t = np.arange(301, 501)  # t of indices 300 … 499; the phase carries on from ω · 300
    assert np.allclose(faster.signal[300:], np.sin(0.02 * 300 + 3 * 0.02 * (t - 300)))
    assert (level.name, faster.name) == ("level +2", "ω × 3")


def test_switching_holds_each_level_for_a_dwell_in_range() -> None:
    s = S.switching(3000, 19, 21, 0.1, seed=5)
    assert set(np.unique(s.signal)) == {-1.0, 1.0}
    edges = np.flatnonzero(np.diff(s.signal)) + 1
    stays = np.diff(edges)  # whole stays (the first and the last are cut by the ends)
    assert set(stays) == {19, 20, 21}
    assert edges[0] <= 21
    assert np.allclose(np.std(s.x - s.signal), 0.1, atol=0.01)


# --- features and least squares --------------------------------------------------------------------------
def test_block_features_are_block_means_newest_first() -> None:
    W = np.arange(8.0)[None, :]  # x_{t-7} … x_t = 0 … 7
    assert (W @ Window((1, 1, 2, 4)).matrix()).tolist() == [[1.5, 4.5, 6.0, 7.0]]  # oldest block first
    assert (W @ Window((2, 2, 2, 2)).matrix()).tolist() == [[0.5, 2.5, 4.5, 6.5]]
    assert np.array_equal(Window.plain(3).matrix(), np.eye(3))
    assert [w.label for w in block_layouts(4)] == ["τ=4", "2+2+2+2", "4+4+4+4", "1+1+2+4"]
    assert [w.span for w in block_layouts(4)] == [4, 8, 16, 8]


def test_linear_is_least_squares() -> None:
    x = S.sine(300, 0.05, 0.3, seed=2).x
    model = fitted(LinearWindow(Window.plain(3)), x, 200)
    A = np.c_[windows(x, 3)[:197], np.ones(197)]
    coef = np.linalg.solve(A.T @ A, A.T @ x[3:200])  # the normal equations
    assert np.allclose(model.w, coef[:3], atol=1e-10) and math.isclose(model.b, coef[3], abs_tol=1e-10)


def test_clean_sine_linear_tau_2_is_exact_for_every_k() -> None:
    """σ = 0: x_{t+1} = 2cos(ω) x_t − x_{t−1} exactly, so least squares finds it and k-step stays exact."""
    lab = finish(run_lab(SequenceConfig(sigma=0.0), ("exact",)))[1]
    e = lab.experiments["exact"]
    w = e.facts["coefficients"]
    assert math.isclose(w[0], -1.0, abs_tol=1e-8) and math.isclose(w[1], 2 * math.cos(0.01), abs_tol=1e-8)
    mse = e.table[0]["mse"]
    assert set(mse) == {"1", "4", "16", "64", "multi"}
    assert all(v < 1e-6 for v in mse.values()), mse
    pred = e.predictions[0][0]
    t = np.arange(1, 1001)
    assert np.max(np.abs(pred.k_step[64][604:] - np.sin(0.01 * t[604:]))) < 1e-6


# --- predictions against D2L's code -----------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda w: LinearWindow(w),
    lambda w: MLPWindow(w, epochs=2, batch_size=16, lr=0.01, seed=0),
    lambda w: RNNWindow(w, kind="gru", num_hiddens=8, epochs=1, batch_size=16, lr=0.01, seed=0),
])
def test_k_step_and_multi_step_follow_d2ls_code(make) -> None:
    T, tau, n_train, max_steps = 1000, 4, 600, 64
    x = S.sine(T, 0.01, 0.2, seed=0).x
    model = fitted(make(Window.plain(tau)), x, n_train + tau)
    net = model.predict
    # D2L 8.1.3: features[:, i] for i >= tau is the (i - tau + 1)-step-ahead prediction.
    features = np.zeros((T - tau - max_steps + 1, tau + max_steps))
    for i in range(tau):
        features[:, i] = x[i: i + T - tau - max_steps + 1]
    for i in range(tau, tau + max_steps):
        features[:, i] = net(features[:, i - tau:i]).reshape(-1)
    k_step = model.k_step(x, KS)
    for k in KS:
        ours = k_step[k][tau + k - 1: T - max_steps + k]  # D2L plots them at time[tau + k - 1: T - max_steps + k]
        assert np.allclose(ours, features[:, tau + k - 1], rtol=0, atol=1e-6)
        assert np.isnan(k_step[k][: tau + k - 1]).all() and not np.isnan(k_step[k][tau + k - 1:]).any()
    multistep_preds = np.zeros(T)
    multistep_preds[: n_train + tau] = x[: n_train + tau]
    for i in range(n_train + tau, T):
        multistep_preds[i] = net(multistep_preds[None, i - tau:i])[0]
    multi = model.multi_step(x, n_train + tau)
    assert np.allclose(multi[n_train + tau:], multistep_preds[n_train + tau:], rtol=0, atol=1e-6)
    assert np.isnan(multi[: n_train + tau]).all()


def test_block_window_k_step_feeds_back_raw_values() -> None:
    """With blocks, a fed-back prediction becomes the newest raw observation and the block means move on."""
    x = S.sine(200, 0.05, 0.1, seed=1).x
    model = fitted(LinearWindow(Window((1, 2, 3))), x, 150)
    span, k = 6, 3
    t = 120
    raw = list(x[t - k - span + 1: t - k + 1])
    for _ in range(k):
        f = [np.mean(raw[-6:-3]), np.mean(raw[-3:-1]), raw[-1]]  # oldest block first
        raw.append(float(np.dot(f, model.w) + model.b))
    assert math.isclose(model.k_step(x, (k,))[k][t], raw[-1], abs_tol=1e-12)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_history_predictions_match_a_step_by_step_loop(kind: str) -> None:
    """One-, k- and multi-step predictions of the history model against reading x one value at a time
    (every registered cell: their states differ in shape, (B, h), (L, B, h), or a pair)."""
    x = S.sine(40, 0.3, 0.1, seed=0).x
    model = HistoryRNN(kind=kind, num_hiddens=5, epochs=1, num_steps=8, batch_size=4, lr=0.01, seed=0)
    list(model.fit(x[:30]))
    core, head = model.core, model.head

    def read(values: list[float], state):
        with torch.no_grad():
            for v in values:
                H, state = core(torch.tensor([[[v]]], dtype=torch.float32), state)
            return float(head(H[-1])[0, 0]), state

    k_step, one = model.k_step(x, KS[:3]), model.one_step(x)
    for k in (1, 4, 16):
        for t in (k, 17, 39):
            y, state = read(list(x[: t - k + 1]), core.begin_state(1))
            for _ in range(k - 1):
                y, state = read([y], state)
            assert math.isclose(k_step[k][t], y, abs_tol=1e-5), (k, t)
        assert np.isnan(k_step[k][:k]).all()
    assert np.allclose(one[1:], k_step[1][1:], atol=1e-5) and np.isnan(one[0])
    y, state = read(list(x[:30]), core.begin_state(1))
    multi = [y]
    for _ in range(9):
        y, state = read([y], state)
        multi.append(y)
    assert np.allclose(model.multi_step(x, 30)[30:], multi, atol=1e-5)


# --- the experiments' answers --------------------------------------------------------------------------------
def test_mlp_on_d2ls_setup_ends_near_its_printed_loss() -> None:
    """D2L 8.1.2 prints a training loss of about 0.05 after 5 epochs (the noise alone gives σ² = 0.04):
    within 0.04 … 0.065 for three seeds."""
    for seed in range(3):
        x = S.sine(1000, 0.01, 0.2, seed).x
        model = MLPWindow(Window.plain(4), num_hiddens=10, epochs=5, batch_size=16, lr=0.01, seed=seed)
        losses = list(model.fit(windows(x, 4)[:600], x[4:604]))
        assert [e for e, _ in losses] == [1, 2, 3, 4, 5]
        assert 0.04 < losses[-1][1] < 0.065, (seed, losses)


@pytest.mark.slow
def test_models_errors_grow_with_k_and_progress_is_reported() -> None:
    cfg = SequenceConfig()
    events, lab = finish(run_lab(cfg, ("models",)))
    e = lab.experiments["models"]
    assert [r["model"] for r in e.table] == ["linear", "mlp", "rnn window", "rnn history"]
    for row in e.table:  # σ = 0.2: each step fed back adds error
        mse = row["mse"]
        assert mse["1"] < mse["4"] < mse["16"] < mse["64"], row
        assert 0.035 < mse["1"] < 0.06, row  # the noise alone: σ² = 0.04
    # Test MSE by hand from the predictions: mean squared error over x[604:].
    x, linear = e.series[0].x, e.predictions[0][0]
    assert math.isclose(e.table[0]["mse"]["16"], float(np.mean((linear.k_step[16][604:] - x[604:]) ** 2)))
    # Progress: every epoch of every model, in order, the fit count reaching the total.
    assert all(isinstance(ev, LabProgress) for ev in events)
    assert [(ev.model, ev.epoch) for ev in events if ev.epoch == ev.epochs] == [
        ("linear τ=4", 1), ("mlp τ=4", 5), ("rnn window τ=4", 5), ("rnn history", 200)]
    assert len(events) == 1 + 5 + 5 + 200
    assert [ev.fits_done for ev in events if ev.epoch == ev.epochs] == [1, 2, 3, 4]
    assert {ev.fits_total for ev in events} == {4}
    json.dumps(lab.to_dict(), allow_nan=False)  # strict JSON


def test_tau_sweep_and_blocks_tables() -> None:
    cfg = SequenceConfig(epochs=1)
    lab = finish(run_lab(cfg, ("tau", "blocks")))[1]
    tau = lab.experiments["tau"].table
    assert [(r["model"], r["tau"]) for r in tau] == [(m, t) for t in range(1, 17) for m in ("linear", "mlp")]
    blocks = lab.experiments["blocks"].table
    assert [(r["window"], r["span"]) for r in blocks[::2]] == [("τ=4", 4), ("2+2+2+2", 8), ("4+4+4+4", 16),
                                                               ("1+1+2+4", 8)]
    # Same series, same split: the linear τ=4 of both tables is the same least-squares fit.
    assert tau[6]["mse"] == blocks[0]["mse"]
    # Merging older observations into means averages the noise away: better one-step at the same feature count.
    linear = {r["window"]: r["mse"]["1"] for r in blocks if r["model"] == "linear"}
    assert linear["2+2+2+2"] < linear["τ=4"] and linear["4+4+4+4"] < linear["τ=4"]


@pytest.mark.slow
def test_regime_change_breaks_extrapolation() -> None:
    lab = finish(run_lab(SequenceConfig(), ("regime",)))[1]
    e = lab.experiments["regime"]
    assert e.facts["change_at"] == 604 + (1000 - 604) // 2
    rows = {(r["series"], r["model"]): r for r in e.table}
    level = "level +2"
    # Never seen levels: the MLP and the recurrent model, trained on values in ±1.5, fail even one step ahead;
    # the linear model's rule holds anywhere, one step ahead.
    for model in ("mlp", "rnn history"):
        r = rows[level, model]
        assert r["after"]["1"] > 10 * r["before"]["1"], r
    assert rows[level, "linear"]["after"]["1"] < 0.1
    # Three times faster: one step ahead still works; 64 steps ahead the old dynamics are extrapolated.
    r = rows["ω × 3", "linear"]
    assert r["after"]["1"] < 0.06 and r["after"]["64"] > 2 * r["before"]["64"]


def test_window_bound_by_hand() -> None:
    """Dwell 19, 20 or 21 and τ = 16: ages 0 … 20 weigh 1 (a <= 18), 2/3 and 1/3, of 20 in all; the window
    sees ages up to 14, which never flip next; ages 15 … 20 (weight 5/20) look alike and flip next with
    pooled probability (1/3 + 2/3 · 1/2 + 1/3 · 1) / 5 = 1/5: 5/20 · 4 · 1/5 · 4/5 = 0.16. A fixed dwell
    of 20 seen by a window of 20 (ages up to 18) leaves only age 19, which always flips: 0. With τ = 1
    nothing is seen: all 20 ages pool to hazard 1/20: 4 · 1/20 · 19/20 = 0.19."""
    assert math.isclose(S.window_bound(19, 21, 16), 0.16)
    assert math.isclose(S.window_bound(20, 20, 20), 0.0, abs_tol=1e-15)
    assert math.isclose(S.window_bound(20, 20, 1), 0.19)


@pytest.mark.slow
def test_switching_history_model_beats_every_window() -> None:
    lab = finish(run_lab(SequenceConfig(), ("switching",)))[1]
    e = lab.experiments["switching"]
    windows_ = [r for r in e.table if r["window"] != "history"]
    history = e.table[-1]
    assert history["window"] == "history" and len(windows_) == 2 * 16 + 1
    assert history["mse"] < min(r["mse"] for r in windows_)
    # No function of the last 16 values gets below 0.16 against the level (test_window_bound_by_hand).
    assert math.isclose(e.facts["window_bound"], 0.16)
    assert history["mse_signal"] < 0.16 - 0.02
    best = e.facts["best_window"]
    assert best["mse"] == min(r["mse"] for r in windows_)


# --- options and stopping ------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    ({"tau": 0}, "tau must be in 1..16"),
    ({"tau": 17}, "tau must be in 1..16"),
    ({"T": 650}, "T must leave at least 100 test samples"),
    ({"n_train": 50}, "n_train must be at least 100"),
    ({"omega": 0.0}, "omega must be in (0, π)"),
    ({"sigma": -0.1}, "sigma must be in [0, 10]"),
    ({"sigma": float("nan")}, "sigma must be a number"),
    ({"kind": "transformer"}, "kind must be one of"),
    ({"num_steps": 1}, "num_steps must be in 2..n_train/2"),
    ({"lr": 0.0}, "lr must be in (0, 10]"),
    ({"epochs": 0}, "epochs must be in 1..1000"),
    ({"seed": -1}, "seed must be zero or more"),
    ({"T": 1000.5}, "T must be an integer"),
])
def test_bad_options_name_the_option(change, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        SequenceConfig(**change)


def test_unknown_experiment_and_stop() -> None:
    with pytest.raises(ConfigError, match="experiments must be some of"):
        finish(run_lab(SequenceConfig(), ("models", "nope")))
    stop = threading.Event()
    gen = run_lab(SequenceConfig(epochs=3), ("tau",), stop=stop)
    first = next(gen)
    stop.set()
    events, result = finish(gen)
    assert first.model == "linear τ=1" and result is None and len(events) <= 1
    assert EXPERIMENTS == ("models", "tau", "exact", "blocks", "regime", "switching")
