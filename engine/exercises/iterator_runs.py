"""What the data-iterator exercises (8.3.4–8.3.6) share: their common settings and the corpus's ids.

``IteratorSettings`` holds the fields 8.3.4 and 8.3.5 both have (corpus, tokens, batch_size, num_steps,
epochs, seed) and their checks; an exercise subclasses it to add its own. ``ids_of(s, mode)`` returns the first ``s.tokens`` character ids of the corpus (0 = all) and its
tokenizer. Left out: the samplers (``engine.data``) and the coverage counts (``engine.labs.iterators``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.config import option
from engine.exercises.base import need
from engine.exercises.common import CORPUS_HELP, integer, pipeline


@dataclass(frozen=True)
class IteratorSettings:
    """D2L's sizes and the epochs the coverage is counted over."""

    corpus: str = option("timemachine", CORPUS_HELP)
    tokens: int = option(10000, "first N characters (D2L: 10000; 0 = all)")
    batch_size: int = option(32, "subsequences per minibatch")
    num_steps: int = option(35, "tokens per subsequence")
    epochs: int = option(10, "epochs the coverage is counted over")
    seed: int = option(0, "seeds the offsets and the shuffles")

    def __post_init__(self) -> None:
        need(isinstance(self.corpus, str) and self.corpus != "", f"corpus must name a text (got {self.corpus!r})")
        integer("tokens", self.tokens, 0, 10**9)
        integer("batch_size", self.batch_size, 1, 4096)
        integer("num_steps", self.num_steps, 1, 4096)
        integer("epochs", self.epochs, 1, 10_000)
        integer("seed", self.seed, 0, 2**31 - 1)


def ids_of(s: Any, mode: str = "d2l") -> tuple[np.ndarray, Any]:
    p = pipeline(s.corpus, mode, "char")
    ids = p.ids if s.tokens == 0 else p.ids[: s.tokens]
    need(len(ids) >= s.batch_size * s.num_steps + 1,
         f"tokens must leave at least batch_size × num_steps + 1 = {s.batch_size * s.num_steps + 1} tokens "
         f"(the corpus gives {len(ids)})")
    return np.asarray(ids), p.tokenizer
