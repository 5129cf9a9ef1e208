"""The plot widget's legend line: entries packed by width, never split inside,
each in its series' colour, and left alone while the series stay the same."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult

from tui.widgets.plot import Legend, SeriesPlot

ENTRIES = [("1-gram a=4.07", "cyan"), ("2-gram a=2.31", "orange"), ("3-gram a=0.82", "green")]


def test_legend_packs_whole_entries_into_the_width() -> None:
    legend = Legend()
    legend.entries = ENTRIES
    one_line = legend.lines(80)
    assert [t.plain for t in one_line] == ["━ 1-gram a=4.07  ━ 2-gram a=2.31  ━ 3-gram a=0.82"]
    two = [t.plain for t in legend.lines(33)]  # two entries take exactly 32 cells
    assert two == ["━ 1-gram a=4.07  ━ 2-gram a=2.31", "━ 3-gram a=0.82"]
    assert [t.plain for t in legend.lines(10)] == [f"━ {n}" for n, _ in ENTRIES]  # too narrow: one per line
    from textual.geometry import Size

    assert legend.get_content_height(Size(16, 10), Size(16, 10), 16) == 3  # one 15-cell entry a line
    assert legend.get_content_height(Size(10, 10), Size(10, 10), 10) == 6  # each entry wraps once
    legend.entries = [("a very long series name indeed", "cyan")]  # 32 cells in a width of 20: 2 rows
    assert legend.get_content_height(Size(20, 10), Size(20, 10), 20) == 2
    legend.entries = ENTRIES
    colours = [str(span.style) for span in one_line[0].spans]
    assert colours == ["cyan", "dark_orange", "green"]  # plotext's "orange" is Rich's dark_orange


def test_plot_legend_follows_the_drawn_series() -> None:
    class PlotApp(App):
        def compose(self) -> ComposeResult:
            yield SeriesPlot("p", id="p")

    async def main() -> tuple:
        app = PlotApp()
        async with app.run_test(size=(60, 20)) as pilot:
            plot = app.query_one(SeriesPlot)
            legend = plot.query_one(Legend)
            hidden = legend.display
            plot.append("train", 1, 5.0)
            plot.set_series("validation", [], [])  # no points yet: not in the legend
            plot.replot()
            await pilot.pause()
            first = [n for n, *_ in legend.entries]
            same = legend.entries
            plot.append("train", 2, 4.0)
            plot.replot()
            kept = legend.entries is same  # unchanged series: the legend is not rebuilt
            plot.append("validation", 2, 6.0)
            plot.replot()
            await pilot.pause()
            return hidden, first, kept, [n for n, *_ in legend.entries], legend.display

    assert asyncio.run(main()) == (False, ["train"], True, ["train", "validation"], True)
