"""Small terminals and no colour: the footer keeps ? and quit at 80 columns on every screen,
escape leaves a text field so that ? works, below 80×24 a note says how large the terminal
must be, and with NO_COLOR overlaid series differ by marker."""

from __future__ import annotations

from textual.widgets import Input
from tui.widgets.plot import CachedPlot, Legend, SeriesPlot
from tui_helpers import run_app, tiny_run

SCREENS = ("f1", "f2", "f3", "f4", "f5")


def lines(app) -> list[str]:
    return ["".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()]


def test_footer_keeps_keys_and_quit_at_80_columns(corpus_dir) -> None:
    tiny_run()

    async def body(app, pilot):
        footers = {}
        for key in SCREENS:
            await pilot.press(key)
            await app.workers.wait_for_complete()
            await pilot.pause()
            typing = isinstance(app.focused, Input)
            footers[(app.current_mode, typing)] = lines(app)[-1]
            if typing:  # esc leaves the field: ? now opens the keys panel, so its key is back
                await pilot.press("escape")
                await pilot.pause()
                footers[(app.current_mode, False)] = lines(app)[-1]
        return footers

    footers = run_app(body, size=(80, 24))
    assert {mode for mode, _ in footers} == {"corpus", "train", "generate", "runs", "labs"}
    assert ("generate", True) in footers  # the prompt takes focus there
    for (mode, typing), footer in footers.items():
        assert len(footer) == 80 and footer.rstrip().endswith("^q Quit"), (mode, footer)
        assert ("esc Leave field" if typing else "? Keys") in footer, (mode, footer)


def test_escape_leaves_the_prompt_so_keys_work(corpus_dir) -> None:
    async def body(app, pilot):
        await pilot.press("f3")
        await pilot.pause()
        prompt = app.screen.query_one("#gen-prompt", Input)
        await pilot.press(*"hi", "escape", "question_mark")
        await pilot.pause()
        panel = bool(app.screen.query("HelpPanel"))
        await pilot.press("question_mark", "1")
        await pilot.pause()
        return prompt.value, panel, app.current_mode

    assert run_app(body) == ("hi", True, "corpus")


def test_too_small_terminal_says_how_large_it_must_be(corpus_dir) -> None:
    async def body(app, pilot):
        seen = []
        for size in ((79, 24), (80, 23), (80, 24)):
            await pilot.resize_terminal(*size)
            await pilot.pause()
            note = app.screen.query_one("#too-small")
            shown = [w for w in app.screen.children if w.display]
            seen.append((note.display, [w.id for w in shown], "\n".join(lines(app))))
        await pilot.press("f2")  # another screen, first shown at a good size
        await pilot.resize_terminal(60, 20)
        await pilot.pause()
        return seen, app.screen.query_one("#too-small").display

    (narrow, short, ok), other = run_app(body, size=(79, 24))
    assert narrow[:2] == (True, ["too-small"]) and short[:2] == (True, ["too-small"])
    assert "at least 80×24; this one is 79×24" in narrow[2] and "this one is 80×23" in short[2]
    assert ok[0] is False and "too-small" not in ok[1] and "Corpus" in ok[2]
    assert other is True


def test_no_color_series_differ_by_marker(corpus_dir, monkeypatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    tiny_run(clip="norm")
    tiny_run(clip="off")

    async def body(app, pilot):
        plots = {"corpus": app.screen.query_one("#corpus-zipf", SeriesPlot)}
        await pilot.press("f4", "space", "down", "space")
        await pilot.pause()
        plots["runs"] = app.screen.query_one("#runs-plot", SeriesPlot)
        out = {}
        for name, plot in plots.items():
            figure = plot.query_one(CachedPlot)
            drawn = "\n".join(figure.render_line(y).text for y in range(figure.size.height))
            out[name] = ([glyph for _, _, glyph in plot.query_one(Legend).entries], drawn)
        return app.no_color, out

    no_color, plots = run_app(body)
    assert no_color
    for name, (glyphs, drawn) in plots.items():
        assert len(glyphs) == (3 if name == "corpus" else 2) and len(set(glyphs)) == len(glyphs), (name, glyphs)
        assert all(glyph in drawn for glyph in glyphs if glyph != "━"), (name, glyphs)  # ━: a braille line
