"""The recurrent cell: one kind of recurrent layer as an object that answers every question about its kind.

A :class:`Cell` describes ``num_layers`` stacked layers of one kind (D2L 8.6.2's
deep RNN) and owns everything that depends on the kind: its name, its gate
count, how it creates its weights, its initial state, the whole-sequence
forward (with a hand-written backward) of one layer, the one-token step used by
generation, the activation memory autograd keeps per position
(``bptt_floats``), and whether a fused library kernel (cuDNN, oneDNN) serves it
on a device. Subclasses live one per module (``engine.models.gru`` …) and are
found through the torch-free registry ``engine.config.CELLS``::

    input term   A_t = x_t W_in + b_in                 (T, B, gates·h), all steps at once
    layer        Hs, final = run_layer(A, state)        the recurrence over time
    next layer   A = dropout(Hs) W_in' + b_in'         ... up to num_layers

A cell keeps no weights itself: ``create(holder)`` registers them on the module
that holds them, under the names earlier versions saved (``rnn.weight_ih_l0`` as
``torch.nn`` names them, or D2L 8.5's ``W_xh`` on the model itself), so runs
saved before still load. ``forward(holder, A0, state)`` stacks the layers with
dropout between them (training only), as ``torch.nn`` does. The state is the
model's own format (``(num_layers, B, h)``; a pair of them for the LSTM; ``(B, h)``
for the scratch RNN); ``layer_states``/``join_states`` convert it to a
per-layer list and back. Left out: bidirectional layers, packed sequences,
and the encoder and output layer (``engine.models.lm``).
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar, Union

import torch
from torch import nn
from torch.nn import functional as F

from engine.config import CELLS, ModelConfig

State = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]


class Cell:
    """``num_layers`` stacked recurrent layers of one kind; the weights live in the ``holder`` module."""

    name: ClassVar[str]  # the kind, as in engine.config.CELLS and ModelConfig.kind
    gates: ClassVar[int] = 1  # width of the input term per hidden unit: RNN 1, GRU 3, LSTM 4
    bptt_floats: ClassVar[int] = 3  # floats per hidden unit and position autograd keeps for the backward
    nn_module: ClassVar[type[nn.RNNBase] | None] = None  # the torch.nn module holding its weights, if any
    d2l_scratch: ClassVar[bool] = False  # D2L 8.5's layout: weights on the model, output layer W_hq, b_q

    def __init__(self, input_size: int, num_hiddens: int, num_layers: int = 1, dropout: float = 0.0,
                 activation: str = "tanh") -> None:
        self.input_size, self.num_hiddens, self.num_layers = input_size, num_hiddens, num_layers
        self.dropout, self.activation = dropout, activation
        self.relu = activation == "relu"

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> Cell:
        return cls(cfg.input_size, cfg.num_hiddens, cfg.num_layers, cfg.dropout, cfg.activation)

    # --- weights ---------------------------------------------------------------------------------------
    def create(self, holder: nn.Module) -> None:
        """Register freshly initialised weights on ``holder`` (their names are the state-dict keys)."""
        raise NotImplementedError

    def input_weights(self, holder: nn.Module, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(W, b) of ``layer``'s input term ``x @ W + b``: W (layer's input width, gates·h), b (gates·h,)."""
        raise NotImplementedError

    def init_identity(self, holder: nn.Module) -> None:
        """``init identity`` (Le, Jaitly & Hinton 2015): every layer's W_hh = I and its biases 0, in place; the
        input weights keep their draw. Only cells whose recurrence is one h×h matrix have it
        (``engine.config.CELLS``' ``identity``; ``ModelConfig`` refuses the others)."""
        raise NotImplementedError(f"the {self.name} cell has no identity initialisation")

    # --- state -----------------------------------------------------------------------------------------
    def begin_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        return torch.zeros((self.num_layers, batch_size, self.num_hiddens), device=device)

    def layer_states(self, state: State) -> list[Any]:
        """The model's state as a list with one entry per layer."""
        assert isinstance(state, torch.Tensor)
        return list(state.unbind(0))

    def join_states(self, finals: list[Any]) -> State:
        """A per-layer list back in the model's state format (new tensors, which callers may ``detach_()``)."""
        return torch.stack(finals)

    # --- the whole sequence (training, evaluation, the generation warm-up) -----------------------------
    def run_layer(self, holder: nn.Module, layer: int, A_in: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """All hidden states (T, B, h) of ``layer`` for its input term ``A_in`` (T, B, gates·h) and its state;
        and the layer's final state."""
        raise NotImplementedError

    def forward(self, holder: nn.Module, A0: torch.Tensor, state: State, training: bool) -> tuple[torch.Tensor, State]:
        """The stacked layers over layer 0's input term ``A0``: (the top layer's states (T, B, h), new state).
        Dropout acts on every layer's outputs but the last, in training only (as ``torch.nn``)."""
        states, finals = self.layer_states(state), []
        A, Hs = A0, A0
        # Under autocast (engine.precision: bf16/fp16) the input terms leave their matmuls in 16 bits; the
        # hand-written recurrences run in the weights' own dtype (float32), as autocast leaves unlisted ops.
        dtype = next(holder.parameters()).dtype
        for layer in range(self.num_layers):
            if layer:
                if training and self.dropout > 0:
                    Hs = F.dropout(Hs, self.dropout, training=True)
                W, b = self.input_weights(holder, layer)
                T, B, h = Hs.shape
                A = torch.addmm(b, Hs.reshape(T * B, h), W).view(T, B, -1)
            Hs, final = self.run_layer(holder, layer, A.to(dtype), states[layer])
            finals.append(final)
        return Hs, self.join_states(finals)

    def fused(self, holder: nn.Module) -> bool:
        """Whether a fused library kernel (``nn_module``'s own) runs instead of ``forward``, for the device and
        dtype of ``holder``'s weights (measured choices: bench/RESULTS.md, bench/check_cuda.py)."""
        return False

    def run_fused(self, holder: nn.Module, inputs: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The fused kernel on layer 0's inputs (T, B, input_size): (top layer's states, new state)."""
        raise NotImplementedError(f"the {self.name} cell has no fused kernel")

    # --- one token at a time (generation: engine.stepper) ----------------------------------------------
    def step_weights(self, holder: nn.Module, layer: int) -> tuple[torch.Tensor, ...]:
        """What ``step`` needs of ``layer`` besides its input term, oriented for it (taken once per generation)."""
        raise NotImplementedError

    def step(self, a: torch.Tensor, state: Any, weights: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, Any]:
        """One time step of one layer for input term ``a`` (B, gates·h), which it may overwrite: (H_t, new state).
        Inference only, the fewest ops: per-token time is almost all dispatch overhead."""
        raise NotImplementedError


class NNCell(Cell):
    """A cell whose weights are a ``torch.nn`` RNN module's (``holder.rnn``: keys ``rnn.weight_ih_l0`` …), run
    through rnnlab's own recurrence except where the module's fused kernel does (cuDNN on CUDA)."""

    fold_b_hh: ClassVar[bool] = True  # the input term carries b_ih + b_hh (the GRU keeps b_hh in its reset gate)

    def make_module(self) -> nn.RNNBase:
        assert self.nn_module is not None
        return self.nn_module(input_size=self.input_size, hidden_size=self.num_hiddens, num_layers=self.num_layers,
                              dropout=self.dropout)

    def create(self, holder: nn.Module) -> None:
        holder.rnn = self.make_module()

    def input_weights(self, holder: nn.Module, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        r = holder.rnn
        b = getattr(r, f"bias_ih_l{layer}")
        if self.fold_b_hh:
            b = b + getattr(r, f"bias_hh_l{layer}")
        return getattr(r, f"weight_ih_l{layer}").t(), b

    def weight_hh(self, holder: nn.Module, layer: int) -> torch.Tensor:
        """``layer``'s recurrent weight as nn holds it: (gates·h, h)."""
        return getattr(holder.rnn, f"weight_hh_l{layer}")  # type: ignore[no-any-return]

    def fused(self, holder: nn.Module) -> bool:
        return bool(holder.rnn.weight_hh_l0.is_cuda)  # cuDNN beats a Python loop over time steps on a GPU

    def run_fused(self, holder: nn.Module, inputs: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        return holder.rnn(inputs, state)  # type: ignore[no-any-return]


def cell_class(kind: str) -> type[Cell]:
    """The Cell subclass registered for ``kind`` in ``engine.config.CELLS`` (its module imported on first use)."""
    module, _, name = CELLS[kind].target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, Cell) and cls.name == kind, f"{CELLS[kind].target} is not the {kind} cell"
    return cls  # type: ignore[no-any-return]
