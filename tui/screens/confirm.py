"""Modals that ask: ``ConfirmScreen`` (yes/no: ``y`` confirms, ``n`` or ``escape`` cancels) and
``ChoiceScreen`` (one key per answer, ``escape`` cancels with None)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    """Ask a question; dismiss with True (yes) or False (no)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(self.question, id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                yield Button("Yes (y)", variant="error", id="confirm-yes")
                yield Button("No (n)", variant="primary", id="confirm-no")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ChoiceScreen(ModalScreen[str | None]):
    """Ask a question with several answers, each a key and a button; dismiss with the answer's value
    (``escape``: None, nothing chosen)."""

    BINDINGS = [Binding("escape", "choose('')", "Cancel")]
    DEFAULT_CSS = """
    ChoiceScreen { align: center middle; }
    ChoiceScreen #confirm-box { width: 76; max-width: 100%; }
    ChoiceScreen #confirm-buttons Button { margin-left: 1; min-width: 8; }
    """

    def __init__(self, question: str, choices: list[tuple[str, str, str]]) -> None:
        """``choices``: (key, label, value) per answer, e.g. ("s", "Stop it (saved)", "stop")."""
        super().__init__()
        self.question, self.choices = question, choices
        for key, label, value in choices:
            self._bindings.bind(key, f"choose('{value}')", label)

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(self.question, id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                for key, label, value in self.choices:
                    yield Button(f"{label} ({key})", id=f"choice-{value}")
                yield Button("Cancel (esc)", variant="primary", id="choice-")

    def on_mount(self) -> None:
        self.query_one("#choice-", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_choose((event.button.id or "choice-").removeprefix("choice-"))

    def action_choose(self, value: str) -> None:
        self.dismiss(value or None)
