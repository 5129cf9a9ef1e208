"""Exercise 8.3.4: what other ways are there to read a long sequence into minibatches?

D2L reads subsequences of num_steps tokens from a random offset, either in random order (``random``)
or so that row i of a minibatch continues row i of the one before (``sequential``, whose state can be
carried). rnnlab adds four (``engine.config.SAMPLERS``): ``sliding`` windows every stride tokens
(overlapping, more examples per epoch), ``uniform`` (a random offset anywhere, the text read as a
ring, no subsequence dropped), ``fixed`` (random order at offset 0) and, in mode raw, ``sentences``
(whole sentences bucketed by length and padded). For each, over ``epochs`` epochs on the corpus's
first ``tokens`` characters: minibatches per epoch, how often each position is read as input
(``engine.labs.iterators.coverage_comparison``: min / max / mean / std, share never read) and the
share of padding.

Left out: training with each (``rnnlab train --sampler``) — what the reading order does to perplexity.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from engine.config import CARRIES_STATE
from engine.exercises import iterator_runs as it
from engine.exercises.base import Exercise, Progress, Reference, Result, check_stop

HOW = {  # sampler -> how it reads, in a few words
    "random": "random offset, subsequences in random order",
    "sequential": "random offset, rows continue across minibatches",
    "sliding": "overlapping windows every stride tokens",
    "uniform": "offset anywhere, text as a ring, none dropped",
    "fixed": "offset 0, random order",
    "sentences": "whole sentences, bucketed and padded",
}


@dataclass(frozen=True)
class Settings(it.IteratorSettings):
    """D2L's sizes; mode raw so that the sentences sampler can join."""


class ReadingOrders(Exercise):
    id = "8.3.4"
    question = "What other methods can you think of for reading long sequence data into minibatches?"
    Settings = Settings
    default = Settings()
    long = Settings(tokens=0, epochs=50)
    references = (  # deterministic given the seed: the tolerance is the rounding shown
        Reference("std_random", 1.0151, 0.0001, "default", "count std over positions, seed 0"),
        Reference("std_sequential", 2.6583, 0.0001, "default", ""),
        Reference("std_uniform", 0.1827, 0.0001, "default", ""),
        Reference("padding_sentences", 0.0477, 0.0001, "default", "share of padded positions"),
        Reference("std_random", 0.7306, 0.0001, "long", "the whole book, 50 epochs, seed 0"),
        Reference("std_uniform", 0.1417, 0.0001, "long", ""),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        from engine.data import batches_per_epoch
        from engine.labs.iterators import coverage_comparison, end_ids_of

        ids, tok = it.ids_of(s, "raw")
        check_stop(stop)
        progress(0, 1, "counting coverage")
        c = coverage_comparison(ids, s.batch_size, s.num_steps, s.epochs, s.seed, end_ids=end_ids_of(tok))
        progress(1, 1, "done")
        rows, figures = [], {}
        for r in c.rows:
            per_epoch = (batches_per_epoch(len(ids), s.batch_size, s.num_steps, r.sampler)
                         if r.sampler != "sentences" else None)
            rows.append([r.sampler, HOW[r.sampler], per_epoch, r.sampler in CARRIES_STATE, r.min, r.max, r.mean,
                         r.std, r.unseen_share, r.padding_share])
            figures[f"std_{r.sampler}"], figures[f"unseen_{r.sampler}"] = r.std, r.unseen_share
            figures[f"mean_{r.sampler}"] = r.mean
            if r.padding_share is not None:
                figures[f"padding_{r.sampler}"] = r.padding_share
        flattest = min(c.rows, key=lambda r: r.std / r.mean)
        most = max(c.rows, key=lambda r: r.mean)
        seq = next(r for r in c.rows if r.sampler == "sequential")
        explanation = (
            f"Over {s.epochs} epochs of {len(ids):,} characters, D2L's random sampling reads a position "
            f"{figures['mean_random']:.2f} times on average with std {figures['std_random']:.2f}; sequential "
            f"partitioning reads as much but less evenly (std {seq.std:.2f}, {seq.unseen_share:.1%} never read) "
            f"because each row drops its tail — in exchange its rows continue one another, so the state can be "
            f"carried across minibatches (the only one here that allows it). {most.sampler.capitalize()} reads the most "
            f"({most.mean:.1f} times a position: overlapping windows give more, correlated, examples per epoch); "
            f"{flattest.sampler.capitalize()} reads most evenly (std / mean {flattest.std / flattest.mean:.3f}). "
            + (f"Whole sentences cost {figures['padding_sentences']:.1%} of the positions in padding even "
               f"bucketed by length, and a sentence's last character is never an input. "
               if "padding_sentences" in figures else "")
            + "Other ways still: curriculum (short windows first), importance sampling by loss, or documents "
            "shuffled and concatenated with separators.")
        return Result(["sampler", "how it reads", "batches/epoch", "carries state", "min", "max", "mean", "std",
                       "never read", "padding"], rows, explanation, figures)


EXERCISE = ReadingOrders()
