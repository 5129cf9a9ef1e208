"""One token at a time, for generation: a model's cells with the per-token work cut down.

Generation feeds the model batch 1, one token per step. Each step is a
matrix-vector product per layer (``H_{t-1} W_hh``, bandwidth-bound) and a
handful of tiny element-wise ops whose cost is almost all dispatch overhead,
so speed comes from fewer ops per token. A :class:`Stepper` is built once per
generation (the weights do not change while it runs) and folds into tables
what does not depend on the step:

* layer 0's input term ``onehot(x) W + b`` is row ``x`` of ``W + b`` — one
  (V × width) table, so the input costs one row gather (for an embedding input
  the table is ``E W + b``); a table over 16 MB (a large vocabulary) is not
  built and the input term is computed per token instead;
* tokens that must never be generated get ``-inf`` in the output bias, so the
  logits come out masked;
* each layer's step is its cell's (``Cell.step``: the RNN ``φ(a + H W_hh)``,
  the GRU and LSTM with nn's gate order, the fewest ops each), with the
  recurrent weights oriented for it once (``Cell.step_weights``).

The state is a list with one entry per layer (``H``, or ``(H, C)`` for the
LSTM); :meth:`Stepper.load` and :meth:`Stepper.export` convert from and to the
model's own state format (the cell's ``layer_states`` / ``join_states``).
Inference only: no dropout, no gradients — use it under
``torch.inference_mode()``. ``RNNLM.step`` stays the plain, differentiable
single step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from engine.models import RNNLM, State

TABLE_LIMIT = 1 << 22  # floats in a layer-0 input table (16 MB); bigger ones are computed per token


class Stepper:
    """``logits, state = stepper(x, state)`` for (batch,) token ids ``x``; logits (batch, vocab)."""

    def __init__(self, model: RNNLM, never: torch.Tensor | None = None) -> None:
        """``never``: a (vocab,) bool mask of tokens whose logits are forced to ``-inf``."""
        cell = self.cell = model.cell
        with torch.no_grad():
            # (W_in, b_in) of each layer's input term, folded as the forward folds them; its step's weights.
            self.inputs = [cell.input_weights(model, layer) for layer in range(cell.num_layers)]
            self.layers = [(W, b, cell.step_weights(model, layer)) for layer, (W, b) in enumerate(self.inputs)]
            W_out, b_out = model.output_weights()
            if never is not None:
                b_out = b_out.masked_fill(never.to(b_out.device), -torch.inf)
            self.W_out, self.b_out = W_out.detach(), b_out.detach()
            W_in, b_in = self.inputs[0]
            self.embedding = None if model.embedding is None else model.embedding.weight.detach()
            self.table: torch.Tensor | None = None
            if model.cfg.vocab_size * W_in.shape[1] <= TABLE_LIMIT:
                # onehot(x) W + b = (W + b)[x], as RNNLM.input_term computes it; embedding: (E W + b)[x]
                self.table = W_in + b_in if self.embedding is None else torch.addmm(b_in, self.embedding, W_in)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if self.table is not None:
            return F.embedding(x, self.table)
        W_in, b_in = self.inputs[0]
        if self.embedding is None:
            return F.embedding(x, W_in) + b_in
        return torch.addmm(b_in, F.embedding(x, self.embedding), W_in)

    def __call__(self, x: torch.Tensor, state: list[Any]) -> tuple[torch.Tensor, list[Any]]:
        step, inp, new = self.cell.step, torch.empty(0), []
        for layer, (W_ih, b, weights) in enumerate(self.layers):
            inp, s = step(self._input(x) if layer == 0 else torch.addmm(b, inp, W_ih), state[layer], weights)
            new.append(s)
        return torch.addmm(self.b_out, inp, self.W_out), new

    def load(self, state: State) -> list[Any]:
        """The model's state (as ``begin_state``/``forward`` return it) as a per-layer list."""
        return self.cell.layer_states(state)

    def export(self, state: list[Any]) -> State:
        """A per-layer list back in the model's state format."""
        return self.cell.join_states(state)
