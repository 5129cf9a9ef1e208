"""Signals for the headless commands that train: the first Ctrl-C / hangup / SIGTERM asks for a clean stop.

``StopOnSignal`` is shared by ``rnnlab train``, ``rnnlab exercise`` and ``rnnlab sweep``: each hands its
``stop`` event to the engine, which saves what it reached and ends at the next step.
Left out: Windows' console events beyond Ctrl-C (it has no SIGHUP).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from tui.terminal import drop_terminal


class StopOnSignal:
    """Ctrl-C (SIGINT), a closed terminal or SSH connection (SIGHUP), ``kill`` or a cluster's job limit
    (SIGTERM) while a headless command trains (``rnnlab train``, ``exercise``, ``sweep``). Before training
    starts a signal aborts (KeyboardInterrupt); during training the first sets ``stop`` — the trainer saves the weights reached and ends at the next
    step — and a second aborts at once. The exit status is 128 + the first signal's number, as a shell
    reports it: 130, 129, 143. The engine itself never touches signals."""

    NAMES = ("SIGINT", "SIGHUP", "SIGTERM")

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.training = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for name in self.NAMES:
                sig = getattr(signal, name, None)  # Windows has no SIGHUP
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
        if signum == getattr(signal, "SIGHUP", None):
            drop_terminal()
        if not self.training or self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)
