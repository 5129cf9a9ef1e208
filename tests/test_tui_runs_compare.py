"""Runs screen, comparing and exporting (issue 13), driven with the keys a person presses: legends
and the config diff of two marked runs, smoothing and zoom, the samples history, the command that
reproduces a run, and the export of curves (CSV) and plot (SVG).

Expected values are computed here from the run folders' own files (metrics.jsonl, samples.log)
with json/ast and a hand-written EMA. Planted bugs each test was run against (and failed on) are
named in its docstring.
"""

from __future__ import annotations

import ast
import io
import json
import math
from pathlib import Path

import pytest
from rich.console import Console

from engine.export import read_curves_csv
from engine.runs import open_run
from tui.train_command import command_line
from tui.widgets.plot import Legend, SeriesPlot
from tui_helpers import run_app, tiny_run


def plain(renderable, width: int = 60) -> str:
    """What a Rich renderable reads as, without styles."""
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(renderable)
    return out.getvalue()


def detail(app) -> str:
    return plain(app.screen.query_one("#runs-detail-body").content)


def val_curve(path: Path) -> tuple[list[float], list[float]]:
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    ends = [r for r in records if r["epoch_end"]]
    return [float(r["epoch"]) for r in ends], [r["val_ppl"] for r in ends]


def test_two_marked_runs_are_named_by_what_differs_and_their_configs_diffed(corpus_dir) -> None:
    """clip norm vs clip off: legends "#1 clip off" and "#2 clip norm θ=1"; the pane lists clip, off,
    norm. Planted: legends named by model ("#1 rnn 16×1" twice) and a pane that ignores the marks
    (the highlighted run's options instead of the diff) fail it."""
    tiny_run(clip="norm")
    tiny_run(clip="off")

    async def body(app, pilot):
        await pilot.press("f4")
        await pilot.pause()
        plot = app.screen.query_one("#runs-plot", SeriesPlot)
        alone = [name for name, *_ in plot.query_one(Legend).entries]
        await pilot.press("space", "down", "space")
        await pilot.pause()
        legends = [name for name, *_ in plot.query_one(Legend).entries]
        same = str(app.screen.query_one("#runs-same").render())
        return alone, legends, detail(app), same, plot.plot_title

    alone, legends, pane, same, title = run_app(body)
    assert alone == ["#1 rnn 16×1"]  # one run: nothing differs
    assert legends == ["#1 clip off", "#2 clip norm θ=1"]
    lines = [line.split() for line in pane.splitlines() if line.strip()]
    assert lines == [["options", "that", "differ", "(1)"], ["option", "#1", "#2"], ["clip", "off", "norm"]]
    assert "clip" not in same and "rnn, 16×1" in same
    assert title == "validation perplexity (m: switch)"


def approx(x: float):
    return pytest.approx(x, rel=1e-12)


def ema_by_hand(ys: list[float], beta: float) -> list[float]:
    out, m = [], 0.0
    for t, y in enumerate(ys, 1):
        m = beta * m + (1 - beta) * y
        out.append(m / (1 - beta**t))
    return out


def test_smoothing_and_zoom_keys(corpus_dir) -> None:
    """s draws the EMA (β 0.6) of log10 perplexity; z keeps epochs 5..8 of 8, then 7..8, with the EMA of
    the whole curve; a third z shows all again, and s twice more turns smoothing off. Planted: a zoom
    that starts at floor(8 × 0.5) = 4, and smoothing only the zoomed points, fail it."""
    path = tiny_run(epochs=8)

    async def body(app, pilot):
        await pilot.press("f4")
        await pilot.pause()
        plot = app.screen.query_one("#runs-plot", SeriesPlot)
        (name,) = plot.series
        seen = []
        for key in ("s", "z", "z", "z", "s", "s"):
            await pilot.press(key)
            await pilot.pause()
            seen.append((plot.plot_title, plot.drawn_points(name)))
        return seen

    seen = run_app(body)
    epochs, vals = val_curve(path)
    logs = [math.log10(v) for v in vals]
    smooth = ema_by_hand(logs, 0.6)
    assert epochs == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    expected = [
        ("validation perplexity · EMA β=0.6", epochs, smooth),
        ("validation perplexity · EMA β=0.6 · last half", epochs[4:], smooth[4:]),
        ("validation perplexity · EMA β=0.6 · last quarter", epochs[6:], smooth[6:]),
        ("validation perplexity · EMA β=0.6", epochs, smooth),
    ]
    for (title, (xs, ys)), (want_title, want_x, want_y) in zip(seen, expected):
        assert (title, xs) == (want_title, want_x)
        assert ys == [approx(y) for y in want_y]
    assert seen[4][0] == "validation perplexity · EMA β=0.9"
    assert seen[5] == ("validation perplexity (m: switch)", (epochs, [approx(v) for v in logs]))


