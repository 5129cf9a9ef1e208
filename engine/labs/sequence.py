"""The sequence lab (D2L 8.1, and 8.6's RNN for the 8.1 model): predict a noisy sine, and see where it fails.

``run_lab(cfg)`` is a generator: it yields a ``LabProgress`` after every training epoch
and returns a ``SequenceLab`` holding each experiment's predictions and test MSEs
(``to_dict()``: the tables as JSON). The experiments (``EXPERIMENTS``):

* ``models``: D2L 8.1's data (``engine.labs.series.sine``) and four models on τ past
  observations (``engine.labs.sequence_models``): linear (least squares), D2L's MLP,
  a recurrent cell reading the window, and one reading the whole history; their one-step,
  k-step (k = 1, 4, 16, 64) and multi-step predictions, test MSE by model and k;
* ``tau``: the linear model and the MLP for τ = 1 … 16;
* ``exact``: σ = 0 and a linear model on τ = 2, which can be exact: the sine obeys
  ``x_{t+1} = 2 cos(ω) x_t − x_{t−1}``, so every k stays exact;
* ``blocks``: as many features as τ, but older observations merged into block means, against plain τ;
* ``regime``: the sine shifted up, or sped up, half-way through the test part: models that
  learnt the old regime extrapolate it;
* ``switching``: a level that flips after a dwell of 19–21 steps, a hidden state (how long it has
  held) that no window of τ ≤ 16 sees once it holds only the current level: every window model
  against a recurrent model over the whole history.

The split is D2L's: the first ``n_train`` examples of τ = ``cfg.tau`` train, so targets before
``split = n_train + τ`` are training targets, and ``x[split:]`` is the test part for every model
(whatever its window); multi-step predictions start there. Test MSE is the mean of
``(x̂_t − x_t)²`` over the test part. Seeds: the series, each model's weights and minibatch order.
The options and fixed choices are ``engine.labs.sequence_config``'s (torch-free, for the CLI).
Left out: plotting, formatting (``tui.cli.lab_sequence``, ``tui.screens.lab_sequence``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from engine.errors import ConfigError
from engine.jsonfloat import finite_or_none
from engine.labs import series as S
from engine.labs.sequence_config import (COLUMNS, EXPERIMENTS, KS, LEVEL_SHIFT, MLP_HIDDENS, SPEED_UP, SWITCH_DWELL,
                                         SWITCH_SIGMA, SWITCH_SPLIT, SWITCH_T, TAUS, SequenceConfig)
from engine.labs.sequence_models import (HistoryRNN, LinearWindow, MLPWindow, RNNWindow, Window, WindowModel,
                                         windows)


@dataclass(frozen=True)
class LabProgress:
    """One epoch of one model done."""

    experiment: str  # one of EXPERIMENTS
    model: str  # e.g. "mlp τ=4"
    epoch: int
    epochs: int
    loss: float  # MSE on the training targets after this epoch
    fits_done: int  # models fitted in the whole lab so far (this one counts once its last epoch is done)
    fits_total: int


@dataclass
class Prediction:
    """One model's predictions of one series (arrays of length T, NaN where there is none)."""

    model: str  # "linear", "mlp", "rnn window", "rnn history"
    window: Window | None  # what a window model reads; None: the whole history
    loss: float  # MSE on the training targets at the end
    one_step: np.ndarray
    k_step: dict[int, np.ndarray]
    multi: np.ndarray

    @property
    def label(self) -> str:
        """"τ=4", "2+2+2+2", "history"."""
        return self.window.label if self.window else "history"

    def mse(self, target: np.ndarray, lo: int, hi: int | None = None) -> dict[str, float]:
        """Test MSE over ``target[lo:hi]`` for each column of ``COLUMNS``."""
        preds = [self.k_step[k] for k in KS] + [self.multi]
        return {c: _mse(p[lo:hi], target[lo:hi]) for c, p in zip(COLUMNS, preds)}


def _mse(pred: np.ndarray, target: np.ndarray) -> float:
    keep = ~np.isnan(pred)
    return float(np.mean((pred[keep] - target[keep]) ** 2)) if keep.any() else math.nan


@dataclass
class Experiment:
    """The series an experiment predicts and its models' predictions; ``table`` is what it reports."""

    name: str
    series: list[S.Series]
    split: int
    predictions: list[list[Prediction]]  # per series
    table: list[dict[str, object]] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)  # figures besides the table


@dataclass
class SequenceLab:
    """The experiments run, by name, and the options they ran with."""

    config: SequenceConfig
    experiments: dict[str, Experiment]

    def to_dict(self) -> dict[str, object]:
        """The tables as JSON: NaN as null."""
        return _json({"config": asdict(self.config), "split": self.config.split,
                      **{name: {"facts": e.facts, "table": e.table} for name, e in self.experiments.items()}})


def _json(value: object) -> object:
    """``value`` with every non-finite float in it as None (``engine.jsonfloat``'s rule for figures)."""
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return value


