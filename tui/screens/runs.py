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

Comparing (``engine.compare``): the table's columns equal for every run fold into a dim
"same for all" line, so what differs stands out; overlay legends name the runs by the options
that differ ("#1 clip off", "#2 clip norm θ=1"). The plot's y axis is logarithmic (ticks 5, 10,
20, 50) and its x ticks are whole epochs; ``m`` cycles validation, training and both, ``s``
smooths the curves (EMA β 0.6, 0.9, with a bias-corrected start; the raw curves faint behind)
and ``z`` zooms to the last half or quarter of the epochs. The pane beside the plot (``v``
cycles it) shows the marked runs' config diff (or the highlighted run's options not at their
defaults), every sample the highlighted run logged, or the ``rnnlab train`` command that
reproduces it (``c`` copies it). ``e`` exports the drawn runs' curves as CSV and the plot as
SVG, into the run's folder (an overlay's: the runs folder) or one typed in.

Left out: renaming runs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Header, Static

from engine import checkpoint
from engine.compare import COLUMNS, FactsCache, Folded, RunFacts, fold, legend_names
from engine.errors import RnnlabError, write_error
from engine.events import Sample
from engine.export import export_paths, write_curves_csv
from engine.follow import read_samples
from engine.runs import Run, RunSummary, delete_run, list_runs, open_run
from tui.runs_view import (DETAILS, METRICS, SMOOTHING, ZOOMS, PlotView, command_view, cycle, defaults_view,
                           diff_view, samples_view)
from tui.screens.base import PlaygroundScreen
from tui.messages import FollowRun, OpenRun
from tui.screens.confirm import ConfirmScreen
from tui.screens.export import ExportScreen
from tui.train_command import command_line
from tui.widgets.footer import KeysFooter
from tui.widgets.plot import COLORS, SeriesPlot

MARKERS = {"val_ppl": "braille", "train_ppl": "•"}  # with both drawn, a run's two curves share its colour
REFRESH_S = 2.0  # seconds between re-reads of the runs folder while the screen is shown


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


