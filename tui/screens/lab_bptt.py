"""The BPTT lab (D2L 8.7): a view of the Labs screen (``ctrl+l`` switches to it), four experiments.

``ctrl+t`` moves to the next experiment and ``ctrl+r`` (or enter in a field)
recomputes the one shown with the form's settings; each runs in a thread worker
(``engine.labs.bptt``, ``engine.labs.bptt_grads``, ``engine.labs.truncation``):

* power — log10 tan θ_k (the angle between M^k x and v₁), the bound
  gap^k tan θ₀ for a symmetric M, and log10 ‖M^k x‖ against k; the table
  gives |cos|, tan θ and the norm at about ten k;
* gradients — log10 ‖∂L_T/∂h_t‖ against t for each cell and W_hh scale (or a
  saved run's model: type its name in ``run``); the table gives ρ(W_hh), the
  factor per step back and the values 10, 50 and T steps back;
* steps — a short training run on the Corpus screen's corpus: every step's
  gradient norm before clipping, the window means the Train screen reports,
  and θ; the table shows each window's mean and largest norm. The plot grows
  while it trains; switching experiment or recomputing stops it;
* truncation — one model trained on the Corpus screen's corpus with regular,
  random and no truncation of BPTT: the validation perplexity of each per
  epoch, drawn as it trains; the table gives steps and seconds per epoch, the
  perplexities and the largest graph kept; under the form, the errors PyTorch
  raises when the state is not detached and the optimizer steps after every
  minibatch.

A few sentences next to each plot say what to look for. Left out: the
per-epoch table of the truncation comparison (``rnnlab lab bptt truncation``
prints it).
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
from textual.widgets import DataTable, Input, Label, Static
from textual.worker import Worker, WorkerState, get_current_worker

from engine.config import ModelConfig, TrainConfig
from engine.errors import ConfigError
from engine.labs.bptt import ALIGNED, SPIKE, FlowConfig, PowerConfig, summarize, window_means
from engine.labs.truncation import EpochFigures, TruncationConfig
from tui.cli.lab_bptt import flow_distances, power_rows
from tui.screens.base import error_text
from tui.widgets.form import FormScroll
from tui.widgets.plot import SeriesPlot

EXPERIMENTS = ("power", "gradients", "steps", "truncation")
_P, _F, _T, _C = PowerConfig(), FlowConfig(), TrainConfig(), TruncationConfig()
FIELDS: dict[str, tuple[tuple[str, str, str], ...]] = {  # experiment -> (name, default, hint) per form row
    "power": (("n", str(_P.n), "M is n × n"), ("lambda1", f"{_P.lambda1:g}", "|λ1| (gaussian: the entries' scale)"),
              ("gap", f"{_P.gap:g}", "|λ2/λ1|, in [0, 1)"), ("steps", str(_P.steps), "k = 0..steps"),
              ("matrix", _P.matrix, "symmetric | nonsymmetric | gaussian"), ("seed", str(_P.seed), "")),
    "gradients": (("models", ",".join(_F.models), "cells, comma-separated: kind or rnn:relu …"),
                  ("scales", "1,4", "factors for W_hh, comma-separated"),
                  ("num_steps", str(_F.num_steps), "T"), ("num_hiddens", str(_F.num_hiddens), ""),
                  ("batch_size", str(_F.batch_size), "sequences averaged (in log10)"), ("seed", str(_F.seed), ""),
                  ("run", "", "a saved run's name: its model on its corpus (empty: untrained cells)")),
    "steps": (("model", "rnn", "recurrent cell"), ("activation", "relu", "rnn/scratch: tanh | relu"),
              ("num_hiddens", "128", ""), ("lr", f"{_T.lr:g}", ""), ("clip_theta", f"{_T.clip_theta:g}", "θ"),
              ("batch_size", str(_T.batch_size), ""), ("num_steps", str(_T.num_steps), ""),
              ("steps", "200", "optimizer steps"), ("window", "10", "steps per window mean"),
              ("seed", str(_T.seed), "")),
    "truncation": (("model", _C.kind, "recurrent cell"), ("num_hiddens", str(_C.num_hiddens), ""),
                   ("epochs", str(_C.epochs), "the same for every strategy"),
                   ("truncation_p", f"{_C.truncation_p:g}", "random: chance of a cut per boundary"),
                   ("lr", f"{_C.lr:g}", "SGD, clip norm θ = 1"), ("batch_size", str(_C.batch_size), ""),
                   ("num_steps", str(_C.num_steps), ""),
                   ("max_tokens", str(_C.max_tokens), "first N tokens; the last 10% validate"),
                   ("seed", str(_C.seed), "")),
}
NOTES = {
    "power": "BPTT multiplies the gradient by a Jacobian once per step; here one matrix M does it. Along v1 "
             "x grows fastest: tan θ falls by |λ2/λ1| a step (a straight line in log10), and the length "
             "follows |λ1|^k, exploding above 1, vanishing below.",
    "gradients": "How much a loss at step T reaches the state at step t; read from the right, the slope is the "
                 "factor per step back. Scaling W_hh (ρ: spectral radius) tilts the plain RNN's line from "
                 "vanishing to exploding; gates flatten it.",
    "steps": "Each step's gradient norm before clipping, the window means the Train screen plots (•) and θ. "
             "A spike far above its window's mean is what clipping is for, and the mean hides it.",
    "truncation": "Same model, seed and epochs; only the cuts differ. steps, s/ep: medians per epoch; "
                  "graph: token positions in the largest graph kept.",
}


def _floats(name: str, text: str) -> tuple[float, ...]:
    try:
        return tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"{name} must be numbers separated by commas, e.g. 1,4 (got {text!r})") from None


def _int(name: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number (got {text.strip()!r})") from None


def _float(name: str, text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number (got {text.strip()!r})") from None


@dataclass(frozen=True)
class TruncationShown:
    """What the truncation experiment shows: each strategy's epochs so far; when done, the comparison,
    PyTorch's refusals and the explanation."""

    epochs: dict[str, list[EpochFigures]]
    total: int  # epochs to train, over all strategies
    comparison: Any = None  # engine.labs.truncation.Comparison once every strategy has run
    refusals: list[Any] | None = None


