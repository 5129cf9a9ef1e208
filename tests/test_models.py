"""Models: shapes, the scratch RNN against ``nn.RNN``, the hand-written BPTT against
autograd, step-by-step decoding against the full forward pass, dropout and config errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from engine.errors import ConfigError
from engine.config import CELLS, ENCODINGS, MODEL_KINDS, ModelConfig
from engine.models import RNNLM, build_model, detach_state
from engine.models.rnn import rnn_recurrence

V, H, B, T = 7, 12, 3, 6


def small(kind: str, **kw: object) -> RNNLM:
    torch.manual_seed(0)
    return build_model(ModelConfig(kind=kind, vocab_size=V, num_hiddens=H, **kw))  # type: ignore[arg-type]


def ids(batch: int = B, steps: int = T, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (batch, steps), generator=torch.Generator().manual_seed(seed))


def naive_scratch(model: RNNLM, X: torch.Tensor, H0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """D2L 8.5's loop, verbatim: one-hot matmul and output layer inside the time loop."""
    act = torch.relu if model.cfg.activation == "relu" else torch.tanh
    Hh, outputs = H0, []
    for X_t in F.one_hot(X.T, V).float():
        Hh = act(X_t @ model.W_xh + Hh @ model.W_hh + model.b_h)
        outputs.append(Hh @ model.W_hq + model.b_q)
    return torch.stack(outputs), Hh


def _kinds_layers() -> list[tuple[str, str, int]]:
    return [(k, e, n) for k in MODEL_KINDS for e in ENCODINGS for n in (1, 2) if not (CELLS[k].one_layer and n == 2)]


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_scratch_equals_nn_rnn_with_copied_weights(activation: str) -> None:
    model = small("scratch", activation=activation)
    with torch.no_grad():  # weights far from D2L's 0.01 scale, so the test has something to compare
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    ref = nn.RNN(V, H, nonlinearity=activation)
    out = nn.Linear(H, V)
    with torch.no_grad():  # nn.RNN computes x W_ihᵀ + b_ih + h W_hhᵀ + b_hh
        ref.weight_ih_l0.copy_(model.W_xh.T)
        ref.weight_hh_l0.copy_(model.W_hh.T)
        ref.bias_ih_l0.copy_(model.b_h)
        ref.bias_hh_l0.zero_()
        out.weight.copy_(model.W_hq.T)
        out.bias.copy_(model.b_q)
    X, H0 = ids(), torch.randn(B, H)
    logits, state = model(X, H0)
    Y, h_n = ref(F.one_hot(X.T, V).float(), H0.unsqueeze(0))
    torch.testing.assert_close(logits, out(Y), atol=1e-5, rtol=0)
    torch.testing.assert_close(state, h_n[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_scratch_matches_d2l_loop_values_and_gradients(activation: str) -> None:
    model = small("scratch", activation=activation)
    with torch.no_grad():
        model.W_hh.mul_(50.0)  # make the recurrence matter (D2L's 0.01 init barely mixes steps)
    X, H0 = ids(), torch.randn(B, H, requires_grad=True)
    logits, state = model(X, H0)
    (logits.square().sum() + state.sum()).backward()
    ours = [p.grad.clone() for p in model.parameters()] + [H0.grad.clone()]
    model.zero_grad()
    H0.grad = None
    ref_logits, ref_state = naive_scratch(model, X, H0)
    (ref_logits.square().sum() + ref_state.sum()).backward()
    ref = [p.grad for p in model.parameters()] + [H0.grad]
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    for g, r in zip(ours, ref):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("relu", [False, True])
def test_recurrence_backward_passes_gradcheck(relu: bool) -> None:
    g = torch.Generator().manual_seed(3)
    A_in = torch.randn(5, 2, 4, dtype=torch.float64, generator=g, requires_grad=True)
    H0 = torch.randn(2, 4, dtype=torch.float64, generator=g, requires_grad=True)
    W_hh = (torch.randn(4, 4, dtype=torch.float64, generator=g) * 0.7).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, h, w: rnn_recurrence(a, h, w, relu), (A_in, H0, W_hh))
    # A transposed (non-contiguous) weight, as the rnn kind passes weight_hh.t().
    W_t = W_hh.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda w: rnn_recurrence(A_in, H0, w.t(), relu), (W_t,))


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_rnn_kind_equals_its_own_nn_rnn(layers: int, activation: str) -> None:
    model = small("rnn", num_layers=layers, activation=activation)
    X = ids()
    state = torch.randn(layers, B, H, requires_grad=True)
    logits, h_n = model(X, state)
    Y, ref_h = model.rnn(F.one_hot(X.T, V).float(), state)
    torch.testing.assert_close(logits, model.linear(Y), atol=1e-5, rtol=0)
    torch.testing.assert_close(h_n, ref_h, atol=1e-5, rtol=0)
    # ... and its gradients equal autograd's through nn.RNN.
    grads = torch.autograd.grad(logits.square().sum(), [state, *model.rnn.parameters()])
    ref = torch.autograd.grad(model.linear(Y).square().sum(), [state, *model.rnn.parameters()])
    for g, r in zip(grads, ref):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind,encoding,layers", _kinds_layers())
