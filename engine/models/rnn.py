"""The ``rnn`` cell: ``torch.nn.RNN``'s weights, and the plain-RNN recurrence with a hand-written backward (BPTT).

D2L 8.5 writes the RNN as ``H_t = φ(X_t W_xh + H_{t-1} W_hh + b_h)`` inside a
Python loop and lets autograd record every step. Autograd then replays the
loop backwards with one small matmul *per step* for the weight gradient
(``H_{t-1}ᵀ dA_t``, a (h×B)·(B×h) product with B = 32) and many little
bookkeeping ops. Here the input term ``A_in = X W_xh + b_h`` for all time steps
comes in precomputed (one gather or one big matmul, see ``engine.models.lm``), and
:class:`RNNRecurrence` runs only

    forward:  H_t  = φ(A_in_t + H_{t-1} W_hh)                     t = 1..T
    backward: dA_t = (dH_t + dA_{t+1} W_hhᵀ) ⊙ φ'(A_t)            t = T..1
              dW_hh = Σ_t H_{t-1}ᵀ dA_t = [H_0; …; H_{T-1}]ᵀ [dA_1; …; dA_T]
              dA_in = dA,   dH_0 = dA_1 W_hhᵀ

where ``dH_t`` is the gradient arriving from the output layer at step t, so the
loop does one (B×h)·(h×h) matmul per step each way and the weight gradient is a
single (h×TB)·(TB×h) product. φ' comes from the saved outputs: for tanh
``1 − H_t²``, for relu ``[H_t > 0]`` — no pre-activations need to be stored.

The :class:`RNN` cell holds its weights in an ``nn.RNN`` (``H_t = φ(x_t W_ihᵀ + b_ih
+ b_hh + H_{t-1} W_hhᵀ)``, so ``A_in`` folds both biases and ``W_hh`` is
``weight_hh.t()``) and runs this recurrence layer by layer; ``nn.RNN``'s own
kernel runs only on CUDA (cuDNN). D2L 8.5's scratch RNN (``engine.models.scratch``)
runs the same recurrence. Its one-token step is ``φ(a + H W_hh)``, in place.

Left out: stacking layers and dropout (``engine.models.cell.Cell.forward`` loops
over layers) and double backward (the function is only differentiable once).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engine.models.cell import NNCell


class RNNRecurrence(torch.autograd.Function):
    """``Hs = RNNRecurrence.apply(A_in, H0, W_hh, relu)``.

    Shapes: ``A_in`` (T, B, h) the input term including the bias, ``H0`` (B, h),
    ``W_hh`` (h, h) used as ``H @ W_hh`` (pass ``weight_hh.t()`` for ``nn.RNN``
    weights), ``relu`` a bool (False: tanh). Returns all hidden states
    ``Hs`` (T, B, h); the final state is ``Hs[-1]``.
    """

    @staticmethod
    def forward(ctx: Any, A_in: torch.Tensor, H0: torch.Tensor, W_hh: torch.Tensor, relu: bool) -> torch.Tensor:
        # One copy of A_in up front, then each step adds H_{t-1} W_hh in place: an addmm with
        # out= would copy its input term into the output first, one small copy per step.
        Hs = A_in.clone(memory_format=torch.contiguous_format)
        H = H0
        for out in Hs.unbind(0):
            out.addmm_(H, W_hh)  # A_t = A_in_t + H_{t-1} W_hh
            if relu:
                out.relu_()
            else:
                out.tanh_()
            H = out
        ctx.relu = relu
        ctx.save_for_backward(Hs, H0, W_hh)
        return Hs

    @staticmethod
    def backward(ctx: Any, dHs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        Hs, H0, W_hh = ctx.saved_tensors
        T, B, h = Hs.shape
        # φ'(A_t) for all steps at once, from the outputs alone.
        if ctx.relu:
            dphi = (Hs > 0).to(Hs.dtype)
        else:
            dphi = torch.addcmul(torch.ones((), dtype=Hs.dtype, device=Hs.device), Hs, Hs, value=-1.0)
        W_hh_T = W_hh.t()
        dA = dHs.clone(memory_format=torch.contiguous_format)  # one copy, then in place per step
        dA_next: torch.Tensor | None = None
        for t in range(T - 1, -1, -1):
            out = dA[t]
            if dA_next is not None:
                out.addmm_(dA_next, W_hh_T)  # dH_t = dHs_t + dA_{t+1} W_hhᵀ
            out.mul_(dphi[t])  # dA_t = dH_t ⊙ φ'(A_t)
            dA_next = out
        assert dA_next is not None
        dH0 = dA_next @ W_hh_T if ctx.needs_input_grad[1] else None
        dW_hh = None
        if ctx.needs_input_grad[2]:
            # Σ_t H_{t-1}ᵀ dA_t = H_0ᵀ dA_1 + [H_1; …; H_{T-1}]ᵀ [dA_2; …; dA_T]: one large matmul
            # instead of T small ones (and no copy to build [H_0; …; H_{T-1}]).
            dW_hh = H0.t() @ dA[0]
            if T > 1:
                dW_hh.addmm_(Hs[:-1].reshape((T - 1) * B, h).t(), dA[1:].reshape((T - 1) * B, h))
        return dA, dH0, dW_hh, None


def rnn_recurrence(A_in: torch.Tensor, H0: torch.Tensor, W_hh: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """All hidden states of ``H_t = φ(A_in_t + H_{t-1} W_hh)``; see :class:`RNNRecurrence`."""
    if A_in.shape[0] == 0:
        raise ValueError("rnn_recurrence needs at least one time step")
    return RNNRecurrence.apply(A_in, H0, W_hh, relu)  # type: ignore[no-any-return]


class RNN(NNCell):
    """``torch.nn.RNN``'s weights, run through :class:`RNNRecurrence` (tanh or relu, D2L 8.6)."""

    name = "rnn"
    gates = 1
    bptt_floats = 3  # the input term, the states and φ'
    nn_module = nn.RNN

    def make_module(self) -> nn.RNNBase:
        return nn.RNN(input_size=self.input_size, hidden_size=self.num_hiddens, num_layers=self.num_layers,
                      dropout=self.dropout, nonlinearity=self.activation)

    def init_identity(self, holder: nn.Module) -> None:
        with torch.no_grad():
            for layer in range(self.num_layers):
                nn.init.eye_(self.weight_hh(holder, layer))
                getattr(holder.rnn, f"bias_ih_l{layer}").zero_()
                getattr(holder.rnn, f"bias_hh_l{layer}").zero_()

    def run_layer(self, holder: nn.Module, layer: int, A_in: torch.Tensor,
                  state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Hs = rnn_recurrence(A_in, state, self.weight_hh(holder, layer).t(), self.relu)
        return Hs, Hs[-1]

    def step_weights(self, holder: nn.Module, layer: int) -> tuple[torch.Tensor, ...]:
        return (self.weight_hh(holder, layer).t(),)

    def step(self, a: torch.Tensor, state: torch.Tensor,
             weights: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        H = a.addmm_(state, weights[0]).relu_() if self.relu else a.addmm_(state, weights[0]).tanh_()
        return H, H  # H_t = φ(a + H_{t-1} W_hh), written into a
