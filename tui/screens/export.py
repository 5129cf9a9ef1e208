"""The export modal of the Runs screen: which folder a run's (or an overlay's) curves go to.

It names the files (``curves.csv`` and the plot's SVG, ``engine.export.export_paths``) and offers
the default folder — the run's own, or the runs folder for an overlay — in a field the user may
change; ``enter`` writes there (a folder that does not exist yet is made), ``escape`` cancels.
Left out: writing (the Runs screen does, so that its errors show as its notifications).
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class ExportScreen(ModalScreen[Path | None]):
    """Ask where to export; dismiss with the folder (None: cancelled)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, what: str, names: list[str], folder: Path) -> None:
        super().__init__()
        self.what, self.names, self.folder = what, names, folder

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box"):
            yield Static(f"Export {self.what}: {' and '.join(self.names)}, into the folder", id="export-question")
            yield Input(str(self.folder), id="export-folder")
            yield Static("enter writes the files · esc cancels", id="export-hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if not value:
            self.notify("Type a folder to export into, or press esc to cancel.", severity="warning")
            return
        self.dismiss(Path(value).expanduser())

    def action_cancel(self) -> None:
        self.dismiss(None)
