"""The BPTT lab's engine (D2L 8.7): power iteration, gradient flow through time, per-step gradient norms.

Expected values are computed here independently: powers of M with numpy's
``matrix_power`` and its eigendecomposition, the closed-form bound
tan θ_k ≤ |λ₂/λ₁|^k tan θ_0, hand-written backward passes of a tiny RNN through
the explicit product of its step Jacobians, the cross-entropy's gradient
W_hq (softmax − onehot), and the trainer's own per-step Progress.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from engine.config import ModelConfig, TrainConfig
from engine.errors import ConfigError
from engine.events import Progress
from engine.labs.bptt import (FlowConfig, PowerConfig, StepRecord, parse_model, power_iteration, summarize,
                              window_means)
from engine.labs.bptt_grads import (corpus_windows, gradient_flow, run_gradient_flow, state_gradients,
                                    step_norms)
from engine.models import RecurrentCore, build_model
from engine.trainer import train


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: one thread is fastest, and the busy test machine's second one only adds waiting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- power iteration ------------------------------------------------------------------------------------
def steps_needed(gap: float, tan0: float, target: float = 0.99) -> int:
    """The smallest k with gap^k tan θ0 ≤ tan(arccos target)."""
    return max(0, math.ceil(math.log(tan0 / math.tan(math.acos(target))) / math.log(1 / gap)))


@pytest.mark.parametrize("gap", [0.3, 0.6, 0.9])
def test_symmetric_power_iteration_aligns_at_the_gap_rate(gap):
    r = power_iteration(PowerConfig(n=8, lambda1=1.1, gap=gap, steps=120, seed=3))
    M, x = r.matrix, r.x
    assert np.allclose(M, M.T)
    lam, V = np.linalg.eigh(M)
    order = np.argsort(-np.abs(lam))
    lam, V = lam[order], V[:, order]
    assert lam[0] == pytest.approx(1.1) and abs(lam[1]) == pytest.approx(gap * 1.1)  # the spectrum asked for
    assert np.all(np.abs(lam[2:]) < gap * 1.1)
    v1 = V[:, 0]
    for k in (0, 1, 2, 5, 10, 20):
        y = np.linalg.matrix_power(M, k) @ x
        assert r.alignment[k] == pytest.approx(abs(y @ v1) / np.linalg.norm(y), abs=1e-12)
        assert r.log10_norm[k] == pytest.approx(math.log10(np.linalg.norm(y)), abs=1e-10)
    c = V.T @ x
    tan0 = np.linalg.norm(c[1:]) / abs(c[0])
    assert r.tangent[0] == pytest.approx(tan0)
    k_star = steps_needed(gap, tan0)
    assert r.bound_to_aligned == k_star
    assert all(a > 0.99 for a in r.alignment[k_star:])  # after enough steps, and from then on
    assert r.steps_to_aligned is not None and r.steps_to_aligned <= k_star
    # The closed-form rate: tan θ_k = √(Σ_{i>1} c_i² λ_i^{2k}) / |c₁ λ₁^k|, squeezed between the v₂ term alone
    # and the bound: |c₂/c₁| gap^k ≤ tan θ_k ≤ gap^k tan θ0. Checked while it is above float64's rounding.
    ks = [k for k in range(121) if gap**k * tan0 > 1e-9]
    for k in ks:
        exact = np.linalg.norm(c[1:] * (lam[1:] / lam[0]) ** k) / abs(c[0])
        assert r.tangent[k] == pytest.approx(exact, rel=1e-6)
        assert abs(c[1] / c[0]) * gap**k * (1 - 1e-6) <= r.tangent[k] <= gap**k * tan0 * (1 + 1e-6)
        assert r.predicted[k] == pytest.approx(r.alignment[k], abs=1e-12)
    assert len(ks) > 15


def test_a_larger_gap_ratio_needs_more_steps():
    firsts = [power_iteration(PowerConfig(gap=g, steps=200)).steps_to_aligned for g in (0.3, 0.6, 0.9, 0.97)]
    assert firsts == sorted(firsts) and firsts[0] < firsts[-1]


@pytest.mark.parametrize("lambda1", [1.2, 0.8])
def test_the_norm_grows_or_vanishes_as_lambda1(lambda1):
    r = power_iteration(PowerConfig(lambda1=lambda1, gap=0.5, steps=80))
    # Once v₁ dominates, ‖M^k x‖ = |c₁| λ₁^k to within gap^k: log10 grows by log10 λ₁ per step.
    assert r.rate() == pytest.approx(math.log10(lambda1), abs=1e-9)
    assert (r.log10_norm[-1] > 2) if lambda1 > 1 else (r.log10_norm[-1] < -2)


def test_nonsymmetric_matrix_has_the_spectrum_asked_for_and_aligns_with_its_eigenvector():
    r = power_iteration(PowerConfig(n=6, lambda1=0.95, gap=0.7, steps=100, matrix="nonsymmetric", seed=1))
    M = r.matrix
    assert not np.allclose(M, M.T)
    lam, V = np.linalg.eig(M)
    order = np.argsort(-np.abs(lam))
    assert np.allclose(np.abs(lam[order][:2]), [0.95, 0.665])
    v1 = V[:, order[0]].real
    y = np.linalg.matrix_power(M, 100) @ r.x
    assert r.alignment[100] == pytest.approx(abs(y @ v1) / np.linalg.norm(y) / np.linalg.norm(v1), abs=1e-12)
    assert r.alignment[100] > 0.999999 and r.predicted is None and r.bound_to_aligned is None
    assert r.gap == pytest.approx(0.7)


def test_gaussian_matrix_with_a_complex_dominant_pair_aligns_with_its_plane():
    r = power_iteration(PowerConfig(n=10, lambda1=1.0, steps=150, matrix="gaussian", seed=0))
    lam, V = np.linalg.eig(r.matrix)
    top = np.argmax(np.abs(lam))
    assert abs(lam[top].imag) > 0.1  # this seed's dominant eigenvalue is a complex pair
    plane, _ = np.linalg.qr(np.stack([V[:, top].real, V[:, top].imag], axis=1))
    y = np.linalg.matrix_power(r.matrix, 150) @ r.x
    assert r.alignment[150] == pytest.approx(np.linalg.norm(plane.T @ y) / np.linalg.norm(y), abs=1e-9)
    assert r.alignment[150] > 0.9999
    # Against one real vector of that plane it keeps turning: no limit.
    u = plane[:, 0]
    cosines = [abs(u @ (np.linalg.matrix_power(r.matrix, k) @ r.x)) / np.linalg.norm(np.linalg.matrix_power(r.matrix, k) @ r.x)
               for k in range(130, 150)]
    assert max(cosines) - min(cosines) > 0.3


@pytest.mark.parametrize("kw, word", [({"gap": 1.0}, "gap"), ({"gap": -0.1}, "gap"), ({"n": 1}, "n must"),
                                      ({"lambda1": 0.0}, "lambda1"), ({"steps": 0}, "steps"),
                                      ({"matrix": "hermitian"}, "matrix"), ({"seed": -1}, "seed")])
def test_power_options_are_checked(kw, word):
    with pytest.raises(ConfigError, match=word):
        PowerConfig(**kw)


# --- gradient flow ----------------------------------------------------------------------------------------
def set_rnn(core: RecurrentCore, W_ih, W_hh, b) -> None:
    core.to(torch.float64)  # before the weights go in: float32 would round them
    with torch.no_grad():
        core.rnn.weight_ih_l0.copy_(torch.as_tensor(W_ih))
        core.rnn.weight_hh_l0.copy_(torch.as_tensor(W_hh))
        core.rnn.bias_ih_l0.copy_(torch.as_tensor(b))
        core.rnn.bias_hh_l0.zero_()


def hand_backward(W_ih, W_hh, b, X, u, relu):
    """‖∂L/∂h_t‖ for L = u · h_T of h_t = φ(W_ih x_t + W_hh h_{t-1} + b), h_0 = 0, one sequence, written as
    the product of the step Jacobians J_t = ∂h_t/∂h_{t-1} = diag(φ'(a_t)) W_hh: ∂L/∂h_t = uᵀ J_T ⋯ J_{t+1}."""
    T, h = len(X), W_hh.shape[0]
    H, J = [np.zeros(h)], []
    for x in X:
        a = W_ih @ x + W_hh @ H[-1] + b
        H.append(np.maximum(a, 0) if relu else np.tanh(a))
        dphi = (a > 0).astype(float) if relu else 1 - np.tanh(a) ** 2
        J.append(np.diag(dphi) @ W_hh)
    out = []
    for t in range(T + 1):
        P = np.eye(h)
        for s in range(T, t, -1):  # J_T J_{T-1} ⋯ J_{t+1}
            P = P @ J[s - 1]
        out.append(np.linalg.norm(u @ P))
    return np.array(out)


def core_flow(core, X, u):
    """The lab's state gradients for a one-sequence RecurrentCore in float64."""
    core = core.to(torch.float64)
    Xt = torch.as_tensor(X, dtype=torch.float64).unsqueeze(1)  # (T, 1, d)
    ut = torch.as_tensor(u, dtype=torch.float64)
    return state_gradients(lambda x, s: core(x.unsqueeze(0), s)[1], list(Xt.unbind(0)), core.begin_state(1),
                           lambda s: (s[-1] @ ut).sum())


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_state_gradients_equal_the_product_of_jacobians(activation):
    rng = np.random.default_rng(7)
    h, d, T = 3, 2, 6
    W_ih, W_hh, b = rng.normal(size=(h, d)), rng.normal(size=(h, h)), rng.normal(size=h) * 0.3
    X, u = rng.normal(size=(T, d)), rng.normal(size=h)
    core = RecurrentCore("rnn", d, h, activation=activation)
    set_rnn(core, W_ih, W_hh, b)
    norms, memory = core_flow(core, X, u)
    expected = hand_backward(W_ih, W_hh, b, X, u, activation == "relu")
    assert memory is None and len(norms) == T + 1
    assert np.allclose(10 ** np.array(norms), expected, rtol=1e-10)


@pytest.mark.parametrize("s", [1.5, 0.5])
def test_relu_rnn_gradient_grows_with_a_large_w_hh_and_shrinks_with_a_small_one(s):
    # A positive W_hh with Perron root 1, positive inputs and biases: every unit stays active, so
    # J_t = W_hh exactly and ∂L/∂h_t = uᵀ (s P)^{T−t}, a norm growing (s > 1) or shrinking (s < 1) like s^{T−t}.
    rng = np.random.default_rng(0)
    h, d, T = 4, 2, 30
    P = rng.uniform(0.1, 1.0, size=(h, h))
    P /= max(abs(np.linalg.eigvals(P)))
    W_hh = s * P
    W_ih, b, X, u = rng.uniform(0.1, 1, (h, d)), np.full(h, 0.1), rng.uniform(0.1, 1, (T, d)), np.ones(h) / 2
    core = RecurrentCore("rnn", d, h, activation="relu")
    set_rnn(core, W_ih, W_hh, b)
    norms = 10 ** np.array(core_flow(core, X, u)[0])
    expected = [np.linalg.norm(u @ np.linalg.matrix_power(W_hh, T - t)) for t in range(T + 1)]
    assert np.allclose(norms, expected, rtol=1e-10)
    by_distance = norms[::-1]  # distance 0, 1, …, T from the loss
    steps = np.diff(np.log(by_distance))
    assert np.all(steps > 0) if s > 1 else np.all(steps < 0)
    assert by_distance[-1] / by_distance[-2] == pytest.approx(s, rel=1e-3)  # the rate is ρ(W_hh) = s


def test_untrained_relu_rnn_default_init_grows_when_scaled_up_and_shrinks_when_scaled_down():
    big, small = gradient_flow(FlowConfig(models=("rnn:relu",), scales=(4.0, 0.5), num_steps=100))
    assert (big.scale, small.scale) == (4.0, 0.5)
    assert big.largest_radius == pytest.approx(8 * small.largest_radius)  # ρ(sW) = s ρ(W)
    assert big.at_distance(0) == pytest.approx(0.0, abs=1e-12)  # ∂L_T/∂h_T = u, a unit vector
    far = [big.at_distance(d) for d in (10, 50, 100)]
    assert far == sorted(far) and far[0] > 0 and big.per_step() > 1
    near = [small.at_distance(d) for d in (10, 50, 100)]
    assert near == sorted(near, reverse=True) and near[0] < 0 and small.per_step() < 1


def test_zero_w_hh_cuts_the_rnn_path_but_not_the_gates_paths():
    rnn, gru, lstm, mingru = gradient_flow(FlowConfig(models=("rnn:tanh", "gru", "lstm", "mingru"), scales=(0.0,),
                                                      num_steps=20, batch_size=4))
    # rnn: h_t = φ(x_t W_xh + b) no longer depends on h_{t-1}: every earlier gradient is exactly 0.
    assert rnn.radius == [[0.0]] and rnn.log10_norm[:-1] == [-math.inf] * 20
    assert rnn.log10_norm[-1] == pytest.approx(0.0, abs=1e-12)
    # gru: h_t = z ⊙ h_{t-1} + … still carries h_{t-1} through the update gate; lstm: through C_t only.
    assert all(math.isfinite(v) for v in gru.log10_norm) and len(gru.radius[0]) == 3
    assert lstm.log10_memory is not None and math.isfinite(lstm.log10_memory[0]) and len(lstm.radius[0]) == 4
    assert lstm.log10_memory[-1] == -math.inf  # L_T reads h_T, never C_T directly
    # mingru has no W_hh: one curve, as is.
    assert mingru.scale is None and mingru.radius == [] and mingru.largest_radius is None
    assert rnn.log10_memory is None and gru.log10_memory is None


def test_run_gradient_flow_starts_from_the_cross_entropy_gradient():
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="rnn", vocab_size=5, num_hiddens=4))
    ids = np.arange(40) % 5
    windows = corpus_windows(ids, num_steps=7, batch_size=3, seed=0)
    assert windows.shape == (3, 8) and all(np.array_equal(w, ids[w[0] : w[0] + 8]) for w in windows)
    (curve,) = run_gradient_flow(model, windows, [1.0], "tiny")
    m = model.to(torch.float64)
    with torch.no_grad():
        H = m.begin_state(3).to(torch.float64)
        for t in range(7):
            _, H = m(torch.as_tensor(windows[:, t : t + 1]), H)
        h = H[-1].numpy()
    W, b = m.linear.weight.detach().numpy(), m.linear.bias.detach().numpy()
    logits = h @ W.T + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(3), windows[:, -1]] -= 1  # ∂CE/∂logits = softmax − onehot
    expected = np.log10(np.linalg.norm(p @ W, axis=1)).mean()
    assert curve.at_distance(0) == pytest.approx(expected, abs=1e-12)
    assert curve.model == "tiny" and curve.num_steps == 7


