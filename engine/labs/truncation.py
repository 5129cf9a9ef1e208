"""Truncation strategies compared (D2L 8.7): regular, randomised and no truncation of BPTT on one corpus.

``compare`` trains the same model (same seed, so the same initial weights and
minibatch order) for the same number of epochs on sequential minibatches once
per strategy of ``TrainConfig.truncation`` — with the real trainer,
``engine.trainer.train``, so the figures are the trainer's — and yields every
trainer event tagged with its strategy (the TUI plots them live; a
``threading.Event`` stops it). It returns a ``Comparison``: per strategy and
epoch the train and validation perplexity, the seconds the epoch took (its
validation pass included, the same for all) and the optimizer steps, plus the
largest graph kept. What to expect (``engine.truncation`` has the math):

* ``regular`` steps once per minibatch and keeps one minibatch's graph;
* ``none`` keeps one graph over the whole epoch and steps once per epoch: the
  exact gradient, but over the same passes it moves the weights far less often;
* ``random`` cuts each boundary with probability p: on average p × minibatches
  steps per epoch (plus one at the epoch's end), graphs of about 1/p minibatches.

The peak graph is measured by replaying the trainer's own cut decisions
(``engine.truncation.Cuts`` draws them from (seed, epoch)), next to the bound
``graph_positions`` that the trainer's memory check uses.

Given a pipeline and ``tags`` (say ``{"exercise": "8.5.5"}``), each strategy's run is an ordinary run
folder (``engine.runs.create_run``) tagged with them and ``"point": <strategy>``, so Runs can overlay
the strategies; every strategy's configuration is checked before the first folder is made.

``refusals`` shows why the optimizer cannot step between two minibatches
that share a graph: it carries the state without detaching, steps after the
first minibatch and runs the second's backward, plainly and with
``retain_graph=True``, and returns PyTorch's error for each.

Left out: cuts inside a minibatch (see ``engine.truncation``), several seeds
per strategy (one seed; the time figures vary from run to run), the plots.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.config import TRUNCATIONS, ModelConfig, TrainConfig
from engine.errors import ConfigError
from engine.events import Diverged, Event, Finished, Progress

# torch (engine.data, engine.training, engine.truncation, the trainer) is imported where it is used, so that
# rnnlab's parser reads TruncationConfig's defaults without it.


@dataclass(frozen=True)
class TruncationConfig:
    """The shared setup: one model, seed and budget; only the truncation differs between the runs."""

    kind: str = "gru"  # recurrent cell (engine.config.CELLS)
    num_hiddens: int = 128
    epochs: int = 20  # passes over the training tokens, the same for every strategy
    truncation_p: float = 0.5  # random: probability of a cut at each minibatch boundary
    lr: float = 1.0  # SGD with clipping by norm θ = 1 (D2L 8.5)
    batch_size: int = 32
    num_steps: int = 35
    max_tokens: int = 10_000  # D2L's 10,000 tokens; the last 10 % are the validation tail
    seed: int = 0  # the weights' initialisation and the minibatch order, for every strategy
    threads: int = 1  # torch's CPU threads (set for the whole process, as the trainer does; 0 = leave as is):
    # a model this small gains nothing from more, and on a busy machine they wait for each other
    strategies: tuple[str, ...] = TRUNCATIONS

    def __post_init__(self) -> None:
        if not self.strategies or any(s not in TRUNCATIONS for s in self.strategies):
            raise ConfigError(f"strategies must be some of {', '.join(TRUNCATIONS)} (got {self.strategies!r})")
        if len(set(self.strategies)) != len(self.strategies):
            raise ConfigError(f"strategies must not repeat (got {self.strategies!r})")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise ConfigError(f"threads must be 0 (torch's default) or a positive number (got {self.threads!r})")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or not 1 <= self.epochs <= 1000:
            raise ConfigError(f"epochs must be in 1..1000 (got {self.epochs!r})")
        self.model_config(28)  # the model's and the trainer's own checks (vocab_size comes with the corpus)
        for s in self.strategies:
            self.train_config(s)

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(kind=self.kind, num_hiddens=self.num_hiddens, vocab_size=vocab_size)

    def train_config(self, strategy: str) -> TrainConfig:
        """The trainer's options for one strategy: sequential minibatches, no samples, on the CPU."""
        return TrainConfig(lr=self.lr, epochs=self.epochs, batch_size=self.batch_size, num_steps=self.num_steps,
                           sampler="sequential", truncation=strategy, truncation_p=self.truncation_p,
                           max_tokens=self.max_tokens, seed=self.seed, sample_every=0, device="cpu",
                           threads=self.threads)


