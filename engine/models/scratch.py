"""The ``scratch`` cell: D2L 8.5's RNN from scratch, ``H_t = φ(X_t W_xh + H_{t-1} W_hh + b_h)``.

Its weights are plain parameters drawn as the book's ``get_params`` draws them
(N(0, 0.01²), biases zero, in the book's order) and sit on the model itself
(``W_xh``, ``W_hh``, ``b_h``; the model adds ``W_hq``, ``b_q`` for its output
layer: ``d2l_scratch``), as runs saved by every version of rnnlab hold them. The
recurrence is :mod:`engine.models.rnn`'s hand-written BPTT; the state is one
(B, h) tensor, as the book's ``init_rnn_state`` returns (without its tuple).
Left out: more than one layer (``rnn`` stacks them) and any fused kernel.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engine.models.cell import Cell, State
from engine.models.rnn import RNN, rnn_recurrence


class ScratchRNN(Cell):
    """D2L 8.5's RNN: one layer of ``W_xh``, ``W_hh``, ``b_h`` (tanh, or relu for exercise 8.5.6)."""

    name = "scratch"
    gates = 1
    bptt_floats = 3  # the input term, the states and φ'
    d2l_scratch = True

    def create(self, holder: nn.Module) -> None:
        n_in, h = self.input_size, self.num_hiddens
        holder.W_xh = nn.Parameter(torch.randn(n_in, h) * 0.01)
        holder.W_hh = nn.Parameter(torch.randn(h, h) * 0.01)
        holder.b_h = nn.Parameter(torch.zeros(h))

    def input_weights(self, holder: nn.Module, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        return holder.W_xh, holder.b_h

    def init_identity(self, holder: nn.Module) -> None:
        with torch.no_grad():
            nn.init.eye_(holder.W_hh)
            holder.b_h.zero_()

    def begin_state(self, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.zeros(batch_size, self.num_hiddens, device=device)

    def layer_states(self, state: State) -> list[Any]:
        return [state]

    def join_states(self, finals: list[Any]) -> torch.Tensor:
        return finals[0].clone()  # a tensor of its own, so callers may detach_() it

    def run_layer(self, holder: nn.Module, layer: int, A_in: torch.Tensor,
                  state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Hs = rnn_recurrence(A_in, state, holder.W_hh, self.relu)
        return Hs, Hs[-1]

    def step_weights(self, holder: nn.Module, layer: int) -> tuple[torch.Tensor, ...]:
        return (holder.W_hh,)

    step = RNN.step  # φ(a + H W_hh), as the rnn cell
