"""GRU and LSTM recurrences with hand-written backward passes (BPTT).

``torch.nn.GRU``/``LSTM`` on the CPU run ``gru_cell``/``lstm_cell`` once per
time step, each a dozen small recorded ops; autograd replays them backwards
with a (3h×B)·(B×h) or (4h×B)·(B×h) weight-gradient matmul *per step*. Here
the input term ``A_in = x W_ihᵀ + b`` for all time steps comes in precomputed
(one gather for one-hot input, one matmul otherwise: see ``engine.models``),
and each recurrence is a :class:`torch.autograd.Function` whose backward walks
time in reverse doing only what depends on the previous step; everything else
is done for all steps at once before or after the loop. nn's gate order and
weight shapes throughout (GRU rows r, z, n; LSTM rows i, f, g, o).

GRU (D2L 9.1; ``b_hn`` stays inside the reset gate, as in ``nn.GRU``)::

    [r, z] = σ(A_rz + H_{t-1} W_rzᵀ + b_rz)      Ĥ = tanh(A_n + r ⊙ (H_{t-1} W_nᵀ + b_n))
    H_t = z ⊙ H_{t-1} + (1 − z) ⊙ Ĥ              (one ``lerp``)

    backward, with dH the total gradient reaching H_t:
    dA_n = dH ⊙ (1−z)(1−Ĥ²)    dA_z = dH ⊙ (H_{t-1}−Ĥ) z(1−z)
    dA_r = dA_n ⊙ (H_{t-1}W_nᵀ+b_n) r(1−r)    dG_n = dA_n ⊙ r
    dH_{t-1} = dHs_{t-1} + dH ⊙ z + [dA_r, dA_z, dG_n] W_hh

LSTM (D2L 9.2)::

    [i, f, o] = σ(·), g = tanh(·) of A_t + H_{t-1} W_hhᵀ
    C_t = f ⊙ C_{t-1} + i ⊙ g     H_t = o ⊙ tanh(C_t)

    dC = dC_{t+1}·f_{t+1} + dH ⊙ o(1−tanh²C_t)     dA_o = dH ⊙ tanh(C_t) o(1−o)
    [dA_i, dA_f, dA_g] = dC ⊙ [g i(1−i), C_{t-1} f(1−f), i(1−g²)]
    dH_{t-1} = dHs_{t-1} + dA W_hh

The factors in brackets need no gradient, so they are computed for all steps
at once; the backward loop does 4 (GRU) or 5 (LSTM) ops a step. The GRU's
backward keeps its columns as [dA_n, dA_z, dA_r, dG_n] so that each of those
ops covers adjacent columns. Weight gradients are single (·×TB)·(TB×h)
matmuls over all steps.

Measured on the 2-core CPU (T 35, B 32, h 256): the GRU here is ~1.1–1.2×
``nn.GRU`` (a composite of ``gru_cell`` ops), the LSTM ~0.8× ``nn.LSTM``,
which runs oneDNN's fused kernel — so ``engine.models`` uses this LSTM only
where oneDNN does not run (see ``engine.models._onednn_lstm``).

Left out: stacking and dropout (``engine.models`` loops over layers),
double backward, bidirectional and packed sequences.
"""

from __future__ import annotations

from typing import Any

import torch


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
    def backward(ctx: Any, dHs: torch.Tensor, dCs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
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


def gru_recurrence(A_in: torch.Tensor, H0: torch.Tensor, W_hh: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
    """All hidden states of one GRU layer; see :class:`GRURecurrence`."""
    if A_in.shape[0] == 0:
        raise ValueError("gru_recurrence needs at least one time step")
    return GRURecurrence.apply(A_in, H0, W_hh, b_hh)  # type: ignore[no-any-return]


def lstm_recurrence(A_in: torch.Tensor, H0: torch.Tensor, C0: torch.Tensor,
                    W_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All hidden states and memory cells of one LSTM layer; see :class:`LSTMRecurrence`."""
    if A_in.shape[0] == 0:
        raise ValueError("lstm_recurrence needs at least one time step")
    return LSTMRecurrence.apply(A_in, H0, C0, W_hh)  # type: ignore[no-any-return]
