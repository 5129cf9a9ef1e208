"""The app as a process: SIGHUP / SIGTERM stop a run with a checkpoint and exit 129 / 143;
an unhandled error exits 1 with a plain message, never 0 and never a traceback."""

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


@pytest.mark.parametrize("sig, status", [(signal.SIGHUP, 129), (signal.SIGTERM, 143)])
def test_signal_stops_training_with_a_checkpoint(corpus_dir, tmp_path, sig, status) -> None:
    child = start_child("train", tmp_path)
    run = wait_for_metrics(tmp_path, child)
    child.send_signal(sig)
    _, stderr = child.communicate(timeout=WAIT_S)
    assert child.returncode == status, stderr
    state = json.loads((run / "checkpoint.json").read_text())
    assert state["status"] == "stopped" and 1 <= state["epoch"] < 10_000
    assert (run / "model.safetensors").is_file()


def test_a_hangup_ends_the_process_even_when_the_shutdown_hangs(corpus_dir, tmp_path) -> None:
    """After an SSH drop Textual's shutdown can block for ever on its dead output; the run is saved
    by then, and the watchdog ends the process with the hangup's status."""
    child = start_child("hang", tmp_path)
    run = wait_for_metrics(tmp_path, child)
    child.send_signal(signal.SIGHUP)
    try:
        child.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise AssertionError("the app never exited after SIGHUP") from None
    assert child.returncode == 129
    state = json.loads((run / "checkpoint.json").read_text())
    assert state["status"] == "stopped" and (run / "model.safetensors").is_file()


def test_unhandled_error_exits_1_with_a_plain_message(corpus_dir, tmp_path) -> None:
    child = start_child("crash", tmp_path)
    _, stderr = child.communicate(timeout=WAIT_S)
    assert child.returncode == 1
    assert "rnnlab stopped on an unexpected error: ZeroDivisionError: division by zero" in stderr
    assert "Traceback" not in stderr
    log = tmp_path / "crash.log"
    assert f"The traceback is in {log}" in stderr.replace("\n", "")
    assert "ZeroDivisionError" in log.read_text() and "def broken" not in stderr
