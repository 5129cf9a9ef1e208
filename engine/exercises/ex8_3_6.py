"""Exercise 8.3.6: if every minibatch row must be a complete sentence, what goes wrong, and how to fix it?

Sentences differ in length, so rows of one minibatch differ too: they must be padded to the longest
(padded positions cost compute and must be masked out of the loss), and a sentence longer than
num_steps no longer fits (it is cut, or num_steps must grow with the longest sentence). rnnlab's
``sentences`` sampler (``engine.sentences``) cuts long sentences into pieces of num_steps and
*buckets* pieces of similar length into one minibatch. Here, on the raw text (mode raw keeps . ! ?),
for several num_steps: the sentence lengths, the share of sentences cut, and the share of padding
with buckets against minibatches of pieces drawn in random order (what a plain shuffle would give).

Left out: begin-of-sentence tokens and packing several short sentences into one row.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from engine.config import option
from engine.exercises import iterator_runs as it
from engine.exercises.base import Exercise, Progress, Reference, Result, check_stop, need
from engine.exercises.common import CORPUS_HELP, positive_ints


@dataclass(frozen=True)
class Settings:
    """The raw text and the num_steps tried."""

    corpus: str = option("timemachine", CORPUS_HELP)
    tokens: int = option(0, "first N characters (0 = all)")
    batch_size: int = option(32, "rows per minibatch")
    num_steps_tried: tuple[int, ...] = option((35, 100, 300), "num_steps tried: the longest piece read whole")
    seed: int = option(0, "seeds the shuffles")

    def __post_init__(self) -> None:
        need(isinstance(self.corpus, str) and self.corpus != "", f"corpus must name a text (got {self.corpus!r})")
        positive_ints("num_steps_tried", self.num_steps_tried, 2, 10_000)
        positive_ints("batch_size", (self.batch_size,), 1, 4096)
        positive_ints("tokens", (self.tokens,), 0, 10**9)
        positive_ints("seed", (self.seed,), 0, 2**31 - 1)


def padding_share(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Padded positions over all positions when each minibatch is as long as its longest row:
    ``[1, 3], [[0, 1]] -> 1 - 4 / 6``."""
    total = sum(len(b) * int(lengths[b].max()) for b in batches)
    return 1.0 - float(lengths.sum()) / total if total else 0.0


class WholeSentences(Exercise):
    id = "8.3.6"
    question = ("If we want each example of a minibatch to be a complete sentence, what problem does this bring "
                "to minibatch sampling, and how can we fix it?")
    Settings = Settings
    default = Settings()
    long = Settings(corpus="war_of_the_worlds", num_steps_tried=(35, 100, 300, 1000))
    references = (  # deterministic given the seed: the tolerance is the rounding shown
        Reference("sentences", 1941, 0, "default", "The Time Machine, raw: exact"),
        Reference("cut_35", 0.8336, 0.0001, "default", "share of sentences longer than 35 inputs: exact"),
        Reference("padding_random_35", 0.1544, 0.0001, "default", "seed 0"),
        Reference("padding_bucketed_35", 0.0026, 0.0001, "default", "seed 0"),
        Reference("sentences", 3468, 0, "long", "The War of the Worlds, raw: exact"),
        Reference("padding_bucketed_1000", 0.0239, 0.0001, "long", "seed 0"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        from engine.labs.iterators import end_ids_of
        from engine.sentences import pieces, sentence_bounds, sentence_epoch

        sized = SimpleNamespace(corpus=s.corpus, tokens=s.tokens, batch_size=s.batch_size,
                                num_steps=min(s.num_steps_tried))  # what ids_of checks the length against
        ids, tok = it.ids_of(sized, "raw")
        end_ids = end_ids_of(tok)
        need(len(end_ids) > 0, "no token of this text ends a sentence (. ! ?): pick a text with punctuation")
        bounds = sentence_bounds(ids, end_ids)
        lengths = np.diff(bounds)
        rows, figures = [], {"sentences": float(len(lengths)), "median_length": float(np.median(lengths)),
                             "p90_length": float(np.percentile(lengths, 90)), "max_length": float(lengths.max())}
        for i, n in enumerate(s.num_steps_tried):
            check_stop(stop)
            progress(i, len(s.num_steps_tried), f"num_steps {n}")
            cut = float(np.mean(lengths - 1 > n))
            bucketed = sentence_epoch(ids, end_ids, s.batch_size, n, np.random.default_rng(s.seed))
            _, piece_len = pieces(ids, end_ids, n)
            order = np.random.default_rng([s.seed, 1]).permutation(len(piece_len))
            shuffled = [order[j: j + s.batch_size] for j in range(0, len(order), s.batch_size)]
            pad_random = padding_share(piece_len, shuffled)
            rows.append([n, len(piece_len), cut, pad_random, bucketed.padding_share])
            figures[f"cut_{n}"], figures[f"padding_random_{n}"] = cut, pad_random
            figures[f"padding_bucketed_{n}"] = bucketed.padding_share
        progress(len(s.num_steps_tried), len(s.num_steps_tried), "done")
        n0, n1 = s.num_steps_tried[0], s.num_steps_tried[-1]
        f = figures
        explanation = (
            f"The text has {len(lengths):,} sentences of median length {f['median_length']:.0f} characters "
            f"(90 % are at most {f['p90_length']:.0f}, the longest {f['max_length']:.0f}). With num_steps = {n0}, "
            f"{f[f'cut_{n0}']:.0%} of them do not fit and must be cut into pieces — no longer whole sentences; "
            f"raising num_steps to {n1} leaves {f[f'cut_{n1}']:.1%} cut but makes rows very unequal. Rows of one "
            f"minibatch are padded to the longest: in random order {f[f'padding_random_{n0}']:.0%} of the "
            f"positions are padding at num_steps = {n0} and {f[f'padding_random_{n1}']:.0%} at {n1} — compute "
            f"spent on nothing, which the loss must mask. Bucketing sentences of similar length into the same "
            f"minibatch cuts the padding to {f[f'padding_bucketed_{n0}']:.1%} and "
            f"{f[f'padding_bucketed_{n1}']:.1%}; the cost is that a minibatch's rows are no longer a random "
            f"draw (short sentences train together), so the minibatches themselves are shuffled.")
        return Result(["num_steps", "pieces", "sentences cut", "padding, random order", "padding, bucketed"],
                      rows, explanation, figures)


EXERCISE = WholeSentences()
