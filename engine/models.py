"""RNN language models: D2L's from-scratch RNN and ``torch.nn`` RNN/GRU/LSTM.

Every model maps a batch of token ids ``X`` of shape (batch_size, num_steps) and
a hidden state to logits of shape (num_steps, batch_size, vocab_size) — time
major, as D2L's ``RNNModel`` — plus the new state. Inputs are encoded one-hot
(D2L) or through a learned embedding (exercise 8.5.2).

Same numbers as the book's code, fewer and larger operations:

* one-hot input: ``onehot(X_t) W_xh`` is row ``X_t`` of ``W_xh``, so the input
  term of every time step is one gather (``F.embedding``) — bit-for-bit the
  matmul's result, without building the (T, B, V) one-hot tensor;
* the input term and the output layer ``O = H W_hq + b_q`` run once over all
  time steps, only ``H_{t-1} W_hh`` stays inside the time loop;
* the plain RNN (``scratch`` and ``rnn``) runs its recurrence through
  :mod:`engine.recurrence`, the GRU through :mod:`engine.gated`: each a
  hand-written BPTT backward with the weight gradient as one matmul over all
  steps; ``nn.RNN``/``nn.GRU`` only hold the weights (their state dict keys).
  The LSTM runs ``nn.LSTM`` itself where that is oneDNN's fused kernel
  (float32 on the CPU, the usual case; faster than :mod:`engine.gated`'s
  LSTM here) and otherwise :mod:`engine.gated` too. On CUDA, cuDNN's kernels
  run instead (see ``nn_kernel``).

Left out: bidirectional RNNs, packed sequences, anything but greedy/sampled
decoding (``engine.generate``).
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn
from torch.nn import functional as F

from engine.config import ModelConfig
from engine.gated import gru_recurrence, lstm_recurrence
from engine.recurrence import rnn_recurrence

State = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]


def _onednn_lstm(weight: torch.Tensor) -> bool:
    """Whether ``nn.LSTM`` on this weight runs oneDNN's fused kernel (float32 on the CPU)."""
    mkldnn = torch.backends.mkldnn
    return weight.device.type == "cpu" and weight.dtype == torch.float32 and mkldnn.is_available() and mkldnn.enabled


def nn_kernel(kind: str, weight: torch.Tensor) -> bool:
    """Whether a ``TorchRNN`` of ``kind`` runs its ``nn`` module's own fused kernel on ``weight``'s
    device — cuDNN on CUDA, oneDNN's LSTM on the CPU — rather than :mod:`engine.recurrence` /
    :mod:`engine.gated` (measured choices: bench/RESULTS.md, bench/check_cuda.py)."""
    return weight.is_cuda or (kind == "lstm" and _onednn_lstm(weight))


