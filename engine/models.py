"""RNN language models: D2L's from-scratch RNN and ``torch.nn`` RNN/GRU/LSTM.

Every model maps a batch of token ids ``X`` of shape (batch_size, num_steps) and
a hidden state to logits of shape (num_steps, batch_size, vocab_size) — time
major, as D2L's ``RNNModel`` — plus the new state. Inputs are encoded one-hot
(D2L) or through a learned embedding (exercise 8.5.2).

Plain first version; speed work lives with the models owner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch
from torch import nn
from torch.nn import functional as F

from engine.errors import ConfigError

MODEL_KINDS = ("scratch", "rnn", "gru", "lstm")
ENCODINGS = ("onehot", "embedding")
ACTIVATIONS = ("tanh", "relu")

State = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model's architecture."""

    kind: str = "gru"  # scratch (D2L 8.5) | rnn | gru | lstm (torch.nn)
    vocab_size: int = 28  # len(vocab): size of one-hot inputs and of the output layer
    num_hiddens: int = 256  # hidden units per layer
    num_layers: int = 1  # stacked recurrent layers (D2L 8.6.2); scratch supports 1
    dropout: float = 0.0  # dropout between stacked layers (torch.nn kinds, num_layers > 1)
    encoding: str = "onehot"  # onehot (D2L) | embedding (exercise 8.5.2)
    embed_size: int = 32  # embedding width when encoding == "embedding"
    activation: str = "tanh"  # tanh | relu for scratch and rnn (exercise 8.5.6)

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ConfigError(f"model must be one of {', '.join(MODEL_KINDS)} (got {self.kind!r})")
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)} (got {self.encoding!r})")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)} (got {self.activation!r})")
        if self.vocab_size < 2:
            raise ConfigError(f"vocab_size must be at least 2 (got {self.vocab_size})")
        if not 1 <= self.num_hiddens <= 16384:
            raise ConfigError(f"num_hiddens must be in 1..16384 (got {self.num_hiddens})")
        if not 1 <= self.num_layers <= 16:
            raise ConfigError(f"num_layers must be in 1..16 (got {self.num_layers})")
        if self.kind == "scratch" and self.num_layers != 1:
            raise ConfigError(f"num_layers must be 1 for the scratch RNN (got {self.num_layers}); use rnn for deep RNNs")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1) (got {self.dropout})")
        if not 1 <= self.embed_size <= 4096:
            raise ConfigError(f"embed_size must be in 1..4096 (got {self.embed_size})")

    @property
    def input_size(self) -> int:
        return self.vocab_size if self.encoding == "onehot" else self.embed_size


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
        """(batch, num_steps) ids -> (num_steps, batch, input_size) floats."""
        X = X.T
        if self.embedding is None:
            return F.one_hot(X, self.cfg.vocab_size).to(torch.float32)
        return self.embedding(X)

    def begin_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        raise NotImplementedError

    def forward(self, X: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One token per row: (batch,) ids -> (batch, vocab) logits."""
        logits, state = self.forward(x.reshape(-1, 1), state)
        return logits[0], state


class ScratchRNN(RNNLM):
    """D2L 8.5: H_t = φ(X_t W_xh + H_{t-1} W_hh + b_h), O_t = H_t W_hq + b_q."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        n_in, h, v = cfg.input_size, cfg.num_hiddens, cfg.vocab_size
        # D2L's get_params: weights ~ N(0, 0.01²), biases zero.
        self.W_xh = nn.Parameter(torch.randn(n_in, h) * 0.01)
        self.W_hh = nn.Parameter(torch.randn(h, h) * 0.01)
        self.b_h = nn.Parameter(torch.zeros(h))
        self.W_hq = nn.Parameter(torch.randn(h, v) * 0.01)
        self.b_q = nn.Parameter(torch.zeros(v))

    def begin_state(self, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.zeros(batch_size, self.cfg.num_hiddens, device=device)

    def forward(self, X: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = self.encode(X)
        act = torch.tanh if self.cfg.activation == "tanh" else torch.relu
        H = state
        outputs = []
        for X_t in inputs:
            H = act(X_t @ self.W_xh + H @ self.W_hh + self.b_h)
            outputs.append(H)
        Hs = torch.stack(outputs)
        return Hs @ self.W_hq + self.b_q, H


class TorchRNN(RNNLM):
    """``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` with a linear output layer (D2L 8.6)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        kwargs = dict(
            input_size=cfg.input_size,
            hidden_size=cfg.num_hiddens,
            num_layers=cfg.num_layers,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        )
        if cfg.kind == "rnn":
            self.rnn = nn.RNN(nonlinearity=cfg.activation, **kwargs)
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

    def forward(self, X: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        Y, state = self.rnn(self.encode(X), state)
        return self.linear(Y), state


def build_model(cfg: ModelConfig) -> RNNLM:
    """The model ``cfg`` describes, freshly initialised."""
    return ScratchRNN(cfg) if cfg.kind == "scratch" else TorchRNN(cfg)