class _Runner:
    """Fits models one after another, yielding their progress; counts fits for the progress bar."""

    def __init__(self, cfg: SequenceConfig, total: int, stop: threading.Event | None) -> None:
        self.cfg, self.total, self.stop, self.done = cfg, total, stop, 0
        self.experiment = ""

    def _train(self, label: str, epochs: int, fit: Iterator[tuple[int, float]]) -> Generator[LabProgress, None, float]:
        loss = math.nan
        for epoch, loss in fit:
            if self.stop is not None and self.stop.is_set():
                raise _Stopped
            self.done += epoch == epochs
            yield LabProgress(self.experiment, label, epoch, epochs, loss, self.done, self.total)
        return loss

    def fit(self, model: WindowModel | HistoryRNN, s: S.Series, split: int) -> Generator[LabProgress, None, float]:
        """Train ``model`` on the targets of ``s`` before ``split``; return its final training MSE."""
        if isinstance(model, HistoryRNN):
            return (yield from self._train(model.name, model.epochs, model.fit(s.x[:split])))
        span = model.window.span
        W, y = windows(s.x, span)[: split - span], s.x[span:split]
        epochs = getattr(model, "epochs", 1)
        return (yield from self._train(f"{model.name} {model.window.label}", epochs, model.fit(W, y)))

    @staticmethod
    def predict(model: WindowModel | HistoryRNN, s: S.Series, split: int, loss: float) -> Prediction:
        k_step = model.k_step(s.x, KS)
        if isinstance(model, HistoryRNN):
            return Prediction(model.name, None, loss, model.one_step(s.x), k_step, model.multi_step(s.x, split))
        return Prediction(model.name, model.window, loss, k_step[1], k_step, model.multi_step(s.x, split))

    def window(self, model: WindowModel | HistoryRNN, s: S.Series, split: int) -> Generator[LabProgress, None, Prediction]:
        """Fit, then predict ``s``."""
        loss = yield from self.fit(model, s, split)
        return self.predict(model, s, split, loss)

    def history(self, s: S.Series, split: int) -> Generator[LabProgress, None, Prediction]:
        return (yield from self.window(self.history_rnn(), s, split))

    # -- the models of the config -------------------------------------------------------------------------
    def history_rnn(self) -> HistoryRNN:
        c = self.cfg
        return HistoryRNN(kind=c.kind, num_hiddens=c.num_hiddens, epochs=c.history_epochs, num_steps=c.num_steps,
                          batch_size=c.batch_size, lr=c.lr, seed=c.seed)

    def linear(self, window: Window) -> LinearWindow:
        return LinearWindow(window)

    def mlp(self, window: Window) -> MLPWindow:
        c = self.cfg
        return MLPWindow(window, num_hiddens=MLP_HIDDENS, epochs=c.epochs, batch_size=c.batch_size, lr=c.lr,
                         seed=c.seed)

    def rnn_window(self, window: Window) -> RNNWindow:
        c = self.cfg
        return RNNWindow(window, kind=c.kind, num_hiddens=c.num_hiddens, epochs=c.epochs, batch_size=c.batch_size,
                         lr=c.lr, seed=c.seed)


class _Stopped(Exception):
    pass


def block_layouts(m: int) -> list[Window]:
    """m features: plain τ = m, blocks of 2 and of 4, and doubling blocks 1, 1, 2, 4 … (spans up to 64)."""
    layouts = [Window.plain(m), Window((2,) * m), Window((4,) * m),
               Window((1,) + tuple(2 ** i for i in range(m - 1)))]
    out: list[Window] = []
    for w in layouts:
        if w.span <= 64 and w not in out:
            out.append(w)
    return out


def _fits(cfg: SequenceConfig, experiments: tuple[str, ...]) -> int:
    """How many models the lab fits (for the progress bar)."""
    per = {"models": 4, "tau": 2 * len(TAUS), "exact": 1, "blocks": 2 * len(block_layouts(cfg.tau)),
           "regime": 3, "switching": 2 * len(TAUS) + 2}
    return sum(per[e] for e in experiments)


def run_lab(cfg: SequenceConfig, experiments: tuple[str, ...] = EXPERIMENTS,
            stop: threading.Event | None = None) -> Generator[LabProgress, None, SequenceLab | None]:
    """Run ``experiments`` in order; return their results, or None when ``stop`` was set."""
    unknown = [e for e in experiments if e not in EXPERIMENTS]
    if unknown or not experiments:
        raise ConfigError(f"experiments must be some of {', '.join(EXPERIMENTS)} (got {', '.join(unknown) or 'none'})")
    r = _Runner(cfg, _fits(cfg, experiments), stop)
    done: dict[str, Experiment] = {}
    try:
        for name in EXPERIMENTS:
            if name in experiments:
                r.experiment = name
                done[name] = yield from _EXPERIMENTS[name](r)
    except _Stopped:
        return None
    return SequenceLab(cfg, done)


Run = Generator[LabProgress, None, Experiment]


