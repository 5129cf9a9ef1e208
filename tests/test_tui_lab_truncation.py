"""The BPTT lab's truncation view: ctrl+t reaches it, it trains the three strategies on the session's corpus and
shows the engine's figures (table, one validation curve per strategy) and PyTorch's two refusals, at 80×24."""

from __future__ import annotations

import statistics

import pytest
import torch
from textual.widgets import DataTable, Input, Static

from engine.labs.truncation import TruncationConfig, compare_all
from tui.screens.labs import LAB_VIEWS
from tui.widgets.plot import SeriesPlot
from tui_helpers import run_app

SMALL = {"model": "rnn", "num_hiddens": "8", "epochs": "3", "batch_size": "4", "num_steps": "5",
         "max_tokens": "600", "truncation_p": "0.4"}
QUICK = {"gradients": {"models": "rnn", "scales": "1", "num_steps": "10", "batch_size": "2"},
         "steps": {"num_hiddens": "8", "batch_size": "4", "num_steps": "5", "steps": "3"}}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def text(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def settle(app, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()


def test_truncation_view_at_80x24():
    async def body(app, pilot):
        await pilot.press("5")
        await settle(app, pilot)
        for _ in LAB_VIEWS:  # ctrl+l until the BPTT view
            await pilot.press("ctrl+l")
            await settle(app, pilot)
            if app.screen.query_one("#labs-views").current == "lab-bptt":
                break
        for experiment, values in {**QUICK, "truncation": SMALL}.items():
            for name, value in values.items():
                app.screen.query_one(f"#bptt-{experiment}-{name}", Input).value = value
        for _ in range(3):  # power -> gradients -> steps -> truncation
            await pilot.press("ctrl+t")
            await settle(app, pilot)
        seen = {"heading": text(app, "#bptt-heading")}
        table = app.screen.query_one("#bptt-table", DataTable)
        seen["rows"] = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        plot = app.screen.query_one("#bptt-plot", SeriesPlot)
        seen["series"] = {name: h.points() for name, h in plot.series.items()}
        seen["note"], seen["refusals"] = text(app, "#bptt-note"), text(app, "#bptt-refusals")
        seen["pipeline"] = app.session.pipeline
        seen["regions"] = {w: app.screen.query_one(w).region for w in ("#bptt-table", "#bptt-plot", "#bptt-note")}
        app.screen.query_one("#bptt-truncation-epochs", Input).value = "0"
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        seen["bad"] = text(app, "#bptt-error")
        return seen

    seen = run_app(body, size=(80, 24))
    assert seen["heading"] == "BPTT (8.7): truncation"
    pipeline = seen["pipeline"]
    c = compare_all(pipeline.ids, len(pipeline.vocab),
                    TruncationConfig(kind="rnn", num_hiddens=8, epochs=3, batch_size=4, num_steps=5, max_tokens=600,
                                     truncation_p=0.4))
    assert [row[0] for row in seen["rows"]] == ["regular", "random", "none"]
    for row, r in zip(seen["rows"], c.results):
        vals = [e.val_ppl for e in r.epochs]
        assert row[1] == f"{statistics.median(e.steps for e in r.epochs):g}"
        assert row[3:] == [f"{vals[-1]:.2f}", f"{min(vals):.2f}", f"{r.peak_positions:,}"]
        xs, ys = seen["series"][r.strategy]
        assert xs == [1.0, 2.0, 3.0] and ys == pytest.approx(vals)
    assert seen["rows"][0][1] == "26" and seen["rows"][2][1] == "1"  # 540 training tokens: 26 minibatches of 4 × 5
    best = min(c.results, key=lambda r: r.best_val[0])
    assert f"lowest val ppl: {best.strategy} {best.best_val[0]:.2f};" in seen["note"]
    assert "backward(): Trying to backward through the graph a second time" in seen["refusals"]
    assert ("backward(retain_graph=True): one of the variables needed for gradient computation has been modified "
            "by an inplace operation") in " ".join(seen["refusals"].split())
    for name, region in seen["regions"].items():  # on screen at 80×24, the plot with room to draw
        assert region.right <= 80 and region.bottom <= 24 and region.height > 0, name
    assert seen["regions"]["#bptt-plot"].height >= 8
    assert seen["bad"].startswith("epochs must be in 1..1000 (got 0)")
