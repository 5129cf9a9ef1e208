"""Horizontal probability bars for the next-token distribution.

Drawn as Rich text rather than a plotext bar chart: eighth-block characters
give a bar resolution of 1/8 cell. Labels arrive already displayed (the
caller passes tokens through ``Tokenizer.display_token``: ``␣`` for a space,
``↵`` for a newline). ``bars`` holds exactly what is shown, so tests can check
the probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

_EIGHTHS = " ▏▎▍▌▋▊▉█"


def bar(fraction: float, width: int) -> str:
    """A bar ``fraction`` of ``width`` cells long, in eighths of a cell."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


class ProbBars(Widget):
    """Top-N (token, probability) pairs as labelled bars, most likely first."""

    DEFAULT_CSS = "ProbBars { height: 1fr; min-height: 3; }"

    bars: reactive[tuple[tuple[str, float], ...]] = reactive(())
    note: reactive[str] = reactive("")

    def set_bars(self, bars: Sequence[tuple[str, float]], note: str = "") -> None:
        self.bars = tuple((str(t), float(p)) for t, p in bars)
        self.note = note

    def render(self) -> Text:
        text = Text()
        if not self.bars:
            text.append(self.note or "no distribution yet", style="dim")
            return text
        label_w = min(10, max(len(t) for t, _ in self.bars))
        bar_w = max(4, self.size.width - label_w - 8)
        colors = self.app.theme_variables
        first, rest = colors.get("accent", "yellow"), colors.get("primary", "blue")
        for i, (token, p) in enumerate(self.bars):
            if i:
                text.append("\n")
            text.append(f"{(token or '∅')[:label_w]:>{label_w}} ", style="bold")
            text.append(f"{bar(p, bar_w):<{bar_w}}", style=first if i == 0 else rest)
            text.append(f" {p:5.1%}"[:7])
        if self.note:
            text.append("\n" + self.note, style="dim")
        return text
