"""Runs screen: finished runs are listed; two marked runs are overlaid."""

from __future__ import annotations

from textual.widgets import DataTable
from tui.widgets.plot import SeriesPlot
from tui_helpers import run_app, tiny_run


def test_runs_listed_and_two_overlaid(corpus_dir) -> None:
    tiny_run(clip="norm")
    tiny_run(clip="off")

    async def body(app, pilot):
        await pilot.press("f4")
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        await pilot.press("space", "down", "space")
        await pilot.pause()
        plot = app.screen.query_one("#runs-plot", SeriesPlot)
        return rows, {name: len(h) for name, h in plot.series.items()}

    rows, series = run_app(body)
    assert len(rows) == 2 and all(r[7] == "completed" for r in rows)
    assert len(series) == 2 and all(n == 2 for n in series.values())  # 2 epochs each