@dataclass(frozen=True)
class EpochFigures:
    """One epoch of one strategy, as the trainer's epoch-end Progress reports it."""

    epoch: int
    train_ppl: float
    val_ppl: float | None  # None when there is no validation tail
    seconds: float  # wall time of the epoch, its validation pass included
    steps: int  # optimizer steps taken in the epoch


@dataclass(frozen=True)
class StrategyResult:
    """One strategy's run."""

    strategy: str
    epochs: list[EpochFigures]
    minibatches: list[int]  # minibatches per epoch (sequential: the offset drawn may cost one)
    peak_positions: int  # token positions in the largest graph kept (minibatches × batch_size × num_steps)
    bound_positions: int  # engine.truncation.graph_positions: what the trainer's memory check allows for
    status: str  # the trainer's Finished reason: completed | stopped | diverged
    message: str = ""  # the trainer's Diverged message, if any
    run: str | None = None  # its run folder's name (None: trained without one)

    @property
    def seconds(self) -> float:
        return sum(e.seconds for e in self.epochs)

    @property
    def best_val(self) -> tuple[float, int] | None:
        """(lowest validation perplexity, its epoch)."""
        vals = [(e.val_ppl, e.epoch) for e in self.epochs if e.val_ppl is not None]
        return min(vals) if vals else None

    def seconds_to(self, val_ppl: float) -> float | None:
        """Training seconds until the validation perplexity first reached ``val_ppl`` (None: never)."""
        t = 0.0
        for e in self.epochs:
            t += e.seconds
            if e.val_ppl is not None and e.val_ppl <= val_ppl:
                return t
        return None


@dataclass(frozen=True)
class Comparison:
    config: TruncationConfig
    vocab_size: int
    train_tokens: int
    results: list[StrategyResult]  # in the order of config.strategies (fewer when stopped)
    stopped: bool = False


@dataclass(frozen=True)
class StrategyEvent:
    """A trainer event of one strategy's run."""

    strategy: str
    event: Event
    figures: EpochFigures | None = None  # at an epoch's end: the epoch's figures, as the Comparison keeps them


def compare(data: Any, vocab_size: int, cfg: TruncationConfig = TruncationConfig(), *,
            stop: threading.Event | None = None,
            tags: dict[str, str] | None = None) -> Generator[StrategyEvent, None, Comparison]:
    """Train once per strategy on ``data`` (ids or a pipeline; with a pipeline and ``tags``, each in a run
    folder); yield each run's events, return the figures (see the module docstring)."""
    from engine.runs import create_run
    from engine.training import prepare_ids

    ids = np.asarray(data.ids if hasattr(data, "ids") else data)
    model_cfg = cfg.model_config(vocab_size)
    checked = {s: prepare_ids(ids, model_cfg, cfg.train_config(s)) for s in cfg.strategies}  # refuse before any run
    _warm_up(ids, model_cfg, cfg.train_config(cfg.strategies[0]))
    results: list[StrategyResult] = []
    for strategy in cfg.strategies:
        train_cfg = cfg.train_config(strategy)
        run = create_run(None, model_cfg, train_cfg, data, tags={**tags, "point": strategy}) \
            if tags and hasattr(data, "corpus") else None
        result = yield from _one(ids, model_cfg, train_cfg, len(checked[strategy][0]), stop, run)
        results.append(result)
        if result.status == "stopped":
            break
    n_train = len(checked[cfg.strategies[0]][0])
    return Comparison(cfg, vocab_size, n_train, results, stopped=any(r.status == "stopped" for r in results))


