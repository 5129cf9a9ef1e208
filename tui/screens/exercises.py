"""The Exercises screen: the chapter's 27 exercises, each answered by running its experiment.

Left, the list (id, status, title): *not built* (listed, its experiment still to be written),
*not run*, *running*, *done*, *stopped* or *failed*. Right, for the selected one: the question, its settings
(one field each, filled with the default budget's values; ``ctrl+b`` switches to the book's
budget and back), and after ``ctrl+r`` has run it — in a thread worker, never blocking the
screen; ``ctrl+g`` stops it through the worker's ``cancelled_event`` at the experiment's next step —
the result table, our reference figures beside the numbers measured, the explanation, the run
folders it trained (tagged with the exercise, for Runs to overlay) and its plot (``ctrl+t`` shows the
next one when there are several). Results stay while you move through the list.
The experiments are ``engine.exercises``'; table cells are shown by ``tui.cli.exercise.format_cell``,
as the CLI shows them. Left out: keeping results across sessions (rerun, or open the saved runs).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Header, Input, Label, Static
from textual.worker import Worker, WorkerState, get_current_worker

import engine.exercises as registry
from engine.errors import RnnlabError
from engine.exercises.base import Result, format_value
from tui.cli.exercise import format_cell
from tui.screens.base import PlaygroundScreen, error_text
from tui.widgets.footer import KeysFooter
from tui.widgets.form import FormScroll
from tui.widgets.plot import SeriesPlot

STATUS_NOT_BUILT, STATUS_NOT_RUN, STATUS_RUNNING, STATUS_DONE, STATUS_FAILED, STATUS_STOPPED = (
    "not built", "not run", "running", "done", "failed", "stopped")
AGREES = {True: "yes", False: "NO", None: "–"}


class ExercisesScreen(PlaygroundScreen):
    """The list of exercises and the selected one's question, settings, result and explanation."""

    BINDINGS = [
        Binding("ctrl+r", "run_exercise", "Run"),
        Binding("ctrl+b", "toggle_budget", "Budget"),
        Binding("ctrl+g", "stop_exercise", "Stop"),
        Binding("ctrl+t", "next_plot", "Next plot"),
    ]

    @dataclass
    class Progressed(Message):
        ex_id: str
        done: int
        total: int
        note: str

    @dataclass
    class Finished(Message):
        ex_id: str
        result: Result

    def __init__(self) -> None:
        super().__init__()
        self.status = {i: STATUS_NOT_RUN if registry.is_built(i) else STATUS_NOT_BUILT for i in registry.TITLES}
        self.results: dict[str, Result] = {}
        self.budget: dict[str, str] = {}  # id -> budget whose values the form was last filled with
        self.selected = next(iter(registry.TITLES))
        self.running: str | None = None
        self.plot_index: dict[str, int] = {}  # id -> which of its result's plots is shown

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="ex-body"):
            yield DataTable(id="ex-list", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="ex-detail"):
                yield Static("", id="ex-question")
                yield Static("settings", classes="form-heading", id="ex-settings-heading")
                yield FormScroll(id="ex-settings", classes="form")
                yield Static("", id="ex-status")
                yield DataTable(id="ex-table", cursor_type="none", zebra_stripes=True)
                yield Static("", id="ex-refs")
                yield Static("", id="ex-explanation")
                yield SeriesPlot("", id="ex-plot")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.title, self.sub_title = "rnnlab", "Exercises"
        table = self.query_one("#ex-list", DataTable)
        table.add_column("id", key="id")
        table.add_column("status", key="status")
        table.add_column("title", key="title")
        for ex_id, title in registry.TITLES.items():
            table.add_row(ex_id, self.status[ex_id], title, key=ex_id)
        table.focus()
        self._show(self.selected)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("run_exercise", "toggle_budget"):  # greyed out while running or for one not built
            return registry.is_built(self.selected) and self.running is None
        if action == "stop_exercise":
            return self.running is not None
        if action == "next_plot":
            result = self.results.get(self.selected)
            return result is not None and len(result.plots) > 1
        return super().check_action(action, parameters)

    # -- selection ----------------------------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#ex-list")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None and event.row_key.value != self.selected:
            self._show(str(event.row_key.value))

    def _show(self, ex_id: str) -> None:
        self.selected = ex_id
        self.refresh_bindings()
        title = registry.TITLES[ex_id]
        built = registry.is_built(ex_id)
        question = registry.get(ex_id).question if built else "Its experiment is not built yet: no result to show."
        self.query_one("#ex-question", Static).update(Text.assemble((ex_id, "bold"), f"  {title}\n{question}"))
        self.query_one("#ex-settings-heading").display = built
        self._fill_settings(ex_id, self.budget.get(ex_id, "default"))
        self._show_result(ex_id)

    def _fill_settings(self, ex_id: str, budget: str) -> None:
        form = self.query_one("#ex-settings", FormScroll)
        form.remove_children()
        form.display = registry.is_built(ex_id)
        if not registry.is_built(ex_id):
            return
        ex = registry.get(ex_id)
        self.budget[ex_id] = budget
        values = getattr(ex, budget)
        rows = []
        for f in fields(ex.Settings):
            rows.append(Horizontal(Label(f.name, classes="field-label"),
                                   Input(format_value(getattr(values, f.name)), compact=True, id=f"ex-set-{f.name}",
                                         select_on_focus=True, tooltip=f.metadata.get("help") or None),
                                   classes="field-row"))
        form.mount_all(rows)
        form.styles.height = len(rows)

    def _show_result(self, ex_id: str) -> None:
        status, table = self.query_one("#ex-status", Static), self.query_one("#ex-table", DataTable)
        refs, expl = self.query_one("#ex-refs", Static), self.query_one("#ex-explanation", Static)
        table.clear(columns=True)
        result = self.results.get(ex_id)
        state = self.status[ex_id]
        hint = {STATUS_NOT_BUILT: "not built yet",
                STATUS_NOT_RUN: f"not run: ctrl+r runs it ({self.budget.get(ex_id, 'default')} budget; "
                                "ctrl+b switches budget)",
                STATUS_RUNNING: "running… (ctrl+g stops it)",
                STATUS_STOPPED: "stopped before it finished: no result (a run it was training is saved, marked "
                                "stopped); ctrl+r runs it again",
                STATUS_FAILED: "failed: see the notification; ctrl+r tries again",
                STATUS_DONE: f"done ({result.budget or 'changed'} settings); ctrl+r runs it again" if result else ""}
        if ex_id != self.running:  # while it runs, the progress messages write the status line
            status.update(hint[state])
        plot = self.query_one("#ex-plot", SeriesPlot)
        table.display = refs.display = expl.display = result is not None
        plot.display = result is not None and bool(result.plots)
        if result is None:
            return
        table.add_columns(*result.columns)
        for row in result.rows:
            table.add_row(*(format_cell(v) for v in row))
        if result.budget is None:
            refs.update("reference figures: for the default and long settings only (these were changed)")
        else:
            lines = [f"{c['name']}: {format_cell(c['measured'])} (ours {format_cell(c['reference'])} ± "
                     f"{format_cell(c['tolerance'])}, agrees: {AGREES[c['agrees']]})" for c in result.comparison()]
            refs.update("reference figures:\n" + "\n".join(lines))
        runs = (f"\nruns saved, tagged exercise {ex_id} (Runs overlays them): {', '.join(result.runs)}"
                if result.runs else "")
        expl.update(result.explanation + runs)
        if result.plots:
            self._draw_plot(result, self.plot_index.get(ex_id, 0) % len(result.plots))

    def _draw_plot(self, result: Result, index: int) -> None:
        """One of the result's plots, drawn with the series the engine returned."""
        data, plot = result.plots[index], self.query_one("#ex-plot", SeriesPlot)
        plot.clear()
        more = f"  (ctrl+t: plot {index + 2 if index + 1 < len(result.plots) else 1} of {len(result.plots)})" \
            if len(result.plots) > 1 else ""
        plot.plot_title, plot.xlabel, plot.ylabel = data.title + more, data.xlabel, data.ylabel
        for series in data.series:
            plot.set_series(series.name, series.x, series.y)
        plot.replot()

    def action_next_plot(self) -> None:
        result = self.results.get(self.selected)
        if result is None or len(result.plots) < 2:
            return
        self.plot_index[self.selected] = (self.plot_index.get(self.selected, 0) + 1) % len(result.plots)
        self._draw_plot(result, self.plot_index[self.selected])

    def action_stop_exercise(self) -> None:
        if self.running is None:
            return
        self.workers.cancel_group(self, "exercise")
        if self.running == self.selected:
            self.query_one("#ex-status", Static).update("stopping at the experiment's next step…")

    def _set_status(self, ex_id: str, state: str) -> None:
        self.status[ex_id] = state
        self.query_one("#ex-list", DataTable).update_cell(ex_id, "status", state, update_width=False)

    # -- running ------------------------------------------------------------------------------------------
    def action_toggle_budget(self) -> None:
        budget = "long" if self.budget.get(self.selected, "default") == "default" else "default"
        self._fill_settings(self.selected, budget)
        self._show_result(self.selected)

    def action_run_exercise(self) -> None:
        ex_id = self.selected
        if not registry.is_built(ex_id) or self.running is not None:
            return
        ex = registry.get(ex_id)
        status = self.query_one("#ex-status", Static)
        try:
            values = {f.name: ex.parse(f.name, self.query_one(f"#ex-set-{f.name}", Input).value)
                      for f in fields(ex.Settings)}
            settings = ex.Settings(**values)
        except RnnlabError as exc:
            status.update(Text(str(exc), style="red"))
            return
        self.running = ex_id
        self._set_status(ex_id, STATUS_RUNNING)
        status.update("running… (ctrl+g stops it)")
        self.refresh_bindings()
        self._run(ex_id, settings)

    @work(thread=True, exclusive=True, group="exercise", exit_on_error=False)
    def _run(self, ex_id: str, settings: Any) -> None:
        worker = get_current_worker()
        ex = registry.get(ex_id)

        def progress(done: int, total: int, note: str) -> None:
            self.post_message(self.Progressed(ex_id, done, total, note))

        result = ex.run(settings, progress, worker.cancelled_event)
        if not worker.is_cancelled:
            self.post_message(self.Finished(ex_id, result))

    def on_exercises_screen_progressed(self, message: Progressed) -> None:
        if message.ex_id == self.selected and self.running == message.ex_id:
            self.query_one("#ex-status", Static).update(f"running… {message.done}/{message.total} {message.note}")

    def on_exercises_screen_finished(self, message: Finished) -> None:
        self.running = None
        self.results[message.ex_id] = message.result
        self._set_status(message.ex_id, STATUS_DONE)
        self.refresh_bindings()
        if message.ex_id == self.selected:
            self._show_result(message.ex_id)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "exercise" or event.state not in (WorkerState.ERROR, WorkerState.CANCELLED):
            return
        ex_id, self.running = self.running, None
        self.refresh_bindings()
        if ex_id is None:
            return
        self._set_status(ex_id, STATUS_FAILED if event.state == WorkerState.ERROR else STATUS_STOPPED)
        if event.state == WorkerState.ERROR:
            self.notify(f"Exercise {ex_id}: {error_text(event.worker.error)}", title="Exercise failed",
                        severity="error")
        if ex_id == self.selected:
            self._show_result(ex_id)
