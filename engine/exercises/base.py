"""The shape every exercise has: a question, settings at two budgets, a run that returns a ``Result``.

An exercise module defines a frozen ``Settings`` dataclass (its fields made with
``engine.config.option``, so the CLI and the form read each field's help) and one
``Exercise`` subclass instance holding:

* ``id`` (``"8.5.4"``) — its title lives in ``engine.exercises.TITLES``, one place;
* ``question``: the book's exercise in our own words;
* ``default`` and ``long``: the settings of the quick budget (about a minute or less
  on a laptop CPU) and of the book's budget (``--long``);
* ``references``: figures we measured with those settings (seeded), each with the
  tolerance we observed (across seeds where the figure is statistical, rounding where
  it is exact), so a learner's result is shown next to ours;
* ``compute(settings, progress, stop)``: the experiment. It returns a ``Result``: a
  table (columns, rows), optional plot series, ``figures`` (the numbers the
  references name) and an explanation written from the numbers.

``Exercise.run`` checks the settings' type, runs ``compute`` and fills in the id,
settings and references. ``stop`` is a ``threading.Event``: an exercise looks at it
between its steps and raises ``Stopped``. ``progress(done, total, note)`` hears each step.

Left out: printing and plotting (``tui.cli.exercise``, ``tui.screens.exercises``) and
saving runs (an exercise that trains uses the trainer's own run folders).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any, ClassVar

from engine.errors import ConfigError, RnnlabError
from engine.jsonfloat import finite_or_none

Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what is being done)
BUDGETS = ("default", "long")


class Stopped(RnnlabError):
    """The caller set ``stop``: the exercise ended early and has no result."""


@dataclass(frozen=True)
class Series:
    """One line of a plot: points (x, y) and a legend name."""

    name: str
    x: list[float]
    y: list[float]


@dataclass(frozen=True)
class Plot:
    """A plot: a title, axis labels and its series (log scales are plotted as log10 values)."""

    title: str
    xlabel: str
    ylabel: str
    series: list[Series]


@dataclass(frozen=True)
class Reference:
    """A figure measured by us at one budget's settings (seeded): ``value`` ± ``tolerance``."""

    name: str  # the key of Result.figures it is compared with
    value: float
    tolerance: float  # the spread we observed (seeds, machines); 0 for exact counts
    budget: str = "default"  # which settings it was measured with: "default" or "long"
    note: str = ""  # how the tolerance was found, e.g. "seeds 0-4"

    def agrees(self, measured: float | None) -> bool | None:
        """Whether ``measured`` lies within the tolerance; None when there is no number to compare."""
        if measured is None or not math.isfinite(measured):
            return None
        return abs(measured - self.value) <= self.tolerance * (1 + 1e-9) + 1e-12


