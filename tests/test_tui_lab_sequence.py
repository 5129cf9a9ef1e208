"""The sequence lab view of the Labs screen: ctrl+l until it shows, the form's settings, ctrl+r runs the lab,
ctrl+t steps through the views; the tables and the plotted y-values equal figures computed here (least
squares by hand, D2L's data by hand) and the engine's for the models that train."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from textual.widgets import DataTable, Static

from engine.labs.sequence import SequenceConfig, run_lab
from tui.cli.lab_sequence import num
from tui.widgets.form import ConfigForm
from tui.widgets.plot import SeriesPlot
from tui_helpers import run_app

SMALL = {"epochs": 1, "history_epochs": 3, "num_hiddens": 4}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the view's worker does: the same sums in the same order
    yield
    torch.set_num_threads(before)


def rows(app) -> list[list[str]]:
    table = app.screen.query_one("#seq-table", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def plotted(app) -> dict[str, tuple[list[float], list[float]]]:
    plot = app.screen.query_one("#seq-plot", SeriesPlot)
    return {name: h.points() for name, h in plot.series.items()}


def note(app) -> str:
    return str(app.screen.query_one("#seq-note", Static).render())


async def settle(app, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()


def d2l_data(T: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(1, T + 1)
    return np.sin(0.01 * t), np.sin(0.01 * t) + 0.2 * np.random.default_rng(0).standard_normal(T)


def linear_one_step(x: np.ndarray, tau: int = 4, split: int = 604) -> np.ndarray:
    """Least squares on τ lags and a bias over the targets before ``split``; predictions of x[τ:]."""
    A = np.c_[np.stack([x[i: len(x) - tau + i] for i in range(tau)], 1), np.ones(len(x) - tau)]
    coef = np.linalg.lstsq(A[: split - tau], x[tau:split], rcond=None)[0]
    return A @ coef


def test_sequence_view_shows_the_lab():
    async def body(app, pilot):
        await pilot.press("f5")
        await settle(app, pilot)
        await pilot.press("ctrl+l", "ctrl+l")  # coverage -> BPTT -> sequence
        await pilot.pause()
        view = app.screen.query_one("#lab-sequence")
        assert view.display
        form = view.query_one(ConfigForm)
        for name, value in SMALL.items():
            form.set_value("sequence", name, value)
        await pilot.press("ctrl+r")  # replaces the run the view started when it appeared
        await settle(app, pilot)
        got = {"data": (rows(app), plotted(app), note(app))}
        await pilot.press("ctrl+t")
        await pilot.pause()
        got["one-step"] = (rows(app), plotted(app), note(app))
        for _ in range(4):  # multi-step, k-step, τ sweep, σ = 0
            await pilot.press("ctrl+t")
            await pilot.pause()
        got["exact"] = (rows(app), plotted(app), note(app))
        form.set_value("sequence", "tau", "0")
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        got["error"] = (rows(app), plotted(app), note(app))
        return got

    got = run_app(body, size=(120, 36))
    signal, x = d2l_data()
    table, series, text = got["data"]
    lab = run_lab(SequenceConfig(**SMALL), ("models",))
    try:
        while True:
            next(lab)
    except StopIteration as done:
        engine = done.value.experiments["models"].table
    assert [r[:2] for r in table] == [["linear", "τ=4"], ["mlp", "τ=4"], ["rnn window", "τ=4"],
                                      ["rnn history", "history"]]
    assert table == [[r["model"], r["window"], num(r["loss"]), *(num(v) for v in r["mse"].values())] for r in engine]
    linear = linear_one_step(x)
    assert table[0][3] == num(float(np.mean((linear[600:] - x[604:]) ** 2)))  # least squares by hand
    ts, ys = series["x"]
    assert ts == list(map(float, range(1, 1001))) and np.allclose(ys, x, rtol=0, atol=1e-12)
    assert np.allclose(series["sin(ω t)"][1], signal, rtol=0, atol=1e-12)
    assert series["train | test"][0] == [604.5, 604.5]
    assert "best one step ahead: linear" in text and "scored on the part right of it" in text

    table, series, text = got["one-step"]
    ts, ys = series["linear"]
    assert ts == list(map(float, range(5, 1001)))  # x̂_t for t = τ + 1 …: the first window's target
    assert np.allclose(ys, linear, rtol=0, atol=1e-9)
    assert set(series) == {"x", "linear", "mlp", "rnn window", "rnn history", "train | test"}

    table, series, text = got["exact"]
    assert table[0][:2] == ["linear", "τ=2"]
    assert all(float(v) < 1e-6 for v in table[0][2:])
    assert f"2cos(ω) = {2 * math.cos(0.01):.9f}" in text
    assert max(max(ys) for _, ys in series.values()) < -6  # log10 |x̂ − x| for every k: below 1e-6

    table, series, text = got["error"]
    assert text.startswith("tau must be in 1..16 (got 0)")
    assert table == got["exact"][0]  # the last results stay