def detach_state(state: State) -> State:
    """Cut the graph between batches (D2L's truncated BPTT for sequential sampling)."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)  # type: ignore[return-value]
    return state.detach()


class RNNLM(nn.Module):
    """Common encoder/decoder plumbing around a recurrent core."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_size) if cfg.encoding == "embedding" else None

    def encode(self, X: torch.Tensor) -> torch.Tensor:
        """(batch, num_steps) ids -> (num_steps, batch, input_size) floats (D2L's ``F.one_hot(X.T)``)."""
        X = X.T
        if self.embedding is None:
            return F.one_hot(X, self.cfg.vocab_size).to(torch.float32)
        return self.embedding(X)

    def input_term(self, X: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``encode(X) @ W + b`` for all time steps at once: (num_steps, batch, W.shape[1]).

        With one-hot inputs the matmul only picks rows — ``onehot(x) W = W[x]``
        exactly — so it is a gather. ``X`` is (batch, num_steps) ids.
        """
        X = X.T
        if self.embedding is None:
            # Gather from W + b: the same single rounding as W[x] + b, but the sum is
            # V rows instead of (num_steps · batch) and b's gradient a V-row sum.
            # A few ids (a single step) are cheaper gathered first.
            return F.embedding(X, W) + b if X.numel() < W.shape[0] else F.embedding(X, W + b)
        E = self.embedding(X)
        return torch.addmm(b, E.reshape(-1, E.shape[-1]), W).view(*E.shape[:-1], W.shape[1])

    def begin_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        raise NotImplementedError

    def forward(self, X: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One token per row: (batch,) ids -> (batch, vocab) logits (differentiable; generation
        runs ``engine.stepper.Stepper``, the same step with per-token work cut down)."""
        logits, state = self.forward(x.reshape(-1, 1), state)
        return logits[0], state


class ScratchRNN(RNNLM):
    """D2L 8.5: H_t = φ(X_t W_xh + H_{t-1} W_hh + b_h), O_t = H_t W_hq + b_q."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        n_in, h, v = cfg.input_size, cfg.num_hiddens, cfg.vocab_size
        # D2L's get_params: weights ~ N(0, 0.01²), biases zero (same draw order as the book).
        self.W_xh = nn.Parameter(torch.randn(n_in, h) * 0.01)
        self.W_hh = nn.Parameter(torch.randn(h, h) * 0.01)
        self.b_h = nn.Parameter(torch.zeros(h))
        self.W_hq = nn.Parameter(torch.randn(h, v) * 0.01)
        self.b_q = nn.Parameter(torch.zeros(v))

    def begin_state(self, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.zeros(batch_size, self.cfg.num_hiddens, device=device)

    def forward(self, X: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        relu = self.cfg.activation == "relu"
        Hs = rnn_recurrence(self.input_term(X, self.W_xh, self.b_h), state, self.W_hh, relu)
        T, B, h = Hs.shape
        logits = torch.addmm(self.b_q, Hs.reshape(T * B, h), self.W_hq).view(T, B, -1)
        return logits, Hs[-1].clone()  # a tensor of its own, so callers may detach_() it


class TorchRNN(RNNLM):
    """``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` with a linear output layer (D2L 8.6).

    The ``nn`` module is the holder of the weights (so state dicts match
    ``nn.RNN``/``GRU``/``LSTM``'s) but off CUDA they run through
    :mod:`engine.recurrence` (``H_t = φ(x_t W_ihᵀ + b_ih + b_hh + H_{t-1} W_hhᵀ)``)
    or :mod:`engine.gated` (the LSTM only without oneDNN), layer by layer, with
    dropout on every layer's outputs but the last (training mode only), as
    ``torch.nn`` does.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        kwargs = dict(
            input_size=cfg.input_size,
            hidden_size=cfg.num_hiddens,
            num_layers=cfg.num_layers,
            dropout=cfg.dropout,
        )
        if cfg.kind == "rnn":
            self.rnn: nn.RNNBase = nn.RNN(nonlinearity=cfg.activation, **kwargs)
        elif cfg.kind == "gru":
            self.rnn = nn.GRU(**kwargs)
        else:
            self.rnn = nn.LSTM(**kwargs)
        self.linear = nn.Linear(cfg.num_hiddens, cfg.vocab_size)

    def begin_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        shape = (self.cfg.num_layers, batch_size, self.cfg.num_hiddens)
        h = torch.zeros(shape, device=device)
        if self.cfg.kind == "lstm":
            return h, torch.zeros(shape, device=device)
        return h

    def layer_weights(self, layer: int, fold_b_hh: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W_ihᵀ, b_ih + b_hh, W_hh) of one layer, W_ihᵀ oriented for ``x @ W``.

        ``W_hh`` comes transposed (for ``H @ W_hh``) for the rnn kind and as nn
        holds it for GRU/LSTM (``engine.gated`` takes that shape); with
        ``fold_b_hh`` False the bias is ``b_ih`` alone.
        """
        r = self.rnn
        W_ih, W_hh = getattr(r, f"weight_ih_l{layer}"), getattr(r, f"weight_hh_l{layer}")
        b = getattr(r, f"bias_ih_l{layer}")
        if fold_b_hh:
            b = b + getattr(r, f"bias_hh_l{layer}")
        return W_ih.t(), b, (W_hh.t() if self.cfg.kind == "rnn" else W_hh)

    def forward(self, X: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        kind = self.cfg.kind
        if nn_kernel(kind, self.rnn.weight_hh_l0):
            # cuDNN's GRU/LSTM on a GPU, and oneDNN's fused LSTM on the CPU, beat a Python
            # loop over time steps (oneDNN: ~1.25× engine.gated's LSTM at 1 thread, ~1.5× at 2).
            inputs = self.encode(X) if self.embedding is None else self.embedding(X.T)
            Y, state = self.rnn(inputs, state)
            return self.linear(Y), state
        relu = self.cfg.activation == "relu"
        h0, c0 = state if isinstance(state, tuple) else (state, None)
        finals, cells = [], []
        Hs = torch.empty(0)
        for layer in range(self.cfg.num_layers):
            # GRU keeps b_hh inside the recurrence (its n part is scaled by the reset gate).
            W_ih, b, W_hh = self.layer_weights(layer, fold_b_hh=kind != "gru")
            if layer == 0:
                A_in = self.input_term(X, W_ih, b)
            else:
                if self.training and self.cfg.dropout > 0:
                    Hs = F.dropout(Hs, self.cfg.dropout, training=True)
                T, B, h = Hs.shape
                A_in = torch.addmm(b, Hs.reshape(T * B, h), W_ih).view(T, B, -1)
            if kind == "rnn":
                Hs = rnn_recurrence(A_in, h0[layer], W_hh, relu)
            elif kind == "gru":
                Hs = gru_recurrence(A_in, h0[layer], W_hh, getattr(self.rnn, f"bias_hh_l{layer}"))
            else:
                assert c0 is not None
                Hs, Cs = lstm_recurrence(A_in, h0[layer], c0[layer], W_hh)
                cells.append(Cs[-1])
            finals.append(Hs[-1])
        new_h = torch.stack(finals)
        return self.linear(Hs), ((new_h, torch.stack(cells)) if kind == "lstm" else new_h)


def build_model(cfg: ModelConfig) -> RNNLM:
    """The model ``cfg`` describes, freshly initialised."""
    return ScratchRNN(cfg) if cfg.kind == "scratch" else TorchRNN(cfg)
