"""What the data-iterator exercises (8.3.4–8.3.6) share: their common settings' checks and the corpus's ids.

``check(s)`` checks the fields every one of them has (corpus, tokens, batch_size, num_steps, epochs,
seed); ``ids_of(s, mode)`` returns the first ``s.tokens`` character ids of the corpus (0 = all) and its
tokenizer. Left out: the samplers (``engine.data``) and the coverage counts (``engine.labs.iterators``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.exercises.base import need
from engine.exercises.common import integer, pipeline


def check(s: Any) -> None:
    need(isinstance(s.corpus, str) and s.corpus != "", f"corpus must name a text (got {s.corpus!r})")
    integer("tokens", s.tokens, 0, 10**9)
    integer("batch_size", s.batch_size, 1, 4096)
    integer("num_steps", s.num_steps, 1, 4096)
    integer("epochs", s.epochs, 1, 10_000)
    integer("seed", s.seed, 0, 2**31 - 1)


def ids_of(s: Any, mode: str = "d2l") -> tuple[np.ndarray, Any]:
    p = pipeline(s.corpus, mode, "char")
    ids = p.ids if s.tokens == 0 else p.ids[: s.tokens]
    need(len(ids) >= s.batch_size * s.num_steps + 1,
         f"tokens must leave at least batch_size × num_steps + 1 = {s.batch_size * s.num_steps + 1} tokens "
         f"(the corpus gives {len(ids)})")
    return np.asarray(ids), p.tokenizer