def short_error(error: str | None) -> str:
    """The error's first clause: 'Trying to backward through the graph a second time (or …' -> up to '('."""
    if error is None:
        return "no error"
    return error.split(" (")[0].split(": [")[0].rstrip(".")


def log10s(values: Any) -> list[float]:
    with np.errstate(divide="ignore"):
        return np.log10(np.asarray(values, dtype=float)).tolist()  # type: ignore[no-any-return]


class BpttLab(Vertical):
    """The three experiments: a form column, a note, a table and a plot."""

    @dataclass
    class Computed(Message):
        experiment: str
        result: Any

    @dataclass
    class StepsProgress(Message):
        records: list[Any]  # every StepRecord so far
        done: bool

    @dataclass
    class TruncationProgress(Message):
        shown: TruncationShown  # the epochs so far

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.experiment = EXPERIMENTS[0]
        self.results: dict[str, Any] = {}
        self.window = 10
        self.theta = 1.0

    def compose(self) -> ComposeResult:
        with Horizontal(id="bptt-body"):
            with FormScroll(id="bptt-form", classes="form"):
                yield Static("", id="bptt-heading", classes="form-heading")
                for experiment, rows in FIELDS.items():
                    for name, default, hint in rows:
                        with Horizontal(classes=f"field-row bptt-{experiment}"):
                            yield Label(name, classes="field-label")
                            yield Input(default, compact=True, id=f"bptt-{experiment}-{name}",
                                        select_on_focus=True, tooltip=hint or None)
                yield Static("", id="bptt-error", classes="error")
                yield Static("", id="bptt-refusals")
            with Vertical(id="bptt-main"):
                yield Static("", id="bptt-note")
                yield DataTable(id="bptt-table", cursor_type="none", zebra_stripes=True)
                yield SeriesPlot("", id="bptt-plot")

    def on_mount(self) -> None:
        self._show_fields()

    # -- the Labs screen's keys (it calls these while this view is shown) -------------------------------
    def shown(self) -> None:
        if self.experiment not in self.results:
            self.recompute()

    def toggle_view(self) -> None:
        self.workers.cancel_group(self, "lab-bptt")
        self.experiment = EXPERIMENTS[(EXPERIMENTS.index(self.experiment) + 1) % len(EXPERIMENTS)]
        self._show_fields()
        if self.experiment in self.results:
            self._display(self.experiment, self.results[self.experiment])
        else:
            self.recompute()

    def recompute(self) -> None:
        try:
            values = {name: self.query_one(f"#bptt-{self.experiment}-{name}", Input).value
                      for name, _, _ in FIELDS[self.experiment]}
            job = getattr(self, f"_{self.experiment}_job")(values)
        except ConfigError as exc:
            self._error(str(exc))
            return
        if job is not None:
            self._error("")
            self.query_one("#bptt-note", Static).update(f"computing {self.experiment} …")
            self._run(self.experiment, job)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.recompute()

    def _show_fields(self) -> None:
        for experiment in EXPERIMENTS:
            for row in self.query(f".bptt-{experiment}"):
                row.display = experiment == self.experiment
        self.query_one("#bptt-heading", Static).update(f"BPTT (8.7): {self.experiment}")
        self.query_one("#bptt-refusals", Static).display = self.experiment == "truncation"

    def _error(self, message: str) -> None:
        error = self.query_one("#bptt-error", Static)
        error.update(message)
        error.display = bool(message)

    # -- jobs: settings checked here (ConfigError), the work in the worker -------------------------------
    def _power_job(self, v: dict[str, str]) -> Any:
        from engine.labs.bptt import power_iteration

        cfg = PowerConfig(n=_int("n", v["n"]), lambda1=_float("lambda1", v["lambda1"]), gap=_float("gap", v["gap"]),
                          steps=_int("steps", v["steps"]), matrix=v["matrix"].strip(), seed=_int("seed", v["seed"]))
        return lambda stop: power_iteration(cfg)

    def _gradients_job(self, v: dict[str, str]) -> Any:
        from engine.labs.bptt import check_flow_sizes, check_scales
        from engine.labs.bptt_grads import corpus_windows, gradient_flow, run_gradient_flow

        scales = _floats("scales", v["scales"])
        T, B, seed = _int("num_steps", v["num_steps"]), _int("batch_size", v["batch_size"]), _int("seed", v["seed"])
        if v["run"].strip():
            from engine.runs import open_run

            check_scales(scales)
            check_flow_sizes(T, B, seed)
            name = v["run"].strip()

            def of_run(stop: Any) -> Any:
                run = open_run(name)
                return run_gradient_flow(run.load_model(), corpus_windows(run.corpus_ids(), T, B, seed), scales,
                                         run.name)
            return of_run
        cfg = FlowConfig(models=tuple(s.strip() for s in v["models"].split(",") if s.strip()), scales=scales,
                         num_steps=T, num_hiddens=_int("num_hiddens", v["num_hiddens"]), batch_size=B, seed=seed)
        return lambda stop: gradient_flow(cfg)

    def _steps_job(self, v: dict[str, str]) -> Any:
        from engine.labs.bptt_grads import step_norms

        pipeline = self.app.session.pipeline  # type: ignore[attr-defined]
        if pipeline is None:
            self._error("no corpus yet: load one on the Corpus screen (F1)")
            return None
        model_cfg = ModelConfig(kind=v["model"].strip(), activation=v["activation"].strip(),
                                num_hiddens=_int("num_hiddens", v["num_hiddens"]), vocab_size=len(pipeline.vocab))
        train_cfg = TrainConfig(lr=_float("lr", v["lr"]), clip_theta=_float("clip_theta", v["clip_theta"]),
                                batch_size=_int("batch_size", v["batch_size"]),
                                num_steps=_int("num_steps", v["num_steps"]),
                                seed=_int("seed", v["seed"]), device="cpu")
        steps, window = _int("steps", v["steps"]), _int("window", v["window"])
        window_means([], window)  # a bad window is refused before training
        self.window, self.theta = window, train_cfg.clip_theta

        def train_steps(stop: Any) -> Any:
            records, last = [], time.monotonic()
            for r in step_norms(pipeline.ids, model_cfg, train_cfg, steps, stop=stop):
                records.append(r)
                if time.monotonic() - last >= 0.25:  # throttled: the plot redraws a few times a second
                    self.post_message(self.StepsProgress(list(records), False))
                    last = time.monotonic()
            return records
        return train_steps

    def _truncation_job(self, v: dict[str, str]) -> Any:
        from engine.labs.truncation import compare, refusals

        pipeline = self.app.session.pipeline  # type: ignore[attr-defined]
        if pipeline is None:
            self._error("no corpus yet: load one on the Corpus screen (F1)")
            return None
        cfg = TruncationConfig(kind=v["model"].strip(), num_hiddens=_int("num_hiddens", v["num_hiddens"]),
                               epochs=_int("epochs", v["epochs"]),
                               truncation_p=_float("truncation_p", v["truncation_p"]), lr=_float("lr", v["lr"]),
                               batch_size=_int("batch_size", v["batch_size"]),
                               num_steps=_int("num_steps", v["num_steps"]),
                               max_tokens=_int("max_tokens", v["max_tokens"]), seed=_int("seed", v["seed"]))
        self.query_one("#bptt-refusals", Static).update("")

        def train_all(stop: Any) -> Any:
            epochs: dict[str, list[EpochFigures]] = {}
            last, total = time.monotonic(), cfg.epochs * len(cfg.strategies)
            gen = compare(pipeline.ids, len(pipeline.vocab), cfg, stop=stop)
            while True:
                try:
                    ev = next(gen)
                except StopIteration as done:
                    comparison = done.value
                    break
                if ev.figures is not None:
                    epochs.setdefault(ev.strategy, []).append(ev.figures)
                    if time.monotonic() - last >= 0.25:  # throttled: the plot redraws a few times a second
                        self.post_message(self.TruncationProgress(TruncationShown(
                            {k: list(v) for k, v in epochs.items()}, total)))
                        last = time.monotonic()
            return TruncationShown({r.strategy: r.epochs for r in comparison.results}, total, comparison,
                                   refusals(cfg.seed))
        return train_all

    @work(thread=True, exclusive=True, group="lab-bptt", exit_on_error=False)
    def _run(self, experiment: str, job: Any) -> None:
        worker = get_current_worker()
        result = job(worker.cancelled_event)
        if not worker.is_cancelled:
            self.post_message(self.Computed(experiment, result))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "lab-bptt" and event.state == WorkerState.ERROR:
            self._error(error_text(event.worker.error))
            self.query_one("#bptt-note", Static).update("")

    # -- display ------------------------------------------------------------------------------------------
    def on_bptt_lab_computed(self, message: Computed) -> None:
        self.results[message.experiment] = message.result
        if message.experiment == self.experiment:
            self._display(message.experiment, message.result)

    def on_bptt_lab_steps_progress(self, message: StepsProgress) -> None:
        if self.experiment == "steps":
            self._display("steps", message.records)

    def on_bptt_lab_truncation_progress(self, message: TruncationProgress) -> None:
        if self.experiment == "truncation" and "truncation" not in self.results:
            self._display("truncation", message.shown)

    def _display(self, experiment: str, result: Any) -> None:
        table, plot = self.query_one("#bptt-table", DataTable), self.query_one("#bptt-plot", SeriesPlot)
        table.clear(columns=True)
        plot.clear()
        figures = getattr(self, f"_show_{experiment}")(result, table, plot)
        self.query_one("#bptt-note", Static).update(f"{figures}\n{NOTES[experiment]}")
        plot.plot_title += "  (ctrl+t: next experiment)"
        plot.replot()

    def _show_power(self, r: Any, table: DataTable, plot: SeriesPlot) -> str:
        closed = r.predicted is not None
        table.add_columns("k", "|cos(M^k x, v1)|", "tan θ", "log10 ‖M^k x‖")
        for k in power_rows(r.config.steps):
            table.add_row(str(k), f"{r.alignment[k]:.6f}", f"{r.tangent[k]:.3e}", f"{r.log10_norm[k]:.2f}")
        ks = list(map(float, range(r.config.steps + 1)))
        plot.set_series("log10 tan θ", ks, log10s(r.tangent), color="cyan")
        if closed:
            plot.set_series("log10 gap^k tan θ0", ks, [math.log10(r.tangent[0]) + k * math.log10(r.gap)
                                                       if r.gap > 0 else -math.inf for k in ks], color="green")
        plot.set_series("log10 ‖M^k x‖", ks, r.log10_norm, color="orange")
        plot.plot_title, plot.xlabel = "M^k x: angle to v1 and length", "k"
        top = r.eigenvalues[0]
        first = "not within the steps" if r.steps_to_aligned is None else f"at k = {r.steps_to_aligned}"
        bound = f" (certain from k = {r.bound_to_aligned})" if r.bound_to_aligned is not None else ""
        pair = " (a complex pair: the angle is to its plane)" if abs(top.imag) > 1e-12 * abs(top) else ""
        return (f"|λ1| = {abs(top):.4g}{pair}, gap |λ2/λ1| = {r.gap:.4g}: |cos| > {ALIGNED} first {first}{bound}; "
                f"log10 ‖M^k x‖ {r.rate():+.4f} per step")

    def _show_gradients(self, curves: list[Any], table: DataTable, plot: SeriesPlot) -> str:
        T = curves[0].num_steps
        dists = [d for d in flow_distances(T) if d in (10, 50, T)]
        table.add_columns("model", "scale", "max ρ(W_hh)", "per step", *(f"T-{d}" for d in dists))
        ts = list(map(float, range(T + 1)))
        for c in curves:
            scale = "-" if c.scale is None else f"{c.scale:g}"
            radius = "no W_hh" if c.largest_radius is None else f"{c.largest_radius:.3g}"  # of the gate blocks
            table.add_row(c.model, scale, radius, f"{c.per_step():.3g}",
                          *(f"{c.at_distance(d):.2f}" if math.isfinite(c.at_distance(d)) else "-inf" for d in dists))
            plot.set_series(c.model if c.scale is None else f"{c.model} ×{c.scale:g}", ts, c.log10_norm)
        plot.plot_title, plot.xlabel = f"log10 ‖∂L_T/∂h_t‖, T = {T}", "t"
        return (f"T = {T}; columns T-d: log10 ‖∂L_T/∂h_(T-d)‖; "
                f"per step: (‖∂L_T/∂h_0‖ / ‖∂L_T/∂h_T‖)^(1/T); "
                f"{sum(c.per_step() > 1 for c in curves)} of {len(curves)} curves grow going back")

    def _show_steps(self, records: list[Any], table: DataTable, plot: SeriesPlot) -> str:
        table.add_columns("steps", "mean ‖g‖", "max ‖g‖", "at step", "clipped")
        plot.plot_title, plot.xlabel = "‖g‖ before clipping, per step", "step"
        if not records:
            return "training …"
        windows = window_means(records, self.window)
        for (end, mean, _), start in zip(windows, range(0, len(records), self.window)):
            w = records[start : start + self.window]
            top = max(w, key=lambda r: r.grad_norm)
            table.add_row(f"{w[0].step}-{end}", f"{mean:.4g}", f"{top.grad_norm:.4g}", str(top.step),
                          f"{sum(r.clipped for r in w)}/{len(w)}")
        steps = [float(r.step) for r in records]
        plot.set_series("‖g‖ per step", steps, [r.grad_norm for r in records], color="cyan")
        plot.set_series("window mean", [float(e) for e, _, _ in windows], [m for _, m, _ in windows],
                        color="orange")
        plot.series_markers["window mean"] = "•"
        plot.set_series("θ", [steps[0], steps[-1]], [self.theta, self.theta], color="red")
        s = summarize(records, self.window)
        return (f"{s.steps} steps: ‖g‖ median {s.median_norm:.3g}, largest {s.max_norm:.3g} at step {s.max_step} "
                f"(largest window mean {s.max_window_mean:.3g}); clipped {s.clipped}; "
                f"{len(s.spikes)} above {SPIKE:g}× the median")

    def _show_truncation(self, shown: TruncationShown, table: DataTable, plot: SeriesPlot) -> str:
        c = shown.comparison
        table.add_columns("strategy", "steps", "s/ep", "val", "best", "graph")
        plot.plot_title, plot.xlabel = "validation perplexity per epoch", "epoch"
        peaks = {r.strategy: f"{r.peak_positions:,}" for r in c.results} if c is not None else {}
        colors = {"regular": "cyan", "random": "orange", "none": "green"}
        best: dict[str, float] = {}
        for strategy, epochs in shown.epochs.items():
            vals = [e.val_ppl for e in epochs if e.val_ppl is not None]
            if vals:
                best[strategy] = min(vals)
            table.add_row(strategy, f"{np.median([e.steps for e in epochs]):g}",
                          f"{np.median([e.seconds for e in epochs]):.3f}",
                          f"{vals[-1]:.2f}" if vals else "-", f"{min(vals):.2f}" if vals else "-",
                          peaks.get(strategy, "…"))
        for strategy, epochs in reversed(shown.epochs.items()):  # regular drawn last, on top of the others
            plot.set_series(strategy, [float(e.epoch) for e in epochs],
                            [e.val_ppl if e.val_ppl is not None else math.nan for e in epochs],
                            color=colors.get(strategy))
        if shown.refusals is not None:
            lines = ["[b]No detach, a step after every minibatch:[/b]"]
            lines += [f"{r.variant}: {short_error(r.error)}" for r in shown.refusals]
            self.query_one("#bptt-refusals", Static).update("\n".join(lines))
        if c is None:
            done = sum(len(v) for v in shown.epochs.values())
            return f"training … {done} of {shown.total} epochs"
        if not best:
            return "stopped before an epoch ended" if c.stopped else "no validation tail"
        top = min(best, key=lambda k: best[k])
        target = max(best.values())
        firsts = {r.strategy: r.seconds_to(target) for r in c.results if r.strategy in best}
        first = min((k for k in firsts if firsts[k] is not None), key=lambda k: firsts[k])  # type: ignore[arg-type,return-value]
        return (f"lowest val ppl: {top} {best[top]:.2f}; first to {target:.2f}: {first} in {firsts[first]:.2f} s"
                + ("; stopped" if c.stopped else ""))
