"""Exercise 8.3.1: storing the counts of an n-gram model — how many n-grams there are, against how many could be.

With a vocabulary of V words there are V^n possible n-grams, but a text of N words holds at most
N − n + 1 of them, and far fewer distinct ones. Here the texts given (by default both shipped books,
93,775 words in all, the nearest the shipped texts come to 100,000) are read as one word stream; for
n = 1..max_n the distinct n-grams are counted exactly (``engine.stats.ngram_tables``) and set against
V^n, in counts and in bytes:

* a dense table of V^n counts, ``COUNT_BYTES`` each (what "store every possible 4-gram" costs);
* a sparse table of the observed ones only: each key is n word ids of ``ID_BYTES`` plus its count.

The distinct count grows with the text more slowly than the text (Heaps' law, distinct ≈ k N^β):
it is measured at a quarter, a half and all of the words, β fitted per n, and the distinct count of
a ``words``-word text read off that fit when the texts are shorter (the table says which rows are
measured and which extrapolated). Left out: hash-table overheads (a Python dict costs ~100 bytes an
entry more), smoothing, and tries.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from engine.config import option
from engine.exercises.base import Exercise, Progress, Reference, Result, check_stop, need
from engine.exercises.common import CORPUS_HELP, integer, pipeline

COUNT_BYTES = 4  # a count as uint32
ID_BYTES = 4  # a word id as int32 (2 would do below 65,536 words)
FRACTIONS = (0.25, 0.5, 1.0)  # prefixes of the stream where distinct counts are measured for the Heaps fit


@dataclass(frozen=True)
class Settings:
    """The texts, the largest n and the text length to report."""

    corpora: tuple[str, ...] = option(("timemachine", "war_of_the_worlds"), "texts read one after another: "
                                      + CORPUS_HELP)
    max_n: int = option(4, "largest n counted")
    words: int = option(100_000, "text length (words) the last columns report, extrapolated if the texts are shorter")

    def __post_init__(self) -> None:
        need(isinstance(self.corpora, tuple) and len(self.corpora) > 0 and all(isinstance(c, str) and c
                                                                                for c in self.corpora),
             f"corpora must name at least one text (got {self.corpora!r})")
        integer("max_n", self.max_n, 1, 8)
        integer("words", self.words, 10, 10**9)


def word_ids(corpora: tuple[str, ...]) -> tuple[np.ndarray, int]:
    """The word streams of ``corpora`` (d2l preprocessing) joined, as ids of one shared vocabulary; and V."""
    index: dict[str, int] = {}
    parts = []
    for name in corpora:
        p = pipeline(name, "d2l", "word")
        tokens = p.vocab.to_tokens(p.ids)
        parts.append(np.fromiter((index.setdefault(t, len(index)) for t in tokens), dtype=np.int64,
                                 count=len(tokens)))
    return np.concatenate(parts), len(index)


def distinct_counts(ids: np.ndarray, max_n: int) -> list[tuple[int, int]]:
    """(distinct n-grams, those seen once) of ``ids`` for n = 1..max_n (``engine.stats.ngram_tables``, exact)."""
    from engine.stats import ngram_tables

    return [(len(t.counts), int(np.count_nonzero(t.counts == 1))) for t in ngram_tables(ids, max_n)]


def human_bytes(b: float) -> str:
    """``1536 -> '1.5 KiB'``; powers of 1024 up to YiB, then 10^k YiB."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
    if b < 1024:
        return f"{b:.0f} B"
    k = min(int(math.log(b, 1024)), len(units) - 1)
    return f"{b / 1024 ** k:.3g} {units[k]}"


