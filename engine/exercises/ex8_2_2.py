"""Exercise 8.2.2: tokenize into words and vary ``min_freq`` — how does the vocabulary size change?

D2L's ``Vocab`` keeps a token only if it occurs at least ``min_freq`` times; every other occurrence
becomes ``<unk>``. For word and character tokens of the text, at each min_freq: the vocabulary size
(``engine.vocab.Vocab.from_counts``, the book's rule: ``<unk>`` plus the tokens kept) and the share of
the text's tokens that turn into ``<unk>``. Word frequencies follow Zipf's law, so most word types are
rare: a small min_freq removes most of the vocabulary but only a few percent of the text.

Left out: subword tokenizers (their vocabulary size is a training budget; see 8.2.1).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from engine.config import option
from engine.exercises.base import Exercise, Plot, Progress, Reference, Result, Series, check_stop, need
from engine.exercises.common import CORPUS_HELP, pipeline, positive_ints


@dataclass(frozen=True)
class Settings:
    """The text and the min_freq values tried."""

    corpus: str = option("timemachine", CORPUS_HELP)
    min_freqs: tuple[int, ...] = option((0, 1, 2, 3, 5, 10, 20, 50, 100), "min_freq values tried")

    def __post_init__(self) -> None:
        need(isinstance(self.corpus, str) and self.corpus != "", f"corpus must name a text (got {self.corpus!r})")
        positive_ints("min_freqs", self.min_freqs, 0, 10**9)


def sweep(token_freqs: list[tuple[str, int]], min_freqs: tuple[int, ...]) -> list[tuple[int, int, float]]:
    """(min_freq, vocabulary size, share of tokens that become <unk>) for each min_freq, from the counts."""
    from engine.vocab import Vocab

    counts = dict(token_freqs)
    total = sum(counts.values())
    out = []
    for m in min_freqs:
        size = len(Vocab.from_counts(counts, min_freq=m))
        dropped = sum(c for c in counts.values() if c < m)
        out.append((m, size, dropped / total if total else 0.0))
    return out


class MinFreq(Exercise):
    id = "8.2.2"
    question = ("Tokenize the text into words and vary the min_freq argument of the Vocab instance. How does "
                "min_freq change the size of the vocabulary?")
    Settings = Settings
    default = Settings()
    long = Settings(corpus="war_of_the_worlds", min_freqs=(0, 1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 100, 200))
    references = (  # exact counts
        Reference("vocab_word_0", 4580, 0, "default", "D2L's figure"),
        Reference("vocab_word_2", 2183, 0, "default", "exact"),
        Reference("unk_word_2", 0.0731, 0.0001, "default", "exact"),
        Reference("vocab_word_0", 6742, 0, "long", "The War of the Worlds"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        rows, figures, series = [], {}, []
        for i, kind in enumerate(("word", "char")):
            check_stop(stop)
            progress(i, 2, f"counting {kind}s")
            freqs = pipeline(s.corpus, "d2l", kind).vocab.token_freqs
            if kind == "char":
                rarest = min(c for _, c in freqs)
            result = sweep(freqs, s.min_freqs)
            for m, size, unk in result:
                rows.append([kind, m, size, unk])
                figures[f"vocab_{kind}_{m}"], figures[f"unk_{kind}_{m}"] = size, unk
            if kind == "word":
                series.append(Series("word vocab size", [float(m) for m, _, _ in result],
                                     [float(v) for _, v, _ in result]))
        progress(2, 2, "done")
        f, word = figures, [r for r in rows if r[0] == "word"]
        lo, hi = word[0], word[-1]
        two = next((r for r in word if r[1] == 2), None)
        explanation = (
            f"Words: {lo[2]:,} entries at min_freq {lo[1]} (every word, and <unk>), {hi[2]:,} at {hi[1]}, where "
            f"{hi[3]:.0%} of the text becomes <unk>. "
            + (f"Dropping the words seen once (min_freq 2) halves the vocabulary to {two[2]:,} yet touches only "
               f"{two[3]:.1%} of the text: " if two and two[2] < lo[2] * 0.6 else
               (f"At min_freq 2 the vocabulary is {two[2]:,} and {two[3]:.1%} of the text is <unk>: " if two else ""))
            + "by Zipf's law most word types are rare, so the size falls fast at small min_freq and slowly after, "
            "while the <unk> share keeps growing (" + ", ".join(f"{r[3]:.0%} at {r[1]}" for r in word[2::3])
            + f"). Characters barely change: every letter is common (the rarest character occurs {rarest:,} "
            f"times), so the vocabulary keeps all {f['vocab_char_0']:.0f} entries until min_freq passes that. A "
            f"large min_freq makes a smaller, faster model that cannot tell rare words apart.")
        return Result(["tokens", "min_freq", "vocab size", "<unk> share"], rows, explanation, figures,
                      [Plot("word vocabulary size against min_freq", "min_freq", "vocab size", series)])


EXERCISE = MinFreq()