def _models(r: _Runner) -> Run:
    c, w = r.cfg, Window.plain(r.cfg.tau)
    s = S.sine(c.T, c.omega, c.sigma, c.seed)
    preds = []
    for model in (r.linear(w), r.mlp(w), r.rnn_window(w)):
        preds.append((yield from r.window(model, s, c.split)))
    preds.append((yield from r.history(s, c.split)))
    table = [{"model": p.model, "window": p.label, "loss": p.loss, "mse": p.mse(s.x, c.split)} for p in preds]
    return Experiment("models", [s], c.split, [preds], table)


def _tau(r: _Runner) -> Run:
    c = r.cfg
    s = S.sine(c.T, c.omega, c.sigma, c.seed)
    preds = []
    for tau in TAUS:
        for make in (r.linear, r.mlp):
            preds.append((yield from r.window(make(Window.plain(tau)), s, c.split)))
    table = [{"model": p.model, "tau": p.window.span, "mse": p.mse(s.x, c.split)} for p in preds if p.window]
    return Experiment("tau", [s], c.split, [preds], table)


def _exact(r: _Runner) -> Run:
    c = r.cfg
    s = S.sine(c.T, c.omega, 0.0, c.seed)
    model = LinearWindow(Window.plain(2))
    pred = yield from r.window(model, s, c.split)
    facts = {"coefficients": [float(v) for v in model.w], "bias": model.b,
             "expected": [-1.0, 2 * math.cos(c.omega)], "max_mse": max(pred.mse(s.x, c.split).values())}
    table = [{"model": pred.model, "window": pred.label, "mse": pred.mse(s.x, c.split)}]
    return Experiment("exact", [s], c.split, [[pred]], table, facts)


def _blocks(r: _Runner) -> Run:
    c = r.cfg
    s = S.sine(c.T, c.omega, c.sigma, c.seed)
    preds = []
    for w in block_layouts(c.tau):
        for make in (r.linear, r.mlp):
            preds.append((yield from r.window(make(w), s, c.split)))
    table = [{"model": p.model, "window": p.label, "blocks": list(p.window.blocks), "span": p.window.span,
              "mse": p.mse(s.x, c.split)} for p in preds if p.window]
    return Experiment("blocks", [s], c.split, [preds], table, {"features": c.tau})


def _regime(r: _Runner) -> Run:
    c = r.cfg
    change_at = c.split + (c.T - c.split) // 2
    level = S.regime_change(c.T, c.omega, c.sigma, c.seed, change_at, level=LEVEL_SHIFT)
    faster = S.regime_change(c.T, c.omega, c.sigma, c.seed, change_at, speed=SPEED_UP)
    # Both series are the same sine before the change, so the same fitted models serve both.
    assert np.array_equal(level.x[:change_at], faster.x[:change_at])
    w = Window.plain(c.tau)
    models: list[WindowModel | HistoryRNN] = [r.linear(w), r.mlp(w), r.history_rnn()]
    losses = []
    for model in models:
        losses.append((yield from r.fit(model, level, c.split)))
    all_preds, table = [], []
    for s in (level, faster):
        preds = [r.predict(model, s, c.split, loss) for model, loss in zip(models, losses)]
        all_preds.append(preds)
        table += [{"series": s.name, "model": p.model, "window": p.label,
                   "before": p.mse(s.x, c.split, change_at), "after": p.mse(s.x, change_at)} for p in preds]
    return Experiment("regime", [level, faster], c.split, all_preds, table, {"change_at": change_at})


def _switching(r: _Runner) -> Run:
    c = r.cfg
    s = S.switching(SWITCH_T, *SWITCH_DWELL, SWITCH_SIGMA, c.seed)
    preds = []
    for tau in TAUS:
        for make in (r.linear, r.mlp):
            preds.append((yield from r.window(make(Window.plain(tau)), s, SWITCH_SPLIT)))
    preds.append((yield from r.window(r.rnn_window(Window.plain(TAUS[-1])), s, SWITCH_SPLIT)))
    preds.append((yield from r.history(s, SWITCH_SPLIT)))
    table = [{"model": p.model, "window": p.label, "mse": _mse(p.one_step[SWITCH_SPLIT:], s.x[SWITCH_SPLIT:]),
              "mse_signal": _mse(p.one_step[SWITCH_SPLIT:], s.signal[SWITCH_SPLIT:])} for p in preds]
    best = min(table[:-1], key=lambda row: row["mse"])  # type: ignore[arg-type, return-value]
    facts = {"T": SWITCH_T, "split": SWITCH_SPLIT, "dwell": list(SWITCH_DWELL), "sigma": SWITCH_SIGMA,
             "best_window": best, "history": table[-1], "window_bound": S.window_bound(*SWITCH_DWELL, TAUS[-1])}
    return Experiment("switching", [s], SWITCH_SPLIT, [preds], table, facts)


_EXPERIMENTS = {"models": _models, "tau": _tau, "exact": _exact, "blocks": _blocks, "regime": _regime,
                "switching": _switching}
