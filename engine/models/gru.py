"""The ``gru`` cell (D2L 9.1): ``torch.nn.GRU``'s weights, and the GRU recurrence with a hand-written backward.

``torch.nn.GRU`` on the CPU runs ``gru_cell`` once per time step, a dozen small
recorded ops; autograd replays them backwards with a (3h×B)·(B×h)
weight-gradient matmul *per step*. Here the input term ``A_in = x W_ihᵀ + b_ih``
for all time steps comes in precomputed (one gather for one-hot input, one
matmul otherwise: see ``engine.models.lm``), and :class:`GRURecurrence` is a
:class:`torch.autograd.Function` whose backward walks time in reverse doing only
what depends on the previous step; everything else is done for all steps at
once before or after the loop. nn's gate order and weight shapes throughout
(rows r, z, n; ``b_hn`` stays inside the reset gate, as in ``nn.GRU``)::

    [r, z] = σ(A_rz + H_{t-1} W_rzᵀ + b_rz)      Ĥ = tanh(A_n + r ⊙ (H_{t-1} W_nᵀ + b_n))
    H_t = z ⊙ H_{t-1} + (1 − z) ⊙ Ĥ              (one ``lerp``)

    backward, with dH the total gradient reaching H_t:
    dA_n = dH ⊙ (1−z)(1−Ĥ²)    dA_z = dH ⊙ (H_{t-1}−Ĥ) z(1−z)
    dA_r = dA_n ⊙ (H_{t-1}W_nᵀ+b_n) r(1−r)    dG_n = dA_n ⊙ r
    dH_{t-1} = dHs_{t-1} + dH ⊙ z + [dA_r, dA_z, dG_n] W_hh

The factors that need no gradient are computed for all steps at once; the
backward loop does 4 ops a step, keeping its columns as [dA_n, dA_z, dA_r, dG_n]
so that each op covers adjacent columns. Weight gradients are single
(·×TB)·(TB×h) matmuls over all steps. On the CPU this beats ``nn.GRU``
(bench/RESULTS.md), so ``nn.GRU``'s own kernel runs only on CUDA (cuDNN). The
one-token step for generation computes the same cell with the same ops.

Left out: stacking and dropout (``engine.models.cell.Cell.forward`` loops over
layers), double backward, bidirectional and packed sequences.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engine.models.cell import NNCell


class GRURecurrence(torch.autograd.Function):
    """``Hs = GRURecurrence.apply(A_in, H0, W_hh, b_hh)``.

    ``A_in`` (T, B, 3h): ``x W_ihᵀ + b_ih`` in nn's r, z, n order; ``H0`` (B, h);
    ``W_hh`` (3h, h) and ``b_hh`` (3h,) as ``nn.GRU`` holds them. Returns all
    hidden states (T, B, h).
    """

    @staticmethod
    def forward(ctx: Any, A_in: torch.Tensor, H0: torch.Tensor, W_hh: torch.Tensor,
                b_hh: torch.Tensor) -> torch.Tensor:
        T, B, h3 = A_in.shape
        h = h3 // 3
        W_t = W_hh.t()
        Hs = A_in.new_empty((T, B, h))
        RZ = A_in.new_empty((T, B, 2 * h))  # σ of the reset and update gates
        N = A_in.new_empty((T, B, h))  # candidate state Ĥ
        GH = A_in.new_empty((T, B, h3))  # H_{t-1} W_hhᵀ + b_hh (its n part is needed backwards)
        H = H0
        for a, rz, n, gh, out in zip(A_in.unbind(0), RZ.unbind(0), N.unbind(0), GH.unbind(0), Hs.unbind(0)):
            torch.addmm(b_hh, H, W_t, out=gh)
            torch.add(a[:, : 2 * h], gh[:, : 2 * h], out=rz).sigmoid_()
            torch.addcmul(a[:, 2 * h:], rz[:, :h], gh[:, 2 * h:], out=n).tanh_()
            torch.lerp(n, H, rz[:, h:], out=out)  # n + z (H − n) = (1 − z) n + z H
            H = out
        ctx.save_for_backward(H0, W_hh, Hs, RZ, N, GH)
        return Hs

    @staticmethod
    def backward(ctx: Any, dHs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        H0, W_hh, Hs, RZ, N, GH = ctx.saved_tensors
        T, B, h = Hs.shape
        dHs = dHs.contiguous()
        r, z = RZ[..., :h], RZ[..., h:]
        # Step-independent factors, written in place (no H_{t-1} copy, no stack):
        # P = [(1−z)(1−Ĥ²), (H_{t-1}−Ĥ) z(1−z)], Q = [G_n r(1−r), r], each (T, B, 2, h).
        P = Hs.new_empty((T, B, 2, h))
        torch.mul(1 - z, 1 - N * N, out=P[:, :, 0])
        torch.sub(H0, N[0], out=P[0, :, 1])
        torch.sub(Hs[:-1], N[1:], out=P[1:, :, 1])
        P[:, :, 1].mul_(z - z * z)
        Q = torch.stack([GH[..., 2 * h:] * (r - r * r), r], dim=2)
        # Columns of D: [dA_n, dA_z, dA_r, dG_n]; D[..., h:] is the gradient of H_{t-1} W_pᵀ
        # with W_p = W_hh's rows in z, r, n order.
        W_p = torch.cat([W_hh[h: 2 * h], W_hh[:h], W_hh[2 * h:]])
        D = Hs.new_empty((T, B, 4 * h))
        dH = dHs[T - 1]
        for t in range(T - 1, -1, -1):
            d = D[t]
            torch.mul(dH.unsqueeze(1), P[t], out=d[:, : 2 * h].view(B, 2, h))
            torch.mul(d[:, :h].unsqueeze(1), Q[t], out=d[:, 2 * h:].view(B, 2, h))
            if t > 0:
                dH = torch.addcmul(dHs[t - 1], dH, z[t]).addmm_(d[:, h:], W_p)
            elif ctx.needs_input_grad[1]:
                dH = torch.addmm(dH * z[0], d[:, h:], W_p)
        dA_in = None
        if ctx.needs_input_grad[0]:
            dA_in = torch.cat([D[..., 2 * h: 3 * h], D[..., h: 2 * h], D[..., :h]], dim=-1)  # r, z, n
        dW = db = None
        if ctx.needs_input_grad[2]:
            # Σ_t dG_tᵀ H_{t-1} as one large matmul (rows z, r, n), then back to r, z, n.
            dW_p = D[0, :, h:].t() @ H0
            if T > 1:
                dW_p.addmm_(D[1:, :, h:].reshape(-1, 3 * h).t(), Hs[:-1].reshape(-1, h))
            dW = torch.cat([dW_p[h: 2 * h], dW_p[:h], dW_p[2 * h:]])
        if ctx.needs_input_grad[3]:
            db_p = D[..., h:].sum((0, 1))
            db = torch.cat([db_p[h: 2 * h], db_p[:h], db_p[2 * h:]])
        return dA_in, (dH if ctx.needs_input_grad[1] else None), dW, db


def gru_recurrence(A_in: torch.Tensor, H0: torch.Tensor, W_hh: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
    """All hidden states of one GRU layer; see :class:`GRURecurrence`."""
    if A_in.shape[0] == 0:
        raise ValueError("gru_recurrence needs at least one time step")
    return GRURecurrence.apply(A_in, H0, W_hh, b_hh)  # type: ignore[no-any-return]


class GRU(NNCell):
    """``torch.nn.GRU``'s weights, run through :class:`GRURecurrence`."""

    name = "gru"
    gates = 3
    bptt_floats = 10  # the gates, the candidate state, H_{t-1} W_hhᵀ + b_hh, the states
    nn_module = nn.GRU
    fold_b_hh = False  # b_hh stays inside the reset gate

    def run_layer(self, holder: nn.Module, layer: int, A_in: torch.Tensor,
                  state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Hs = gru_recurrence(A_in, state, self.weight_hh(holder, layer), getattr(holder.rnn, f"bias_hh_l{layer}"))
        return Hs, Hs[-1]

    def step_weights(self, holder: nn.Module, layer: int) -> tuple[torch.Tensor, ...]:
        return self.weight_hh(holder, layer).t(), getattr(holder.rnn, f"bias_hh_l{layer}")

    def step(self, a: torch.Tensor, state: torch.Tensor,
             weights: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        W_hh, b_hh = weights
        h = self.num_hiddens
        gh = torch.addmm(b_hh, state, W_hh)
        rz = torch.add(a[:, : 2 * h], gh[:, : 2 * h]).sigmoid_()
        n = torch.addcmul(a[:, 2 * h:], rz[:, :h], gh[:, 2 * h:]).tanh_()
        H = torch.lerp(n, state, rz[:, h:])  # (1 − z) n + z H
        return H, H
