"""``rnnlab runs``: list the training runs in a table (or delete one).

    rnnlab runs
    rnnlab runs --runs-dir ./my-runs
    rnnlab runs --delete 20261126-153012-gru-timemachine

Columns: name, corpus, model, epochs done / configured, final train and
validation perplexity, device, status, date. Unreadable folders are listed as
``corrupt`` with the reason; a log file with damaged lines gets one warning on
stderr naming the file and the lines. On a terminal this is a table; piped, it
is tab-separated lines with a header (for ``sort``, ``cut``, ``awk``). Left out:
plots and comparisons (the TUI does those).
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("runs", help="list training runs", description="List the runs in the runs folder.")
    p.add_argument("--runs-dir", default=None, help="folder of runs (default: $RNNLAB_HOME/runs)")
    p.add_argument("--delete", metavar="RUN", default=None, help="delete this run folder")
    p.set_defaults(func=run)


def _ppl(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _status(r: Any) -> str:
    """The status cell: a corrupt folder's reason; "unstable" after a run that ended worse than guessing."""
    if r.error:
        return f"corrupt: {r.error}"
    return f"{r.status}, unstable" if r.unstable else r.status


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    import sys

    from engine import paths
    from engine.errors import RunError
    from engine.runs import delete_run, list_runs, open_run

    console = Console()
    if args.delete:
        delete_run(args.delete, args.runs_dir)
        console.print(f"deleted {args.delete}", highlight=False)
        return 0
    runs = list_runs(args.runs_dir)
    where = args.runs_dir or paths.runs_dir()
    if not runs:
        console.print(f"no runs in {where}; start one with `rnnlab train`", highlight=False)
        return 0
    for r in runs:
        try:
            warnings = [] if r.error else open_run(r.path).check_logs()
        except RunError as exc:  # an unreadable log file: say so, list the run anyway
            warnings = [str(exc)]
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
    columns = ("name", "corpus", "model", "epochs", "train ppl", "val ppl", "device", "status", "date")
    rows = [(r.name, r.corpus, r.model, f"{r.epochs_done}/{r.epochs}", _ppl(r.train_ppl), _ppl(r.val_ppl),
             r.device, f"corrupt: {r.error}" if r.error else f"{r.status}, unstable" if r.unstable else r.status, r.created.replace("T", " "))
            for r in runs]
    if not console.is_terminal:
        for row in (columns, *rows):
            print("\t".join(" ".join(str(cell).split()) for cell in row))  # no tabs or newlines inside a cell
        return 0
    table = Table(title=f"runs in {where}")
    for col in columns:
        table.add_column(col, justify="right" if col in ("epochs", "train ppl", "val ppl") else "left")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return 0
