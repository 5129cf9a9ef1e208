"""GRU/LSTM recurrences with hand-written backward (``engine.models.gru``/``lstm``): gradcheck in
double precision, and the gru/lstm models against their own ``nn.GRU``/``nn.LSTM``
(values and gradients, 1 and 2 layers, one-hot and embedding input)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch.nn import functional as F

from engine.models.gru import gru_recurrence
from engine.models.lstm import lstm_recurrence
from engine.config import ModelConfig
from engine.models import RNNLM, build_model

V, H, B, T = 7, 12, 3, 6


def _inputs(gates: int, seed: int = 3) -> list[torch.Tensor]:
    """A_in (4, 2, gates·3), H0, C0 (2, 3), W_hh (gates·3, 3), b_hh: doubles needing gradients."""
    g = torch.Generator().manual_seed(seed)
    h = 3

    def rand(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, dtype=torch.float64, generator=g) * scale).requires_grad_()

    return [rand(4, 2, gates * h), rand(2, h), rand(2, h), rand(gates * h, h, scale=0.7), rand(gates * h)]


def test_gru_recurrence_passes_gradcheck() -> None:
    A_in, H0, _, W_hh, b_hh = _inputs(3)
    assert torch.autograd.gradcheck(gru_recurrence, (A_in, H0, W_hh, b_hh))
    # Only some inputs needing gradients (as for a layer whose state is a constant).
    assert torch.autograd.gradcheck(lambda a, w: gru_recurrence(a, H0.detach(), w, b_hh.detach()), (A_in, W_hh),
                                    fast_mode=True)


def test_lstm_recurrence_passes_gradcheck() -> None:
    A_in, H0, C0, W_hh, _ = _inputs(4)
    # Both outputs: all hidden states and all memory cells carry gradients.
    assert torch.autograd.gradcheck(lstm_recurrence, (A_in, H0, C0, W_hh))
    assert torch.autograd.gradcheck(lambda a: lstm_recurrence(a, H0.detach(), C0.detach(), W_hh.detach())[0],
                                    (A_in,), fast_mode=True)


def test_a_single_step_and_no_steps() -> None:
    A_in, H0, C0, W_hh, b_hh = _inputs(3)
    assert torch.autograd.gradcheck(gru_recurrence, (A_in[:1], H0, W_hh, b_hh))
    with pytest.raises(ValueError, match="at least one time step"):
        gru_recurrence(A_in[:0], H0, W_hh, b_hh)
    A4, _, _, W4, _ = _inputs(4)
    with pytest.raises(ValueError, match="at least one time step"):
        lstm_recurrence(A4[:0], H0, C0, W4)


@contextmanager
def onednn_off() -> Iterator[None]:
    """``torch.backends.mkldnn.flags(enabled=False)`` without its TF32 warning."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


def small(kind: str, **kw: object) -> RNNLM:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, vocab_size=V, num_hiddens=H, **kw))  # type: ignore[arg-type]
    with torch.no_grad():  # larger than nn's U(±1/√h) init, so the recurrence matters
        for p in model.rnn.parameters():
            p.mul_(3.0)
    return model


@pytest.mark.parametrize("encoding", ["onehot", "embedding"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_model_equals_its_own_nn_module(kind: str, layers: int, encoding: str) -> None:
    # oneDNN off: the LSTM then runs LSTMRecurrence rather than nn.LSTM (the GRU always runs GRURecurrence).
    with onednn_off():
        _check_against_nn(kind, layers, encoding)


def test_lstm_runs_onednn_where_it_can_and_gated_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = lstm_recurrence
    monkeypatch.setattr("engine.models.lstm.lstm_recurrence", lambda *a: calls.append("gated") or real(*a))
    model = small("lstm")
    X = torch.zeros(B, T, dtype=torch.long)
    with onednn_off():
        model(X, model.begin_state(B))
    assert calls == ["gated"]
    if torch.backends.mkldnn.is_available():
        model(X, model.begin_state(B))
        assert calls == ["gated"]


def _check_against_nn(kind: str, layers: int, encoding: str) -> None:
    model = small(kind, num_layers=layers, encoding=encoding, embed_size=5)
    X = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    h0 = torch.randn(layers, B, H, generator=g).requires_grad_()
    c0 = torch.randn(layers, B, H, generator=g).requires_grad_()
    state = (h0, c0) if kind == "lstm" else h0
    logits, new_state = model(X, state)
    inputs = F.one_hot(X.T, V).float() if encoding == "onehot" else model.embedding(X.T)
    Y, ref_state = model.rnn(inputs, state)
    ref_logits = model.linear(Y)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=0)
    finals = new_state if isinstance(new_state, tuple) else (new_state,)
    ref_finals = ref_state if isinstance(ref_state, tuple) else (ref_state,)
    for f, r in zip(finals, ref_finals):
        torch.testing.assert_close(f, r, atol=1e-5, rtol=0)

    # Gradients of a loss that reaches every output and every final state.
    def loss(out: torch.Tensor, fin: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return out.square().sum() + sum((k + 2) * s.sum() for k, s in enumerate(fin))

    wrt = [*(state if isinstance(state, tuple) else (state,)), *model.parameters()]
    grads = torch.autograd.grad(loss(logits, finals), wrt)
    ref = torch.autograd.grad(loss(ref_logits, ref_finals), wrt)
    for gr, r in zip(grads, ref):
        torch.testing.assert_close(gr, r, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_state_dict_keys_stay_those_of_nn(kind: str) -> None:
    model = small(kind, num_layers=2)
    names = {"weight_ih_l{}", "weight_hh_l{}", "bias_ih_l{}", "bias_hh_l{}"}
    want = {f"rnn.{n.format(k)}" for n in names for k in (0, 1)} | {"linear.weight", "linear.bias"}
    assert set(model.state_dict()) == want


def test_final_states_are_tensors_of_their_own() -> None:
    # Callers detach_() the state between batches; a view of the outputs would refuse that.
    for kind in ("gru", "lstm"):
        model = small(kind)
        state = model.begin_state(B)
        _, new_state = model(torch.zeros(B, T, dtype=torch.long), state)
        for s in new_state if isinstance(new_state, tuple) else (new_state,):
            s.detach_()
            assert s._base is None