class NgramStorage(Exercise):
    id = "8.3.1"
    question = ("Suppose there are 100,000 words in the training data. How much word frequency and multi-word "
                "adjacent frequency does a four-gram model need to store?")
    Settings = Settings
    default = Settings()
    long = Settings(max_n=6)
    references = (
        Reference("words_read", 93775, 0, "default", "both shipped books, d2l words: exact"),
        Reference("V", 8532, 0, "default", "exact"),
        Reference("distinct_4", 91367, 0, "default", "exact count"),
        Reference("observed_share_4", 1.7242e-11, 0.0001e-11, "default", "distinct / V^4: exact, shown rounded"),
        Reference("heaps_beta_1", 0.5785, 0.0001, "default", "least squares on 3 prefixes: deterministic"),
        Reference("distinct_4", 91367, 0, "long", "exact count"),
        Reference("distinct_6", 93616, 0, "long", "exact count"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        ids, V = word_ids(s.corpora)
        N = len(ids)
        need(N > s.max_n * 4, f"the texts hold {N} words: too few for n up to {s.max_n}")
        measured: dict[float, list[tuple[int, int]]] = {}
        for i, frac in enumerate(FRACTIONS):
            check_stop(stop)
            progress(i, len(FRACTIONS), f"counting n-grams in {frac:.0%} of the words")
            measured[frac] = distinct_counts(ids[: int(N * frac)], s.max_n)
        progress(len(FRACTIONS), len(FRACTIONS), "done")
        full = [d for d, _ in measured[1.0]]
        once = [o for _, o in measured[1.0]]
        lengths = np.log([int(N * f) for f in FRACTIONS])
        rows, figures = [], {"words_read": float(N), "V": float(V)}
        for n in range(1, s.max_n + 1):
            beta, c = np.polyfit(lengths, np.log([measured[f][n - 1][0] for f in FRACTIONS]), 1)
            at_target = full[n - 1] if s.words == N else float(np.exp(c + beta * math.log(s.words)))
            possible = float(V) ** n
            rows.append([n, full[n - 1], N - n + 1, f"{possible:.3g}", full[n - 1] / possible,
                         human_bytes(possible * COUNT_BYTES), human_bytes(full[n - 1] * (n * ID_BYTES + COUNT_BYTES)),
                         once[n - 1] / full[n - 1],
                         round(float(beta), 3), int(round(at_target)),
                         human_bytes(at_target * (n * ID_BYTES + COUNT_BYTES))])
            figures[f"distinct_{n}"] = float(full[n - 1])
            figures[f"observed_share_{n}"] = full[n - 1] / possible
            figures[f"heaps_beta_{n}"] = float(beta)
            figures[f"seen_once_{n}"] = once[n - 1] / full[n - 1]
        n_max = s.max_n
        top = rows[-1]
        how = "measured" if s.words == N else ("extrapolated by Heaps' law" if s.words > N else
                                               "interpolated by Heaps' law")
        explanation = (
            f"The texts hold N = {N:,} words and V = {V:,} distinct ones. Of the V^{n_max} = {top[3]} possible "
            f"{n_max}-grams only {full[-1]:,} occur ({top[4]:.2g} of them): a dense table of counts would take "
            f"{top[5]}, the observed ones {top[6]} stored sparsely. Past n = 3 almost every n-gram is new "
            f"(distinct {full[-1]:,} of {N - n_max + 1:,} positions), so the sparse table grows like the text "
            f"itself, while V^n explodes. Distinct words grow like N^{rows[0][8]:.2f}, distinct {n_max}-grams like "
            f"N^{top[8]:.2f}: for {s.words:,} words ({how}) a {n_max}-gram model stores about "
            f"{top[9]:,} counts, {top[10]}. {once[-1] / full[-1]:.0%} of the {n_max}-grams seen were seen once "
            f"(of the words: {once[0] / full[0]:.0%}), so most stored counts say almost nothing: counting alone "
            f"cannot estimate rare n-grams (D2L 8.3.3: Laplace smoothing).")
        columns = ["n", "distinct", "positions", "possible V^n", "observed share", "dense bytes", "sparse bytes",
                   "seen once", "Heaps β", f"distinct at {s.words:,}", f"sparse at {s.words:,}"]
        return Result(columns, rows, explanation, figures)


EXERCISE = NgramStorage()
