"""The cell registry and the recurrent core, for every registered kind: each cell's facts agree with its
weights, and ``RecurrentCore`` on real-valued inputs (not tokens) equals an independent reference — the
cell's own ``torch.nn`` module where it has one, D2L 8.5's loop for the scratch RNN — and the cell's
one-token step run in a plain loop (values; the step is inference only), and the gradients of the
whole-sequence forward against autograd through the reference."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from engine.config import CELLS, MODEL_KINDS, ModelConfig
from engine.models import RecurrentCore, build_model, cell_class

D, H, B, T = 3, 5, 2, 7


def _layers(kind: str) -> list[int]:
    return [1] if CELLS[kind].one_layer else [1, 2]


CASES = [(k, n) for k in MODEL_KINDS for n in _layers(k)]


def core(kind: str, layers: int, dtype: torch.dtype = torch.float64, **kw: object) -> RecurrentCore:
    torch.manual_seed(0)
    c = RecurrentCore(kind, D, H, num_layers=layers, **kw).to(dtype)  # type: ignore[arg-type]
    with torch.no_grad():  # away from the init scale, so every term of the recurrence matters
        for p in c.parameters():
            p.copy_(torch.randn_like(p) * 0.6)
    return c.eval()


def inputs(c: RecurrentCore, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, object]:
    g = torch.Generator().manual_seed(1)
    X = torch.randn(T, B, D, dtype=dtype, generator=g)
    s = c.begin_state(B)
    state = tuple(torch.randn(x.shape, dtype=dtype, generator=g) for x in s) if isinstance(s, tuple) \
        else torch.randn(s.shape, dtype=dtype, generator=g)
    return X, state


def finals(state: object) -> tuple[torch.Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)  # type: ignore[return-value]


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_registry_entry_and_cell_class_agree(kind: str) -> None:
    cls = cell_class(kind)
    assert cls.name == kind and CELLS[kind].target.endswith(":" + cls.__name__)
    for layers in _layers(kind):
        model = build_model(ModelConfig(kind=kind, vocab_size=11, num_hiddens=H, num_layers=layers))
        cell = model.cell
        for layer in range(layers):
            W, b = cell.input_weights(model, layer)
            assert W.shape == (11 if layer == 0 else H, cls.gates * H) and b.shape == (cls.gates * H,)
        if cls.nn_module is not None:  # gates counted as torch.nn stacks them: RNN 1, GRU 3, LSTM 4
            assert isinstance(model.rnn, cls.nn_module)
            assert model.rnn.weight_hh_l0.shape == (cls.gates * H, H)
    with pytest.raises(KeyError):
        cell_class("transformer")


def _scratch_loop(c: RecurrentCore, X: torch.Tensor, H0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """D2L 8.5's loop, verbatim, on real inputs."""
    Hh, outs = H0, []
    for X_t in X:
        Hh = torch.tanh(X_t @ c.W_xh + Hh @ c.W_hh + c.b_h)
        outs.append(Hh)
    return torch.stack(outs), Hh


def _step_loop(c: RecurrentCore, X: torch.Tensor, state: object) -> tuple[torch.Tensor, object]:
    """The cell's one-token step in a plain loop over time, layer by layer (what generation runs)."""
    cell = c.cell
    states = cell.layer_states(state)  # type: ignore[arg-type]
    inp_w = [cell.input_weights(c, k) for k in range(cell.num_layers)]
    step_w = [cell.step_weights(c, k) for k in range(cell.num_layers)]
    outs = []
    for x in X:
        inp = x
        for k in range(cell.num_layers):
            W, b = inp_w[k]
            inp, states[k] = cell.step(torch.addmm(b, inp, W), states[k], step_w[k])
        outs.append(inp)
    return torch.stack(outs), cell.join_states(states)


def _reference(c: RecurrentCore, X: torch.Tensor, state: object) -> tuple[torch.Tensor, object]:
    """An independent, differentiable reference: D2L 8.5's loop for the scratch RNN, the cell's own torch.nn
    module where it has one, else the kind's recurrence written out here (ORACLES)."""
    if c.cell.d2l_scratch:
        return _scratch_loop(c, X, state)  # type: ignore[arg-type]
    if c.cell.nn_module is not None:
        return c.rnn(X, state)  # type: ignore[no-any-return]
    return ORACLES[c.cell.name](c, X, state)


def _min_gru_loop(c: RecurrentCore, X: torch.Tensor, state: object) -> tuple[torch.Tensor, torch.Tensor]:
    """minGRU as Feng et al. (2024) define it, one step at a time, layer by layer: z = σ(W_z x + b_z),
    h̃ = g(W_h x + b_h) with g(a) = a + ½ for a ≥ 0 and σ(a) below, H_t = (1 − z) ⊙ H_{t-1} + z ⊙ h̃."""
    inp, finals = X, []
    for k in range(c.cell.num_layers):
        W, b = getattr(c.rnn, f"weight_ih_l{k}"), getattr(c.rnn, f"bias_ih_l{k}")
        Hh, outs = state[k], []  # type: ignore[index]
        for x in inp:
            a = x @ W.T + b
            z, pre = torch.sigmoid(a[:, :H]), a[:, H:]
            Hh = (1 - z) * Hh + z * torch.where(pre >= 0, pre + 0.5, torch.sigmoid(pre))
            outs.append(Hh)
        inp = torch.stack(outs)
        finals.append(Hh)
    return inp, torch.stack(finals)


