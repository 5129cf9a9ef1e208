"""The playground app: wires the six screens together and holds the session.

Screens are Textual *modes* (each keeps its own state while you switch):
Corpus, Train, Generate, Runs, Labs and Exercises, switched with F1–F6 (or 1–6 outside a text
field; see ``tui.screens.base``) and from the command palette. Cross-screen messages
(``tui.messages``) update the shared ``Session``. Training runs in a process of its
own (``tui.trainproc``): quitting while it trains asks whether to stop it (saved) or
leave it running in the background, where any later ``rnnlab`` or ``rnnlab watch``
picks it up. SIGTERM stops it (saved) and exits 143; SIGHUP (the terminal closed)
leaves it running and exits 129, as a shell reports a process those signals ended.
Other workers (labs, exercises) are cancelled first. An unhandled error never exits 0: the app ends with
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
from tui.messages import FollowRun, OpenRun, PipelineChanged, RunOffered, RunSaved
from tui.screens.base import SCREENS
from tui.screens.confirm import ChoiceScreen
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
        self.left_running: list[Any] = []  # training processes left running at the end (tui.trainproc.Child)

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

    async def on_follow_run(self, message: FollowRun) -> None:
        """Runs asked to watch a run live, or to resume it: the Train screen does both."""
        await self.switch_mode("train")
        screen = self.screen
        if not isinstance(screen, TrainScreen):
            return
        if screen.training:
            self.notify(f"Train is showing run {screen.run_path.name} while it trains: stop it (ctrl+g there) "
                        "before opening another.", title="Train is busy", severity="warning")
            return
        try:
            if message.resume:
                screen.resume(Path(message.path))
            else:
                screen.follow(Path(message.path))
        except RnnlabError as exc:
            self.notify(str(exc), title="Cannot open the run", severity="error", timeout=10)

    def on_open_run(self, message: OpenRun) -> None:
        self.session.set_run(message.path)
        self.switch_mode("generate")

    def on_unmount(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in EXIT_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)

    async def action_quit(self) -> None:
        child = self.session.child
        if child is not None and child.running():
            question = (f"Run {child.run_path.name} is training. Stop it (its weights are saved) or leave it "
                        "running in the background (rnnlab watch, or Runs in a later rnnlab, follows it)?")
            self.push_screen(ChoiceScreen(question, [("s", "Stop", "stop"), ("l", "Leave running", "leave")]),
                             self._quit_answer)
            return
        self.stop_and_exit(0)

    def _quit_answer(self, answer: str | None) -> None:
        if answer is not None:
            self.stop_and_exit(0, stop_training=answer == "stop")

    def stop_and_exit(self, status: int, *, stop_training: bool | None = None) -> None:
        """Stop workers and, unless ``stop_training`` is False, the training process this app started
        (it saves and ends on its own); then exit with ``status``. A hangup leaves training running.

        The process ends once the workers' threads are done. After a hangup the terminal is gone:
        output goes to /dev/null, and a watchdog ends the process once no thread writes a run should
        Textual's shutdown hang on its dead output (``tui.terminal``)."""
        hangup = status == EXIT_SIGNALS[signal.SIGHUP]
        if stop_training is None:
            stop_training = not hangup
        child = self.session.child
        if child is not None and child.running():
            if stop_training:
                child.stop()
            else:
                self.left_running.append(child)
        if hangup:
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
    for child in app.left_running:
        print(f"run {child.run_path.name} goes on training in the background (process {child.proc.pid}); "
              f"`rnnlab watch {child.run_path.name}` follows it, Runs in rnnlab shows it live")
    return exit_status(app)
