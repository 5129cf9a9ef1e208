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
* the cells are written out with nn's gate order, the fewest ops each: the
  RNN ``φ(a + H W_hh)``; the GRU as :mod:`engine.gated` computes it; the LSTM
  as ``engine.gated`` too (one matmul onto the gathered input, in-place gates).

The state is a list with one entry per layer (``H``, or ``(H, C)`` for the
LSTM); :meth:`Stepper.load` and :meth:`Stepper.export` convert from and to the
model's own state format. Inference only: no dropout, no gradients — use it
under ``torch.inference_mode()``. ``RNNLM.step`` stays the plain, differentiable
single step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from engine.models import RNNLM, ScratchRNN, State

TABLE_LIMIT = 1 << 22  # floats in a layer-0 input table (16 MB); bigger ones are computed per token


class Stepper:
    """``logits, state = stepper(x, state)`` for (batch,) token ids ``x``; logits (batch, vocab)."""

    def __init__(self, model: RNNLM, never: torch.Tensor | None = None) -> None:
        """``never``: a (vocab,) bool mask of tokens whose logits are forced to ``-inf``."""
        cfg = model.cfg
        self.kind, self.num_layers, self.h = cfg.kind, cfg.num_layers, cfg.num_hiddens
        self.act = torch.relu if cfg.activation == "relu" else torch.tanh
        self.layers: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        with torch.no_grad():
            if isinstance(model, ScratchRNN):
                self.layers.append((model.W_xh, model.b_h, model.W_hh, None))
                W_out, b_out = model.W_hq, model.b_q
            else:
                gru = self.kind == "gru"  # b_hh stays inside the reset gate
                for layer in range(cfg.num_layers):
                    W_ih, b, W_hh = model.layer_weights(layer, fold_b_hh=not gru)  # as forward folds them
                    b_hh = getattr(model.rnn, f"bias_hh_l{layer}") if gru else None
                    self.layers.append((W_ih, b, W_hh if self.kind == "rnn" else W_hh.t(), b_hh))
                W_out, b_out = model.linear.weight.t(), model.linear.bias
            if never is not None:
                b_out = b_out.masked_fill(never.to(b_out.device), -torch.inf)
            self.W_out, self.b_out = W_out.detach(), b_out.detach()
            W_in, b_in = self.layers[0][:2]
            self.embedding = None if model.embedding is None else model.embedding.weight.detach()
            self.table: torch.Tensor | None = None
            if cfg.vocab_size * W_in.shape[1] <= TABLE_LIMIT:
                # onehot(x) W + b = (W + b)[x], as RNNLM.input_term computes it; embedding: (E W + b)[x]
                self.table = W_in + b_in if self.embedding is None else torch.addmm(b_in, self.embedding, W_in)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if self.table is not None:
            return F.embedding(x, self.table)
        W_in, b_in = self.layers[0][:2]
        if self.embedding is None:
            return F.embedding(x, W_in) + b_in
        return torch.addmm(b_in, F.embedding(x, self.embedding), W_in)

    def __call__(self, x: torch.Tensor, state: list[Any]) -> tuple[torch.Tensor, list[Any]]:
        h, inp, new = self.h, torch.empty(0), []
        for layer, (W_ih, b, W_hh, b_hh) in enumerate(self.layers):
            a = self._input(x) if layer == 0 else torch.addmm(b, inp, W_ih)
            if self.kind == "lstm":
                H, C = state[layer]
                g = a.addmm_(H, W_hh)  # i, f, g, o pre-activations
                g[:, : 2 * h].sigmoid_()
                g[:, 2 * h: 3 * h].tanh_()
                g[:, 3 * h:].sigmoid_()
                C = torch.mul(g[:, h: 2 * h], C).addcmul_(g[:, :h], g[:, 2 * h: 3 * h])
                inp = torch.tanh(C).mul_(g[:, 3 * h:])
                new.append((inp, C))
            elif self.kind == "gru":
                H = state[layer]
                gh = torch.addmm(b_hh, H, W_hh)  # type: ignore[arg-type]
                rz = torch.add(a[:, : 2 * h], gh[:, : 2 * h]).sigmoid_()
                n = torch.addcmul(a[:, 2 * h:], rz[:, :h], gh[:, 2 * h:]).tanh_()
                inp = torch.lerp(n, H, rz[:, h:])  # (1 − z) n + z H
                new.append(inp)
            else:
                inp = self.act(a.addmm_(state[layer], W_hh))
                new.append(inp)
        return torch.addmm(self.b_out, inp, self.W_out), new

    def load(self, state: State) -> list[Any]:
        """The model's state (as ``begin_state``/``forward`` return it) as a per-layer list."""
        if self.kind == "scratch":
            assert isinstance(state, torch.Tensor)
            return [state]
        if self.kind == "lstm":
            assert isinstance(state, tuple)
            return list(zip(state[0].unbind(0), state[1].unbind(0)))
        assert isinstance(state, torch.Tensor)
        return list(state.unbind(0))

    def export(self, state: list[Any]) -> State:
        """A per-layer list back in the model's state format."""
        if self.kind == "scratch":
            return state[0]  # type: ignore[no-any-return]
        if self.kind == "lstm":
            return torch.stack([s[0] for s in state]), torch.stack([s[1] for s in state])
        return torch.stack(state)