def compare_all(ids: Any, vocab_size: int, cfg: TruncationConfig = TruncationConfig()) -> Comparison:
    """``compare`` run to its end, its events dropped."""
    gen = compare(ids, vocab_size, cfg)
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def _one(ids: np.ndarray, model_cfg: ModelConfig, train_cfg: TrainConfig, n_train: int,
         stop: threading.Event | None, run: Any = None) -> Generator[StrategyEvent, None, StrategyResult]:
    from engine.trainer import train
    from engine.truncation import graph_positions

    epochs: list[EpochFigures] = []
    elapsed, step, status, message = 0.0, 0, "completed", ""
    for event in train(ids, model_cfg, train_cfg, stop=stop, run=run):
        figures = None
        if isinstance(event, Progress) and event.epoch_end:
            figures = EpochFigures(event.epoch, event.train_ppl, event.val_ppl, event.elapsed_s - elapsed,
                                   event.step - step)
            epochs.append(figures)
            elapsed, step = event.elapsed_s, event.step
        elif isinstance(event, Diverged):
            message = event.message
        elif isinstance(event, Finished):
            status = event.reason
        yield StrategyEvent(train_cfg.truncation, event, figures)
    replay = replay_cuts(ids, model_cfg, train_cfg, len(epochs))
    one = train_cfg.batch_size * train_cfg.num_steps
    return StrategyResult(train_cfg.truncation, epochs, replay.minibatches, replay.longest * one,
                          graph_positions(train_cfg, n_train), status, message, run.name if run is not None else None)


@dataclass(frozen=True)
class Replay:
    """The trainer's minibatches and cut decisions over some epochs, replayed without training."""

    minibatches: list[int]  # per epoch (sequential: the offset drawn may cost one)
    segments: list[int]  # graphs kept per epoch = the optimizer steps the trainer takes
    longest: int  # the most minibatches one graph held


def replay_cuts(ids: np.ndarray, model_cfg: ModelConfig, train_cfg: TrainConfig, epochs: int) -> Replay:
    """Epochs 1..``epochs`` of the trainer: the same minibatches (rng (seed, epoch)) and the same cut decisions
    (``Cuts(train_cfg, epoch)``, drawn once per minibatch); the epoch's end always cuts."""
    from engine.data import train_batches
    from engine.training import prepare_ids
    from engine.truncation import Cuts

    train_ids, _ = prepare_ids(ids, model_cfg, train_cfg)
    counts, segments, longest = [], [], 0
    for epoch in range(1, epochs + 1):
        n = sum(1 for _ in train_batches(train_ids, train_cfg, np.random.default_rng([train_cfg.seed, epoch])))
        cuts, run, kept = Cuts(train_cfg, epoch), 0, 0
        for _ in range(n):
            run += 1
            if cuts.cut():
                longest, run, kept = max(longest, run), 0, kept + 1
        if run:  # what is left when the epoch ends
            longest, kept = max(longest, run), kept + 1
        counts.append(n)
        segments.append(kept)
    return Replay(counts, segments, longest)


def _warm_up(ids: np.ndarray, model_cfg: ModelConfig, train_cfg: TrainConfig) -> None:
    """One forward and backward pass before timing, so the first strategy does not pay torch's first-call costs."""
    import torch

    from engine.data import train_batches
    from engine.models import build_model
    from engine.training import prepare_ids, sequence_loss

    train_ids, _ = prepare_ids(ids, model_cfg, train_cfg)
    X, Y = next(iter(train_batches(train_ids, train_cfg, np.random.default_rng(0))))
    model = build_model(model_cfg)
    logits, _ = model(X, model.begin_state(X.shape[0], torch.device("cpu")))
    sequence_loss(logits, Y).backward()


# ---------------------------------------------------------------------------------------------------------
# What the numbers say
# ---------------------------------------------------------------------------------------------------------
def _n(k: float, word: str) -> str:
    return f"{k:g} {word}" + ("" if k == 1 else "es" if word.endswith("h") else "s")


def _median(values: Sequence[float]) -> float:
    return float(np.median(values)) if values else math.nan


