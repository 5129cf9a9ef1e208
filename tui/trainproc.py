"""Training as a process of its own: the playground starts ``rnnlab train --resume RUN`` and watches the folder.

The Train screen makes the run folder itself (``engine.runs.create_run``: config and the fitted
tokenizer, checked first) and then ``launch`` starts the same command a user would type, on that
folder, in a new session: closing the terminal or quitting the playground does not stop it, and
the training shares nothing with the UI's process (no GIL, no event loop). Its output goes to
``<runs>/.logs/<run>.log`` — a file outside the run folder, so the reason a run failed before
training (and was cleaned away) can still be read.

``Child.stop()`` sends SIGINT, the same stop as Ctrl-C: the trainer saves the weights reached and
ends at its next step. ``stop_live(live)`` does the same for a run some other process trains on
this machine (found through ``engine.live``). Left out: stopping a run trained on another machine
(stop it there).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.errors import RunError
from engine.live import Live, host_name

LOGS_DIR = ".logs"
TAIL_LINES = 3  # lines of the log a failure message quotes


@dataclass
class Child:
    """A training process this playground started, and where its output goes."""

    proc: subprocess.Popen
    run_path: Path
    log_path: Path

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """Ctrl-C's stop: save and end at the next step (a second one aborts at once)."""
        if self.running():
            self.proc.send_signal(signal.SIGINT)

    def failure(self) -> str | None:
        """Why the process ended without a final event (the last lines of its output); None while it
        runs or after an exit training makes (0, or a stop: 129/130/143). The caller asks only when no
        ``Finished`` was logged: a divergence (status 1) is told by its events."""
        code = self.proc.poll()
        if code is None or code in (0, 129, 130, 143):
            return None
        return tail(self.log_path) or f"the training process ended with status {code} and no output ({self.log_path})"


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` non-blank lines of a log, without a progress bar's carriage returns."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    rows = [r.rsplit("\r", 1)[-1].strip() for r in text.splitlines()]
    return "\n".join([r for r in rows if r][-lines:])


def launch(run_path: Path, *, epochs: int | None = None) -> Child:
    """Start ``rnnlab train --resume RUN_PATH`` (with ``--epochs`` when given) in a session of its own."""
    run_path = Path(run_path).resolve()
    logs = run_path.parent / LOGS_DIR
    log_path = logs / f"{run_path.name}.log"
    cmd = [sys.executable, "-m", "tui.cli", "train", "--resume", str(run_path)]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    try:
        logs.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                    env={**os.environ, "COLUMNS": "120"}, close_fds=True)
    except OSError as exc:
        raise RunError(f"could not start training ({exc.strerror or exc}) for {run_path.name}; check that "
                       f"{logs} is writable") from None
    return Child(proc, run_path, log_path)


def stop_live(live: Live) -> bool:
    """Send Ctrl-C's stop to the process training a run on this machine; False when it is elsewhere or gone."""
    if not live.alive or live.host != host_name():
        return False
    try:
        os.kill(live.pid, signal.SIGINT)
    except OSError:
        return False
    return True