def test_shapes_and_step_by_step_equals_forward(kind: str, encoding: str, layers: int) -> None:
    model = small(kind, encoding=encoding, num_layers=layers, embed_size=5)
    X = ids()
    logits, state = model(X, model.begin_state(B))
    assert logits.shape == (T, B, V)
    s = model.begin_state(B)
    steps = []
    for t in range(T):
        out, s = model.step(X[:, t], s)
        assert out.shape == (B, V)
        steps.append(out)
    torch.testing.assert_close(torch.stack(steps), logits, atol=1e-5, rtol=1e-5)
    finals, step_finals = (state, s) if isinstance(state, tuple) else ((state,), (s,))
    for f, g in zip(finals, step_finals):
        want = (B, H) if kind == "scratch" else (layers, B, H)
        assert f.shape == want
        torch.testing.assert_close(f, g, atol=1e-5, rtol=1e-5)
    assert isinstance(state, tuple) == (kind == "lstm")


def test_scratch_init_follows_d2l() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="scratch", vocab_size=28, num_hiddens=512))
    assert [n for n, _ in model.named_parameters()] == ["W_xh", "W_hh", "b_h", "W_hq", "b_q"]
    assert abs(model.W_hh.std().item() - 0.01) < 5e-4
    assert model.b_h.abs().sum() == 0 and model.b_q.abs().sum() == 0


@pytest.mark.parametrize("kind", [k for k in MODEL_KINDS if not CELLS[k].one_layer])
def test_dropout_acts_between_layers_in_training_only(kind: str) -> None:
    model = small(kind, num_layers=2, dropout=0.5)
    X = ids()
    model.train()
    a, _ = model(X, model.begin_state(B))
    b, _ = model(X, model.begin_state(B))
    assert not torch.allclose(a, b)  # a different dropout mask each pass
    model.eval()
    c, _ = model(X, model.begin_state(B))
    d, _ = model(X, model.begin_state(B))
    torch.testing.assert_close(c, d, atol=0, rtol=0)


def test_dropout_with_one_layer_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^dropout .*num_layers"):
        ModelConfig(kind="gru", num_layers=1, dropout=0.2)


@pytest.mark.parametrize(
    "field,kwargs",
    [
        ("kind", {"kind": "transformer"}),
        ("encoding", {"encoding": "bytes"}),
        ("activation", {"activation": "gelu"}),
        ("vocab_size", {"vocab_size": 1}),
        ("num_hiddens", {"num_hiddens": 0}),
        ("num_layers", {"num_layers": 0}),
        ("num_layers", {"kind": "scratch", "num_layers": 2}),
        ("dropout", {"num_layers": 2, "dropout": 1.0}),
        ("embed_size", {"embed_size": 0}),
    ],
)
def test_config_errors_name_the_field(field: str, kwargs: dict) -> None:
    with pytest.raises(ConfigError) as err:
        ModelConfig(**kwargs)
    assert field in str(err.value) and "got" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_detach_state_cuts_the_graph_and_gradients_cross_batches_otherwise() -> None:
    for kind in ("scratch", "lstm"):
        model = small(kind)
        _, state = model(ids(), model.begin_state(B))
        cut = detach_state(state)
        for s in cut if isinstance(cut, tuple) else (cut,):
            assert s.grad_fn is None and not s.requires_grad
    # Without detaching, the second batch's loss also reaches the first batch (8.5.5).
    grads = []
    for cut_between in (False, True):
        model = small("scratch")
        with torch.no_grad():
            model.W_hh.mul_(50.0)  # a recurrence strong enough to carry gradient back
        _, state = model(ids(seed=1), model.begin_state(B))
        logits, _ = model(ids(seed=2), detach_state(state) if cut_between else state)
        logits.square().sum().backward()
        grads.append(model.W_hh.grad.clone())
    assert (grads[0] - grads[1]).abs().max() > 1e-3 * grads[1].abs().max()


def graph_ops(t: torch.Tensor) -> set[str]:
    """The names of the autograd nodes behind ``t``: which kernels produced it."""
    seen, todo, names = set(), [t.grad_fn], set()
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        todo.extend(f for f, _ in fn.next_functions)
    return names


