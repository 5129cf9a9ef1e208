"""The app as a process: SIGTERM stops its training process (saved) and exits 143; SIGHUP exits 129
and leaves the run training; an unhandled error exits 1 with a plain message, never 0 and never a
traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHILD = Path(__file__).resolve().parent / "tui_child.py"
WAIT_S = 120  # generous: only a hung child ever waits this long


def start_child(mode: str, home: Path) -> subprocess.Popen:
    env = {**os.environ, "RNNLAB_HOME": str(home)}
    return subprocess.Popen([sys.executable, str(CHILD), mode], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_metrics(home: Path, child: subprocess.Popen) -> Path:
    """The child's run folder, once its metrics.jsonl holds an epoch end (polls; no fixed sleep)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and child.poll() is None:
        for metrics in (home / "runs").glob("*/metrics.jsonl"):
            if any(json.loads(line).get("epoch_end") for line in metrics.read_text().splitlines()[:-1]):
                return metrics.parent
        time.sleep(0.1)
    child.kill()
    raise AssertionError(f"no epoch in the child's metrics (exit {child.poll()}): {child.communicate()}")


def wait_status(run: Path, want: str) -> str:
    """The run's status once it is ``want`` (polls its folder; bounded), else the last one seen."""
    from engine.runs import open_run

    deadline = time.monotonic() + WAIT_S
    status = open_run(run).status()
    while status != want and time.monotonic() < deadline:
        time.sleep(0.1)
        status = open_run(run).status()
    return status


def stop_left_run(run: Path) -> None:
    """Stop a training process the app left running (Ctrl-C's stop), as a user would from another shell."""
    from engine.live import read_live

    live = read_live(run)
    if live is not None and live.alive:
        os.kill(live.pid, signal.SIGINT)


def test_sigterm_stops_training_with_a_checkpoint(corpus_dir, tmp_path) -> None:
    """kill (SIGTERM) ends the app with 143 and stops its training process, which saves the run."""
    child = start_child("train", tmp_path)
    run = wait_for_metrics(tmp_path, child)
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=WAIT_S)
    assert child.returncode == 143, stderr
    assert wait_status(run, "stopped") == "stopped"
    state = json.loads((run / "checkpoint.json").read_text())
    assert state["status"] == "stopped" and 1 <= state["epoch"] < 10_000
    assert (run / "model.safetensors").is_file()


@pytest.mark.parametrize("mode", ["train", "hang"])
def test_a_hangup_ends_the_app_and_leaves_the_run_training(corpus_dir, tmp_path, mode) -> None:
    """The terminal closed (SIGHUP): the app exits 129 — even when Textual's shutdown hangs on its dead
    output (``hang``: the watchdog ends it) — and the run goes on training in its own process, which a
    later stop saves."""
    child = start_child(mode, tmp_path)
    run = wait_for_metrics(tmp_path, child)
    child.send_signal(signal.SIGHUP)
    try:
        try:
            child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise AssertionError("the app never exited after SIGHUP") from None
        assert child.returncode == 129
        from engine.runs import open_run

        assert open_run(run).status() == "running"  # its trainer outlived the app
    finally:
        stop_left_run(run)
    assert wait_status(run, "stopped") == "stopped" and (run / "model.safetensors").is_file()


def test_unhandled_error_exits_1_with_a_plain_message(corpus_dir, tmp_path) -> None:
    child = start_child("crash", tmp_path)
    _, stderr = child.communicate(timeout=WAIT_S)
    assert child.returncode == 1
    assert "rnnlab stopped on an unexpected error: ZeroDivisionError: division by zero" in stderr
    assert "Traceback" not in stderr
    log = tmp_path / "crash.log"
    assert f"The traceback is in {log}" in stderr.replace("\n", "")
    assert "ZeroDivisionError" in log.read_text() and "def broken" not in stderr
