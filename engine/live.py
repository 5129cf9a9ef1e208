"""Whether a run is being trained right now, by whom, and one trainer per run folder.

The process that trains a run holds a ``Lease`` on its folder for as long as it trains:

* an exclusive ``fcntl.flock`` on ``train.lock`` — a second trainer (another ``rnnlab train
  --resume``, a second TUI) is refused with ``RunBusy``, naming the process that holds it.
  The operating system drops the lock when the process ends, however it ends (SIGKILL too);
* ``live.json``: its process id, host, start time, command line and a heartbeat, rewritten every
  ``HEARTBEAT_S`` seconds by a daemon thread; removed when training ends normally.

Readers never take the lock (a reader holding it for an instant could make a starting
trainer fail). ``read_live(path)`` reads ``live.json`` and decides:

* no file: nobody trains the run (or it ended cleanly);
* the file's host is this machine: alive while its process exists and the heartbeat is younger
  than ``STALE_S`` (a reused pid has no fresh heartbeat);
* another host (a shared folder): alive while the heartbeat is younger than ``STALE_S``, read
  against this machine's clock — clocks more than that apart make a live run look interrupted.

A run whose ``live.json`` is there but not alive was interrupted: its process was killed or its
machine went down before it could write its final status. ``progress_tail`` reads the last
Progress records of ``metrics.jsonl`` from its end, so a running run's epoch costs one small read
however long the log. Left out: locking on file systems where ``flock`` is not shared between
machines (some NFS set-ups): there ``live.json``'s heartbeat is what tells a second trainer apart,
and ``Lease`` checks it too.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import RunError

LIVE_FILE = "live.json"
LOCK_FILE = "train.lock"
HEARTBEAT_S = 2.0  # seconds between heartbeats
STALE_S = 30.0  # a heartbeat older than this means the trainer is gone
TAIL_BYTES = 65536  # how much of metrics.jsonl's end progress_tail reads


class RunBusy(RunError):
    """Another process is training this run."""


@dataclass(frozen=True)
class Live:
    """What ``live.json`` says about the process training a run, and whether it still does."""

    pid: int
    host: str
    started: float  # time.time() when training began
    heartbeat: float  # time.time() of the last heartbeat
    argv: list[str]
    alive: bool
    device: str = ""  # where it trains ("cpu", "cuda:0"), once the trainer has resolved "auto"; "" before

    def describe(self) -> str:
        """``process 1234 on gpu-7, started 2026-12-01 10:03:11, last heard 3 s ago``."""
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return (f"process {self.pid} on {self.host}, started {started}, last heard "
                f"{max(0.0, time.time() - self.heartbeat):.0f} s ago")


def host_name() -> str:
    """This machine's name, as live.json records it."""
    return socket.gethostname()


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    except OSError:
        return False
    return True


def read_live(folder: Path | str) -> Live | None:
    """``live.json`` of the run, judged alive or not; None when there is none (or it is unreadable)."""
    path = Path(folder) / LIVE_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        pid, host = int(doc["pid"]), str(doc["host"])
        started, beat = float(doc["started"]), float(doc["heartbeat"])
        argv = [str(a) for a in doc.get("argv", [])]
        device = str(doc.get("device", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    fresh = time.time() - beat < STALE_S
    alive = fresh and (_pid_exists(pid) if host == host_name() else True)
    return Live(pid, host, started, beat, argv, alive, device)


class Lease:
    """Held by the one process training a run: the lock, ``live.json`` and its heartbeat.

    ``Lease(path).acquire()`` raises ``RunBusy`` when another process trains the run; ``release()``
    stops the heartbeat, removes ``live.json`` and drops the lock. Also a context manager.
    """

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._doc: dict[str, Any] = {}

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        busy = read_live(self.folder)
        if busy is not None and busy.alive and busy.pid != os.getpid():
            raise RunBusy(self._busy_message(busy))
        try:
            fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunError(f"cannot open {self.folder / LOCK_FILE} ({exc.strerror or exc}); check the run folder's "
                           "permissions") from None
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - Windows: live.json's heartbeat alone
            pass
        except OSError:
            os.close(fd)
            holder = read_live(self.folder)
            raise RunBusy(self._busy_message(holder)) from None
        self._fd = fd
        now = time.time()
        self._doc = {"pid": os.getpid(), "host": host_name(), "started": now, "heartbeat": now, "argv": sys.argv}
        self._write()
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {self.folder.name}", daemon=True)
        self._thread.start()

    def note(self, **fields: Any) -> None:
        """Add ``fields`` to live.json (the trainer's resolved device), written at once. A new dict, so the
        heartbeat thread never dumps one that grows under it."""
        self._doc = {**self._doc, **fields}
        self._write()

    def _busy_message(self, holder: Live | None) -> str:
        who = holder.describe() if holder is not None else "another process"
        return (f"run {self.folder.name} is being trained by {who}; two trainers cannot share a run folder. "
                f"Follow it with `rnnlab watch {self.folder.name}`, or stop it first (Ctrl-C where it runs)")

    def _write(self) -> None:
        """live.json through a temp file and a rename: a reader sees the old or the new heartbeat, never half."""
        tmp = self.folder / f".{LIVE_FILE}.{os.getpid()}.tmp"
        try:
            tmp.write_text(json.dumps(self._doc) + "\n", encoding="utf-8")
            os.replace(tmp, self.folder / LIVE_FILE)
        except OSError:  # a full disk must not stop training: the heartbeat just goes stale
            try:
                tmp.unlink()
            except OSError:
                pass

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self._doc["heartbeat"] = time.time()
            self._write()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._fd is None:
            return
        try:
            (self.folder / LIVE_FILE).unlink()
        except OSError:
            pass
        os.close(self._fd)  # drops the flock
        self._fd = None


def progress_tail(folder: Path | str, metrics_file: str = "metrics.jsonl") -> tuple[dict[str, Any] | None,
                                                                                  dict[str, Any] | None]:
    """(last Progress record, last epoch-end Progress record) of the run's log, read from its last
    ``TAIL_BYTES``; (None, None) when there are none there. Damaged lines are skipped."""
    path = Path(folder) / metrics_file
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read()
    except OSError:
        return None, None
    last = last_end = None
    for raw in reversed(data.split(b"\n")):
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue  # a damaged, partial or cut-off first line
        if not isinstance(rec, dict) or rec.get("type") != "Progress":
            continue
        last = last or rec
        if rec.get("epoch_end"):
            last_end = rec
            break
    return last, last_end
