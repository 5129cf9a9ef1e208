"""The BPTT lab view of the Labs screen: ctrl+l opens it, ctrl+t steps through power iteration, gradient flow
and per-step norms; the tables and the plotted y-values equal the engine's figures for the form's settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from textual.widgets import DataTable, Input, Static

from engine.config import ModelConfig, TrainConfig
from engine.labs.bptt import FlowConfig, PowerConfig, power_iteration
from engine.labs.bptt_grads import gradient_flow, step_norms
from tui.screens.labs import LAB_VIEWS
from tui.widgets.plot import SeriesPlot
from tui_helpers import run_app


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def rows(app) -> list[list[str]]:
    table = app.screen.query_one("#bptt-table", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def series(app) -> dict[str, list[float]]:
    plot = app.screen.query_one("#bptt-plot", SeriesPlot)
    return {name: h.points()[1] for name, h in plot.series.items()}


def text(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def settle(app, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()


def set_fields(app, experiment: str, values: dict[str, str]) -> None:
    for name, value in values.items():
        app.screen.query_one(f"#bptt-{experiment}-{name}", Input).value = value


GRADIENTS = {"models": "rnn:relu,mingru", "scales": "0.5,4", "num_steps": "40", "batch_size": "4"}
STEPS = {"model": "rnn", "activation": "relu", "num_hiddens": "16", "batch_size": "4", "num_steps": "5",
         "steps": "12", "window": "5", "clip_theta": "0.3", "lr": "2"}


def test_bptt_view_shows_the_engines_figures():
    async def body(app, pilot):
        await pilot.press("5")
        await settle(app, pilot)
        for _ in LAB_VIEWS:  # ctrl+l until the BPTT view, wherever it sits in LAB_VIEWS
            await pilot.press("ctrl+l")
            await settle(app, pilot)
            if app.screen.query_one("#labs-views").current == "lab-bptt":
                break
        seen = {"view": app.screen.query_one("#labs-views").current, "power": (rows(app), series(app),
                                                                            text(app, "#bptt-note"))}
        gap = app.screen.query_one("#bptt-power-gap", Input)
        gap.focus()
        await pilot.press("ctrl+a", "ctrl+k", *"0.5", "enter")  # typed as a person would
        await settle(app, pilot)
        seen["power 0.5"] = rows(app)
        await pilot.press("ctrl+a", "ctrl+k", *"1.5", "enter")
        await settle(app, pilot)
        seen["bad gap"] = text(app, "#bptt-error")
        set_fields(app, "gradients", GRADIENTS)
        await pilot.press("escape", "ctrl+t")
        await settle(app, pilot)
        seen["gradients"] = (rows(app), series(app), text(app, "#bptt-note"))
        set_fields(app, "steps", STEPS)
        await pilot.press("ctrl+t")
        await settle(app, pilot)
        await pilot.pause(0.3)
        seen["steps"] = (rows(app), series(app), text(app, "#bptt-note"))
        seen["pipeline"] = app.session.pipeline
        await pilot.press("ctrl+l")
        await pilot.pause()
        seen["back"] = app.screen.query_one("#labs-views").current
        return seen

    seen = run_app(body)
    ids = ["labs-body", *(view_id for view_id, _ in LAB_VIEWS)]
    assert seen["view"] == "lab-bptt" and seen["back"] == ids[(ids.index("lab-bptt") + 1) % len(ids)]

    table, plot, note = seen["power"]
    r = power_iteration(PowerConfig())
    assert table[0] == ["0", f"{r.alignment[0]:.6f}", f"{r.tangent[0]:.3e}", "0.00"]
    assert [row[0] for row in table] == ["0", "1", "2", "4", "6", "10", "15", "24", "38", "60"]
    assert table[5] == ["10", f"{r.alignment[10]:.6f}", f"{r.tangent[10]:.3e}", f"{r.log10_norm[10]:.2f}"]
    assert plot["log10 tan θ"] == pytest.approx(np.log10(r.tangent).tolist())
    assert plot["log10 ‖M^k x‖"] == pytest.approx(r.log10_norm)
    assert plot["log10 gap^k tan θ0"] == pytest.approx([math.log10(r.tangent[0]) + k * math.log10(0.8)
                                                        for k in range(61)])
    assert f"|cos| > 0.99 first at k = {r.steps_to_aligned} (certain from k = {r.bound_to_aligned})" in note
    half = power_iteration(PowerConfig(gap=0.5))
    assert seen["power 0.5"][5] == ["10", f"{half.alignment[10]:.6f}", f"{half.tangent[10]:.3e}",
                                    f"{half.log10_norm[10]:.2f}"]
    assert seen["bad gap"].startswith("gap must be in [0, 1) (got 1.5)")

    table, plot, note = seen["gradients"]
    curves = gradient_flow(FlowConfig(models=("rnn:relu", "mingru"), scales=(0.5, 4.0), num_steps=40, batch_size=4))
    assert [row[:2] for row in table] == [["rnn:relu", "0.5"], ["rnn:relu", "4"], ["mingru", "-"]]
    for row, c in zip(table, curves):
        assert row[3:] == [f"{c.per_step():.3g}", *(f"{c.at_distance(d):.2f}" for d in (10, 40))]
    assert table[1][2] == f"{curves[1].largest_radius:.3g}" and table[2][2] == "no W_hh"
    assert plot["rnn:relu ×4"] == pytest.approx(curves[1].log10_norm)
    assert plot["mingru"] == pytest.approx(curves[2].log10_norm)
    assert "1 of 3 curves grow going back" in note  # only the ReLU RNN with W_hh × 4

    table, plot, note = seen["steps"]
    pipeline = seen["pipeline"]
    model_cfg = ModelConfig(kind="rnn", activation="relu", num_hiddens=16, vocab_size=len(pipeline.vocab))
    train_cfg = TrainConfig(batch_size=4, num_steps=5, lr=2.0, clip_theta=0.3, device="cpu")
    records = list(step_norms(pipeline.ids, model_cfg, train_cfg, 12))
    assert plot["‖g‖ per step"] == pytest.approx([r.grad_norm for r in records])
    assert plot["θ"] == [0.3, 0.3]
    assert plot["window mean"] == pytest.approx([np.mean([r.grad_norm for r in records[a:b]])
                                                 for a, b in ((0, 5), (5, 10), (10, 12))])
    top = max(records[:5], key=lambda r: r.grad_norm)
    assert table[0] == ["1-5", f"{np.mean([r.grad_norm for r in records[:5]]):.4g}", f"{top.grad_norm:.4g}",
                        str(top.step), f"{sum(r.clipped for r in records[:5])}/5"]
    assert [row[0] for row in table] == ["1-5", "6-10", "11-12"]
    assert f"clipped {sum(r.clipped for r in records)};" in note and note.startswith("12 steps:")
