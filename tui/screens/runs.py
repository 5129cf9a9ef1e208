"""The Runs screen: saved runs in a table, their perplexity curves overlaid.

``space`` marks runs to overlay (e.g. clipping on vs off); with none marked
the highlighted run is drawn. ``m`` switches between validation and training
perplexity. ``g`` (or ``enter``) opens the highlighted run in Generate; ``d``
deletes it after a confirmation; ``l`` shows it live on Train (a running run's curves,
tokens/s, ETA and samples, whoever trains it) and ``r`` resumes it there. The table
refreshes on its own every ``REFRESH_S`` seconds while shown: new runs appear, running
ones advance, and a run whose trainer died shows ``interrupted``. A run whose final perplexity is worse than
guessing uniformly (over twice the vocabulary size) is flagged "unstable" in the
status column. Damaged lines of a drawn run's logs are skipped by the engine;
its warnings show in the note line and once as a notification.

Left out: renaming runs.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Static

from engine.errors import RnnlabError
from engine.runs import Run, RunSummary, delete_run, list_runs, open_run
from tui.screens.base import PlaygroundScreen
from tui.messages import FollowRun, OpenRun
from tui.screens.confirm import ConfirmScreen
from tui.widgets.footer import KeysFooter
from tui.widgets.plot import SeriesPlot

METRICS = ("val_ppl", "train_ppl")
REFRESH_S = 2.0  # seconds between re-reads of the runs folder while the screen is shown


def fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3g}"


def curve(run: Run, metric: str) -> tuple[list[float], list[float]]:
    """(epoch, perplexity) at each epoch end of a run's metrics log (damaged lines are skipped
    and left in ``run.warnings``)."""
    xs, ys = [], []
    for m in run.metrics():
        value = m.get(metric)
        if m.get("epoch_end") and isinstance(value, (int, float)):
            xs.append(float(m["epoch"]))
            ys.append(float(value))
    return xs, ys


def status_text(run: RunSummary) -> str:
    """The status column: the run's status, and "unstable" when it ended worse than uniform guessing."""
    return f"{run.status} unstable" if run.unstable else run.status


