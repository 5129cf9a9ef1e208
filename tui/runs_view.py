"""What the Runs screen shows beside its table and plot: the detail pane's three views, and the
plot's settings (which perplexity, smoothing, zoom).

The detail pane (``v`` cycles it) shows one of:

* ``diff`` — with two or more runs marked, the options whose values differ, one column per run
  (``engine.compare.config_diff``); otherwise the highlighted run's options that are not their
  defaults;
* ``samples`` — every sample the highlighted run logged (samples.log, read back by
  ``engine.follow``), oldest first, each with its epoch;
* ``command`` — the ``rnnlab train …`` line that reproduces the highlighted run
  (``tui.train_command``).

Left out: reading the runs (``engine.runs``) and the screen's wiring (``tui.screens.runs``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from engine.compare import RunFacts, config_diff, non_defaults
from engine.events import Sample

DETAILS = ("diff", "samples", "command")
METRICS = ("val_ppl", "train_ppl", "both")  # what ``m`` cycles through
METRIC_NAMES = {"val_ppl": "validation", "train_ppl": "training", "both": "training and validation"}
SMOOTHING = (0.0, 0.6, 0.9)  # EMA β that ``s`` cycles through
ZOOMS = (("all epochs", 1.0), ("last half", 0.5), ("last quarter", 0.25))  # what ``z`` cycles through


@dataclass(frozen=True)
class PlotView:
    """How the Runs plot is drawn: which perplexity, the EMA β, the zoom."""

    metric: str = METRICS[0]
    smoothing: float = SMOOTHING[0]
    zoom: int = 0  # index into ZOOMS

    def title(self, marked: bool) -> str:
        """``"validation perplexity (m: switch)"``, or with smoothing or a zoom on, ``"validation
        perplexity · EMA β=0.6 · last half"`` (the key's hint gives way to what is on)."""
        extras = ([f"EMA β={self.smoothing:g}"] if self.smoothing else []) + ([ZOOMS[self.zoom][0]] if self.zoom else [])
        parts = [f"{METRIC_NAMES[self.metric]} perplexity" + (" (m: switch)" if marked and not extras else "")]
        parts += extras
        return " · ".join(parts)

    def x_from(self, last_epoch: float) -> float | None:
        """The first epoch drawn at this zoom, for runs whose last epoch is ``last_epoch``: the last
        half of 8 epochs is 5..8, the last quarter 7..8 (None: all of them)."""
        share = ZOOMS[self.zoom][1]
        return None if share >= 1 else float(math.floor(last_epoch * (1 - share)) + 1)

    def metrics(self) -> tuple[str, ...]:
        return ("train_ppl", "val_ppl") if self.metric == "both" else (self.metric,)


def cycle(values: Sequence, value: object) -> object:
    """The value after ``value`` in ``values``, wrapping around."""
    return values[(list(values).index(value) + 1) % len(values)]


def diff_view(facts: Sequence[RunFacts], numbers: Sequence[int]) -> RenderableType:
    """The marked runs' config diff: option, then each run's value."""
    diff = config_diff(facts)
    if not diff:
        return Text(f"runs {', '.join(f'#{n}' for n in numbers)} have the same options", style="dim")
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
    table.add_column("option", style="dim", no_wrap=True)
    for n in numbers:
        table.add_column(f"#{n}")
    for key, values in diff:
        table.add_row(key, *values)
    return Group(Text(f"options that differ ({len(diff)})", style="bold"), table)


def defaults_view(facts: RunFacts, number: int) -> RenderableType:
    """One run's options that are not their defaults (the pane's diff view with fewer than two marked)."""
    if not facts.ok:
        return Text(f"#{number} {facts.summary.name}: {facts.summary.error or 'unreadable'}", style="red")
    rows = non_defaults(facts)
    table = Table(box=None, padding=(0, 1), show_header=False, show_edge=False)
    table.add_column(style="dim", no_wrap=True)
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    head = Text()
    head.append(f"#{number} {facts.summary.name}\n", style="bold")
    head.append("options not at their defaults" if rows else "every option at its default")
    hint = Text("space marks runs: two or more marked show how their options differ", style="dim")
    return Group(head, table, hint)


def samples_view(samples: Sequence[Sample], number: int) -> RenderableType:
    """Every logged sample: ``epoch 10  time traveller …`` with the prompt in bold."""
    if not samples:
        return Text(f"#{number} logged no samples (sample_every 0, or no epoch has ended yet)", style="dim")
    out = Text()
    out.append(f"#{number}: {len(samples)} samples\n", style="bold")  # a Text's own style would span it all
    for s in samples:
        out.append(f"epoch {s.epoch}  ", style="dim")
        if s.prefix and s.text.startswith(s.prefix):
            out.append(s.prefix, style="bold")
            out.append(s.text[len(s.prefix):] + "\n")
        else:
            out.append(s.text + "\n")
    out.rstrip()
    return out


def command_view(line: str, number: int) -> RenderableType:
    """The command that reproduces a run, whole (it wraps) so that it can be read and copied."""
    return Group(Text(f"#{number} again, as a command (c copies it):", style="bold"), Text(line))
