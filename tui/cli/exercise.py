"""``rnnlab exercise``: the chapter's exercises, each answered by running its experiment headless.

    rnnlab exercise list                         # the 27, with built / not built yet
    rnnlab exercise 8.3.1                        # run one at its quick budget: table, references, explanation
    rnnlab exercise 8.7.1 --long --json          # the book's budget, the same figures as JSON
    rnnlab exercise 8.4.1 --set num_hiddens=8,64 # change a setting (the defaults' type: lists comma-separated)

An unknown id exits 2 naming the ids; an exercise listed but not built yet exits 1 saying so. Ctrl-C,
a hangup or SIGTERM stops the experiment at its next step (an exercise's training runs are saved, marked
stopped) and exits 130, 129 or 143; a second signal aborts at once. Progress
goes to stderr when it is a terminal. ``format_cell`` is the one rule for showing a table cell, shared
with the Exercises screen. Left out: plots (the Exercises screen draws them).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from dataclasses import fields
from typing import Any

from engine.errors import ConfigError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("exercise", help="answer one of the chapter's exercises by running its experiment",
                              description="Run an exercise's experiment and print its table, our reference "
                              "figures beside the result, and what the numbers say. 'list' lists the 27.")
    p.add_argument("id", metavar="ID|list", help="an exercise id such as 8.3.1, or list")
    p.add_argument("--long", action="store_true", help="the book's budget instead of the quick default")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="change a setting (repeatable); lists comma-separated")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def format_cell(value: Any) -> str:
    """``12345 -> '12,345'``, ``8532.0 -> '8,532'``, ``0.000123 -> '0.000123'``, ``3.14159 -> '3.142'``,
    ``1.7e-11 -> '1.7e-11'``, None -> '–'."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value.is_integer() and 1 <= abs(value) < 1e15:
            return f"{value:,.0f}"
        if value == 0 or (1e-3 <= abs(value) < 1e6):
            return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value)


def table_lines(columns: list[str], rows: list[list[Any]]) -> list[str]:
    """The table as aligned text: numbers right-aligned, text left-aligned."""
    cells = [[format_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) for i in range(len(columns))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    return [line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)]


def comparison_lines(result: Any) -> list[str]:
    """Each reference figure beside the one measured now (or why there is none to compare)."""
    if result.budget is None:
        return ["(the settings were changed: our references are for the default and --long settings only)"]
    rows = [[c["name"], c["measured"], f"{format_cell(c['reference'])} ± {format_cell(c['tolerance'])}",
             {True: "yes", False: "NO", None: "–"}[c["agrees"]], c["note"]] for c in result.comparison()]
    if not rows:
        return ["(no reference figures for this budget)"]
    return table_lines(["figure", "now", "reference ± tolerance", "agrees", "how measured"], rows)


def settings_of(ex: Any, args: argparse.Namespace) -> Any:
    changes = {}
    for item in args.set:
        name, eq, text = item.partition("=")
        if not eq:
            raise ConfigError(f"--set takes NAME=VALUE (got {item!r}); the settings of {ex.id} are "
                              f"{', '.join(f.name for f in fields(ex.Settings))}")
        changes[name.strip()] = ex.parse(name.strip(), text)
    return ex.settings("long" if args.long else "default", **changes)


def run(args: argparse.Namespace) -> int:
    import engine.exercises as registry

    if args.id == "list":
        if args.json:
            print(json.dumps([{"id": i, "title": t, "built": registry.is_built(i)} for i, t in registry.TITLES.items()],
                             indent=2, ensure_ascii=False))
            return 0
        for ex_id, title in registry.TITLES.items():
            print(f"{ex_id:<6} {'built' if registry.is_built(ex_id) else 'not built yet':<13} {title}")
        return 0
    ex = registry.get(args.id)
    settings = settings_of(ex, args)
    progress = _stderr_progress if sys.stderr.isatty() and not args.json else None
    from engine.exercises.base import Stopped
    from tui.cli.signals import StopOnSignal

    with StopOnSignal() as signals:
        signals.training = True  # the first signal asks the experiment to stop at its next step
        try:
            result = ex.run(settings, progress, signals.stop)
        except Stopped as exc:
            print(f"\nrnnlab exercise: {exc}", file=sys.stderr)
            return signals.exit_code
    if progress is not None:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return 0
    from engine.exercises.base import format_value

    budget = result.budget or "changed"
    out = [f"{ex.id}  {ex.title}", "", *textwrap.wrap(ex.question, 100), "",
           f"settings ({budget}): " + ", ".join(f"{k}={format_value(v)}" for k, v in
                                                ((f.name, getattr(settings, f.name)) for f in fields(settings))),
           "", *table_lines(result.columns, result.rows), "", "reference figures:", *comparison_lines(result), "",
           *textwrap.wrap(result.explanation, 100)]
    if result.runs:
        out += ["", f"runs saved (tagged exercise {ex.id}; `rnnlab runs`, or Runs in the playground to overlay): "
                + ", ".join(result.runs)]
    print("\n".join(out))
    return 0


def _stderr_progress(done: int, total: int, note: str) -> None:
    print(f"\r{done}/{total} {note[:60]:<60}", end="", file=sys.stderr, flush=True)
