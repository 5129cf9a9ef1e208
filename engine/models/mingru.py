"""The ``mingru`` cell: minGRU (Feng et al. 2024, "Were RNNs All We Needed?"), trained as a scan.

minGRU drops the GRU's dependence of its gates on the previous state (and its
reset gate), so the update gate and the candidate state come from the input
alone, one matmul over all time steps (the input term ``A = x W_ihᵀ + b_ih``,
rows [z; h̃])::

    z_t = σ(A_z,t)      h̃_t = g(A_h,t)      H_t = (1 − z_t) ⊙ H_{t-1} + z_t ⊙ h̃_t

with the paper's log-space variant ``g(a) = a + ½`` for a ≥ 0, ``σ(a)`` below,
so h̃ > 0. The recurrence is linear in H with coefficients known in advance,
so the whole sequence is a scan instead of a loop through a matmul per step
(Heinsen 2023): with ``a*_t = Σ_{s≤t} log(1 − z_s)`` and ``b_t = z_t h̃_t > 0``,

    H_t = exp(a*_t) ⊙ H_0 + exp(a*_t + logcumsumexp_{s≤t}(log b_s − a*_s))

in log space, where products of many gates would underflow. The state term
``exp(a*_t) H_0`` stays outside the logarithm, so H_0 may have any sign (a
generation's state, a test's random state); ``log(1 − z) = −softplus(A_z)`` and
``log z = A_z − softplus(A_z)`` stay exact where z rounds to 0 or 1. The two
prefixes (cumsum, logcumsumexp) are torch's parallel scans on a GPU; on the CPU,
where those kernels are slow along the time axis, one in-place op per step
computes the same prefix. :class:`MinGRUScan` has a hand-written backward (the
gradient is a linear recurrence too, run in reverse) that keeps only the input
term and the states. Generation steps the recurrence one token at a time
(``step``: one ``lerp``), which equals the scan (tests/test_cells.py, float64
to 1e-10).

Stacked layers as for the other cells (dropout between them); the weights are
``rnn.weight_ih_l{k}`` (2h × input) and ``rnn.bias_ih_l{k}`` (2h), initialised
U(−1/√h, 1/√h) as ``torch.nn.GRU``'s. Left out: the paper's minLSTM, its
projection and normalisation layers around the cell, and a fused kernel.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from engine.models.cell import Cell


CHUNK = 64  # time steps per scan; longer sequences are scanned chunk by chunk (see MinGRUScan)


def _softplus(a: torch.Tensor) -> torch.Tensor:
    """log(1 + eᵃ). torch's default returns a itself from a > 20 on, off by e⁻²⁰ ≈ 2e-9: visible in float64."""
    return F.softplus(a, threshold=40.0)


def g(a: torch.Tensor) -> torch.Tensor:
    """The candidate state: a + ½ for a ≥ 0, σ(a) below (continuous at 0, always positive)."""
    return torch.where(a >= 0, a + 0.5, torch.sigmoid(a))


def log_g(a: torch.Tensor) -> torch.Tensor:
    """log g(a) = log(1 + 2·relu(a)) − softplus(−min(a, 0)): log(a + ½) for a ≥ 0, log σ(a) below
    (exact for very negative a, where σ(a) itself would underflow)."""
    return torch.log1p(2 * F.relu(a)) - _softplus(-a.clamp(max=0))


def _prefix(x: torch.Tensor, log_space: bool) -> torch.Tensor:
    """cumsum (or logcumsumexp) over dim 0. torch's CPU kernels for these scan a strided dim slowly, so on the
    CPU the same prefix is one in-place add (logaddexp) per step; elsewhere torch's parallel scans run."""
    if x.device.type != "cpu":
        return torch.logcumsumexp(x, 0) if log_space else torch.cumsum(x, 0)
    out = x.clone(memory_format=torch.contiguous_format)
    for t in range(1, out.shape[0]):
        if log_space:
            torch.logaddexp(out[t - 1], out[t], out=out[t])
        else:
            out[t].add_(out[t - 1])
    return out


