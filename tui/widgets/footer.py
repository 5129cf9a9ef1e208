"""The footer of every screen, with ``?`` (all keys) and quit always in view.

Textual's Footer lists the focused widget's keys, then the screen's, then the
app's, and cuts off what does not fit: at 80 columns the app's ``? Keys`` and
``^q Quit`` were the first to go on Generate and Runs. Here they sit in a group
docked at the right edge, with Textual's command-palette key, so the screen's
keys are cut before them. While a text field has focus ``?`` types a ``?``
(Textual then hides its key), so the group shows ``esc Leave field`` instead,
the way back to ``?``. Left out: choosing which of the screen's keys to drop
(``?`` lists them all).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import HorizontalGroup
from textual.widgets import Footer

PINNED = ("leave_field", "toggle_keys", "quit")  # actions whose keys never leave the footer


class KeysFooter(Footer):
    """A compact Footer whose ``?`` and quit keys stay at the right edge."""

    DEFAULT_CSS = """
    KeysFooter > #pinned-keys { dock: right; width: auto; height: 1; border-left: vkey $foreground 20%; }
    KeysFooter > #pinned-keys > FooterKey.-command-palette { dock: none; }
    """

    def __init__(self) -> None:
        super().__init__(compact=True)

    def compose(self) -> ComposeResult:
        keys = list(super().compose())
        pinned = sorted((k for k in keys if getattr(k, "action", None) in PINNED),  # FooterKeys
                        key=lambda k: PINNED.index(k.action))
        pinned += [k for k in keys if k.has_class("-command-palette")]
        yield from (k for k in keys if k not in pinned)
        if pinned:
            with HorizontalGroup(id="pinned-keys"):
                yield from pinned
