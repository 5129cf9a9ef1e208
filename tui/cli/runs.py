"""``rnnlab runs``: list the training runs in a table, show one, export curves (or delete one).

    rnnlab runs
    rnnlab runs --runs-dir ./my-runs
    rnnlab runs --show 20261126-153012-gru-timemachine
    rnnlab runs --csv RUN [RUN ...] [-o curves.csv]
    rnnlab runs --follow RUN             # the same as rnnlab watch RUN: live, to the run's end
    rnnlab runs --delete 20261126-153012-gru-timemachine

On a terminal the table has the Runs screen's columns (``engine.compare``): model, hidden ×
layers, encoding, corpus, tokenizer, optimizer, lr, clip, sampler, truncation, tokens, epochs,
best validation perplexity and its epoch, status, device, tokens/s, tags; the columns equal for
every run fold into one "same for all" line under it. Piped, it is tab-separated lines with a
header (for ``sort``, ``cut``, ``awk``) and no folding: name, corpus, model, epochs, train ppl,
val ppl, device, status, date (always these nine first), then every other column. Unreadable
folders are listed as ``corrupt`` with the reason; a log file with damaged lines gets one
warning on stderr naming the file and the lines.

``--show RUN`` prints the run's results, its options that are not their defaults, its samples
and, last, the ``rnnlab train`` line that reproduces it (``tui.train_command``). ``--follow RUN`` is ``rnnlab watch RUN``. ``--csv``
prints every logged progress line of the runs as CSV (``engine.export``: run, epoch, step,
train_ppl, val_ppl, …), or writes it to ``-o FILE`` atomically. Left out: plots (the TUI's Runs
screen draws and exports them).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

LEGACY = ("name", "corpus", "model", "epochs", "train ppl", "val ppl", "device", "status", "date")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("runs", help="list training runs, show or export one",
                              description="List the runs in the runs folder; show one, export curves as CSV.")
    p.add_argument("--runs-dir", default=None, help="folder of runs (default: $RNNLAB_HOME/runs)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--delete", metavar="RUN", default=None, help="delete this run folder")
    what.add_argument("--show", metavar="RUN", default=None,
                      help="show a run: results, options not at their defaults, samples, the command that "
                           "reproduces it")
    what.add_argument("--follow", metavar="RUN", default=None,
                      help="follow a run live until it ends (the same as rnnlab watch RUN)")
    what.add_argument("--csv", metavar="RUN", nargs="+", default=None,
                      help="print these runs' logged curves as CSV (run, epoch, step, train_ppl, val_ppl, …)")
    p.add_argument("-o", "--output", metavar="FILE", default=None, help="with --csv: write the CSV to FILE")
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

    from engine.errors import ConfigError
    from engine.runs import delete_run

    console = Console()
    if args.output and not args.csv:
        raise ConfigError("-o/--output goes with --csv RUN …: it names the CSV file to write")
    if args.follow:
        from tui.cli import watch

        return watch.run(argparse.Namespace(run=args.follow, runs_dir=args.runs_dir, interval=1.0))
    if args.delete:
        delete_run(args.delete, args.runs_dir)
        console.print(f"deleted {args.delete}", highlight=False)
        return 0
    if args.show:
        return show(args.show, args.runs_dir)
    if args.csv:
        return export_csv(args.csv, args.runs_dir, args.output)
    return list_table(args.runs_dir, console)


def list_table(runs_dir: str | None, console: Any) -> int:
    from rich.table import Table

    from engine import paths
    from engine.compare import COLUMNS, fold, run_facts
    from engine.errors import RunError
    from engine.runs import list_runs, open_run

    runs = list_runs(runs_dir)
    where = runs_dir or paths.runs_dir()
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
    facts = [run_facts(r) for r in runs]
    if not console.is_terminal:
        extra = [c for c in COLUMNS if c.header not in LEGACY]
        print("\t".join((*LEGACY, *(c.header for c in extra))))
        for r, f in zip(runs, facts):
            row = (r.name, r.corpus, r.model, f"{r.epochs_done}/{r.epochs}", _ppl(r.train_ppl), _ppl(r.val_ppl),
                   r.device, _status(r), r.created.replace("T", " "), *(c.text(f) for c in extra))
            print("\t".join(" ".join(str(cell).split()) for cell in row))  # no tabs or newlines inside a cell
        return 0
    folded = fold(COLUMNS, facts)
    table = Table(title=f"runs in {where}")
    table.add_column("name")
    for col in folded.shown:
        table.add_column(col.header, justify="right" if col.key in ("lr", "tokens", "epochs", "best", "speed")
                         else "left")
    table.add_column("date")
    for r, f in zip(runs, facts):
        cells = [_status(r) if col.key == "status" else col.text(f) for col in folded.shown]
        table.add_row(r.name, *cells, r.created.replace("T", " "))
    console.print(table)
    if folded.same:
        console.print(folded.same_line(), style="dim", highlight=False, markup=False)
    return 0


def show(name: str, runs_dir: str | None) -> int:
    """A run's results, non-default options, samples, and the command that trains it again."""
    from engine.compare import non_defaults, run_facts
    from engine.follow import read_samples
    from engine.runs import open_run
    from tui.train_command import command_line

    run_ = open_run(name, runs_dir)
    summary = run_.summary()
    facts = run_facts(summary)
    print(f"run {run_.name}  ({run_.path})")
    status = f"{summary.status}, unstable" if summary.unstable else summary.status
    line = f"{status} on {summary.device}, epoch {summary.epochs_done}/{summary.epochs}"
    if facts.best_val_ppl is not None:
        line += f"; best validation perplexity {facts.best_val_ppl:.3f} at epoch {facts.best_epoch}"
    if facts.tokens_per_s is not None:
        line += f"; {facts.tokens_per_s:,.0f} tokens/s"
    print(line)
    if summary.live:
        print(f"trained by {summary.live}")
    if summary.tags:
        print("tags: " + ", ".join(f"{k}={v}" for k, v in sorted(summary.tags.items())))
    options = non_defaults(facts)
    print("options not at their defaults: " + (", ".join(f"{k} {v}" for k, v in options) if options else "none"))
    samples = read_samples(run_.path, run_.train_config.sample_prefix)
    print(f"samples ({len(samples)}):" if samples else "samples: none logged")
    for s in samples:
        print(f"  epoch {s.epoch}: {s.text!r}")
    print("command:")
    print(command_line(run_))
    return 0


def export_csv(names: list[str], runs_dir: str | None, output: str | None) -> int:
    from pathlib import Path

    from engine.export import curves_csv, write_curves_csv
    from engine.runs import open_run

    runs = [open_run(n, runs_dir) for n in names]  # every name checked before anything is written
    for r in runs:
        for warning in r.check_logs():
            print(f"warning: {warning}", file=sys.stderr)
    if output is None:
        sys.stdout.write(curves_csv(runs))
        return 0
    path = write_curves_csv(runs, Path(output))
    print(f"wrote {sum(len(r.metrics()) for r in runs)} lines of {len(runs)} run(s) to {path}", file=sys.stderr)
    return 0
