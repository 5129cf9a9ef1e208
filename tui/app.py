"""The playground app: wires the six screens together and holds the session.

Screens are Textual *modes* (each keeps its own state while you switch):
Corpus, Train, Generate, Runs, Labs and Exercises, switched with F1–F6 (or 1–6 outside a text
field; see ``tui.screens.base``) and from the command palette. Cross-screen messages
(``tui.messages``) update the shared ``Session``. Quitting cancels running
workers first, so a training run stops at its next batch and is saved; SIGHUP (the
terminal closed) and SIGTERM do the same and exit with 129 / 143, as a shell reports
a process those signals ended. An unhandled error never exits 0: the app ends with
one plain paragraph naming the error and a file holding its traceback, and status 1.

Left out: everything a screen does — see ``tui/screens/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import traceback
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from engine import paths
from engine.errors import RnnlabError
from engine.runs import list_runs
from tui.messages import OpenRun, PipelineChanged, RunOffered, RunSaved
from tui.screens.base import SCREENS
from tui.screens.corpus import CorpusScreen
from tui.screens.exercises import ExercisesScreen
from tui.screens.generate import GenerateScreen
from tui.screens.labs import LabsScreen
from tui.screens.runs import RunsScreen
from tui.screens.train import TrainScreen
from tui.session import Session
from tui.terminal import WRITERS, drop_terminal, exit_when_done

# Signals that end the app like ctrl+q, and the exit status for each (128 + the signal's number).
EXIT_SIGNALS = {signal.SIGHUP: 129, signal.SIGTERM: 143}
CRASH_LOG = "crash.log"  # under engine.paths.home(): the traceback of the last unhandled error


class RnnlabApp(App[int]):
    """rnnlab: a terminal playground for D2L chapter 8."""

    TITLE = "rnnlab"
    CSS_PATH = "app.tcss"
    MODES = {"corpus": CorpusScreen, "train": TrainScreen, "generate": GenerateScreen, "runs": RunsScreen,
             "labs": LabsScreen, "exercises": ExercisesScreen}
    DEFAULT_MODE = "corpus"
    BINDINGS = [
        Binding("question_mark", "toggle_keys", "Keys"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.session = Session()
        self._errors: list[BaseException] = []  # unhandled errors, the first one the cause of the end

    def on_mount(self) -> None:
        # Textual leaves SIGHUP and SIGTERM at their defaults, which kill the process at once:
        # a run being trained would keep no checkpoint. Not on Windows, nor off the main thread.
        loop = asyncio.get_running_loop()
        for sig, status in EXIT_SIGNALS.items():
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.stop_and_exit, status)
        # Generate starts with the newest saved run that has weights, if any.
        try:
            latest = next((r for r in list_runs() if r.epochs_done > 0 and r.status != "corrupt"), None)
        except (RnnlabError, OSError):
            latest = None
        if latest is not None:
            self.session.set_run(Path(latest.path))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Hide the key of the screen you are on: the footer has little room at 80 columns.
        if action == "switch_mode" and parameters and parameters[0] == self.current_mode:
            return False
        return True

    async def action_switch_mode(self, mode: str) -> None:
        await super().action_switch_mode(mode)
        self.refresh_bindings()

    def action_toggle_keys(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for mode, title, help_ in SCREENS:
            yield SystemCommand(f"{title} screen", help_, partial(self.switch_mode, mode))
        for binding in screen.BINDINGS:
            if isinstance(binding, Binding) and binding.description:
                yield SystemCommand(binding.description, f"{binding.key} on the {screen.sub_title} screen",
                                    partial(screen.run_action, binding.action))

    # -- cross-screen messages ---------------------------------------------------
    def on_pipeline_changed(self, message: PipelineChanged) -> None:
        self.session.set_pipeline(message.pipeline, message.choice)

    def on_run_saved(self, message: RunSaved) -> None:
        how = "stopped and saved" if message.stopped_early else "finished"
        if self.session.run_finished(message.path):
            self.notify(f"Run {message.path.name} {how}. F3 generates with it.", title="Training")
        elif self.session.offered_run is not None:
            # Generate keeps the model the user picked; its banner and ctrl+o offer this one.
            self.notify(f"Run {message.path.name} {how}. Generate still uses {self.session.run_path.name}: "
                        "ctrl+o there switches.", title="Training")
            self.screen.post_message(RunOffered(message.path))

    def on_open_run(self, message: OpenRun) -> None:
        self.session.set_run(message.path)
        self.switch_mode("generate")

    def on_unmount(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in EXIT_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)

    async def action_quit(self) -> None:
        self.stop_and_exit(0)

    def stop_and_exit(self, status: int) -> None:
        """Stop workers (training saves and ends at its next batch), then exit with ``status``.

        The process ends once the workers' threads are done, so the checkpoint is written. After a
        hangup the terminal is gone: output goes to /dev/null, and a watchdog ends the process once no
        run is being written should Textual's shutdown hang on its dead output (``tui.terminal``)."""
        if status == EXIT_SIGNALS[signal.SIGHUP]:
            drop_terminal()
            exit_when_done(lambda: WRITERS.active, status)
        self.workers.cancel_all()
        self.exit(return_code=status)

    # -- unhandled errors ---------------------------------------------------------
    def _handle_exception(self, error: Exception) -> None:
        # Textual's hook for an error no handler caught: it sets return code 1 and ends the app.
        self._errors.append(error)
        super()._handle_exception(error)

    def _fatal_error(self) -> None:
        # Instead of Textual's traceback with locals: what happened, where the details are. Errors
        # while the app closes (widgets already gone) follow the first; the log keeps them all.
        detail = "\n".join("".join(traceback.format_exception(e)) for e in self._errors)
        where = paths.home() / CRASH_LOG
        try:
            where.parent.mkdir(parents=True, exist_ok=True)
            where.write_text(detail, encoding="utf-8")
            saved = f"The traceback is in {where}; please include it when reporting the problem."
        except OSError as exc:
            saved = f"Its traceback could not be saved to {where} ({exc.strerror or exc}):\n{detail}"
        if len(self._errors) == 1:
            error = self._errors[0]
            self.bell()
            self.panic(Text(f"rnnlab stopped on an unexpected error: {type(error).__name__}: {error}\n{saved}"))


def exit_status(app: App[Any]) -> int:
    """The process status for an app that has ended: its exit code, 1 after an unhandled error."""
    return app.return_code if app.return_code is not None else 0


def run_app(**run_options: Any) -> int:
    """Entry point for ``rnnlab`` with no arguments (``run_options`` go to ``App.run``, e.g.
    ``headless=True`` in tests). Returns the process's exit status."""
    app = RnnlabApp()
    app.run(**run_options)
    return exit_status(app)
