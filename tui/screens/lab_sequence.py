"""The sequence lab (D2L 8.1, and 8.6's RNN for it): a view of the Labs screen (``ctrl+l`` until it shows).

The form holds ``engine.labs.sequence_config.SequenceConfig``'s options (D2L's values);
``ctrl+r`` (or enter in a field) runs the lab with them in a thread worker, the shown
experiment first, then the others, each appearing as it is done; the note says which
model is training meanwhile. ``ctrl+t`` steps through the views:

* models — the data; one-step, multi-step and (for D2L's MLP) k-step predictions; the
  table: test MSE by model and k;
* τ sweep — log10 test MSE against τ; the table by τ;
* σ = 0 — log10 |x̂_t − x_t| of the exact linear model for every k: rounding error;
* blocks — log10 test MSE against k for each block layout;
* regime: level / speed — the changed series and 16-step predictions; MSE before and after;
* switching — a stretch of the test part with the recurrent model's and the best window's
  one-step predictions; the table sorted by test MSE.

Next to each plot: the figures that answer the view's question and a few sentences on
what to look for. Left out: saving results, choosing the model of the k-step plot.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Static
from textual.worker import Worker, WorkerState, get_current_worker

from engine.labs.sequence_config import EXPERIMENTS, SequenceConfig
from tui.cli.lab_sequence import num
from tui.screens.base import error_text
from tui.widgets.form import ConfigForm, specs_for
from tui.widgets.plot import SeriesPlot

VIEWS = (("models", "data"), ("models", "one-step"), ("models", "multi-step"), ("models", "k-step"),
         ("tau", "τ sweep"), ("exact", "σ = 0"), ("blocks", "blocks"), ("regime", "level"), ("regime", "speed"),
         ("switching", "switching"))
NOTES = {
    "data": "D2L's series: a slow sine (one period is 2π/ω steps) under noise. The models learn from the part "
            "left of the line and are scored on the part right of it.",
    "one-step": "Each prediction sees the true values up to the step before. One step ahead the next value is "
                "almost the last ones, so every model follows the data, and the noise (σ²) is most of the error.",
    "multi-step": "From the line on each model reads only its own outputs. Every small error becomes part of the "
                  "next input, so the errors pile up and the predictions drift flat or away.",
    "k-step": "Each point is predicted k steps after the last true value the MLP saw (D2L's figure). At k = 1 it "
              "tracks the data; at k = 64 it has fed itself 63 guesses and the shape is gone.",
    "τ sweep": "A longer window averages more noise away: one step ahead the error falls with τ, then levels off. "
               "Far ahead no τ helps much: the guesses fed back dominate.",
    "σ = 0": "Without noise the sine obeys x_t = 2cos(ω) x_(t-1) − x_(t-2), so a linear model on τ = 2 can be "
             "exact, and least squares finds it: its own outputs are as good as the data, for every k.",
    "blocks": "The same number of features, but older observations merged into means: the model remembers "
              "further back and averages noise away. One step ahead that beats plain τ.",
    "level": "After the change the series sits 2 higher than anything seen in training. The linear rule holds "
             "at any level, so one step ahead it recovers; the MLP and the recurrent model never saw such "
             "inputs and miss even one step ahead.",
    "speed": "After the change the sine runs 3 times faster. One step ahead the models cope (nearby values "
             "still say where the curve goes); further ahead they extrapolate the slow sine they learnt.",
    "switching": "The level flips after 19–21 steps. Once a window holds only the current level it cannot tell "
                 "how long the level has held, so it cannot see the flip coming; a recurrent state carried "
                 "along the whole history can count.",
}
CELL = {"linear": "cyan", "mlp": "orange", "window": "green", "history": "magenta"}


def _color(model: str) -> str:
    return CELL["window" if model.endswith("window") else "history" if model.endswith("history") else model]


def log10s(values: Any) -> list[float]:
    with np.errstate(divide="ignore"):
        return np.log10(np.abs(np.asarray(values, dtype=float))).tolist()  # type: ignore[no-any-return]


def times(n: int, start: int = 0) -> list[float]:
    """t = start + 1 … start + n: the book's time of indices start … start + n - 1."""
    return [float(t) for t in range(start + 1, start + n + 1)]