@pytest.mark.parametrize("spec, kind", [("rnn", ("rnn", "tanh")), ("scratch:relu", ("scratch", "relu")),
                                        ("lstm", ("lstm", "tanh"))])
def test_parse_model(spec, kind):
    assert parse_model(spec) == kind


@pytest.mark.parametrize("kw, word", [({"models": ("transformer",)}, "model must be one of"),
                                      ({"models": ("gru:relu",)}, "no activation"),
                                      ({"models": ("rnn:sigmoid",)}, "activation"),
                                      ({"models": ()}, "at least one"), ({"scales": (-1.0,)}, "scales"),
                                      ({"scales": ()}, "scales"), ({"num_steps": 0}, "num_steps"),
                                      ({"models": ("scratch",), "num_layers": 2}, "num_layers must be 1")])
def test_flow_options_are_checked(kw, word):
    with pytest.raises(ConfigError, match=word):
        FlowConfig(**kw)


def test_corpus_windows_refuses_a_too_short_corpus():
    with pytest.raises(ConfigError, match="num_steps must be below the corpus's 5 tokens"):
        corpus_windows(np.arange(5), 5, 2, 0)


# --- per-step gradient norms --------------------------------------------------------------------------------
def trainer_steps(ids, model_cfg, train_cfg, steps):
    """(step, ‖g‖, clipped share) of the trainer's Progress with one step per window: its per-step figures."""
    stop, out = threading.Event(), []
    cfg = TrainConfig(**{**train_cfg.__dict__, "log_every_steps": 1, "log_interval_s": 1e9, "sample_every": 0})
    for ev in train(ids, model_cfg, cfg, stop=stop):
        if isinstance(ev, Progress) and not ev.epoch_end:
            out.append((ev.step, ev.grad_norm, ev.clip_fraction))
            if ev.step >= steps:
                stop.set()
    return out


