"""``TrainState``: the trainer's counters, the one record it saves and restores.

The trainer keeps one live ``TrainState``. At each epoch end it copies it into
the snapshot of the last good epoch (with the wall time so far); a divergence
puts that copy back; a checkpoint writes it into ``checkpoint.json``
(``to_json``) and a resume reads it from there (``from_json``). The JSON form
is defined here only: a figure that is not finite (no best perplexity yet:
inf) is written as ``null``, and ``null`` or a missing field reads back as the
field's default, so checkpoints written before a field existed still load.
``JSON_TYPES`` lists the types a reader may rely on.

Left out: the weights, optimizer state and RNG (``engine.checkpoint`` writes
them), and the rest of checkpoint.json (status, device, epochs: the trainer's
``_save``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, ClassVar

from engine.jsonfloat import finite_or_none


@dataclass
class TrainState:
    """Where a run stands between epochs (or at a stop)."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken, over the whole run (resumes continue it)
    best_ppl: float = math.inf  # best perplexity so far (validation, or train without a split): what spikes compare to
    spiking: bool = False  # a Spike was reported and perplexity has not come back down since
    train_ppl: float | None = None  # train perplexity of the last epoch (a stopped one's so far); None: none yet
    val_ppl: float | None = None  # validation perplexity of the same weights; None: none yet or no split
    elapsed_s: float = 0.0  # wall time trained up to this state, over all sessions (filled in when copied)

    # checkpoint.json types per field (null is allowed for every one)
    JSON_TYPES: ClassVar[dict[str, tuple[type, ...]]] = {
        "epoch": (int,), "step": (int,), "best_ppl": (float, int), "spiking": (bool,),
        "train_ppl": (float, int), "val_ppl": (float, int), "elapsed_s": (float, int),
    }

    def to_json(self) -> dict[str, Any]:
        """The fields in order, non-finite figures as None: ``{"epoch": 0, …, "best_ppl": None, …}``."""
        return {k: finite_or_none(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TrainState:
        """From checkpoint.json's fields (other keys are ignored; null or missing: the default)."""
        convert: dict[str, Callable[[Any], Any]] = {"epoch": int, "step": int, "spiking": bool}
        values = {}
        for f in fields(cls):
            value = doc.get(f.name)
            if value is not None:
                values[f.name] = convert.get(f.name, float)(value)
        return cls(**values)
