"""Spike detection: perplexity jumping well above its best so far.

D2L's RNN at lr 1 trains smoothly for a long time and then, now and then, its
perplexity leaps (nn.RNN on The Time Machine after ~1800 epochs). After each
epoch the trainer asks ``SpikeDetector.update(state)``. It reports a ``Spike``
when perplexity exceeds ``factor`` × the best so far, once: it re-arms only
when perplexity has come back below the midpoint ``(1 + factor) / 2`` × best,
so a curve wobbling around the threshold gives one event, not one per wobble.
With factor 2 and best 4: 9 spikes; 12, 7.9 and 8.5 say nothing (still
spiking); 4.5 re-arms (below 6); 20 spikes again.
It watches validation perplexity, or training perplexity when there is no
split. The best and the "spiking" flag live in the ``TrainState``, so they are
checkpointed and resumed with the rest.

Left out: smoothing, patience and stopping on a spike (the run carries on; the
user decides).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.events import Spike
from engine.train_state import TrainState


@dataclass(frozen=True)
class SpikeDetector:
    """The spike rule for one run: ``factor`` is TrainConfig's ``spike_factor`` (> 1)."""

    factor: float = 2.0

    def update(self, state: TrainState) -> Spike | None:
        """After an epoch: the Spike to report (or None); updates ``state.best_ppl`` and ``state.spiking``."""
        ppl, metric = (state.val_ppl, "validation") if state.val_ppl is not None else (state.train_ppl, "train")
        if ppl is None:
            return None
        spike = None
        if ppl > self.factor * state.best_ppl and not state.spiking:
            spike = Spike(epoch=state.epoch, val_ppl=ppl, best_val_ppl=state.best_ppl, metric=metric)
            state.spiking = True
        elif state.spiking and ppl < (1 + self.factor) / 2 * state.best_ppl:
            state.spiking = False  # re-armed only well below the threshold: no event per wobble around it
        state.best_ppl = min(state.best_ppl, ppl)
        return spike