class MinGRUScan(torch.autograd.Function):
    """``Hs = MinGRUScan.apply(A_in, H0)``: all hidden states (T, B, h) of one minGRU layer for its input
    term ``A_in`` (T, B, 2h: the update gate's pre-activation, then the candidate's) and ``H0`` (B, h).

    Forward: Heinsen's log-space scan, CHUNK steps at a time (``a*_t + logcumsumexp(log b − a*)`` cancels
    two numbers of size |a*_t|, which grows with t: float32's error would grow with the length). Backward,
    with dH the total gradient reaching H_t (itself a linear recurrence, run in reverse):

        dH_t = dHs_t + (1 − z_{t+1}) ⊙ dH_{t+1}        dH_0 = (1 − z_1) ⊙ dH_1
        dA_z = dH ⊙ (h̃ − H_{t-1}) z(1 − z)           dA_h = dH ⊙ z g'(A_h)

    Saved for the backward: the input term and the states (3h floats a position).
    """

    @staticmethod
    def forward(ctx: Any, A_in: torch.Tensor, H0: torch.Tensor) -> torch.Tensor:
        T, B, h2 = A_in.shape
        k, x = A_in[..., : h2 // 2], A_in[..., h2 // 2:]
        sp = _softplus(k)  # −log(1 − z)
        log_b = log_g(x).add_(k).sub_(sp)  # log(z h̃), with log z = log σ(k) = k − softplus(k)
        Hs = A_in.new_empty((T, B, h2 // 2))
        H = H0
        for lo in range(0, T, CHUNK):
            a_star = _prefix(-sp[lo: lo + CHUNK], log_space=False)  # log Π_{s≤t} (1 − z_s)
            out = Hs[lo: lo + CHUNK]
            torch.exp(a_star + _prefix(log_b[lo: lo + CHUNK] - a_star, log_space=True), out=out)
            out.addcmul_(a_star.exp_(), H)
            H = out[-1]
        ctx.save_for_backward(A_in, H0, Hs)
        return Hs

    @staticmethod
    def backward(ctx: Any, dHs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        A_in, H0, Hs = ctx.saved_tensors
        T, h = Hs.shape[0], Hs.shape[-1]
        k, x = A_in[..., :h], A_in[..., h:]
        z = torch.sigmoid(k)
        omz = 1 - z
        dH = dHs.clone(memory_format=torch.contiguous_format)
        for t in range(T - 2, -1, -1):
            dH[t].addcmul_(omz[t + 1], dH[t + 1])
        ht = g(x)
        dHz = dH * z
        dA = torch.empty_like(A_in)
        torch.sub(ht[1:], Hs[:-1], out=dA[1:, :, :h])
        torch.sub(ht[0], H0, out=dA[0, :, :h])
        dA[..., :h].mul_(dHz).mul_(omz)  # dA_z = dH ⊙ (h̃ − H_{t-1}) z(1 − z)
        g_prime = torch.where(x >= 0, 1.0, ht - ht * ht)  # 1, or σ'(a) = σ(1 − σ) = h̃(1 − h̃) below 0
        torch.mul(dHz, g_prime, out=dA[..., h:])  # dA_h = dH ⊙ z g'(A_h)
        dH0 = omz[0] * dH[0] if ctx.needs_input_grad[1] else None
        return dA, dH0


def min_gru_scan(A_in: torch.Tensor, H0: torch.Tensor) -> torch.Tensor:
    """All hidden states of one minGRU layer; see :class:`MinGRUScan`."""
    if A_in.shape[0] == 0:
        raise ValueError("min_gru_scan needs at least one time step")
    return MinGRUScan.apply(A_in, H0)  # type: ignore[no-any-return]


class MinGRU(Cell):
    """minGRU layers: gates from the input only, the sequence as a log-space parallel scan."""

    name = "mingru"
    gates = 2
    bptt_floats = 5  # MinGRUScan saves the input term (2 per unit) and the states; 2 more for the backward's

    def create(self, holder: nn.Module) -> None:
        holder.rnn = nn.Module()
        bound = 1 / math.sqrt(self.num_hiddens)
        for layer in range(self.num_layers):
            d = self.input_size if layer == 0 else self.num_hiddens
            W = nn.Parameter(torch.empty(2 * self.num_hiddens, d).uniform_(-bound, bound))
            b = nn.Parameter(torch.empty(2 * self.num_hiddens).uniform_(-bound, bound))
            holder.rnn.register_parameter(f"weight_ih_l{layer}", W)
            holder.rnn.register_parameter(f"bias_ih_l{layer}", b)

    def input_weights(self, holder: nn.Module, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(holder.rnn, f"weight_ih_l{layer}").t(), getattr(holder.rnn, f"bias_ih_l{layer}")

    def run_layer(self, holder: nn.Module, layer: int, A_in: torch.Tensor,
                  state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Hs = min_gru_scan(A_in, state)
        return Hs, Hs[-1]

    def step_weights(self, holder: nn.Module, layer: int) -> tuple[torch.Tensor, ...]:
        return ()  # no recurrent weight: the state enters only through the gate's mix

    def step(self, a: torch.Tensor, state: torch.Tensor,
             weights: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.num_hiddens
        H = torch.lerp(state, g(a[:, h:]), a[:, :h].sigmoid_())  # (1 − z) H + z h̃
        return H, H