@pytest.mark.parametrize("sampler", ["random", "sequential"])
def test_step_norms_are_the_trainers_steps(pipeline, sampler):
    model_cfg = ModelConfig(kind="rnn", activation="relu", num_hiddens=24, vocab_size=len(pipeline.vocab))
    train_cfg = TrainConfig(batch_size=8, num_steps=10, max_tokens=1500, lr=2.0, clip_theta=0.5, sampler=sampler,
                            device="cpu", epochs=10)
    records = list(step_norms(pipeline.ids, model_cfg, train_cfg, 40))
    expected = trainer_steps(pipeline.ids, model_cfg, train_cfg, 40)
    assert [r.step for r in records] == [s for s, _, _ in expected] == list(range(1, 41))
    assert records[-1].epoch >= 3  # several epochs, each with the trainer's minibatch order
    # The trainer's window mean is a difference of float32 running sums: equal to float32 rounding.
    assert [r.grad_norm for r in records] == pytest.approx([g for _, g, _ in expected], rel=1e-5, abs=1e-5)
    assert [float(r.clipped) for r in records] == [c for _, _, c in expected]
    assert 0 < sum(r.clipped for r in records) < 40
    assert all(r.clipped == (r.grad_norm > 0.5) for r in records)  # clip norm: changed exactly when ‖g‖ > θ