def explain(c: Comparison) -> list[str]:
    """A few sentences reading the comparison's own figures."""
    if not c.results or not c.results[0].epochs:
        return ["no epoch finished: nothing to compare"]
    by = {r.strategy: r for r in c.results if r.epochs}
    lines = []
    for r in by.values():
        steps = [e.steps for e in r.epochs]
        mb = _median(r.minibatches)
        what = {"regular": "one step per minibatch",
                "none": "one step per epoch, on one graph over the whole epoch",
                "random": f"a step at each cut (p = {c.config.truncation_p:g} per boundary, plus the epoch's end)"
                }[r.strategy]
        held = r.peak_positions // (c.config.batch_size * c.config.num_steps)
        lines.append(f"{r.strategy}: {_n(_median(steps), 'step')} per epoch over {_n(mb, 'minibatch')} ({what}); "
                     f"its largest graph held {r.peak_positions:,} token positions ({_n(held, 'minibatch')}).")
    with_val = {s: r.best_val for s, r in by.items() if r.best_val is not None}
    if with_val:
        best = min(with_val, key=lambda s: with_val[s])  # type: ignore[arg-type,return-value]
        parts = ", ".join(f"{s} {v[0]:.2f}" for s, v in with_val.items())  # type: ignore[index]
        lines.append(f"Lowest validation perplexity after {c.config.epochs} epochs: {best} ({parts}).")
        target = max(v[0] for v in with_val.values())  # type: ignore[index]
        times = {s: by[s].seconds_to(target) for s in with_val}
        first = min((s for s in times if times[s] is not None), key=lambda s: times[s])  # type: ignore[arg-type,return-value]
        lines.append(f"Every strategy got to validation perplexity {target:.2f} (the worst of the best); {first} got "
                     "there first: " + ", ".join(f"{s} in {t:.2f} s" for s, t in times.items() if t is not None)
                     + ".")
    n, r = by.get("none"), by.get("regular")
    ratio = sum(e.steps for e in r.epochs) / max(1, sum(e.steps for e in n.epochs)) if n and r else 1.0
    if n and r and ratio > 1:
        worse = n.best_val is not None and r.best_val is not None and n.best_val[0] > r.best_val[0]
        lines.append(f"Over the same passes none updated the weights {ratio:.0f}× less often than regular"
                     + (": here its exact gradient was worth less than many cheap, slightly biased steps."
                        if worse else ", and still did as well or better here."))
    secs = ", ".join(f"{s} {_median([e.seconds for e in r.epochs]):.3f}" for s, r in by.items())
    lines.append(f"Seconds per epoch (median; they vary from run to run): {secs}.")
    return lines


# ---------------------------------------------------------------------------------------------------------
# Stepping the optimizer between minibatches that share a graph
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Refusal:
    """What PyTorch said when the second minibatch's backward reached into the first's graph."""

    variant: str  # "backward()" | "backward(retain_graph=True)"
    error: str | None  # the RuntimeError's first line; None if PyTorch let it pass
    why: str  # in plain words


WHY = {
    False: "The first backward freed the first minibatch's graph (the values it saved for the chain rule) once it "
           "was used; the state carried into the second minibatch still points into that graph, so the second "
           "backward has nothing left to go through.",
    True: "retain_graph kept the first graph, but it saved the weights as they were when the first minibatch ran; "
          "the optimizer's step then changed those weights in place, so their saved copies no longer hold the "
          "values the chain rule needs, and autograd, which counts every in-place change, refuses.",
}


def refusals(seed: int = 0) -> list[Refusal]:
    """Carry the state without detaching, step after minibatch 1, backpropagate minibatch 2; once with a plain
    backward and once with ``retain_graph=True``. A tiny RNN (8 hidden units, 5 tokens, 2 × 4 minibatches)."""
    import torch

    from engine.models import build_model
    from engine.training import sequence_loss

    out = []
    for retain in (False, True):
        torch.manual_seed(seed)
        model = build_model(ModelConfig(kind="rnn", num_hiddens=8, vocab_size=5))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        X, Y = torch.randint(0, 5, (2, 2, 4)), torch.randint(0, 5, (2, 2, 4))  # 2 minibatches of 2 rows × 4 steps
        state, error = model.begin_state(2, torch.device("cpu")), None
        try:
            for k in range(2):
                logits, state = model(X[k], state)  # the state is not detached: minibatch 2's graph reaches 1's
                optimizer.zero_grad()
                sequence_loss(logits, Y[k]).backward(retain_graph=retain)
                optimizer.step()  # in place
        except RuntimeError as exc:
            error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        why = WHY[retain] if error is not None else "PyTorch let it pass (unexpected for this version)."
        out.append(Refusal("backward(retain_graph=True)" if retain else "backward()", error, why))
    return out
