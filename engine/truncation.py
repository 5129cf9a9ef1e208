"""Where backpropagation through time is cut between sequential minibatches (D2L 8.7, ``--truncation``).

With sequential partitioning row ``i`` of minibatch ``k+1`` continues row ``i``
of minibatch ``k``, so the hidden state is carried over; the question is how far
back the gradient may follow it.

- ``regular`` cuts the graph at every minibatch boundary (D2L's detach, every
  ``num_steps`` tokens) and steps the optimizer after each minibatch. Cheap, and
  biased: dependencies longer than ``num_steps`` get no gradient at all.
- ``none`` never cuts within an epoch: one graph over the whole epoch, one
  optimizer step at its end on the mean loss. The exact gradient, at the price
  of memory growing with the epoch and a single update per pass.
- ``random`` cuts each boundary with probability ``p`` and, where it keeps the
  graph, multiplies the gradient crossing the boundary by ``1/(1-p)``. This is
  Tallec & Ollivier's (2017) randomised truncation with cuts allowed only at
  minibatch boundaries: a gradient path back across ``k`` boundaries survives
  with probability ``(1-p)^k`` and is weighted ``(1-p)^-k``, so on average it
  counts exactly as in full BPTT — the summed gradient is unbiased — while the
  graphs kept have geometric lengths (mean ``1/p`` minibatches). The optimizer
  steps at each cut, on the sum of the segment's minibatch losses, so every
  minibatch weighs what it weighs under ``regular``.

Why a step cannot come between two minibatches that share a graph: the
optimizer updates the parameters in place, and the graph of the earlier
minibatch saved the old values (autograd checks tensor versions and refuses:
"modified by an inplace operation"); without ``retain_graph`` the earlier part
is also freed after its first backward ("backward through the graph a second
time"). Hence one step per kept segment.

Left out: cuts inside a minibatch (every ``num_steps`` tokens is the finest
grain; the whole-sequence cuDNN kernels leave no step in between).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from engine.config import TrainConfig
from engine.models import State, detach_state

RARE = 1e-6  # a kept segment longer than the graph limit is allowed for is rarer than this


def scale_grad(state: State, factor: float) -> State:
    """``state`` unchanged in value, with the gradient flowing back through it multiplied by ``factor``."""
    if isinstance(state, tuple):
        return tuple(scale_grad(s, factor) for s in state)  # type: ignore[return-value]
    fixed = state.detach()
    return fixed + factor * (state - fixed)  # value: fixed + 0; derivative: factor


class Cuts:
    """One epoch's cut decisions, drawn from their own generator (seed, epoch), so the minibatch order is that of
    ``regular`` and a resumed epoch cuts where it cut before."""

    def __init__(self, cfg: TrainConfig, epoch: int) -> None:
        self.truncation, self.p = cfg.truncation, float(cfg.truncation_p)
        self.rng = np.random.default_rng([cfg.seed, epoch, 8_7])  # 8.7: apart from the minibatch order's stream

    def cut(self) -> bool:
        """Whether the graph is cut after the minibatch just computed (and the optimizer steps)."""
        if self.truncation == "regular":
            return True
        if self.truncation == "none":
            return False
        return bool(self.rng.random() < self.p)

    def carry(self, state: State) -> State:
        """The state handed across a boundary that was not cut: reweighted under ``random``."""
        return scale_grad(state, 1.0 / (1.0 - self.p)) if self.truncation == "random" else state


def graph_positions(cfg: TrainConfig, n_train_tokens: int) -> int:
    """Token positions the largest graph kept holds: one minibatch (regular), the whole training part (none), or
    under ``random`` the segment exceeded with probability below ``RARE`` (at most the training part)."""
    one = cfg.batch_size * cfg.num_steps
    if cfg.truncation == "none":
        return n_train_tokens
    if cfg.truncation == "regular" or cfg.truncation_p >= 1:
        return one
    longest = math.ceil(math.log(RARE) / math.log(1.0 - cfg.truncation_p))  # (1-p)^longest <= RARE
    return min(n_train_tokens, one * longest)
