"""Helpers the exercises share: a corpus's pipeline (cached), and checks of settings fields.

``pipeline(corpus, mode, tokenizer, …)`` builds (once per process) the ``TextPipeline`` of a
built-in corpus name or a text file, so several exercises, or one run twice, read a corpus
once. ``CORPUS_HELP`` is the help line of every exercise's ``corpus`` setting.
Left out: anything particular to one exercise.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from engine.exercises.base import need

CORPUS_HELP = "a built-in corpus (timemachine, war_of_the_worlds) or a .txt path"


@lru_cache(maxsize=8)
def pipeline(corpus: str, mode: str = "d2l", tokenizer: str = "char", vocab_size: int = 1000,
             min_freq: int = 0) -> Any:
    """The ``engine.pipeline.TextPipeline`` of ``corpus`` (cached: tests and the TUI reuse it)."""
    from engine.corpus import load_corpus
    from engine.pipeline import build_pipeline

    return build_pipeline(load_corpus(corpus), mode=mode, tokenizer=tokenizer, vocab_size=vocab_size,
                          min_freq=min_freq)


def positive_ints(name: str, values: Any, low: int = 1, high: int = 1 << 30) -> None:
    """``values`` must be a non-empty tuple of integers in low..high."""
    ok = isinstance(values, tuple) and len(values) > 0 and all(
        isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in values)
    need(ok, f"{name} must be a list of integers in {low}..{high} (got {values!r})")


def integer(name: str, value: Any, low: int, high: int) -> None:
    need(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
         f"{name} must be an integer in {low}..{high} (got {value!r})")
