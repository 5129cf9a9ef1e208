"""Runs trained by another process, seen live in the playground (issue 13): a `rnnlab train` started in a
subprocess appears on Runs by itself and advances there; `l` follows it on Train, whose ctrl+g stops it
(the process saves and exits 130); a SIGKILLed trainer shows as interrupted, and `r` resumes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from textual.widgets import DataTable

from engine.runs import open_run
from tui_helpers import SIZE, run_app, wait_events, wait_training

REPO = Path(__file__).resolve().parent.parent
TINY = ["--tokenizer", "char", "--model", "rnn", "--num-hiddens", "16", "--batch-size", "8", "--num-steps", "8",
        "--max-tokens", "2000", "--threads", "1", "--sample-every", "1", "--sample-len", "5", "--epochs", "100000",
        "--checkpoint-interval-s", "0.5"]


def start_cli_run() -> subprocess.Popen:
    """`rnnlab train` in a process of its own (the test session's RNNLAB_HOME), as another terminal would."""
    return subprocess.Popen([sys.executable, "-m", "tui.cli", "train", "--corpus", "timemachine", *TINY], cwd=REPO,
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def wait_row(app, pilot, want, timeout_s: float = 120):
    """The Runs table's rows as {column label: cell}, once ``want(rows)`` holds (the screen refreshes on its
    own; bounded wait). Which columns show depends on what differs between the runs listed."""
    table = app.screen.query_one(DataTable)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        labels = [str(col.label) for col in table.ordered_columns]
        rows = [dict(zip(labels, map(str, table.get_row_at(i)))) for i in range(table.row_count)]
        if want(rows):
            return rows
        await pilot.pause(0.1)
    raise AssertionError(f"the Runs table never showed what was waited for: {rows}")


def proc_run(app) -> Path:
    """The folder of the run on the Runs screen's first row (the only one here)."""
    return Path(app.screen.runs[0].path)


def epochs_done(row: dict[str, str]) -> int:
    return int(row["epochs"].split("/")[0])


def test_a_cli_run_advances_on_runs_is_followed_and_stopped_from_train(corpus_dir) -> None:
    proc = start_cli_run()
    try:
        async def body(app, pilot):
            await pilot.press("f4")
            await pilot.pause()
            first = await wait_row(app, pilot, lambda rows: rows and rows[0]["status"] == "running")
            later = await wait_row(app, pilot, lambda rows: epochs_done(rows[0]) > epochs_done(first[0]))
            await pilot.press("l")  # the live view of the highlighted run
            await pilot.pause()
            screen = app.screen
            await wait_events(app, pilot, epochs=epochs_done(later[0]) + 1)
            following = (app.current_mode, screen.training, screen.child is None,
                         str(screen.query_one("#train-sample").render()).startswith("epoch "),
                         screen.query_one("#f-model-num_hiddens").value, screen.query_one("#f-model-kind").value)
            await pilot.press("ctrl+g")
            await wait_training(app, pilot)
            return first, later, following, screen.run_path

        first, later, following, run_path = run_app(body, size=SIZE)
        assert epochs_done(later[0]) > epochs_done(first[0])
        assert following == ("train", True, True, True, "16", "rnn")  # the form shows the run's own options
        assert proc.wait(timeout=120) == 130  # the CLI's own stop: saved, exit 128 + SIGINT
        assert open_run(run_path).summary().status == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_killed_trainer_shows_interrupted_and_r_resumes_it_live(corpus_dir) -> None:
    proc = start_cli_run()
    try:
        async def body(app, pilot):
            await pilot.press("f4")
            await pilot.pause()
            await wait_row(app, pilot, lambda rows: rows and rows[0]["status"] == "running" and epochs_done(rows[0]) >= 1
                           and open_run(proc_run(app)).trainer_state() is not None)  # a checkpoint to resume
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            rows = await wait_row(app, pilot, lambda rows: rows[0]["status"] == "interrupted")
            folder = proc_run(app)
            await pilot.press("r")
            await pilot.pause()
            screen = app.screen
            resumed = (app.current_mode, screen.training, screen.child is not None)
            deadline = time.monotonic() + 120  # until the new process trains and has logged (bounded)
            seen = None
            while time.monotonic() < deadline:
                live = open_run(folder).live()
                if live is not None and live.alive and live.pid == screen.child.proc.pid:
                    seen = seen if seen is not None else screen.events_seen
                    if screen.events_seen > seen:
                        break
                await pilot.pause(0.05)
            await pilot.press("ctrl+g")
            await wait_training(app, pilot)
            return rows, resumed, screen.run_path, screen.child.proc.wait(timeout=60)

        rows, resumed, run_path, code = run_app(body, size=SIZE)
        assert rows[0]["status"] == "interrupted" and resumed == ("train", True, True) and code == 130
        state = json.loads((Path(run_path) / "checkpoint.json").read_text())
        assert state["status"] == "stopped" and state["epoch"] >= 1
        steps = [m["step"] for m in open_run(run_path).metrics()]
        assert steps == sorted(steps)  # one log: the killed session's up to its checkpoint, then the resumed one's
    finally:
        if proc.poll() is None:
            proc.kill()
