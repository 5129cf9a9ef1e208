"""Runs screen: finished runs are listed; two marked runs are overlaid."""

from __future__ import annotations

import json
from pathlib import Path

from engine.runs import list_runs
from textual.widgets import DataTable, Footer
from tui.widgets.plot import CachedPlot, SeriesPlot
from tui_helpers import open_train, run_app, tiny_run, wait_events, wait_training


def test_runs_listed_and_two_overlaid(corpus_dir) -> None:
    """Both marked runs are drawn: each series is its run's validation perplexity at each epoch end."""
    clipped = tiny_run(clip="norm")
    unclipped = tiny_run(clip="off", lr=3.0)

    async def body(app, pilot):
        await pilot.press("f4")
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        rows = table_rows(table)
        same = str(app.screen.query_one("#runs-same").render())
        await pilot.press("space", "down", "space")
        await pilot.pause()
        plot = app.screen.query_one("#runs-plot", SeriesPlot)
        return rows, same, {name.split()[0]: h.points() for name, h in plot.series.items()}

    rows, same, series = run_app(body)
    assert len(rows) == 2 and "status completed" in same  # the same for both: folded into one line
    assert [r["run"] for r in rows] == [unclipped.name, clipped.name]  # newest first: #1, #2
    assert series == {"#1": epoch_ends(unclipped, "val_ppl"), "#2": epoch_ends(clipped, "val_ppl")}
    assert series["#1"] != series["#2"]


def table_rows(table: DataTable) -> list[dict[str, str]]:
    """The table's rows as {column label: cell text} (which columns show depends on what differs)."""
    labels = [str(col.label) for col in table.ordered_columns]
    return [dict(zip(labels, map(str, table.get_row_at(i)))) for i in range(table.row_count)]


def best_cell(path: Path) -> str:
    """The "best val" cell computed from metrics.jsonl: the lowest validation perplexity and its epoch."""
    epochs, vals = epoch_ends(path, "val_ppl")
    i = vals.index(min(vals))
    return f"{vals[i]:.3g} @{int(epochs[i])}"


def screen_lines(app) -> list[str]:
    return ["".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()]


def test_keys_panel_redraws_plot_and_footer_fits(corpus_dir) -> None:
    tiny_run()

    async def body(app, pilot):
        await pilot.press("f4")
        await pilot.pause()
        plot = app.screen.query_one("#runs-plot", SeriesPlot).query_one(CachedPlot)
        wide = plot.size.width
        await pilot.press("question_mark")  # the keys panel docks right: the plot narrows
        await pilot.pause()
        lines = [plot.render_line(y).text for y in range(plot.size.height)]
        footer = app.screen.query_one(Footer)
        return wide, plot.size.width, lines, screen_lines(app)[-1][: footer.size.width]

    wide, narrow, lines, footer = run_app(body)
    assert narrow < wide
    # The figure was rebuilt for the new width: its frame closes on one column.
    top = next(line for line in lines if "┌" in line)
    right = top.index("┐")
    frame = [line for line in lines[lines.index(top) + 1:] if "└" not in line][:5]
    assert all(len(line.rstrip()) <= right + 1 and line[right] in "│┤" for line in frame)
    # The footer's palette key covers the last column (no stray letter after it).
    assert footer.endswith("▏^p palette")


def test_run_in_training_cannot_be_deleted(corpus_dir) -> None:
    """d on the run being trained is refused with a notification; once stopped, d deletes it."""

    async def body(app, pilot):
        await open_train(app, pilot, {("train", "epochs"): 10_000})
        await pilot.press("ctrl+s")
        train = app.screen
        await wait_events(app, pilot)
        await pilot.press("f4")
        await pilot.pause()
        runs = [r.path for r in app.screen.runs]
        await pilot.press("d")
        await pilot.pause()
        notes = [(n.title, n.message) for n in app._notifications]
        modal = type(app.screen).__name__
        await pilot.press("y")  # were a confirmation open, this would delete
        await pilot.pause()
        still = [Path(p).is_dir() for p in runs]
        running = train.training
        await pilot.press("f2", "ctrl+g")
        await wait_training(app, pilot)
        await pilot.press("f4")
        await pilot.pause()
        await pilot.press("d", "y")  # stopped: now it may go
        await pilot.pause()
        return runs, modal, notes, still, running, list_runs()

    runs, modal, notes, still, running, left = run_app(body)
    assert len(runs) == 1 and modal == "RunsScreen" and still == [True] and running
    assert any(title == "Not deleted" and "is training now" in message for title, message in notes)
    assert left == []


