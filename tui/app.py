"""The playground app: wires the five screens together and holds the session.

Screens are Textual *modes* (each keeps its own state while you switch):
Corpus, Train, Generate, Runs and Labs, switched with F1–F5 (or 1–5 outside a text
field; see ``tui.screens.base``) and from the command palette. Cross-screen messages
(``tui.messages``) update the shared ``Session``. Quitting cancels running
workers first, so a training run stops at its next batch and is saved.

Left out: everything a screen does — see ``tui/screens/``.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from engine.errors import RnnlabError
from engine.runs import list_runs
from tui.messages import OpenRun, PipelineChanged, RunSaved
from tui.screens.base import SCREENS
from tui.screens.corpus import CorpusScreen
from tui.screens.generate import GenerateScreen
from tui.screens.labs import LabsScreen
from tui.screens.runs import RunsScreen
from tui.screens.train import TrainScreen
from tui.session import Session


class RnnlabApp(App[int]):
    """rnnlab: a terminal playground for D2L chapter 8."""

    TITLE = "rnnlab"
    CSS_PATH = "app.tcss"
    MODES = {"corpus": CorpusScreen, "train": TrainScreen, "generate": GenerateScreen, "runs": RunsScreen,
             "labs": LabsScreen}
    DEFAULT_MODE = "corpus"
    BINDINGS = [
        Binding("question_mark", "toggle_keys", "Keys"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.session = Session()

    def on_mount(self) -> None:
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
        self.session.set_run(message.path)
        self.session.runs_version += 1
        how = "stopped and saved" if message.stopped_early else "finished"
        self.notify(f"Run {message.path.name} {how}. F3 generates with it.", title="Training")

    def on_open_run(self, message: OpenRun) -> None:
        self.session.set_run(message.path)
        self.switch_mode("generate")

    async def action_quit(self) -> None:
        """Stop workers (training saves and ends at its next batch), then exit."""
        self.workers.cancel_all()
        self.exit(0)


def run_app() -> int:
    """Entry point for ``rnnlab`` with no arguments."""
    result = RnnlabApp().run()
    return int(result or 0)
