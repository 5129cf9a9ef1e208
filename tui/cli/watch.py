"""``rnnlab watch RUN``: follow a run live from any terminal, whoever trains it.

    rnnlab watch 20261201-101502-gru-timemachine      # by name, under the runs folder
    rnnlab watch ~/shared/runs/20261201-101502-gru-timemachine --interval 5

The run's folder is read as it grows (``engine.follow``): its history first, then each new
event as the trainer logs it, on the same progress bar ``rnnlab train`` draws (epoch, perplexities,
‖g‖, tokens/s, time left), samples, spikes and divergence above it. It ends when the run does:
the last line says how (completed, stopped, diverged) — or ``interrupted`` when the process training
it disappeared without a word (``engine.live``). Ctrl-C stops watching; the run goes on. Exit status:
0, or 1 for a run that diverged, failed or was interrupted. Left out: controlling the run (stop it
where it runs, or from the playground that started it).
"""

from __future__ import annotations

import argparse
import time
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("watch", help="follow a run live (trained here or by another process)",
                              description="Follow a training run live from its folder: progress, samples, "
                              "spikes; ends when the run does.")
    p.add_argument("run", metavar="RUN", help="run name (under the runs folder) or folder path")
    p.add_argument("--runs-dir", default=None, help="folder of runs (default: $RNNLAB_HOME/runs)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between reads of the run's files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from engine.errors import ConfigError
    from engine.events import Finished
    from engine.follow import RunFollower
    from engine.runs import open_run
    from tui.cli.train import EventPrinter, finish_line

    if not 0.05 <= args.interval <= 3600:
        raise ConfigError(f"--interval must be between 0.05 and 3600 seconds (got {args.interval:g})")
    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    run_ = open_run(args.run, args.runs_dir)
    m, cfg = run_.model_config, run_.train_config
    status, live = run_.status(), run_.live()
    who = f"; trained by {live.describe()}" if live is not None else ""
    err.print(f"run {run_.name}: {m.kind} {m.num_hiddens}x{m.num_layers}, {cfg.optimizer} lr {cfg.lr:g}, "
              f"{cfg.epochs} epochs" + (f", {cfg.world_size} processes × batch {cfg.batch_size}" if cfg.world_size > 1
                                        else "") + f" — {status}{who}", markup=False, highlight=False)
    follower = RunFollower(run_.path, prefix=cfg.sample_prefix)
    finished: Finished | None = None
    try:
        with EventPrinter(err, cfg) as printer:
            while True:
                running = run_.status() == "running"  # read before the poll: nothing logged after it is lost
                for ev in follower.poll().events:
                    printer.show(ev)
                    if isinstance(ev, Finished):
                        finished = ev
                if not running:
                    break
                time.sleep(args.interval)
    except KeyboardInterrupt:
        err.print(f"stopped watching; the run goes on (rnnlab watch {run_.name} to follow it again)",
                  markup=False, highlight=False)
        return 130
    status = run_.status()
    if status in ("interrupted", "failed") or finished is None:
        st = run_.trainer_state() or {}
        out.print(f"{status}: epoch {st.get('epoch', 0)}, step {st.get('step', 0)} saved  run {run_.name}",
                  markup=False, highlight=False)
        return 1 if status in ("interrupted", "failed") else 0
    out.print(finish_line(finished, run_.name), markup=False, highlight=False)
    return 1 if finished.reason == "diverged" else 0
