"""The RNN language model: tokens in, a recurrent core of stacked cells, logits out (D2L 8.5-8.6).

``RNNLM`` maps a batch of token ids ``X`` of shape (batch_size, num_steps) and a
hidden state to logits of shape (num_steps, batch_size, vocab_size) — time
major, as D2L's ``RNNModel`` — plus the new state. It is D2L's ``RNNLM(rnn,
vocab_size)``: an encoder (one-hot as in the book, or a learned embedding,
exercise 8.5.2), the recurrent core (the ``Cell`` of ``cfg.kind``: see
``engine.models.cell``) and an output layer ``O = H W_hq + b_q`` (an
``nn.Linear``, or D2L 8.5's plain ``W_hq``, ``b_q`` for the scratch cell). Same
numbers as the book's code, fewer and larger operations:

* one-hot input: ``onehot(X_t) W_xh`` is row ``X_t`` of ``W_xh``, so layer 0's
  input term for every time step is one gather (``F.embedding``) — bit-for-bit
  the matmul's result, without building the (T, B, V) one-hot tensor;
* the input term and the output layer run once over all time steps; only the
  recurrence (``H_{t-1} W_hh``) stays inside the cell's time loop, which has a
  hand-written backward;
* where a cell's fused library kernel serves the device (``Cell.fused``: cuDNN,
  oneDNN's LSTM) the encoded inputs go to that kernel instead.

The parameters are created in the order and with the names of earlier versions
(embedding, the cell's weights, the output layer), so a seed gives the same
model and saved runs load. ``RecurrentCore`` is the same stack of cells over a
real-valued sequence, for models that are not language models.
Left out: bidirectional RNNs, packed sequences, weight tying, anything but
greedy/sampled decoding (``engine.generate``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from engine.config import ModelConfig
from engine.models.cell import Cell, State, cell_class


def detach_state(state: State) -> State:
    """Cut the graph between batches (D2L's truncated BPTT for sequential sampling)."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)  # type: ignore[return-value]
    return state.detach()


class RNNLM(nn.Module):
    """Encoder, recurrent core (``self.cell``, its weights registered here) and output layer."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_size) if cfg.encoding == "embedding" else None
        self.cell: Cell = cell_class(cfg.kind).from_config(cfg)
        self.cell.create(self)
        h, v = cfg.num_hiddens, cfg.vocab_size
        if self.cell.d2l_scratch:
            # D2L's get_params: weights ~ N(0, 0.01²), biases zero (drawn after the cell's, as the book does).
            self.W_hq = nn.Parameter(torch.randn(h, v) * 0.01)
            self.b_q = nn.Parameter(torch.zeros(v))
        else:
            self.linear = nn.Linear(h, v)
        if cfg.init == "identity":  # after every draw, so the other weights are the default init's
            self.cell.init_identity(self)

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

    def output_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W_hq (num_hiddens, vocab), b_q (vocab,)) of the output layer ``O = H W_hq + b_q``."""
        if self.cell.d2l_scratch:
            return self.W_hq, self.b_q
        return self.linear.weight.t(), self.linear.bias

    def output(self, Hs: torch.Tensor) -> torch.Tensor:
        """Logits (T, B, vocab) of the top layer's states (T, B, h)."""
        if self.cell.d2l_scratch:
            T, B, h = Hs.shape
            return torch.addmm(self.b_q, Hs.reshape(T * B, h), self.W_hq).view(T, B, -1)
        return self.linear(Hs)  # type: ignore[no-any-return]

    def begin_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        return self.cell.begin_state(batch_size, device)

    def forward(self, X: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        cell = self.cell
        if cell.fused(self):
            Hs, state = cell.run_fused(self, self.encode(X), state)
        else:
            Hs, state = cell.forward(self, self.input_term(X, *cell.input_weights(self, 0)), state, self.training)
        return self.output(Hs), state

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One token per row: (batch,) ids -> (batch, vocab) logits (differentiable; generation
        runs ``engine.stepper.Stepper``, the same step with per-token work cut down)."""
        logits, state = self.forward(x.reshape(-1, 1), state)
        return logits[0], state


def build_model(cfg: ModelConfig) -> RNNLM:
    """The model ``cfg`` describes, freshly initialised."""
    return RNNLM(cfg)


class RecurrentCore(nn.Module):
    """Stacked cells of one kind over a real-valued sequence: ``Hs, state = core(X, state)`` with ``X``
    (num_steps, batch, input_size) floats and ``Hs`` the top layer's states (num_steps, batch, num_hiddens).

    The same cells, weights (names included: ``rnn.weight_ih_l0`` …) and kernels as the language model,
    for models whose inputs are not tokens (a regression on a sine wave, say); layer 0's input term is one
    matmul over all steps. Options are not checked here: ``ModelConfig`` checks a language model's.
    """

    def __init__(self, kind: str, input_size: int, num_hiddens: int, num_layers: int = 1, dropout: float = 0.0,
                 activation: str = "tanh") -> None:
        super().__init__()
        self.cell: Cell = cell_class(kind)(input_size, num_hiddens, num_layers, dropout, activation)
        self.cell.create(self)

    def begin_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        return self.cell.begin_state(batch_size, device)

    def forward(self, X: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        cell = self.cell
        if cell.fused(self):
            return cell.run_fused(self, X, state)
        W, b = cell.input_weights(self, 0)
        T, B, d = X.shape
        return cell.forward(self, torch.addmm(b, X.reshape(T * B, d), W).view(T, B, -1), state, self.training)
