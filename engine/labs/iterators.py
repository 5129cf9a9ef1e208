"""The data-iterator lab (D2L 8.3.4 and exercise 8.3.5): what the minibatches look like, and how evenly
each sampler reads the text.

- ``minibatch_example``: the first minibatches of one epoch as X/Y rows, for any sampler, on the book's
  toy sequence 0..34 (``book_example``: batch_size 2, num_steps 5) or on a real corpus, its rows decoded
  to text when a tokenizer is given.
- ``coverage_comparison``: for every sampler, how often each position is read as input over E epochs
  (``engine.data.coverage``), summed up as min / max / mean / std of the counts and the share of
  positions never read. The sentences sampler joins only when the vocabulary has tokens that end a
  sentence (mode raw); it is then listed with its share of padding.

Pure functions returning dataclasses (and ``to_dict`` for JSON); the CLI (``rnnlab lab coverage``) and
the Labs screen print and plot them. Left out: training with each sampler (``rnnlab train --sampler``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.config import SAMPLERS
from engine.data import coverage, data_iter
from engine.errors import ConfigError
from engine.samplers import stride_of
from engine.sentences import IGNORE_INDEX, sentence_end_ids, sentence_epoch

BOOK = (35, 2, 5)  # D2L 8.3.4's example: the sequence 0..34, batch_size 2, num_steps 5


@dataclass(frozen=True)
class Minibatch:
    """One minibatch: the ids of X and Y row by row (-100 in Y at padding) and, with a tokenizer, their text."""

    X: list[list[int]]
    Y: list[list[int]]
    x_text: list[str] | None = None
    y_text: list[str] | None = None


@dataclass(frozen=True)
class Example:
    """The first minibatches of one epoch of ``sampler`` (``batches`` of ``num_batches`` in the epoch)."""

    sampler: str
    batch_size: int
    num_steps: int
    seed: int
    stride: int  # the sliding window's stride actually used (0 for other samplers)
    num_batches: int
    batches: list[Minibatch] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_samplers(samplers: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The names, each checked against ``SAMPLERS`` (a ConfigError naming the bad one)."""
    bad = [s for s in samplers if s not in SAMPLERS]
    if bad or not samplers:
        raise ConfigError(f"samplers must be some of {', '.join(SAMPLERS)} (got {', '.join(bad) or 'none'})")
    return tuple(samplers)


def minibatch_example(ids: np.ndarray, batch_size: int, num_steps: int, sampler: str, seed: int = 0, *,
                      tokenizer: Any = None, stride: int = 0, end_ids: tuple[int, ...] = (),
                      max_batches: int | None = None) -> Example:
    """One epoch of ``data_iter`` driven by ``np.random.default_rng(seed)``, its first ``max_batches``."""
    batches = list(data_iter(np.asarray(ids), batch_size, num_steps, sampler, rng=np.random.default_rng(seed),
                             stride=stride, sentence_end_ids=end_ids))
    shown = []
    for X, Y in batches[:max_batches]:
        xs, ys = X.tolist(), Y.tolist()
        text = None if tokenizer is None else (
            [tokenizer.decode(r) for r in xs], [tokenizer.decode([i for i in r if i != IGNORE_INDEX]) for r in ys])
        shown.append(Minibatch(xs, ys, *(text or (None, None))))
    used_stride = stride_of(stride, num_steps) if sampler == "sliding" else 0
    return Example(sampler, batch_size, num_steps, seed, used_stride, len(batches), shown)


def book_example(sampler: str, seed: int = 0, stride: int = 0) -> Example:
    """D2L's example, the sequence 0..34 in minibatches of 2 × 5, for ``sampler`` (not sentences:
    0..34 has none)."""
    n, b, s = BOOK
    return minibatch_example(np.arange(n), b, s, sampler, seed, stride=stride)


@dataclass(frozen=True)
class CoverageRow:
    """One sampler's counts over the positions, summed up."""

    sampler: str
    min: int
    max: int
    mean: float
    std: float
    unseen: int  # positions never read as input
    unseen_share: float  # unseen / positions
    padding_share: float | None = None  # sentences: padded positions over all positions of an epoch

    @classmethod
    def of(cls, sampler: str, counts: np.ndarray, padding_share: float | None = None) -> CoverageRow:
        unseen = int(np.count_nonzero(counts == 0))
        return cls(sampler, int(counts.min()), int(counts.max()), float(counts.mean()), float(counts.std()),
                   unseen, unseen / len(counts), padding_share)


@dataclass(frozen=True)
class CoverageComparison:
    """``coverage_comparison``'s result: the settings, one row per sampler, the counts themselves."""

    n_tokens: int
    batch_size: int
    num_steps: int
    epochs: int
    seed: int
    stride: int
    rows: list[CoverageRow]
    counts: dict[str, np.ndarray]  # sampler -> count per position
    left_out: dict[str, str]  # sampler -> why it is not compared

    def to_dict(self) -> dict[str, Any]:
        """The figures (not the counts per position) as JSON-safe types."""
        return {"n_tokens": self.n_tokens, "batch_size": self.batch_size, "num_steps": self.num_steps,
                "epochs": self.epochs, "seed": self.seed, "stride": self.stride,
                "rows": [asdict(r) for r in self.rows], "left_out": dict(self.left_out)}


def coverage_comparison(ids: np.ndarray, batch_size: int, num_steps: int, epochs: int, seed: int = 0, *,
                        samplers: tuple[str, ...] = SAMPLERS, stride: int = 0,
                        end_ids: tuple[int, ...] = ()) -> CoverageComparison:
    """Coverage of ``ids`` (only their number matters but to sentences) by each of ``samplers``, each
    replayed from ``np.random.default_rng(seed)`` as ``engine.data.coverage`` does."""
    samplers, ids = check_samplers(samplers), np.asarray(ids)
    rows, counts, left_out = [], {}, {}
    for s in samplers:
        if s == "sentences" and not end_ids:
            left_out[s] = ("no token of this vocabulary ends a sentence (. ! ?); d2l preprocessing removes "
                           "punctuation: use mode raw")
            continue
        c = coverage(len(ids), batch_size, num_steps, s, epochs, seed, stride=stride, ids=ids,
                     sentence_end_ids=end_ids)
        pad = (sentence_epoch(ids, end_ids, batch_size, num_steps, np.random.default_rng(seed)).padding_share
               if s == "sentences" else None)
        rows.append(CoverageRow.of(s, c, pad))
        counts[s] = c
    return CoverageComparison(len(ids), batch_size, num_steps, epochs, seed,
                              stride_of(stride, num_steps) if "sliding" in samplers else stride,
                              rows, counts, left_out)


def end_ids_of(tokenizer: Any) -> tuple[int, ...]:
    """The tokenizer's sentence-ending ids (empty in d2l mode): ``engine.sentences.sentence_end_ids``."""
    return sentence_end_ids(tokenizer) if tokenizer is not None else ()
