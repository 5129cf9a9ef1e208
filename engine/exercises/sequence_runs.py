"""Running the sequence lab (``engine.labs.sequence``) for an exercise: its progress events become the
exercise's ``progress(done, total, note)`` calls, a set ``stop`` raises ``Stopped``, and its tables are
read as rows. Shared by 8.1.1, 8.1.2, 8.1.4 (and 8.6.3 when it is built).

``lab_config(s)`` takes the fields an exercise's settings share with ``SequenceConfig`` (T, tau,
epochs, seed …); the rest keep the lab's defaults (D2L 8.1's). Left out: plotting.
"""

from __future__ import annotations

import threading
from dataclasses import fields
from typing import Any

from engine.exercises.base import Progress, Stopped


NAMES = {"linear": "linear model", "mlp": "MLP", "rnn window": "recurrent model on the window",
         "rnn history": "recurrent model over the history"}  # the lab's model names in a sentence


def lab_config(settings: Any) -> Any:
    """A ``SequenceConfig`` with every field ``settings`` also has."""
    from engine.labs.sequence_config import SequenceConfig

    names = {f.name for f in fields(SequenceConfig)}
    return SequenceConfig(**{f.name: getattr(settings, f.name) for f in fields(settings) if f.name in names})


def run(settings: Any, experiments: tuple[str, ...], progress: Progress, stop: threading.Event | None) -> Any:
    """The lab's ``SequenceLab`` for ``experiments``."""
    from engine.labs.sequence import run_lab

    gen = run_lab(lab_config(settings), experiments, stop=stop)
    try:
        while True:
            p = next(gen)
            progress(p.fits_done, p.fits_total, f"{p.experiment}: {p.model}, epoch {p.epoch}/{p.epochs}")
    except StopIteration as end:
        lab = end.value
    if lab is None:
        raise Stopped("stopped before the exercise finished: no result")
    return lab


def mse_cells(mse: dict[str, float]) -> list[float]:
    """The MSE columns in the lab's order (k = 1, 4, 16, 64, multi-step)."""
    from engine.labs.sequence_config import COLUMNS

    return [mse[c] for c in COLUMNS]


def mse_columns() -> list[str]:
    from engine.labs.sequence_config import COLUMNS

    return [f"MSE {c}-step" if c != "multi" else "MSE multi" for c in COLUMNS]