class RunsScreen(PlaygroundScreen):
    """Saved runs: list, overlay, open, delete."""

    BINDINGS = [
        Binding("space", "toggle", "Select"),
        Binding("g", "open", "Generate"),
        Binding("m", "metric", "Train/val"),
        Binding("d,delete", "delete", "Delete"),
        Binding("l", "live", "Live view"),
        Binding("r", "resume", "Resume"),
        Binding("f5", "refresh", "Refresh", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[RunSummary] = []
        self.selected: set[str] = set()  # run paths marked for the overlay
        self.metric = METRICS[0]
        self._drawn: tuple[tuple[str, ...], str] | None = None  # (run paths, metric) on the plot now
        self.warnings: list[str] = []  # damaged-log warnings of the runs drawn now
        self._notified: set[str] = set()  # warnings already shown as a notification

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="runs-note")
        yield Static("", id="runs-warnings")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield SeriesPlot("", xlabel="epoch", id="runs-plot")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.title, self.sub_title = "rnnlab", "Runs"
        self.query_one("#runs-warnings").display = False
        self.query_one(DataTable).add_columns("", "#", "model", "corpus", "epochs", "train", "val",
                                              "status", "run")
        self.set_interval(REFRESH_S, self._reread_runs)

    def _reread_runs(self) -> None:
        """Re-read the runs folder while this screen is shown; redraw only when a run changed."""
        if self.app.screen is not self:
            return
        try:
            runs = list_runs()
        except RnnlabError:
            return  # the folder went unreadable: the next manual refresh says why
        if runs != self.runs:
            self.action_refresh(runs)

    def on_screen_resume(self) -> None:
        self.action_refresh()
        self.query_one(DataTable).focus()

    def action_refresh(self, runs: list[RunSummary] | None = None) -> None:
        self.runs = list_runs() if runs is None else runs
        paths = {r.path for r in self.runs}
        self.selected &= paths
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for i, r in enumerate(self.runs, 1):
            table.add_row("✓" if r.path in self.selected else " ", str(i), r.model, r.corpus,
                          f"{r.epochs_done}/{r.epochs}", fmt(r.train_ppl), fmt(r.val_ppl), status_text(r), r.name,
                          key=r.path)
        if self.runs:
            table.move_cursor(row=min(row, len(self.runs) - 1))
        self.query_one("#runs-note", Static).update(
            f"{len(self.runs)} saved runs · space marks runs to overlay · g opens one in Generate"
            if self.runs else "no saved runs yet: train one on the Train screen (F2)")
        self.replot(force=True)  # the curves may have grown since they were drawn

    def _current(self) -> RunSummary | None:
        table = self.query_one(DataTable)
        if not self.runs or table.cursor_row < 0 or table.cursor_row >= len(self.runs):
            return None
        return self.runs[table.cursor_row]

    def replot(self, force: bool = False) -> None:
        """Draw the marked runs' curves (or the highlighted run's); reading and drawing
        them is skipped when the same runs and metric are already on the plot."""
        chosen = [r for r in self.runs if r.path in self.selected]
        current = self._current()
        if not chosen and current is not None:
            chosen = [current]
        drawn = (tuple(r.path for r in chosen), self.metric)
        if drawn == self._drawn and not force:
            return  # e.g. the table's RowHighlighted after a refresh that already drew these
        self._drawn = drawn
        plot = self.query_one(SeriesPlot)
        plot.clear()
        label = "validation" if self.metric == "val_ppl" else "training"
        plot.plot_title = f"{label} perplexity" + (" (m: switch)" if chosen else "")
        plot.empty_message = "no runs to draw"
        warnings = []
        for r in chosen:
            number = self.runs.index(r) + 1
            try:
                run = open_run(r.path)
                xs, ys = curve(run, self.metric)
                run.events()  # read too, so that its damaged lines are reported with the metrics'
            except RnnlabError as exc:
                warnings.append(f"#{number}: {exc}")
                continue
            # The engine's warnings name the whole path; the run's number and folder say enough here.
            warnings += [f"#{number} {w.replace(str(run.path.parent) + '/', '')}" for w in run.warnings]
            plot.set_series(f"#{number} {r.model}", xs, ys)
        plot.replot()
        self._show_warnings(warnings)

    def _show_warnings(self, warnings: list[str]) -> None:
        self.warnings = warnings
        line = self.query_one("#runs-warnings", Static)
        line.update("\n".join(f"⚠ {w}" for w in warnings))
        line.display = bool(warnings)
        for warning in warnings:
            if warning not in self._notified:
                self._notified.add(warning)
                self.notify(warning, title="Damaged run log: lines skipped", severity="warning", timeout=10)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if not self.selected:
            self.replot()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_toggle(self) -> None:
        run = self._current()
        if run is None:
            return
        self.selected ^= {run.path}
        table = self.query_one(DataTable)
        table.update_cell(run.path, table.ordered_columns[0].key, "✓" if run.path in self.selected else " ")
        self.replot()

    def action_metric(self) -> None:
        self.metric = METRICS[(METRICS.index(self.metric) + 1) % len(METRICS)]
        self.replot()

    def action_open(self) -> None:
        run = self._current()
        if run is not None and run.status != "corrupt":
            self.app.post_message(OpenRun(Path(run.path)))

    def action_live(self) -> None:
        """The highlighted run on the Train screen, live while it trains (its history when it does not)."""
        run = self._current()
        if run is not None and run.status != "corrupt":
            self.app.post_message(FollowRun(Path(run.path)))

    def action_resume(self) -> None:
        """Resume the highlighted run in a new training process, followed live on Train."""
        run = self._current()
        if run is None or run.status == "corrupt":
            return
        if run.status == "running":
            self.notify(f"{run.name} is training now; l shows it live.", title="Not resumed", severity="warning")
            return
        self.app.post_message(FollowRun(Path(run.path), resume=True))

    def _refuse_if_training(self, run: RunSummary) -> bool:
        """True (and a notification) when ``run`` is the one the Train screen is training."""
        if self.app.session.is_training(run.path):  # type: ignore[attr-defined]
            self.notify(f"{run.name} is training now: stop it first (F2, then ctrl+g).", title="Not deleted",
                        severity="warning")
            return True
        return False

    def action_delete(self) -> None:
        run = self._current()
        if run is None or self._refuse_if_training(run):
            return

        def answer(yes: bool | None) -> None:
            if not yes or self._refuse_if_training(run):  # training may have started meanwhile
                return
            try:
                delete_run(run.path)
            except (RnnlabError, OSError) as exc:
                self.notify(str(exc), title="Not deleted", severity="error")
                return
            self.notify(f"Deleted {run.name}")
            self.app.session.run_deleted(run.path)  # type: ignore[attr-defined]
            self.action_refresh()

        self.app.push_screen(ConfirmScreen(f"Delete run {run.name}?\n{run.model} · {run.corpus} · "
                                           f"{run.epochs_done} epochs. This cannot be undone."), answer)
