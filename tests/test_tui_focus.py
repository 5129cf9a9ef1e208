"""Focus is visible on every tab stop of every screen: tabbing through each screen (and the
delete confirmation), the focused widget's cells differ clearly from the same cells with
focus elsewhere — a strong colour change over a full edge or a good part of a field, not
the faint tint Textual gives compact fields (colour 234 -> 235)."""

from __future__ import annotations

from rich.color import Color
from rich.style import Style
from textual.geometry import Region
from tui_helpers import run_app, tiny_run

STRONG = 80  # a colour change at least this far apart in RGB (0..441) is plain to see
SIZE = (80, 24)


def cells(app, region: Region) -> list[tuple[str, Style]]:
    """(character, style) of each cell of ``region`` as the screen draws it now."""
    out = []
    for y, strip in enumerate(app.screen._compositor.render_strips()):
        if region.y <= y < region.bottom:
            row = [(ch, seg.style or Style()) for seg in strip for ch in seg.text]
            out += row[region.x:region.right]
    return out


def distance(a: Color | None, b: Color | None) -> float:
    ta, tb = ((c.get_truecolor() if c is not None else (0, 0, 0)) for c in (a, b))
    return sum((x - y) ** 2 for x, y in zip(ta, tb)) ** 0.5


def strong_changes(focused: list[tuple[str, Style]], blurred: list[tuple[str, Style]]) -> int:
    """Cells whose background, or a visible character's colour, moved by STRONG or more, or whose
    character changed (a border drawn)."""
    count = 0
    for (c1, s1), (c2, s2) in zip(focused, blurred):
        fg = distance(s1.color, s2.color) if c1.strip() else 0.0
        if c1 != c2 or max(distance(s1.bgcolor, s2.bgcolor), fg) >= STRONG:
            count += 1
    return count


async def tab_stops(app, pilot) -> list[tuple[str, int, int]]:
    """Tab through the current screen; for each stop: (widget, strong changes, cells needed)."""
    app.screen.set_focus(None)
    out, seen = [], []
    for _ in range(60):
        await pilot.press("tab")
        await pilot.pause()
        widget = app.focused
        if widget is None or widget in seen:
            break
        seen.append(widget)
        region = widget.region
        focused = cells(app, region)
        app.screen.set_focus(None)
        await pilot.pause()
        blurred = cells(app, region)
        app.screen.set_focus(widget)
        await pilot.pause()
        # A full edge of a box, or half a one-line field (more than a cursor cell).
        needed = region.height if region.height > 1 else min(region.width // 2, 8)
        out.append((f"{type(widget).__name__}#{widget.id}", strong_changes(focused, blurred), needed))
    return out


def test_every_tab_stop_shows_focus(corpus_dir) -> None:
    tiny_run()

    async def body(app, pilot):
        stops = {}
        for key, mode in (("f1", "corpus"), ("f2", "train"), ("f3", "generate"), ("f4", "runs"), ("f5", "labs")):
            await pilot.press(key)
            await app.workers.wait_for_complete()
            await pilot.pause()
            stops[mode] = await tab_stops(app, pilot)
        await pilot.press("f4", "d")  # the delete confirmation's buttons
        await pilot.pause()
        stops["confirm"] = await tab_stops(app, pilot)
        return stops

    stops = run_app(body, size=SIZE)
    names = {mode: [name for name, _, _ in found] for mode, found in stops.items()}
    # Every screen was tabbed through: its fields, tables and text panes, and no bare containers.
    assert "Select#corpus-name" in names["corpus"] and "DataTable#corpus-top-tokens" in names["corpus"]
    assert "VerticalScroll#corpus-preview-box" in names["corpus"]
    assert len(names["train"]) > 25 and "Input#gen-prompt" in names["generate"]
    # Runs: the table, and the pane beside the plot (its samples history scrolls from the keyboard).
    assert names["runs"] == ["DataTable#runs-table", "VerticalScroll#runs-detail"]
    assert "DataTable#labs-coverage" in names["labs"]
    assert sorted(names["confirm"]) == ["Button#confirm-no", "Button#confirm-yes"]
    assert not any(name.startswith(("VerticalScroll#corpus-form", "FormScroll", "ConfigForm"))
                   for found in names.values() for name in found)
    faint = [(mode, name, changed, needed) for mode, found in stops.items()
             for name, changed, needed in found if changed < needed]
    assert faint == [], faint