def test_step_norms_stops_when_asked(pipeline):
    stop = threading.Event()
    model_cfg = ModelConfig(kind="gru", num_hiddens=8, vocab_size=len(pipeline.vocab))
    cfg = TrainConfig(batch_size=4, num_steps=5, max_tokens=1000, device="cpu")
    records = []
    for r in step_norms(pipeline.ids, model_cfg, cfg, 50, stop=stop):
        records.append(r)
        if r.step == 3:
            stop.set()
    assert [r.step for r in records] == [1, 2, 3]


def test_step_norms_refuses_bad_options(pipeline):
    model_cfg = ModelConfig(kind="gru", num_hiddens=8, vocab_size=len(pipeline.vocab))
    with pytest.raises(ConfigError, match="steps must be in"):
        next(step_norms(pipeline.ids, model_cfg, TrainConfig(), 0))
    with pytest.raises(ConfigError, match="per-step norms need truncation regular \\(got none\\)"):
        next(step_norms(pipeline.ids, model_cfg, TrainConfig(truncation="none", sampler="sequential"), 5))


def rec(step, norm, clipped=False):
    return StepRecord(step, 1, 2.0, norm, clipped)


def test_window_means_and_summary_by_hand():
    records = [rec(1, 1.0), rec(2, 2.0, True), rec(3, 3.0), rec(4, 40.0, True), rec(5, 5.0)]
    assert window_means(records, 2) == [(2, 1.5, 0.5), (4, 21.5, 0.5), (5, 5.0, 0.0)]
    s = summarize(records, 2)
    assert (s.steps, s.mean_norm, s.median_norm, s.max_norm, s.max_step, s.clipped, s.max_window_mean) == (
        5, 10.2, 3.0, 40.0, 4, 2, 21.5)
    assert [r.step for r in s.spikes] == [4]  # 40 > 3 × the median 3; 5 is not
    with pytest.raises(ConfigError, match="window"):
        window_means(records, 0)