def test_damaged_log_lines_are_skipped_with_a_warning(corpus_dir) -> None:
    """A line of metrics.jsonl that is not UTF-8, and one that is not JSON: the Runs screen
    draws the good epochs, says which lines it skipped, and keeps running."""
    path = tiny_run()
    metrics = path / "metrics.jsonl"
    lines = metrics.read_bytes().splitlines(keepends=True)
    epoch_ends = sum(b'"epoch_end": true' in line for line in lines)
    metrics.write_bytes(lines[0] + b"\xff\xfe\x00 not text\n" + b'{"epoch": 1, "step":\n' + b"".join(lines[1:]))
    events = path / "events.jsonl"
    bad_event = len(events.read_bytes().splitlines()) + 1  # the number of the line appended next
    with events.open("ab") as f:
        f.write(b"\x80garbage\n")

    async def body(app, pilot):
        await pilot.press("f4")
        await pilot.pause()
        screen = app.screen
        plot = screen.query_one("#runs-plot", SeriesPlot)
        shown = str(screen.query_one("#runs-warnings").render())
        notes = [(n.title, n.message) for n in app._notifications]
        return {name: len(h) for name, h in plot.series.items()}, screen.warnings, shown, notes, app.is_running

    series, warnings, shown, notes, running = run_app(body)
    assert running
    assert list(series.values()) == [epoch_ends] and epoch_ends == 2
    assert warnings == [f"#1 {path.name}/metrics.jsonl: skipped 2 damaged lines (2, 3): not UTF-8 JSON records",
                        f"#1 {path.name}/events.jsonl: skipped 1 damaged line ({bad_event}): not UTF-8 JSON records"]
    assert all(f"⚠ {w}" in shown for w in warnings)
    assert [m for t, m in notes if t == "Damaged run log: lines skipped"] == warnings


def epoch_ends(path: Path, metric: str) -> tuple[list[float], list[float]]:
    """(epoch, metric) at each epoch end of a run's metrics.jsonl, read with json."""
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line]
    ends = [r for r in records if r["type"] == "Progress" and r["epoch_end"]]
    return [float(r["epoch"]) for r in ends], [r[metric] for r in ends]


def test_metric_key_and_refresh_key(corpus_dir) -> None:
    """The plot is the highlighted run's validation perplexity at each epoch end; m switches to the
    training perplexity, then both, and back; a run saved after the screen was drawn is listed, newest
    first, with its best validation perplexity and its epoch in the table."""
    first = tiny_run()

    async def body(app, pilot):
        await pilot.press("f4")
        await pilot.pause()
        screen = app.screen
        plot = screen.query_one("#runs-plot", SeriesPlot)

        def drawn():
            return plot.plot_title, [(name.split()[0], h.points()) for name, h in plot.series.items()]

        seen = [drawn()]
        for _ in range(3):
            await pilot.press("m")
            await pilot.pause()
            seen.append(drawn())
        second = tiny_run(seed=3)  # saved while the Runs screen shows
        table = screen.query_one(DataTable)
        before = table.row_count
        for _ in range(600):  # no key: the screen re-reads the runs folder on its own (bounded wait)
            if table.row_count > before:
                break
            await pilot.pause(0.05)
        await pilot.pause()
        rows = table_rows(table)
        return seen, before, rows, second, drawn()

    (val, train, both, val_again), before, rows, second, after = run_app(body)
    assert val == ("validation perplexity (m: switch)", [("#1", epoch_ends(first, "val_ppl"))])
    assert train == ("training perplexity (m: switch)", [("#1", epoch_ends(first, "train_ppl"))])
    assert both == ("training and validation perplexity (m: switch)",
                    [("#1", epoch_ends(first, "train_ppl")), ("#1", epoch_ends(first, "val_ppl"))])
    assert val_again == val
    assert before == 1 and [r["run"] for r in rows] == [second.name, first.name]
    assert [r["best val"] for r in rows] == [best_cell(second), best_cell(first)]
    # The cursor stays on the top row, now the new run: its curve is drawn.
    assert after[1] == [("#1", epoch_ends(second, "val_ppl"))]
