"""Running the sequence lab (``engine.labs.sequence``) for an exercise: its progress events become the
exercise's ``progress(done, total, note)`` calls, a set ``stop`` raises ``Stopped``, and its tables are
read as rows. Shared by 8.1.1, 8.1.2, 8.1.4 (and 8.6.3 when it is built).

``SequenceSettings`` holds the fields all four share (the recurrent cell, the two epoch budgets, the seed)
and their checks; an exercise subclasses it to add its own (``tau``; ``RecurrentSettings`` adds ``num_hiddens``). ``lab_config(s)``
takes the fields an exercise's settings share with ``SequenceConfig`` (T, tau, epochs, seed …); the rest
keep the lab's defaults (D2L 8.1's). Left out: plotting.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields
from typing import Any

from engine.config import MODEL_KINDS, option
from engine.exercises.base import Progress, Stopped, need
from engine.exercises.common import integer


class _Names(dict):
    """The lab's model names in a sentence; a recurrent model of another cell than rnn names it:
    ``NAMES["gru history"]`` → ``"recurrent model (gru) over the history"``."""

    def __missing__(self, model: str) -> str:
        kind, _, what = model.rpartition(" ")
        return f"recurrent model ({kind}) " + ("on the window" if what == "window" else "over the history")


NAMES = _Names({"linear": "linear model", "mlp": "MLP", "rnn window": "recurrent model on the window",
                "rnn history": "recurrent model over the history"})


@dataclass(frozen=True)
class SequenceSettings:
    """The sequence lab's options every 8.1 exercise uses."""

    kind: str = option("rnn", "recurrent cell of the recurrent models", MODEL_KINDS)
    epochs: int = option(5, "epochs of the MLP and the recurrent window model (D2L: 5)")
    history_epochs: int = option(200, "epochs of the recurrent model over the whole history")
    seed: int = option(0, "seeds the series, the weights and the minibatch order")

    def __post_init__(self) -> None:
        need(self.kind in MODEL_KINDS, f"kind must be one of {', '.join(MODEL_KINDS)} (got {self.kind!r})")
        integer("epochs", self.epochs, 1, 1000)
        integer("history_epochs", self.history_epochs, 1, 10_000)
        integer("seed", self.seed, 0, 2**31 - 1)


@dataclass(frozen=True)
class RecurrentSettings(SequenceSettings):
    """The sequence lab's options, and the width of its recurrent models (8.1.4, 8.6.3)."""

    num_hiddens: int = option(16, "hidden units of the recurrent models")

    def __post_init__(self) -> None:
        super().__post_init__()
        integer("num_hiddens", self.num_hiddens, 1, 1024)


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