class RunsScreen(PlaygroundScreen):
    """Saved runs: list, overlay, open, delete."""

    BINDINGS = [
        Binding("space", "toggle", "Select"),
        Binding("g", "open", "Generate"),
        Binding("m", "metric", "Train/val"),
        Binding("s", "smooth", "Smooth"),
        Binding("z", "zoom", "Zoom"),
        Binding("v", "detail", "Diff/samples/cmd"),
        Binding("c", "command", "Copy command"),
        Binding("e", "export", "Export"),
        Binding("d,delete", "delete", "Delete"),
        Binding("l", "live", "Live view"),
        Binding("r", "resume", "Resume"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[RunSummary] = []
        self.selected: set[str] = set()  # run paths marked for the overlay
        self.view = PlotView()  # which perplexity, smoothing, zoom
        self.detail = DETAILS[0]  # what the pane beside the plot shows
        self.facts: list[RunFacts] = []  # what engine.compare knows of each listed run, in table order
        self.folded = Folded([], [])  # the columns shown, and those equal for all
        self._facts_cache = FactsCache()
        self._drawn: tuple[tuple[str, ...], PlotView] | None = None  # (run paths, view) on the plot now
        self.warnings: list[str] = []  # damaged-log warnings of the runs drawn now
        self._notified: set[str] = set()  # warnings already shown as a notification

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="runs-note")
        yield Static("", id="runs-same")
        yield Static("", id="runs-warnings")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="runs-bottom"):
            yield SeriesPlot("", xlabel="epoch", log_y=True, integer_x=True, id="runs-plot")
            with VerticalScroll(id="runs-detail"):
                yield Static("", id="runs-detail-body")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.title, self.sub_title = "rnnlab", "Runs"
        self.query_one("#runs-warnings").display = False
        self.query_one("#runs-same").display = False
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
        self._fill_table(table)
        if self.runs:
            table.move_cursor(row=min(row, len(self.runs) - 1))
        self.query_one("#runs-note", Static).update(
            f"{len(self.runs)} saved runs · space marks runs to overlay · g opens one in Generate"
            if self.runs else "no saved runs yet: train one on the Train screen (F2)")
        self.replot(force=True)  # the curves may have grown since they were drawn
        self._show_detail()

    def _fill_table(self, table: DataTable) -> None:
        """One row per run; the columns equal for every run fold into the "same for all" line."""
        self.facts = [self._facts_cache.facts(r) for r in self.runs]
        self.folded = fold(COLUMNS, self.facts)
        table.clear(columns=True)
        table.add_column("", key="mark")
        table.add_column("#", key="number")
        for col in self.folded.shown:
            table.add_column(col.header, key=col.key)
        table.add_column("run", key="run")
        for i, (r, facts) in enumerate(zip(self.runs, self.facts), 1):
            table.add_row("✓" if r.path in self.selected else " ", str(i),
                          *(col.text(facts) for col in self.folded.shown), r.name, key=r.path)
        same = self.query_one("#runs-same", Static)
        same.update(self.folded.same_line())
        same.display = bool(self.folded.same)

    def _current(self) -> RunSummary | None:
        table = self.query_one(DataTable)
        if not self.runs or table.cursor_row < 0 or table.cursor_row >= len(self.runs):
            return None
        return self.runs[table.cursor_row]

    def _chosen(self) -> list[RunSummary]:
        """The marked runs, or the highlighted one when none is marked."""
        chosen = [r for r in self.runs if r.path in self.selected]
        current = self._current()
        return chosen if chosen or current is None else [current]

    def _facts_of(self, run: RunSummary) -> RunFacts:
        return self.facts[self.runs.index(run)] if run in self.runs else self._facts_cache.facts(run)

    def replot(self, force: bool = False) -> None:
        """Draw the marked runs' curves (or the highlighted run's), named by the options in which they
        differ; reading and drawing them is skipped when the same runs and view are already drawn."""
        chosen = self._chosen()
        drawn = (tuple(r.path for r in chosen), self.view)
        if drawn == self._drawn and not force:
            return  # e.g. the table's RowHighlighted after a refresh that already drew these
        self._drawn = drawn
        plot = self.query_one(SeriesPlot)
        plot.clear()
        plot.plot_title = self.view.title(bool(chosen))
        plot.empty_message = "no runs to draw"
        plot.smoothing = self.view.smoothing
        numbers = [self.runs.index(r) + 1 for r in chosen]
        names = legend_names([self._facts_of(r) for r in chosen], numbers)
        warnings, last_epoch = [], 0.0
        for i, (r, number, name) in enumerate(zip(chosen, numbers, names)):
            try:
                run = open_run(r.path)
                curves = {metric: curve(run, metric) for metric in self.view.metrics()}
                run.events()  # read too, so that its damaged lines are reported with the metrics'
            except RnnlabError as exc:
                warnings.append(f"#{number}: {exc}")
                continue
            # The engine's warnings name the whole path; the run's number and folder say enough here.
            warnings += [f"#{number} {w.replace(str(run.path.parent) + '/', '')}" for w in run.warnings]
            for metric, (xs, ys) in curves.items():
                both = len(curves) > 1
                plot.set_series(f"{name} {'val' if metric == 'val_ppl' else 'train'}" if both else name, xs, ys,
                                color=COLORS[i % len(COLORS)], marker=MARKERS[metric] if both else None)
                last_epoch = max([last_epoch, *xs])
        plot.x_from = self.view.x_from(last_epoch)
        plot.replot()
        self._show_warnings(warnings)

    def _show_detail(self) -> None:
        """Fill the pane beside the plot with the view ``v`` chose."""
        pane = self.query_one("#runs-detail", VerticalScroll)
        body = self.query_one("#runs-detail-body", Static)
        pane.border_title = f"{self.detail} (v: {cycle(DETAILS, self.detail)})"
        current = self._current()
        if current is None:
            body.update("")
            return
        number = self.runs.index(current) + 1
        if self.detail == "diff":
            marked = [r for r in self.runs if r.path in self.selected]
            if len(marked) >= 2:
                body.update(diff_view([self._facts_of(r) for r in marked], [self.runs.index(r) + 1 for r in marked]))
            else:
                body.update(defaults_view(self._facts_of(current), number))
        elif self.detail == "samples":
            body.update(samples_view(self._samples(current), number))
        else:
            line = self._command(current)
            body.update(command_view(line, number) if line else f"#{number}: no command ({current.error})")

    def _samples(self, run: RunSummary) -> list[Sample]:
        """Every sample the run logged (samples.log), oldest first."""
        facts = self._facts_of(run)
        prefix = str(facts.options.get("sample_prefix", ""))
        return read_samples(run.path, prefix)

    def _command(self, run: RunSummary) -> str | None:
        try:
            return command_line(open_run(run.path))
        except RnnlabError:
            return None

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
        self._show_detail()

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
        self._show_detail()

    # --- the plot's view, the detail pane, exports ------------------------------------------------------
    def action_metric(self) -> None:
        self.view = replace(self.view, metric=cycle(METRICS, self.view.metric))
        self.replot()

    def action_smooth(self) -> None:
        self.view = replace(self.view, smoothing=cycle(SMOOTHING, self.view.smoothing))
        self.replot()

    def action_zoom(self) -> None:
        self.view = replace(self.view, zoom=(self.view.zoom + 1) % len(ZOOMS))
        self.replot()

    def action_detail(self) -> None:
        self.detail = cycle(DETAILS, self.detail)
        self._show_detail()

    def action_command(self) -> None:
        """Show the highlighted run's ``rnnlab train`` line in the pane and copy it to the clipboard."""
        run = self._current()
        if run is None:
            return
        line = self._command(run)
        if line is None:
            self.notify(f"{run.name} cannot be read: {run.error or 'its config.json is damaged'}",
                        title="No command", severity="error")
            return
        self.detail = "command"
        self._show_detail()
        self.app.copy_to_clipboard(line)
        self.notify(line, title="Copied (where the terminal lets apps copy)", timeout=8)

    def action_export(self) -> None:
        """Ask where, then write the drawn runs' curves (CSV) and the plot (SVG)."""
        chosen = [r for r in self._chosen() if r.status != "corrupt"]
        try:
            runs = [open_run(r.path) for r in chosen]
        except RnnlabError as exc:
            self.notify(str(exc), title="Not exported", severity="error")
            return
        if not runs:
            self.notify("No run to export: train one first (F2).", title="Not exported", severity="warning")
            return
        csv_path, svg_path = export_paths(runs, self.view.metric)
        what = f"run #{self.runs.index(chosen[0]) + 1}" if len(runs) == 1 else f"{len(runs)} marked runs"

        def write(folder: Path | None) -> None:
            if folder is not None:
                self._export(runs, folder / csv_path.name, folder / svg_path.name)

        self.app.push_screen(ExportScreen(what, [csv_path.name, svg_path.name], csv_path.parent), write)

    def _export(self, runs: list[Run], csv_path: Path, svg_path: Path) -> None:
        plot = self.query_one(SeriesPlot)
        try:
            try:
                csv_path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise write_error(exc, csv_path.parent, "nothing was exported", action="create") from None
            write_curves_csv(runs, csv_path)
            checkpoint.atomic_write_bytes(svg_path, plot.export_svg(plot.plot_title).encode("utf-8"))
        except RnnlabError as exc:
            self.notify(str(exc), title="Not exported", severity="error")
            return
        self.notify(f"{csv_path.name} and {svg_path.name} in {csv_path.parent}", title="Exported")

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
