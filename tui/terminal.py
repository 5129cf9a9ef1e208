"""What rnnlab does when its terminal goes away (SIGHUP: the window or the SSH
connection closed), for the CLI and the playground alike.

Writing to a hung-up terminal fails (EIO). A failed print must not interrupt
saving a run, and Textual's output thread dies on the first failed write, after
which its queue (30 writes) fills and the app's shutdown waits on it for ever.
So the terminal's output descriptors are pointed at /dev/null first, and the
playground also gets a watchdog that ends the process once no thread is writing
a run (``WRITERS``: the training run and its checkpoint), should the shutdown
hang anyway.

Left out: reattaching to a new terminal (a run is saved, resume it).
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable

EXIT_GRACE_S = 5.0  # time the app gets to shut down by itself once its workers are done


class Writers:
    """How many threads are writing a run right now (``with WRITERS:`` around the work). Read from
    any thread: unlike Textual's worker states it does not wait on the event loop, which a dead
    terminal can block."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def __enter__(self) -> Writers:
        with self._lock:
            self._count += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._count -= 1

    @property
    def active(self) -> bool:
        with self._lock:
            return self._count > 0


WRITERS = Writers()  # the playground's training workers


def drop_terminal() -> None:
    """Point stdout and stderr, when they are a terminal (a character device), at /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            try:
                if stat.S_ISCHR(os.fstat(fd).st_mode):
                    os.dup2(devnull, fd)
            except OSError:
                continue
    finally:
        os.close(devnull)


def exit_when_done(busy: Callable[[], bool], status: int, grace_s: float = EXIT_GRACE_S) -> threading.Thread:
    """A daemon thread that waits while ``busy()`` (a run still saving), then ``grace_s`` more, then
    ends the process with ``status``, whatever the rest of it is waiting on. A process that exits
    normally meanwhile takes the thread with it."""

    def watch() -> None:
        while busy():
            time.sleep(0.1)
        time.sleep(grace_s)
        os._exit(status)

    thread = threading.Thread(target=watch, name="rnnlab-exit-watchdog", daemon=True)
    thread.start()
    return thread