ORACLES = {"mingru": _min_gru_loop}  # kind -> reference, for cells without a torch.nn module


@pytest.mark.parametrize("kind,layers", CASES)
def test_core_on_real_inputs_equals_its_reference_and_its_steps(kind: str, layers: int) -> None:
    c = core(kind, layers)
    X, state = inputs(c)
    with torch.no_grad():
        Hs, new = c(X, state)
        assert Hs.shape == (T, B, H)
        ref, ref_state = _reference(c, X, state)
        torch.testing.assert_close(Hs, ref, atol=1e-10, rtol=1e-10)
        for f, r in zip(finals(new), finals(ref_state), strict=True):
            torch.testing.assert_close(f, r, atol=1e-10, rtol=1e-10)
        stepped, step_state = _step_loop(c, X, state)
        torch.testing.assert_close(stepped, Hs, atol=1e-10, rtol=1e-10)
        for f, r in zip(finals(step_state), finals(new), strict=True):
            torch.testing.assert_close(f, r, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("kind,layers", CASES)
def test_core_gradients_equal_autograd_through_the_reference(kind: str, layers: int) -> None:
    """The whole-sequence forward's backward (hand-written, or a scan's) against autograd through the
    reference, for the inputs, the initial state and every weight."""
    c = core(kind, layers)
    X, state = inputs(c)
    X.requires_grad_()
    for s in finals(state):
        s.requires_grad_()
    wrt = [X, *finals(state), *c.parameters()]

    def loss(Hs: torch.Tensor, new: object) -> torch.Tensor:
        return (Hs * torch.linspace(-1, 1, Hs.numel(), dtype=Hs.dtype).view_as(Hs)).sum() + sum(
            (k + 2) * f.square().sum() for k, f in enumerate(finals(new)))

    grads = torch.autograd.grad(loss(*c(X, state)), wrt)
    ref = torch.autograd.grad(loss(*_reference(c, X, state)), wrt)
    assert all(float(r.abs().max()) > 0 for r in ref)  # every gradient compared is alive
    for g, r in zip(grads, ref, strict=True):
        torch.testing.assert_close(g, r, atol=1e-9, rtol=1e-9)


def test_core_in_float32_runs_the_fused_lstm_where_it_can() -> None:
    c = core("lstm", 2, torch.float32)
    X, state = inputs(c, torch.float32)
    with torch.no_grad():
        Hs, (h, cc) = c(X, state)
        ref, (rh, rc) = c.rnn(X, state)
    assert c.cell.fused(c) == torch.backends.mkldnn.is_available()
    torch.testing.assert_close(Hs, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cc, rc, atol=1e-5, rtol=1e-5)


def test_core_dropout_acts_between_layers_in_training_only() -> None:
    c = core("gru", 2, dropout=0.5)
    X, state = inputs(c)
    c.train()
    a, _ = c(X, state)
    b, _ = c(X, state)
    assert not torch.allclose(a, b)
    c.eval()
    with torch.no_grad():
        torch.testing.assert_close(c(X, state)[0], _reference(c, X, state)[0], atol=1e-10, rtol=1e-10)


def test_lm_is_the_core_behind_a_one_hot_encoder() -> None:
    """The language model's gather fast path equals the core on one-hot vectors, for a model's own weights."""
    for kind in MODEL_KINDS:
        torch.manual_seed(0)
        model = build_model(ModelConfig(kind=kind, vocab_size=D, num_hiddens=H)).double().eval()
        c = core(kind, 1)
        c.load_state_dict({k: v for k, v in model.state_dict().items() if k in c.state_dict()})
        X = torch.randint(0, D, (B, T), generator=torch.Generator().manual_seed(2))
        state = c.begin_state(B)
        state = tuple(s.double() for s in state) if isinstance(state, tuple) else state.double()
        with torch.no_grad():
            logits, _ = model(X, state)
            Hs, _ = c(F.one_hot(X.T, D).double(), state)
        torch.testing.assert_close(logits, model.output(Hs), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_bptt_floats_bound_what_autograd_keeps(kind: str) -> None:
    """The memory estimate's floats per hidden unit and position (Cell.bptt_floats, engine.training.bptt_bytes)
    cover what autograd actually saves for the backward of the stacked cells (float64: no fused kernel)."""
    layers, steps, batch, h = _layers(kind)[-1], 35, 8, 64
    model = build_model(ModelConfig(kind=kind, vocab_size=11, num_hiddens=h, num_layers=layers)).double()
    X = torch.randint(0, 11, (batch, steps), generator=torch.Generator().manual_seed(0))
    state = model.begin_state(batch)
    state = tuple(s.double() for s in state) if isinstance(state, tuple) else state.double()
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.cell.forward(model, model.input_term(X, *model.cell.input_weights(model, 0)), state, True)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    floats = sum(n for ptr, n in saved.items() if ptr not in weights) / 8
    assert floats > 0
    assert floats <= model.cell.bptt_floats * h * layers * steps * batch