def test_samples_history_lists_every_logged_sample(corpus_dir) -> None:
    """v shows the samples view: one line per line of samples.log (epoch and text), oldest first.
    Planted: showing only the last sample fails it."""
    path = tiny_run(epochs=3, sample_every=1)

    async def body(app, pilot):
        await pilot.press("f4")
        await pilot.pause()
        before = app.screen.query_one("#runs-detail").border_title
        await pilot.press("v")
        await pilot.pause()
        return before, app.screen.query_one("#runs-detail").border_title, detail(app)

    before, after, pane = run_app(body)
    logged = [line.split(": ", 1) for line in (path / "samples.log").read_text().splitlines()]
    assert [e for e, _ in logged] == ["epoch 1", "epoch 2", "epoch 3"]
    assert (before, after) == ("diff (v: samples)", "samples (v: command)")
    lines = [line.rstrip() for line in pane.splitlines()]  # a sample may end in spaces: the pane's are cut
    assert lines[0] == "#1: 3 samples"
    assert lines[1:] == [f"{epoch}  {ast.literal_eval(text)}".rstrip() for epoch, text in logged]


def test_copy_as_command_shows_and_copies_the_runs_command(corpus_dir) -> None:
    """c puts the run's rnnlab train line in the pane and on the clipboard (tests/test_cli_runs_export.py
    parses the same line back into the run's configs). Planted: a c that does not copy fails it."""
    path = tiny_run(lr=3.0, clip="off")

    async def body(app, pilot):
        await pilot.press("f4")
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause()
        return app.clipboard, detail(app), app.screen.query_one("#runs-detail").border_title

    clipboard, pane, title = run_app(body)
    line = command_line(open_run(path))
    assert clipboard == line and "--lr 3 " in line and "--clip off " in line
    assert " ".join(pane.split()) == f"#1 again, as a command (c copies it): {line}"
    assert title == "command (v: diff)"


def test_export_writes_curves_and_plot_where_asked(corpus_dir, tmp_path) -> None:
    """e, a folder typed in, enter: curves.csv (read back equal to the run's metrics) and the plot's SVG
    land there; e then enter writes into the run's own folder; esc writes nothing; a folder that cannot
    be made is a notification, not a crash. Planted: writing to the offered folder whatever was typed,
    and CSV floats written with :.6g, fail it."""
    path = tiny_run()
    chosen = tmp_path / "exports" / "new"
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")

    async def body(app, pilot):
        await pilot.press("f4")
        await pilot.pause()
        await pilot.press("e")
        await pilot.pause()
        offered = app.screen.query_one("#export-folder").value
        await pilot.press("end", "ctrl+u", *str(chosen), "enter")
        await pilot.pause()
        notes = [(n.title, n.message) for n in app._notifications]
        await pilot.press("e")
        await pilot.pause()
        await pilot.press("enter")  # the default: the run's folder
        await pilot.pause()
        await pilot.press("e", "escape")
        await pilot.pause()
        files = sorted(p.name for p in path.iterdir())
        await pilot.press("e")
        await pilot.pause()
        await pilot.press("end", "ctrl+u", *str(blocked / "sub"), "enter")
        await pilot.pause()
        notes += [(n.title, n.message) for n in app._notifications]
        return offered, files, notes, app.is_running, type(app.screen).__name__

    offered, files, notes, running, screen = run_app(body)
    assert offered == str(path.resolve())
    run = open_run(path)
    metrics = [{k: v for k, v in m.items() if k != "type"} for m in run.metrics()]
    assert read_curves_csv((chosen / "curves.csv").read_text()) == {run.name: metrics}
    svg = (chosen / "plot-val_ppl.svg").read_text()
    assert svg.lstrip().startswith("<svg") and "validation" in svg and "rnn" in svg
    assert read_curves_csv((path / "curves.csv").read_text()) == {run.name: metrics}
    assert "plot-val_ppl.svg" in files
    assert ("Exported", f"curves.csv and plot-val_ppl.svg in {chosen}") in notes
    assert any(t == "Not exported" and str(blocked) in m for t, m in notes) and running and screen == "RunsScreen"