KERNEL_OPS = {"onednn": "MkldnnRnnLayerBackward0", "lstm": "LSTMRecurrenceBackward", "gru": "GRURecurrenceBackward",
              "rnn": "RNNRecurrenceBackward"}


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")  # mkldnn.flags() on a CPU-only build
def test_kernel_choice_on_the_cpu() -> None:
    """oneDNN's fused LSTM on the CPU wherever it runs (float32, oneDNN enabled), rnnlab's hand-written
    BPTT otherwise and for rnn/gru; the two LSTM paths give the same numbers. The kernel that ran is
    read from the autograd graph. (CUDA runs cuDNN for every nn kind: bench/check_cuda.py checks and
    times that on a GPU; nothing here fakes one.)"""
    def fused(model: RNNLM) -> bool:
        return model.cell.fused(model)

    assert [fused(small(k)) for k in ("rnn", "gru", "lstm")] == [False, False, True]
    assert not fused(small("lstm").double())  # oneDNN's RNN is float32 only
    assert not any(fused(small(k)) for k in MODEL_KINDS if k != "lstm")  # the others run their own recurrence
    ran = {}
    for kind in ("scratch", "rnn", "gru", "lstm"):
        model = small(kind)
        ran[kind] = graph_ops(model(ids(), model.begin_state(B))[0])
    assert KERNEL_OPS["rnn"] in ran["scratch"] and KERNEL_OPS["rnn"] in ran["rnn"]
    assert KERNEL_OPS["gru"] in ran["gru"] and KERNEL_OPS["onednn"] not in ran["gru"]
    assert KERNEL_OPS["onednn"] in ran["lstm"] and KERNEL_OPS["lstm"] not in ran["lstm"]
    model = small("lstm").double()
    assert KERNEL_OPS["lstm"] in graph_ops(model(ids(), tuple(s.double() for s in model.begin_state(B)))[0])
    # One model, both paths: oneDNN on, then off.
    model = small("lstm", num_layers=2, encoding="embedding")
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.5)  # away from the init scale: every gate term matters
    out = {}
    for enabled in (True, False):
        with torch.backends.mkldnn.flags(enabled=enabled):
            assert fused(model) is enabled
            logits, (h, c) = model(ids(), model.begin_state(B))
            loss = logits.square().mean() + h.square().mean() + c.square().mean()
            grads = torch.autograd.grad(loss, list(model.parameters()))
        ops = graph_ops(logits)
        assert (KERNEL_OPS["onednn"] in ops, KERNEL_OPS["lstm"] in ops) == (enabled, not enabled)
        out[enabled] = (logits, h, c, *grads)
    assert all(float(g.abs().max()) > 0 for g in out[True][3:])  # every weight's gradient compared is alive
    for onednn, ours in zip(out[True], out[False]):
        torch.testing.assert_close(ours, onednn, atol=1e-5, rtol=1e-4)


# -- init identity (exercise 8.7.2: Le, Jaitly & Hinton 2015's IRNN) -------------------------------------
@pytest.mark.parametrize("kind,layers", [("rnn", 1), ("rnn", 2), ("scratch", 1)])
def test_identity_init_sets_w_hh_to_i_and_its_biases_to_zero_and_keeps_the_other_draws(kind: str, layers: int) -> None:
    plain, irnn = small(kind, num_layers=layers), small(kind, num_layers=layers, init="identity", activation="relu")
    eye = torch.eye(H)
    recurrent = {"W_hh"} | {f"rnn.weight_hh_l{k}" for k in range(layers)}
    biases = {"b_h"} | {f"rnn.bias_{w}_l{k}" for w in ("ih", "hh") for k in range(layers)}
    given = dict(plain.named_parameters())
    names = []
    for name, p in irnn.named_parameters():
        names.append(name)
        if name in recurrent:
            assert torch.equal(p, eye), name
            assert not torch.equal(given[name], eye), name  # the default draw is not the identity
        elif name in biases:
            assert p.abs().sum() == 0, name
        else:  # input and output weights: the default init's, drawn from the same seed
            assert torch.equal(p, given[name]), name
    assert names == list(given) and len(set(names) & recurrent) == layers
    # H_t = relu(x_t W_xh + H_{t-1}): with zero input weights every layer carries its state forward unchanged
    with torch.no_grad():
        for name, p in irnn.named_parameters():
            if name == "W_xh" or "weight_ih" in name:
                p.zero_()
    H0 = torch.rand(layers, B, H) if kind == "rnn" else torch.rand(B, H)
    _, state = irnn(ids(), H0)
    torch.testing.assert_close(state, H0, atol=0, rtol=0)


@pytest.mark.parametrize("kind", [k for k in MODEL_KINDS if not CELLS[k].identity])
def test_identity_init_is_refused_for_gated_cells(kind: str) -> None:
    assert kind in ("gru", "lstm", "mingru")
    with pytest.raises(ConfigError, match=rf"^init identity needs a plain RNN cell \(scratch or rnn\), not {kind}"):
        ModelConfig(kind=kind, init="identity")
    with pytest.raises(ConfigError, match=r"^init must be one of default, identity \(got 'orthogonal'\)"):
        ModelConfig(kind="rnn", init="orthogonal")
