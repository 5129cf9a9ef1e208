"""The ``lstm`` cell (D2L 9.2): ``torch.nn.LSTM``'s weights, and the LSTM recurrence with a hand-written backward.

Where oneDNN's fused LSTM kernel runs (float32 on the CPU, the usual case) and
on CUDA (cuDNN) the cell runs ``nn.LSTM`` itself: both beat a Python loop over
time steps (bench/RESULTS.md). Elsewhere (float64, oneDNN off) it runs
:class:`LSTMRecurrence`, the same cell with a hand-written backward that walks
time in reverse doing only what depends on the previous step; the input term
``A_in = x W_ihᵀ + b_ih + b_hh`` for all steps comes in precomputed (see
``engine.models.lm``). nn's gate order and weight shapes (rows i, f, g, o)::

    [i, f, o] = σ(·), g = tanh(·) of A_t + H_{t-1} W_hhᵀ
    C_t = f ⊙ C_{t-1} + i ⊙ g     H_t = o ⊙ tanh(C_t)

    dC = dC_{t+1}·f_{t+1} + dH ⊙ o(1−tanh²C_t)     dA_o = dH ⊙ tanh(C_t) o(1−o)
    [dA_i, dA_f, dA_g] = dC ⊙ [g i(1−i), C_{t-1} f(1−f), i(1−g²)]
    dH_{t-1} = dHs_{t-1} + dA W_hh

The factors in brackets need no gradient, so they are computed for all steps
at once; the backward loop does 5 ops a step, and the weight gradient is one
(4h×TB)·(TB×h) matmul. The state is a pair (H, C), each (num_layers, B, h), as
``nn.LSTM``'s. The one-token step for generation is one matmul onto the input
term and in-place gates.

Left out: stacking and dropout (``engine.models.cell.Cell.forward`` loops over
layers), double backward, peepholes, projections, bidirectional and packed sequences.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engine.models.cell import NNCell, State


class LSTMRecurrence(torch.autograd.Function):
    """``Hs, Cs = LSTMRecurrence.apply(A_in, H0, C0, W_hh)``.

    ``A_in`` (T, B, 4h): ``x W_ihᵀ + b_ih + b_hh`` in nn's i, f, g, o order;
    ``H0``, ``C0`` (B, h); ``W_hh`` (4h, h) as ``nn.LSTM`` holds it. Returns all
    hidden states and all memory cells, each (T, B, h).
    """

    @staticmethod
    def forward(ctx: Any, A_in: torch.Tensor, H0: torch.Tensor, C0: torch.Tensor,
                W_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T, B, h4 = A_in.shape
        h = h4 // 4
        W_t = W_hh.t()
        G = A_in.new_empty((T, B, h4))  # gate activations i, f, g, o
        Hs, Cs, TC = (A_in.new_empty((T, B, h)) for _ in range(3))
        H, C = H0, C0
        for a, g, c, tc, out in zip(A_in.unbind(0), G.unbind(0), Cs.unbind(0), TC.unbind(0), Hs.unbind(0)):
            torch.addmm(a, H, W_t, out=g)
            g[:, : 2 * h].sigmoid_()
            g[:, 2 * h: 3 * h].tanh_()
            g[:, 3 * h:].sigmoid_()
            torch.mul(g[:, h: 2 * h], C, out=c).addcmul_(g[:, :h], g[:, 2 * h: 3 * h])
            torch.mul(g[:, 3 * h:], torch.tanh(c, out=tc), out=out)
            H, C = out, c
        ctx.save_for_backward(H0, C0, W_hh, Hs, Cs, TC, G)
        return Hs, Cs

    @staticmethod
    def backward(  # type: ignore[override]
            ctx: Any, dHs: torch.Tensor, dCs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        H0, C0, W_hh, Hs, Cs, TC, G = ctx.saved_tensors
        T, B, h = Hs.shape
        dHs, dCs = dHs.contiguous(), dCs.contiguous()
        i, f, g, o = (G[..., k * h: (k + 1) * h] for k in range(4))
        one = torch.ones((), dtype=Hs.dtype, device=Hs.device)
        K_c = torch.addcmul(one, TC, TC, value=-1).mul_(o)  # dC_t += dH_t ⊙ o(1 − tanh²C_t)
        K_o = torch.addcmul(o, o, o, value=-1).mul_(TC)  # dA_o = dH_t ⊙ tanh(C_t) o(1−o)
        # M = [g i(1−i), C_{t-1} f(1−f), i(1−g²)], written in place (no C_{t-1} copy, no stack).
        M = Hs.new_empty((T, B, 3, h))
        torch.addcmul(i, i, i, value=-1, out=M[:, :, 0]).mul_(g)
        ff = torch.addcmul(f, f, f, value=-1)
        torch.mul(C0, ff[0], out=M[0, :, 1])
        torch.mul(Cs[:-1], ff[1:], out=M[1:, :, 1])
        torch.addcmul(one, g, g, value=-1, out=M[:, :, 2]).mul_(i)
        D = Hs.new_empty((T, B, 4 * h))  # gradient of the pre-activations, i, f, g, o
        dH, dC = dHs[T - 1], dCs[T - 1]
        for t in range(T - 1, -1, -1):
            d = D[t]
            dC = torch.addcmul(dC, dH, K_c[t])
            torch.mul(dH, K_o[t], out=d[:, 3 * h:])
            torch.mul(dC.unsqueeze(1), M[t], out=d[:, : 3 * h].view(B, 3, h))
            if t > 0:
                dH = torch.addmm(dHs[t - 1], d, W_hh)
                dC = torch.addcmul(dCs[t - 1], dC, f[t])
            else:
                dH = d @ W_hh if ctx.needs_input_grad[1] else None
                dC = dC * f[0] if ctx.needs_input_grad[2] else None
        dW = None
        if ctx.needs_input_grad[3]:
            # Σ_t dA_tᵀ H_{t-1} = dA_1ᵀ H_0 + [dA_2; …]ᵀ [H_1; …]: one large matmul, no copy of the states.
            dW = D[0].t() @ H0
            if T > 1:
                dW.addmm_(D[1:].reshape(-1, 4 * h).t(), Hs[:-1].reshape(-1, h))
        return (D if ctx.needs_input_grad[0] else None), dH, dC, dW


def lstm_recurrence(A_in: torch.Tensor, H0: torch.Tensor, C0: torch.Tensor,
                    W_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All hidden states and memory cells of one LSTM layer; see :class:`LSTMRecurrence`."""
    if A_in.shape[0] == 0:
        raise ValueError("lstm_recurrence needs at least one time step")
    return LSTMRecurrence.apply(A_in, H0, C0, W_hh)  # type: ignore[no-any-return]


