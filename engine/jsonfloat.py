"""Floats that JSON cannot hold: inf, -inf and nan, written one way everywhere.

JSON has no literal for them (Python's ``json`` writes ``Infinity``, which other
readers refuse). rnnlab's files use two spellings, each for its own reason:

- configs and event logs keep the value: ``dump_float`` writes the string
  ``"inf"`` (a greedy ``sample_alpha``, a diverged loss) and ``load_float``
  reads it back: ``dump_float(math.inf) == "inf"``, ``load_float("inf") == math.inf``;
- checkpoint.json's figures mean "none yet" when infinite (no best perplexity
  before the first epoch), so ``finite_or_none`` writes them as ``null``.

Only fields that hold floats are read back (``float_fields``): a sample
prefix typed as "inf" stays the text "inf".

Left out: walking nested containers (callers convert their own fields).
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

_NAMES = ("inf", "-inf", "nan")


def dump_float(value: Any) -> Any:
    """``value`` with a non-finite float as its string (``"inf"``, ``"-inf"``, ``"nan"``); anything else as is."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def load_float(value: Any) -> Any:
    """The inverse of ``dump_float``: the strings ``"inf"``, ``"-inf"``, ``"nan"`` as floats; anything else as is."""
    return float(value) if isinstance(value, str) and value in _NAMES else value


def finite_or_none(value: Any) -> Any:
    """``value`` with a non-finite float as ``None`` (JSON ``null``); anything else as is."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def float_fields(cls: type) -> frozenset[str]:
    """The names of a dataclass's fields annotated ``float`` or ``float | None`` (those ``load_float`` applies to)."""
    return frozenset(f.name for f in fields(cls) if f.type in (float, "float", "float | None"))
