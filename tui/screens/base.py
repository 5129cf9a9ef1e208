"""The base of every playground screen: the keys that switch screens.

They are declared here rather than on the app so that the footer lists them
first (it lists the focused widget's, then the screen's, then the app's
bindings). F1–F6 work everywhere, even while typing in a field; 1–6 do the
same outside text fields. The app hides the key of the screen you are on.
``escape`` leaves a text field, so that ``?``, 1–5 and the screen's letter
keys act instead of typing.
Below 100 columns the footer drops its "^p palette" key (ctrl+p still opens
the palette; `?` lists every key) so that it does not cover the screen's own
keys. Below ``MIN_SIZE`` the layout breaks (form fields lose their inputs,
plots their axes), so a screen shows only a centred note saying how large the
terminal must be; ctrl+q still quits.
"""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from engine.errors import RnnlabError

NARROW = 100  # columns below which the footer leaves out the command palette key
MIN_SIZE = (80, 24)  # columns, rows: the smallest terminal every screen is laid out for

SCREENS = (
    ("corpus", "Corpus", "Pick a corpus and tokenizer; see counts, Zipf plot, tokens"),
    ("train", "Train", "Configure and train an RNN with live perplexity"),
    ("generate", "Generate", "Generate text; watch the next-token distribution under α"),
    ("runs", "Runs", "Saved runs: compare curves, open or delete"),
    ("labs", "Labs", "Exercises: sampler coverage (8.3.5), n-gram table (8.3.1, 8.3.3)"),
    ("exercises", "Exercises", "The chapter's 27 exercises, each answered by running an experiment"),
)


def error_text(error: BaseException | None) -> str:
    """A failed worker's error for a notification: rnnlab's own errors say what to do as they
    are; anything else is named by its type."""
    return str(error) if isinstance(error, RnnlabError) else f"{type(error).__name__}: {error}"


class PlaygroundScreen(Screen):
    """A screen with the screen-switching keys in its footer."""

    BINDINGS = [
        *(Binding(f"f{i}", f"app.switch_mode('{mode}')", title, tooltip=help_, priority=True)
          for i, (mode, title, help_) in enumerate(SCREENS, 1)),
        *(Binding(str(i), f"app.switch_mode('{mode}')", title, show=False)
          for i, (mode, title, _) in enumerate(SCREENS, 1)),
        Binding("escape", "leave_field", "Leave field"),
    ]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "leave_field":  # shown, and live, only while a text field has focus
            return isinstance(self.focused, Input)
        return True

    def action_leave_field(self) -> None:
        self.set_focus(None)

    def on_mount(self) -> None:
        self.mount(Static("", id="too-small"))
        self._fit(self.app.size.width, self.app.size.height)

    def on_resize(self, event: events.Resize) -> None:
        for footer in self.query(Footer):
            footer.show_command_palette = event.size.width >= NARROW
        self._fit(event.size.width, event.size.height)

    def _fit(self, width: int, height: int) -> None:
        """Hide the screen behind a note when the terminal is smaller than MIN_SIZE."""
        small = width < MIN_SIZE[0] or height < MIN_SIZE[1]
        if small:
            self.query_one("#too-small", Static).update(
                f"rnnlab needs a terminal of at least {MIN_SIZE[0]}×{MIN_SIZE[1]}; this one is {width}×{height}.\n"
                "Enlarge the window (or use a smaller font). ctrl+q quits.")
        self.set_class(small, "-too-small")