class SequenceLabView(Vertical):
    """The form, a note, a table and a plot; the Labs screen calls ``shown``, ``toggle_view``, ``recompute``."""

    @dataclass
    class Computed(Message):
        cfg: SequenceConfig
        experiment: Any  # engine.labs.sequence.Experiment

    @dataclass
    class Progress(Message):
        cfg: SequenceConfig
        event: Any  # engine.labs.sequence.LabProgress

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view = 0
        self.cfg: SequenceConfig | None = None  # of the results (and of the run under way)
        self.results: dict[str, Any] = {}
        self.progress: Any = None
        self.worker: Worker[None] | None = None  # the run under way, if any
        self.error = ""  # why the last run failed

    @property
    def running(self) -> bool:
        return self.worker is not None and not self.worker.is_finished

    def compose(self) -> ComposeResult:
        with Horizontal(id="seq-body"):
            yield ConfigForm(specs_for(SequenceConfig, "sequence"),
                             headings={"sequence-T": "sequence (8.1)"}, id="seq-form")
            with Vertical(id="seq-main"):
                yield Static("", id="seq-note")
                yield DataTable(id="seq-table", cursor_type="none", zebra_stripes=True)
                yield SeriesPlot("", id="seq-plot")

    # -- the Labs screen's keys ------------------------------------------------------------------------------
    def shown(self) -> None:
        if not self.results and not self.running:
            self.recompute()

    def toggle_view(self) -> None:
        self.view = (self.view + 1) % len(VIEWS)
        self._display()

    def recompute(self) -> None:
        cfg = self.query_one(ConfigForm).validate(lambda v: SequenceConfig(**v["sequence"]))
        if cfg is None:
            self.query_one("#seq-note", Static).update(self.query_one(ConfigForm).first_error())
            return
        self.cfg, self.results, self.progress, self.error = cfg, {}, None, ""
        first = VIEWS[self.view][0]
        self.worker = self._run(cfg, (first, *(e for e in EXPERIMENTS if e != first)))
        self._display()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()  # the Labs screen's own handler recomputes coverage
        self.recompute()

    @on(ConfigForm.Changed)
    def _changed(self, event: ConfigForm.Changed) -> None:
        event.stop()
        event.form.validate(lambda v: SequenceConfig(**v["sequence"]))

    # -- the worker ----------------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="lab-sequence", exit_on_error=False)
    def _run(self, cfg: SequenceConfig, order: tuple[str, ...]) -> None:
        import torch

        from engine.labs.sequence import run_lab

        # The models are tiny: a second thread only spins (3× slower on 2 cores). With torch's OpenMP
        # backend the setting belongs to this worker's thread, so a run training meanwhile keeps its own.
        torch.set_num_threads(1)
        worker, last = get_current_worker(), 0.0
        for name in order:
            steps = run_lab(cfg, (name,), stop=worker.cancelled_event)
            try:
                while True:
                    event = next(steps)
                    if time.monotonic() - last >= 0.2:  # throttled: the note changes a few times a second
                        self.post_message(self.Progress(cfg, event))
                        last = time.monotonic()
            except StopIteration as done:
                lab = done.value
            if lab is None or worker.is_cancelled:
                return
            self.post_message(self.Computed(cfg, lab.experiments[name]))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self.worker:  # another view's, or a run ctrl+r replaced
            return
        if event.state == WorkerState.ERROR:
            self.error = error_text(event.worker.error)
        if event.state in (WorkerState.ERROR, WorkerState.SUCCESS) and VIEWS[self.view][0] not in self.results:
            self._display()

    def on_sequence_lab_view_progress(self, message: Progress) -> None:
        if message.cfg != self.cfg:  # from a run ctrl+r replaced
            return
        self.progress = message.event
        if VIEWS[self.view][0] not in self.results:
            self._display()

    def on_sequence_lab_view_computed(self, message: Computed) -> None:
        if message.cfg == self.cfg:
            self.results[message.experiment.name] = message.experiment
            if VIEWS[self.view][0] == message.experiment.name:
                self._display()

    # -- display -------------------------------------------------------------------------------------------------
    def _display(self) -> None:
        experiment, view = VIEWS[self.view]
        table, plot = self.query_one("#seq-table", DataTable), self.query_one("#seq-plot", SeriesPlot)
        note = self.query_one("#seq-note", Static)
        table.clear(columns=True)
        plot.clear()
        plot.plot_title, plot.xlabel = f"{experiment}: {view}  (ctrl+t: next view)", ""
        e = self.results.get(experiment)
        if e is None:
            p = self.progress
            doing = "" if p is None else (f": {p.experiment}, {p.model} epoch {p.epoch}/{p.epochs}, "
                                          f"training MSE {p.loss:.4g}; {p.fits_done} of {p.fits_total} models")
            note.update(f"computing {experiment}{doing}" if self.running else self.error or "ctrl+r runs the lab")
        else:
            figures = getattr(self, f"_show_{experiment}")(e, view, table, plot)
            plot.plot_title = f"{figures[0]}  (ctrl+t: next view)"
            note.update(f"{figures[1]}\n{NOTES[view]}")
        plot.replot()

    def _split_line(self, plot: SeriesPlot, at: int, ys: np.ndarray, name: str = "train | test") -> None:
        lo, hi = float(np.nanmin(ys)), float(np.nanmax(ys))
        plot.set_series(name, [at + 0.5, at + 0.5], [lo, hi], color="white")

    def _mse_rows(self, table: DataTable, rows: list[list[str]], *headers: str) -> None:
        table.add_columns(*headers)
        for row in rows:
            table.add_row(*row)

    def _show_models(self, e: Any, view: str, table: DataTable, plot: SeriesPlot) -> tuple[str, str]:
        s, preds = e.series[0], e.predictions[0]
        self._mse_rows(table, [[r["model"], r["window"], num(r["loss"]), *(num(v) for v in r["mse"].values())]
                               for r in e.table], "model", "window", "train", "k=1", "k=4", "k=16", "k=64", "multi")
        t = times(len(s.x))
        plot.set_series("x", t, s.x.tolist(), color="white")
        if view == "data":
            plot.set_series("sin(ω t)", t, s.signal.tolist(), color="cyan")
            title = "the data x_t = sin(ω t) + ε"
        elif view == "k-step":
            mlp = next(p for p in preds if p.model == "mlp")
            for k, color in zip(mlp.k_step, ("cyan", "orange", "green", "magenta")):
                plot.set_series(f"{k}-step", t, mlp.k_step[k].tolist(), color=color)
            title = "the MLP's k-step-ahead predictions"
        else:
            which = "one_step" if view == "one-step" else "multi"
            for p in preds:
                plot.set_series(p.model, t, getattr(p, which).tolist(), color=_color(p.model))
            title = f"{view} predictions"
        self._split_line(plot, e.split, s.x)
        plot.xlabel = "t"
        one, far = (min(e.table, key=lambda r: r["mse"][k]) for k in ("1", "64"))
        return title, (f"test: t > {e.split} ({len(s.x) - e.split} targets); best one step ahead: {one['model']} "
                       f"{num(one['mse']['1'])}; best 64 ahead: {far['model']} {num(far['mse']['64'])}")

    def _show_tau(self, e: Any, view: str, table: DataTable, plot: SeriesPlot) -> tuple[str, str]:
        by = {(r["model"], r["tau"]): r["mse"] for r in e.table}
        taus = sorted({tau for _, tau in by})
        self._mse_rows(table, [[str(tau), *(num(by[m, tau][k]) for m in ("linear", "mlp") for k in ("1", "16", "64"))]
                               for tau in taus], "τ", "linear k=1", "k=16", "k=64", "mlp k=1", "k=16", "k=64")
        colors = iter(("cyan", "blue", "green", "yellow", "orange", "magenta"))
        for model, ks in (("linear", ("1", "4", "16", "64")), ("mlp", ("1", "16"))):
            for k in ks:
                plot.set_series(f"{model} k={k}", list(map(float, taus)), log10s([by[model, tau][k] for tau in taus]),
                                color=next(colors))
        plot.xlabel = "τ"
        best = {m: min(taus, key=lambda tau: by[m, tau]["1"]) for m in ("linear", "mlp")}
        return "log10 test MSE against τ", ("best τ one step ahead: " + ", ".join(
            f"{m} τ={tau} ({num(by[m, tau]['1'])})" for m, tau in best.items()))

    def _show_exact(self, e: Any, view: str, table: DataTable, plot: SeriesPlot) -> tuple[str, str]:
        s, p, f = e.series[0], e.predictions[0][0], e.facts
        r = e.table[0]
        self._mse_rows(table, [[r["model"], r["window"], *(num(v) for v in r["mse"].values())]],
                       "model", "window", "k=1", "k=4", "k=16", "k=64", "multi")
        t = times(len(s.x) - e.split, e.split)
        for k, color in zip(p.k_step, ("cyan", "orange", "green", "magenta")):
            plot.set_series(f"{k}-step", t, log10s(p.k_step[k][e.split:] - s.x[e.split:]), color=color)
        plot.set_series("multi", t, log10s(p.multi[e.split:] - s.x[e.split:]), color="white")
        plot.xlabel = "t"
        w, want = f["coefficients"], f["expected"]
        return "log10 |x̂_t − x_t| on the test part", (
            f"fitted x̂_t = {w[0]:.9f} x_(t-2) {w[1]:+.9f} x_(t-1) {f['bias']:+.1e}; 2cos(ω) = {want[1]:.9f}; "
            f"largest test MSE {num(f['max_mse'])}" + (" < 1e-6" if f["max_mse"] < 1e-6 else ""))

    def _show_blocks(self, e: Any, view: str, table: DataTable, plot: SeriesPlot) -> tuple[str, str]:
        rows = {(r["model"], r["window"]): r for r in e.table}
        layouts = list(dict.fromkeys(w for _, w in rows))
        self._mse_rows(table, [[w, str(rows["linear", w]["span"]),
                                *(num(rows[m, w]["mse"][k]) for m in ("linear", "mlp") for k in ("1", "16", "64"))]
                               for w in layouts], "window", "span", "linear k=1", "k=16", "k=64", "mlp k=1", "k=16",
                       "k=64")
        ks = [1.0, 4.0, 16.0, 64.0]
        for w, color in zip(layouts, ("white", "cyan", "orange", "green", "magenta")):
            mse = rows["linear", w]["mse"]
            plot.set_series(f"linear {w}", [math.log2(k) for k in ks], log10s([mse[str(int(k))] for k in ks]),
                            color=color)
        plot.xlabel = "log2 k"
        plain = layouts[0]
        best = min(layouts, key=lambda w: rows["linear", w]["mse"]["1"])
        return f"log10 test MSE of the linear model against k, {e.facts['features']} features", (
            f"one step ahead, linear: {best} {num(rows['linear', best]['mse']['1'])} against plain {plain} "
            f"{num(rows['linear', plain]['mse']['1'])}")

    def _show_regime(self, e: Any, view: str, table: DataTable, plot: SeriesPlot) -> tuple[str, str]:
        i = 0 if view == "level" else 1
        s, preds, at = e.series[i], e.predictions[i], e.facts["change_at"]
        rows = [r for r in e.table if r["series"] == s.name]
        self._mse_rows(table, [[r["model"], *(num(r[when][k]) for k in ("1", "16") for when in ("before", "after"))]
                               for r in rows], "model", "k=1 before", "after", "k=16 before", "after")
        t = times(len(s.x))
        plot.set_series("x", t, s.x.tolist(), color="white")
        for p in preds:
            plot.set_series(f"{p.model} 16-step", t, p.k_step[16].tolist(), color=_color(p.model))
        self._split_line(plot, e.split, s.x)
        self._split_line(plot, at, s.x, "change")
        plot.xlabel = "t"
        return f"{s.name} from t = {at + 1}: x and 16-step predictions", (
            "one step ahead after the change: " + ", ".join(f"{r['model']} {num(r['after']['1'])}" for r in rows))

    def _show_switching(self, e: Any, view: str, table: DataTable, plot: SeriesPlot) -> tuple[str, str]:
        s, preds, f = e.series[0], e.predictions[0], e.facts
        ranked = sorted(zip(e.table, preds), key=lambda rp: rp[0]["mse"])
        self._mse_rows(table, [[r["model"], r["window"], num(r["mse"]), num(r["mse_signal"])] for r, _ in ranked],
                       "model", "window", "test MSE", "vs level")
        lo, hi = e.split, e.split + 200
        t = times(hi - lo, lo)
        plot.set_series("x", t, s.x[lo:hi].tolist(), color="white")
        best = next(p for r, p in ranked if r["window"] != "history")
        history = next(p for r, p in ranked if r["window"] == "history")
        plot.set_series(f"{best.model} {best.label}", t, best.one_step[lo:hi].tolist(), color="orange")
        plot.set_series(history.model, t, history.one_step[lo:hi].tolist(), color="magenta")
        plot.xlabel = "t"
        h, b = f["history"], f["best_window"]
        return "one-step predictions on the first 200 test steps", (
            f"{h['model']} {num(h['mse'])} against the best window's {num(b['mse'])} ({b['model']} {b['window']}); "
            f"no window of τ <= 16 gets below {num(f['window_bound'])} against the level ({h['model']}: "
            f"{num(h['mse_signal'])})")