@dataclass
class Result:
    """What one run of an exercise found."""

    columns: list[str]
    rows: list[list[Any]]
    explanation: str
    figures: dict[str, float] = field(default_factory=dict)  # the numbers the references name
    plots: list[Plot] = field(default_factory=list)
    exercise: str = ""  # filled in by Exercise.run
    settings: dict[str, Any] = field(default_factory=dict)
    budget: str | None = None  # "default" / "long" when the settings are one of those, else None (edited)
    references: list[Reference] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)  # run folders the experiment trained (tagged with the exercise)

    def comparison(self) -> list[dict[str, Any]]:
        """Each reference of this run's budget beside the figure measured now."""
        out = []
        for ref in self.references:
            if ref.budget != self.budget:
                continue
            measured = self.figures.get(ref.name)
            out.append({"name": ref.name, "measured": measured, "reference": ref.value, "tolerance": ref.tolerance,
                        "agrees": ref.agrees(measured), "note": ref.note})
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: non-finite floats become null (``engine.jsonfloat``'s rule for figures)."""
        return _json({"exercise": self.exercise, "settings": self.settings, "budget": self.budget,
                      "columns": self.columns, "rows": self.rows, "figures": self.figures,
                      "references": self.comparison(), "explanation": self.explanation,
                      "plots": [asdict(p) for p in self.plots], "runs": self.runs})


def _json(value: Any) -> Any:
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _json(value.item())
    return value


class Exercise:
    """One of the chapter's exercises; subclasses set the class attributes and ``compute``."""

    id: ClassVar[str]
    question: ClassVar[str]
    Settings: ClassVar[type]
    default: ClassVar[Any]
    long: ClassVar[Any]
    references: ClassVar[tuple[Reference, ...]] = ()

    @property
    def title(self) -> str:
        from engine.exercises import TITLES

        return TITLES[self.id]

    def settings(self, budget: str = "default", **changes: Any) -> Any:
        """The settings of ``budget`` with ``changes`` applied (checked by the dataclass)."""
        if budget not in BUDGETS:
            raise ConfigError(f"budget must be one of {', '.join(BUDGETS)} (got {budget!r})")
        base = getattr(self, budget)
        unknown = sorted(set(changes) - {f.name for f in fields(base)})
        if unknown:
            raise ConfigError(f"exercise {self.id} has no setting {', '.join(unknown)}; its settings are "
                              f"{', '.join(f.name for f in fields(base))}")
        return replace(base, **changes) if changes else base

    def parse(self, name: str, text: str) -> Any:
        """A setting's value from text (the CLI's ``--set name=value``, the screen's fields), typed after
        its default: ``"16,256"`` for a tuple of ints, ``"0.5"`` for a float. Ranges are the Settings' checks."""
        base = self.default
        if name not in {f.name for f in fields(base)}:
            raise ConfigError(f"exercise {self.id} has no setting {name!r}; its settings are "
                              f"{', '.join(f.name for f in fields(base))}")
        return parse_value(name, getattr(base, name), text)

    def budget_of(self, settings: Any) -> str | None:
        return next((b for b in BUDGETS if settings == getattr(self, b)), None)

    def run(self, settings: Any = None, progress: Progress | None = None,
            stop: threading.Event | None = None) -> Result:
        """Run the experiment with ``settings`` (default: the quick budget's)."""
        settings = self.default if settings is None else settings
        if not (is_dataclass(settings) and isinstance(settings, self.Settings)):
            raise ConfigError(f"exercise {self.id} needs its own Settings (got {type(settings).__name__})")
        result = self.compute(settings, progress or _quiet, stop)
        result.exercise, result.settings = self.id, asdict(settings)
        result.budget, result.references = self.budget_of(settings), list(self.references)
        return result

    def compute(self, settings: Any, progress: Progress, stop: threading.Event | None) -> Result:
        raise NotImplementedError


def parse_value(name: str, like: Any, text: str) -> Any:
    """``text`` read as the type of ``like``: bool, int, float, str, or a tuple of those (comma-separated)."""
    text = text.strip()
    if isinstance(like, tuple):
        item = like[0] if like else ""
        parts = [p for p in (t.strip() for t in text.split(",")) if p]
        return tuple(parse_value(name, item, p) for p in parts)
    try:
        if isinstance(like, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError
            return text.lower() in ("true", "1", "yes", "on")
        if isinstance(like, int):
            return int(text)
        if isinstance(like, float):
            return float(text)
    except ValueError:
        kind = "true or false" if isinstance(like, bool) else "an integer" if isinstance(like, int) else "a number"
        raise ConfigError(f"{name} must be {kind} (got {text!r})") from None
    return text


def format_value(value: Any) -> str:
    """A setting's value as ``parse_value`` reads it back: tuples comma-separated."""
    if isinstance(value, tuple):
        return ",".join(format_value(v) for v in value)
    return str(value)


def _quiet(done: int, total: int, note: str) -> None:
    pass


def check_stop(stop: threading.Event | None) -> None:
    """Raise ``Stopped`` once the caller has set ``stop``."""
    if stop is not None and stop.is_set():
        raise Stopped("stopped before the exercise finished: no result")


def need(ok: bool, message: str) -> None:
    """A settings check: ``ConfigError(message)`` (the message names the setting and its range)."""
    if not ok:
        raise ConfigError(message)
