"""Exercise 8.3.5: why read from a random offset, does it make coverage uniform, and how to make it more so?

How often each position of the text is read as input, over 1, ``epochs`` and ``long_epochs`` epochs
(``engine.data.coverage``), for three samplers that differ only in the offset:

* ``fixed``: offset 0 every epoch — the same subsequence boundaries each time, and the tail after the
  last whole subsequence is never read;
* ``random`` (D2L): a random offset in 0..num_steps−1 — boundaries move, but positions before the offset
  are skipped in that epoch (the first num_steps positions are read less) and the subsequences that do
  not fill a minibatch are dropped, so counts stay uneven;
* ``uniform``: the offset anywhere in the text, read as a ring, and every subsequence used: only the
  < num_steps positions left over each epoch are skipped, at a random place.

The spread is the coefficient of variation (std / mean) of the counts; "head" is the mean count of the
first num_steps positions over the overall mean.

Left out: sequential partitioning (its offset works the same way; see 8.3.4) and training.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from engine.config import option
from engine.exercises import iterator_runs as it
from engine.exercises.base import Exercise, Plot, Progress, Reference, Result, Series, check_stop
from engine.exercises.common import integer

SAMPLERS = ("fixed", "random", "uniform")


@dataclass(frozen=True)
class Settings(it.IteratorSettings):
    """D2L's sizes; the epochs counted over."""

    epochs: int = option(10, "epochs of the middle column")
    long_epochs: int = option(50, "epochs of the last column")

    def __post_init__(self) -> None:
        super().__post_init__()
        integer("long_epochs", self.long_epochs, 1, 100_000)


class RandomOffset(Exercise):
    id = "8.3.5"
    question = ("Why read long sequences from a random offset? Does it make the distribution over the document's "
                "subsequences perfectly uniform? What would make it more uniform?")
    Settings = Settings
    default = Settings()
    long = Settings(tokens=0, epochs=50, long_epochs=500)
    references = (  # deterministic given the seed: the tolerance is the rounding shown
        Reference("cv_random_50", 0.0690, 0.0001, "default", "std / mean of the counts, 50 epochs, seed 0"),
        Reference("cv_uniform_50", 0.0123, 0.0001, "default", ""),
        Reference("unseen_fixed_50", 0.0025, 0.0001, "default", "share of positions never read"),
        Reference("cv_random_500", 0.0117, 0.0001, "long", "the whole book, 500 epochs, seed 0"),
        Reference("cv_uniform_500", 0.0025, 0.0001, "long", ""),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        from engine.data import coverage

        ids, _ = it.ids_of(s)
        n, rows, figures, series = len(ids), [], {}, []
        runs = [(sampler, e) for sampler in SAMPLERS for e in (1, s.epochs, s.long_epochs)]
        for i, (sampler, epochs) in enumerate(runs):
            check_stop(stop)
            progress(i, len(runs), f"{sampler}, {epochs} epochs")
            c = coverage(n, s.batch_size, s.num_steps, sampler, epochs, s.seed)
            cv = float(c.std() / c.mean())
            head = float(c[: s.num_steps].mean() / c.mean())
            unseen = float(np.count_nonzero(c == 0) / n)
            rows.append([sampler, epochs, float(c.mean()), cv, int(c.min()), int(c.max()), unseen, head])
            figures[f"cv_{sampler}_{epochs}"], figures[f"unseen_{sampler}_{epochs}"] = cv, unseen
            figures[f"head_{sampler}_{epochs}"] = head
            if epochs == s.long_epochs:
                head_counts = c[: 4 * s.num_steps].astype(float) / epochs
                series.append(Series(sampler, list(map(float, range(len(head_counts)))), head_counts.tolist()))
        progress(len(runs), len(runs), "done")
        E = s.long_epochs
        f = figures
        explanation = (
            f"With offset 0 (fixed) the same {s.num_steps}-token boundaries come back every epoch, so a model "
            f"always sees the same splits, and {f[f'unseen_fixed_{E}']:.2%} of the text (the tail past the last "
            f"whole subsequence) is never read, however many epochs. A random offset moves the boundaries, but "
            f"after {E} epochs the counts still vary by {f[f'cv_random_{E}']:.1%} of their mean (fixed: "
            f"{f[f'cv_fixed_{E}']:.1%}): the first {s.num_steps} positions are read {f[f'head_random_{E}']:.2f}× "
            f"as often as the average (the offset skips them) and the subsequences that do not fill a minibatch "
            f"are dropped — not uniform. Reading the text as a ring from an offset anywhere and using every "
            f"subsequence (uniform) brings the spread to {f[f'cv_uniform_{E}']:.1%} and the head to "
            f"{f[f'head_uniform_{E}']:.2f}×; the counts then differ only by the few positions left over in "
            f"each epoch. Another fix: draw subsequences with replacement from every possible start.")
        plot = Plot(f"reads per epoch of the first {4 * s.num_steps} positions, {E} epochs", "position",
                    "reads per epoch", series)
        return Result(["sampler", "epochs", "mean count", "std / mean", "min", "max", "never read", "head"],
                      rows, explanation, figures, [plot])


EXERCISE = RandomOffset()
