"""Exercise 8.5.5: sequential minibatches without detaching the state — what happens to time and perplexity?

Detaching is what lets the optimizer step after every minibatch: each step's backward goes through one
minibatch's graph. Not detaching can mean two things, and both are run here with the BPTT lab's own code
(``engine.labs.truncation``, not repeated):

* stepping after every minibatch anyway: PyTorch refuses. ``refusals`` carries the state without
  detaching through two minibatches of a tiny RNN with a step between them, once with a plain backward
  and once with ``retain_graph=True``, and returns each error (the first backward freed the graph; the
  step changed in place the weights the kept graph saved);
* keeping the graph and stepping once it ends: ``compare`` trains the same model from the same seed
  and minibatch order with the trainer's ``truncation`` regular (detach at every minibatch, D2L),
  ``none`` (one graph over the whole epoch, one step per epoch: the exact gradient of the epoch's
  loss) and ``random`` (cuts with probability p, reweighted). Reported per strategy: optimizer steps
  per epoch, the largest graph kept (token positions), seconds per epoch (wall time: it varies from
  run to run, so no reference), and validation perplexity. Each strategy's run is a run folder tagged
  ``{"exercise": "8.5.5", "point": <strategy>}``.

The default budget (20 epochs of an rnn of 128 units, D2L's 10,000 characters) is indicative; ``--long``
trains D2L's 500 epochs. Left out: memory measured on the device (the graph's size is counted in
positions, as the trainer's memory check counts it), several seeds per run.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.config import MODEL_KINDS, TRUNCATIONS, option
from engine.exercises.base import Exercise, Plot, Progress, Reference, Result, Series, check_stop, need
from engine.exercises.common import CORPUS_HELP, integer, pipeline


@dataclass(frozen=True)
class Settings:
    """The BPTT lab's truncation comparison at an exercise's size (``engine.labs.truncation.TruncationConfig``)."""

    corpus: str = option("timemachine", CORPUS_HELP)
    kind: str = option("rnn", "recurrent cell (D2L 8.5: the plain RNN)", MODEL_KINDS)
    num_hiddens: int = option(128, "hidden units")
    epochs: int = option(20, "passes over the training characters, the same for every strategy (D2L: 500)")
    lr: float = option(1.0, "SGD learning rate, clipping by norm θ = 1 (D2L 8.5)")
    strategies: tuple[str, ...] = option(TRUNCATIONS, "truncations compared: " + ", ".join(TRUNCATIONS))
    truncation_p: float = option(0.5, "random: probability of a cut at each minibatch boundary")
    max_tokens: int = option(10_000, "first N characters (D2L: 10,000; the last tenth is validation)")
    seed: int = option(0, "seeds the weights and the minibatch order of every strategy")
    threads: int = option(1, "CPU threads for torch, set for the whole process as the trainer does (0 = leave "
                             "as is)")

    def __post_init__(self) -> None:
        need(isinstance(self.corpus, str) and self.corpus != "", f"corpus must name a text (got {self.corpus!r})")
        need(self.kind in MODEL_KINDS, f"kind must be one of {', '.join(MODEL_KINDS)} (got {self.kind!r})")
        integer("num_hiddens", self.num_hiddens, 1, 4096)
        integer("epochs", self.epochs, 1, 1000)
        need(isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool) and 0 < self.lr <= 1000,
             f"lr must be in (0, 1000] (got {self.lr!r})")
        need(isinstance(self.strategies, tuple) and len(self.strategies) > 0
             and all(x in TRUNCATIONS for x in self.strategies) and len(set(self.strategies)) == len(self.strategies),
             f"strategies must be some of {', '.join(TRUNCATIONS)}, each once (got {self.strategies!r})")
        integer("max_tokens", self.max_tokens, 0, 10**9)
        integer("seed", self.seed, 0, 2**31 - 1)
        integer("threads", self.threads, 0, 1024)
        self.lab()  # the lab's own checks (truncation_p's range among them)

    def lab(self) -> Any:
        from engine.labs.truncation import TruncationConfig

        return TruncationConfig(kind=self.kind, num_hiddens=self.num_hiddens, epochs=self.epochs,
                                truncation_p=self.truncation_p, lr=self.lr, max_tokens=self.max_tokens,
                                seed=self.seed, threads=self.threads, strategies=self.strategies)


class NoDetaching(Exercise):
    id = "8.5.5"
    question = ("With sequential partitioning, what happens if the hidden state is not detached from the "
                "computational graph between minibatches? Does the running time change? The perplexity?")
    Settings = Settings
    default = Settings()
    long = Settings(epochs=500)
    references = (  # seed 0 at the default settings; the tolerances span seeds 0-1 (wall times: none, they vary)
        Reference("steps_per_epoch_regular", 8, 0, "default", "one step per minibatch: exact"),
        Reference("steps_per_epoch_none", 1, 0, "default", "one step per epoch: exact"),
        Reference("peak_positions_none", 8960, 0, "default", "8 minibatches × 32 × 35: exact"),
        Reference("best_val_regular", 10.42, 0.17, "default", "seeds 0-1 gave 10.42-10.59"),
        Reference("best_val_none", 16.61, 0.05, "default", "seeds 0-1 gave 16.56-16.61"),
        Reference("refused_retain_graph", 1, 0, "default", "PyTorch refuses both variants (torch 2.x)"),
        Reference("best_val_regular", 10.27, 0.12, "long", "seeds 0-1 gave 10.27-10.39 (epochs 43, 26)"),
        Reference("best_val_none", 10.38, 0.02, "long", "seeds 0-1 gave 10.36-10.38 (epochs 180, 194)"),
        Reference("steps_per_epoch_none", 1, 0, "long", "exact"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        from engine.labs.truncation import compare, refusals

        p = pipeline(s.corpus)
        total = len(s.strategies) * s.epochs
        gen = compare(p, len(p.vocab), s.lab(), stop=stop, tags={"exercise": self.id})
        done = 0
        while True:
            try:
                ev = next(gen)
            except StopIteration as end:
                c = end.value
                break
            if ev.figures is not None:
                done += 1
                progress(done, total + 1, f"{ev.strategy}: epoch {ev.figures.epoch}, "
                                          f"perplexity {ev.figures.train_ppl:.2f}")
        check_stop(stop)
        progress(total, total + 1, "stepping between minibatches that share a graph")
        refused = refusals(s.seed)
        progress(total + 1, total + 1, "done")
        rows, figures, curves = [], {}, []
        for r in c.results:
            steps = float(np.median([e.steps for e in r.epochs]))
            secs = float(np.median([e.seconds for e in r.epochs]))
            best = r.best_val or (math.nan, 0)
            last = r.epochs[-1]
            rows.append([r.strategy, steps, float(np.median(r.minibatches)), r.peak_positions, secs, r.seconds,
                         best[0], best[1], last.train_ppl])
            figures |= {f"steps_per_epoch_{r.strategy}": steps, f"peak_positions_{r.strategy}": float(r.peak_positions),
                        f"best_val_{r.strategy}": best[0], f"seconds_per_epoch_{r.strategy}": secs,
                        f"final_train_ppl_{r.strategy}": last.train_ppl}
            curves.append(Series(r.strategy, [float(e.epoch) for e in r.epochs],
                                 [e.val_ppl if e.val_ppl is not None else math.nan for e in r.epochs]))
        for x in refused:
            figures["refused_" + ("retain_graph" if "retain" in x.variant else "backward")] = float(x.error is not None)
        return Result(["truncation", "steps / epoch", "minibatches / epoch", "largest graph (positions)",
                       "s / epoch", "s in all", "best val ppl", "at epoch", "final train ppl"], rows,
                      explain(s, c, refused), figures,
                      [Plot("validation perplexity per epoch", "epoch", "perplexity", curves)],
                      runs=[r.run for r in c.results if r.run is not None])


def explain(s: Settings, c: Any, refused: list[Any]) -> str:
    """What the comparison and the refusals say, from their own figures."""
    by = {r.strategy: r for r in c.results if r.epochs}
    parts = []
    plain, kept = refused
    parts.append("Stepping after every minibatch without detaching is refused by PyTorch: with a plain backward "
                 f"({_first(plain.error)}) because the first backward already freed the graph the carried state "
                 f"points into; with retain_graph=True ({_first(kept.error)}) because the step changed in place the "
                 "weights that graph saved. So without detaching one graph must run until the optimizer steps.")
    reg, none = by.get("regular"), by.get("none")
    if reg and none:
        rs, ns = (float(np.median([e.steps for e in r.epochs])) for r in (reg, none))
        rt, nt = (float(np.median([e.seconds for e in r.epochs])) for r in (reg, none))
        ratio = none.peak_positions / max(1, reg.peak_positions)
        parts.append(
            f"Keeping the graph over the whole epoch (none) gives {ns:g} step per epoch against {rs:g} with "
            f"detaching (regular), and a graph of {none.peak_positions:,} token positions against "
            f"{reg.peak_positions:,}: memory grows with the length of text kept, {ratio:.0f}× here. Time per epoch: "
            f"{nt:.3f} s without detaching, {rt:.3f} s with (medians; wall times vary from run to run). The "
            "arithmetic of an epoch is the same either way — every position goes forward and backward once, "
            "whichever graph it belongs to, and only the cheap optimizer steps are fewer — "
            + ("so the times are close." if 0.75 <= nt / rt <= 1.33 else
               "so a gap this size comes from elsewhere: holding a graph that much larger, or a busy machine "
               "(rerun to tell)."))
        if reg.best_val and none.best_val:
            (nv, ne), (rv, re_) = none.best_val, reg.best_val
            head = (f"Perplexity after {s.epochs} epochs: best validation {nv:.2f} without detaching (epoch {ne}), "
                    f"{rv:.2f} with (epoch {re_})")
            if abs(nv - rv) <= 0.03 * rv:
                parts.append(head + f": about the same in the end, reached {ne / max(1, re_):.1f}× as many epochs "
                             "later.")
            elif nv > rv:
                parts.append(head + f": the exact gradient over the epoch is worth less than {rs / max(ns, 1):.0f}× "
                             "as many steps, each with a gradient that ignores dependencies longer than num_steps.")
            else:
                parts.append(head + ": here the exact gradient did better despite the fewer steps.")
            steps = sum(e.steps for e in none.epochs)
            same = equal_steps(reg, steps)
            if same is not None:
                close = abs(same[2] - nv) <= 0.05 * nv
                parts.append(("Step for step the two are close" if close else
                              f"Step for step {'none' if nv < same[2] else 'regular'} is ahead")
                             + f": by epoch {same[0]} regular had taken {same[1]} steps and its best validation "
                             f"perplexity was {same[2]:.2f}, against {nv:.2f} for none in its {steps} steps"
                             + (" — what none lacks is steps." if close else "."))
    rnd = by.get("random")
    if rnd and rnd.best_val:
        parts.append(f"Random truncation (p = {s.truncation_p:g}) took "
                     f"{float(np.median([e.steps for e in rnd.epochs])):g} steps per epoch (median), graphs of up to "
                     f"{rnd.peak_positions:,} positions, best validation {rnd.best_val[0]:.2f}.")
    if s.epochs < NoDetaching.long.epochs:
        parts.append(f"{s.epochs} epochs is indicative; --long trains D2L's {NoDetaching.long.epochs}.")
    return " ".join(parts)


def equal_steps(r: Any, steps: int) -> tuple[int, int, float] | None:
    """(epoch, steps taken by then, lowest validation perplexity so far) of run ``r`` at the first epoch end
    where it has taken at least ``steps`` optimizer steps; None when it never did or had no validation figure."""
    taken, vals = 0, []
    for e in r.epochs:
        taken += e.steps
        if e.val_ppl is not None:
            vals.append(e.val_ppl)
        if taken >= steps:
            return (e.epoch, taken, min(vals)) if vals else None
    return None


def _first(error: str | None, words: int = 9) -> str:
    """The start of PyTorch's message, enough to recognise it."""
    if error is None:
        return "PyTorch let it pass"
    w = error.split()
    return "“" + " ".join(w[:words]) + ("…" if len(w) > words else "") + "”"


EXERCISE = NoDetaching()
