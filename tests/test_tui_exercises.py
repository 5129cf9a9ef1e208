"""The Exercises screen (issue 12): F6 opens it at 80×24 listing the 27 with their status; the selected one
shows its question and settings; ctrl+r runs it in a worker and the table, references and explanation are
the engine's own; a bad setting is refused with a message, and an exercise not built runs nothing."""

from __future__ import annotations

from textual.widgets import DataTable, Input, Static

import engine.exercises as registry
from tui.cli.exercise import format_cell
from tui_helpers import run_app


def _text(widget: Static) -> str:
    return str(widget.render())


async def _select(app, pilot, ex_id: str) -> None:
    table = app.screen.query_one("#ex-list", DataTable)
    table.focus()
    index = list(registry.TITLES).index(ex_id)
    await pilot.press("ctrl+home", *["down"] * index)  # home is the leftmost column; ctrl+home the top row
    await pilot.pause()


def test_the_screen_lists_the_27_and_runs_one(corpus_dir) -> None:
    async def body(app, pilot):
        await pilot.press("f6")
        await pilot.pause()
        screen = app.screen
        table = screen.query_one("#ex-list", DataTable)
        listed = [(table.get_row_at(i)[0], table.get_row_at(i)[1]) for i in range(table.row_count)]
        await _select(app, pilot, "8.4.1")
        question = _text(screen.query_one("#ex-question", Static))
        fields = {i.id: i.value for i in screen.query("#ex-settings Input").results(Input)}
        screen.query_one("#ex-set-num_hiddens", Input).value = "4,90"
        await pilot.press("ctrl+r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        shown = screen.query_one("#ex-table", DataTable)
        rows = [shown.get_row_at(i) for i in range(shown.row_count)]
        return (app.current_mode, listed, question, fields, screen.status["8.4.1"], table.get_row_at(12)[1], rows,
                _text(screen.query_one("#ex-explanation", Static)), _text(screen.query_one("#ex-refs", Static)))

    mode, listed, question, fields, status, cell, rows, explanation, refs = run_app(body, size=(80, 24))
    assert mode == "exercises" and len(listed) == 27
    assert listed == [(i, "not run" if registry.is_built(i) else "not built") for i in registry.TITLES]
    ex = registry.get("8.4.1")
    assert "8.4.1" in question and ex.question.split()[0] in question
    assert fields["ex-set-num_hiddens"] == "16,256" and fields["ex-set-kind"] == "rnn"
    expected = ex.run(ex.settings(num_hiddens=(4, 90)))
    assert any("," in cell for row in rows for cell in row)  # 2,520 parameters: shown as the CLI shows them
    assert status == "done" and cell == "done"
    assert rows == [[format_cell(v) for v in row] for row in expected.rows]
    assert explanation == expected.explanation
    assert "changed" in refs


def test_a_bad_setting_is_refused_and_an_unbuilt_one_runs_nothing(corpus_dir, monkeypatch) -> None:
    monkeypatch.setitem(registry.EXERCISES, "8.1.3", registry.NOT_BUILT)

    async def body(app, pilot):
        await pilot.press("f6")
        await pilot.pause()
        screen = app.screen
        await _select(app, pilot, "8.7.1")
        screen.query_one("#ex-set-steps", Input).value = "0"
        await pilot.press("ctrl+r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        refused = (_text(screen.query_one("#ex-status", Static)), screen.status["8.7.1"])
        await pilot.press("ctrl+b")  # the long budget's values replace the bad one
        await pilot.pause()
        steps = screen.query_one("#ex-set-steps", Input).value
        await _select(app, pilot, "8.1.3")
        await pilot.press("ctrl+r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        return refused, steps, screen.status["8.1.3"], _text(screen.query_one("#ex-question", Static)), \
            len(screen.query("#ex-settings Input"))

    (message, status), steps, unbuilt, question, inputs = run_app(body, size=(80, 24))
    assert "steps must be an integer in 1..2000 (got 0)" in message and status == "not run"
    assert steps == str(registry.get("8.7.1").long.steps)
    assert unbuilt == "not built" and "not built yet" in question and inputs == 0


def test_a_result_is_plotted_and_names_its_saved_run(corpus_dir) -> None:
    """8.6.1 at a tiny budget: the plot holds the result's own series (validation per epoch), and the runs the
    exercise trained are named under the explanation."""
    from tui.widgets.plot import SeriesPlot

    async def body(app, pilot):
        await pilot.press("f6")
        await pilot.pause()
        screen = app.screen
        await _select(app, pilot, "8.6.1")
        for name, value in (("max_tokens", "600"), ("num_hiddens", "8"), ("epochs", "3"), ("batch_size", "4")):
            screen.query_one(f"#ex-set-{name}", Input).value = value
        await pilot.press("ctrl+r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        plot = screen.query_one("#ex-plot", SeriesPlot)
        drawn = {name: h.points() for name, h in plot.series.items()}
        return screen.results["8.6.1"], plot.display, plot.plot_title, drawn, \
            _text(screen.query_one("#ex-explanation", Static)), screen.check_action("next_plot", ())

    result, shown, title, drawn, explanation, next_plot = run_app(body, size=(80, 24))
    (plot,) = result.plots
    assert shown and title == plot.title and not next_plot  # one plot: no key to page through
    assert drawn == {s.name: (s.x, s.y) for s in plot.series}
    assert len(result.runs) == 1 and f"runs saved, tagged exercise 8.6.1 (Runs overlays them): {result.runs[0]}" \
        in explanation


def test_ctrl_g_stops_a_running_exercise_and_its_run_is_saved_stopped(corpus_dir) -> None:
    """A long 8.6.1 started with ctrl+r is stopped with ctrl+g once it has trained an epoch: the status says
    stopped, no result is shown, and the run it was training is saved, marked stopped."""
    import asyncio

    from engine.runs import list_runs, open_run

    async def body(app, pilot):
        await pilot.press("f6")
        await pilot.pause()
        screen = app.screen
        await _select(app, pilot, "8.6.1")
        for name, value in (("max_tokens", "600"), ("num_hiddens", "8"), ("epochs", "100000"), ("batch_size", "4")):
            screen.query_one(f"#ex-set-{name}", Input).value = value
        await pilot.press("ctrl+r")
        for _ in range(1200):  # wait (at most a minute) for the first epoch's end in the run's log
            runs = list_runs()
            if runs and any(m.get("epoch_end") for m in open_run(runs[0].path).metrics()):
                break
            await asyncio.sleep(0.05)
        running = screen.status["8.6.1"], screen.check_action("stop_exercise", ())
        await pilot.press("ctrl+g")
        await asyncio.wait_for(app.workers.wait_for_complete(), 120)  # a bound on waiting, not a timing check
        for _ in range(1200):  # the worker's thread ends at the trainer's next step, saving the run
            if list_runs()[0].status == "stopped":
                break
            await asyncio.sleep(0.05)
        await pilot.pause()
        return running, screen.status["8.6.1"], _text(screen.query_one("#ex-status", Static)), \
            "8.6.1" in screen.results, list_runs(), screen.check_action("stop_exercise", ())

    running, status, line, has_result, runs, can_stop = run_app(body, size=(80, 24))
    assert running == ("running", True) and status == "stopped" and not has_result and not can_stop
    assert line.startswith("stopped before it finished: no result")
    (run,) = runs
    assert run.status == "stopped" and run.tags == {"exercise": "8.6.1"} and run.epochs_done >= 1
