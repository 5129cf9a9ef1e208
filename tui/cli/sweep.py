"""``rnnlab sweep``: train one run per point of a grid of options and print them ranked by validation perplexity.

    rnnlab sweep --grid num_hiddens=64,128 --grid lr=0.5,1 --epochs 20
    rnnlab sweep --grid num_layers=1,2,3,4 --model gru --num-hiddens 64 --epochs 30 --json

``--grid NAME=V1,V2,…`` (repeatable) names any ``rnnlab train`` option (``num_hiddens``, ``num-hiddens``
and ``model`` are understood); every other ``rnnlab train`` flag sets the base all points share. The
runs are ordinary run folders tagged with the sweep's id (``rnnlab runs`` lists them), trained one
after another (``engine.sweep``). The table ranks completed runs by their best validation perplexity,
with the epoch it was reached, the training perplexity of that epoch and of the last; a run that
diverged is ranked last with its status. A line per run goes to stderr as it starts and ends.

Ctrl-C, SIGHUP and SIGTERM stop as in ``rnnlab train`` (``tui.cli.signals``): the run in progress
is saved as stopped, no other starts, the runs so far are printed and the exit status is 130, 129 or
143. A bad grid (unknown option, bad value, empty list, an option both fixed and swept) exits 2
naming the option, before any run folder is made. Left out: training points in parallel.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from engine.errors import ConfigError
from tui.cli.signals import StopOnSignal
from tui.cli.train import _add_options, _flag, _given, add_corpus_options

COLUMNS = ["best val ppl", "epoch", "train ppl", "last train ppl", "status", "run"]


def register(subparsers: Any) -> None:
    from engine.config import ModelConfig, TrainConfig

    p = subparsers.add_parser(
        "sweep", help="train a grid of runs and rank them by validation perplexity",
        description="Train one run per combination of the --grid values (each an ordinary run folder, tagged "
                    "with the sweep) and print them ranked by their best validation perplexity. Every "
                    "'rnnlab train' option sets the base the points share.")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                   help="an option and its values to try, comma-separated (repeatable), e.g. num_hiddens=64,128")
    p.add_argument("--json", action="store_true", help="print the ranked runs as JSON")
    add_corpus_options(p)
    model_fields = _add_options(p.add_argument_group("model", "the base every point starts from"), ModelConfig)
    train_fields = _add_options(p.add_argument_group("training", "the base every point starts from"), TrainConfig)
    p.set_defaults(func=run, _model_fields=model_fields, _train_fields=train_fields)


def _base(args: argparse.Namespace, grid: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The options given as flags (the fixed base); ConfigError when one is also swept."""
    model_kw, train_kw = _given(args, args._model_fields), _given(args, args._train_fields)
    both = [n for n in grid if n in model_kw or n in train_kw]
    if both:
        flags = ", ".join(("--model" if n == "kind" else _flag(n)) for n in both)
        raise ConfigError(f"{', '.join(both)} is both fixed ({flags}) and swept (--grid); drop one of them")
    return model_kw, train_kw


def row_cells(row: Any, names: list[str]) -> list[Any]:
    """A ranked row as the table shows it: rank, the swept values, then ``COLUMNS``."""
    status = row.status + (", unstable" if row.unstable and row.status == "completed" else "")
    return [row.rank, *(row.values.get(n) for n in names), row.best_val_ppl, row.best_epoch, row.train_ppl,
            row.last_train_ppl, status, row.run]


def run(args: argparse.Namespace) -> int:
    from engine.sweep import grid_points, parse_grid

    grid = parse_grid(args.grid)
    model_kw, train_kw = _base(args, grid)
    with StopOnSignal() as signals:
        try:
            return _sweep(args, grid, grid_points(grid), model_kw, train_kw, signals)
        except KeyboardInterrupt:
            print("interrupted (the runs trained so far are kept; the one in progress keeps its last checkpoint)",
                  file=sys.stderr)
            return signals.exit_code


def _sweep(args: argparse.Namespace, grid: dict[str, Any], points: list[Any], model_kw: dict[str, Any],
           train_kw: dict[str, Any], signals: StopOnSignal) -> int:
    from engine.config import ModelConfig, TrainConfig
    from engine.events import Diverged, Finished
    from engine.sweep import SweepProgress, new_sweep_id, run_sweep
    from tui.cli.corpus import load_corpus_arg, pipeline_with_progress
    from tui.cli.exercise import format_cell, table_lines

    # The base is the fixed options with the first point's values (a base valid only with the swept
    # options, say --dropout 0.5 over num_layers=2,3, is fine); checked before the corpus is read.
    first = points[0]
    model_names = {f.name for f in dataclasses.fields(ModelConfig)}
    try:
        ModelConfig(**model_kw, **{k: v for k, v in first.values.items() if k in model_names})
        train_cfg = TrainConfig(**train_kw, **{k: v for k, v in first.values.items() if k not in model_names})
    except ConfigError as exc:
        raise ConfigError(f"sweep point {first.name}: {exc}") from None
    pipeline = pipeline_with_progress(load_corpus_arg(args.corpus), mode=args.mode, tokenizer=args.tokenizer,
                                      vocab_size=args.vocab_size, min_freq=args.min_freq)
    for warning in pipeline.warnings:
        print(f"rnnlab sweep: warning: {warning}", file=sys.stderr)
    model_cfg = ModelConfig(**model_kw, **{k: v for k, v in first.values.items() if k in model_names},
                            vocab_size=len(pipeline.vocab))
    sweep_id = new_sweep_id()

    def report(p: SweepProgress) -> None:
        head = f"[{p.index + 1}/{p.total}] {p.point.name}"
        if p.event is None:
            if p.index == 0:  # the points' configs are checked: the sweep starts
                print(f"sweep {sweep_id}: {p.total} runs over {', '.join(grid)} on {pipeline.corpus.name}",
                      file=sys.stderr)
            print(f"{head}: run {p.run}", file=sys.stderr)
        elif isinstance(p.event, Diverged):
            print(f"{head}: diverged: {p.event.message}", file=sys.stderr)
        elif isinstance(p.event, Finished):
            print(f"{head}: {p.event.reason} after {p.event.epoch} epochs, last validation perplexity "
                  f"{format_cell(p.event.val_ppl)}", file=sys.stderr)

    signals.training = True
    sweep = run_sweep(pipeline, model_cfg, train_cfg, points, runs_dir=args.runs_dir, sweep_id=sweep_id,
                      stop=signals.stop, progress=report,
                      tokenizer_settings={"kind": args.tokenizer, "vocab_size": args.vocab_size,
                                          "min_freq": args.min_freq})
    names = list(grid)
    if args.json:
        print(json.dumps({"sweep": sweep.id, "grid": {k: list(v) for k, v in grid.items()}, "planned": sweep.planned,
                          "stopped": sweep.stopped, "rows": [r.to_dict() for r in sweep.rows]},
                         indent=2, ensure_ascii=False))
    else:
        print("\n".join(table_lines(["rank", *names, *COLUMNS], [row_cells(r, names) for r in sweep.rows])))
        done = sum(r.status == "completed" for r in sweep.rows)
        print(f"sweep {sweep.id}: {done} of {sweep.planned} runs completed"
              + (" (stopped: the run in progress is saved as stopped, the rest were not started)"
                 if sweep.stopped else ""))
    return signals.exit_code if sweep.stopped else 0