def onednn_lstm(weight: torch.Tensor) -> bool:
    """Whether ``nn.LSTM`` on this weight runs oneDNN's fused kernel (float32 on the CPU, oneDNN enabled). Not
    under CPU autocast (``--precision bf16``): autocast hands the kernel bf16, which oneDNN refuses on CPUs
    without bf16 instructions ("could not create a primitive descriptor"); the hand-written recurrence runs."""
    mkldnn = torch.backends.mkldnn
    return (weight.device.type == "cpu" and weight.dtype == torch.float32 and mkldnn.is_available() and mkldnn.enabled
            and not torch.is_autocast_enabled("cpu"))


class LSTM(NNCell):
    """``torch.nn.LSTM``'s weights: its own fused kernel where oneDNN or cuDNN runs, else :class:`LSTMRecurrence`."""

    name = "lstm"
    gates = 4
    bptt_floats = 12  # the gates, the memory cells and their tanh, the states
    nn_module = nn.LSTM

    def begin_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        shape = (self.num_layers, batch_size, self.num_hiddens)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def layer_states(self, state: State) -> list[Any]:
        assert isinstance(state, tuple)
        return list(zip(state[0].unbind(0), state[1].unbind(0)))

    def join_states(self, finals: list[Any]) -> State:
        return torch.stack([f[0] for f in finals]), torch.stack([f[1] for f in finals])

    def fused(self, holder: nn.Module) -> bool:
        weight = holder.rnn.weight_hh_l0
        return bool(weight.is_cuda) or onednn_lstm(weight)

    def run_layer(self, holder: nn.Module, layer: int, A_in: torch.Tensor,
                  state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, Any]:
        Hs, Cs = lstm_recurrence(A_in, state[0], state[1], self.weight_hh(holder, layer))
        return Hs, (Hs[-1], Cs[-1])

    def step_weights(self, holder: nn.Module, layer: int) -> tuple[torch.Tensor, ...]:
        return (self.weight_hh(holder, layer).t(),)

    def step(self, a: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
             weights: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, Any]:
        H, C = state
        h = self.num_hiddens
        g = a.addmm_(H, weights[0])  # i, f, g, o pre-activations
        g[:, : 2 * h].sigmoid_()
        g[:, 2 * h: 3 * h].tanh_()
        g[:, 3 * h:].sigmoid_()
        C = torch.mul(g[:, h: 2 * h], C).addcmul_(g[:, :h], g[:, 2 * h: 3 * h])
        H = torch.tanh(C).mul_(g[:, 3 * h:])
        return H, (H, C)
