"""Pure helpers for ``SeriesPlot``'s axes and smoothing: readable ticks on a log10 axis, whole-number
ticks on an epoch axis, and an exponential moving average with a bias-corrected start.

EMA (as Adam corrects its moments, D2L 12.10): ``m_t = β m_{t-1} + (1-β) y_t`` from ``m_0 = 0``
is pulled toward 0 for small t, so each point is shown as ``m_t / (1 - β^t)``; the first point is
then ``y_1`` itself::

    ema([10, 20, 30], 0.5) == [10, 16.667, 24.286]   # 5/0.5, 12.5/0.75, 21.25/0.875

Log ticks are the values 1, 2, 5 × 10^k (or only the powers of ten, or 1..9 × 10^k, or
1.0..9.9 × 10^k), the sparsest set with at least ``min_ticks`` inside the range, thinned to
``max_ticks``::

    log_ticks(4.2, 130) == [5, 10, 20, 50, 100]
    log_ticks(11.6, 19, max_ticks=4) == [12, 14, 16, 18]   # 12..19, every other one

Left out: drawing (``tui.widgets.plot``) and linear ticks on other axes (plotext chooses those).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# From sparsest to densest; the last (1.0, 1.1, …, 9.9) labels a range narrower than a factor of 2.
MANTISSAS = ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9), tuple(m / 10 for m in range(10, 100)))


def ema(ys: Sequence[float], beta: float) -> list[float]:
    """The bias-corrected exponential moving average of ``ys`` (β = 0: ``ys`` unchanged)."""
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1) (got {beta!r})")
    out, m = [], 0.0
    for t, y in enumerate(ys, 1):
        m = beta * m + (1 - beta) * y
        out.append(m / (1 - beta**t))
    return out


def _decade_ticks(lo: float, hi: float, mantissas: Sequence[int]) -> list[float]:
    ticks = []
    for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        for m in mantissas:
            v = m * 10.0**k
            v = float(f"{v:.12g}")  # 3 × 0.1 is 0.30000000000000004: keep the value a person reads
            if lo <= v <= hi:
                ticks.append(v)
    return ticks


def log_ticks(lo: float, hi: float, min_ticks: int = 3, max_ticks: int = 8) -> list[float]:
    """Readable tick values in ``[lo, hi]`` (both > 0) for a log axis; at least two when the range
    holds two of 1..9 × 10^k, else the range's ends rounded to 3 significant figures."""
    if not (0 < lo <= hi) or not math.isfinite(hi):
        return []
    for mantissas in MANTISSAS:
        ticks = _decade_ticks(lo, hi, mantissas)
        if len(ticks) >= min_ticks:
            break
    if len(ticks) > max_ticks:  # a range of many decades: every n-th one
        step = math.ceil(len(ticks) / max_ticks)
        ticks = ticks[::step]
    if len(ticks) < 2:
        ticks = sorted({float(f"{lo:.3g}"), float(f"{hi:.3g}")})
    return ticks


def tick_label(v: float) -> str:
    """5 -> "5", 0.5 -> "0.5", 20000 -> "20k", 3e6 -> "3M", 2e10 -> "2e+10"."""
    for factor, suffix, start in ((1e9, "G", 1e9), (1e6, "M", 1e6), (1e3, "k", 1e4)):
        if start <= abs(v) < 1000 * factor:
            return f"{v / factor:g}{suffix}"
    return f"{v:g}"


def int_ticks(lo: float, hi: float, max_ticks: int = 8) -> list[int]:
    """Whole numbers in ``[lo, hi]`` at the smallest step of 1, 2, 5 × 10^k giving at most ``max_ticks``:
    ``int_ticks(1, 50, 6) == [10, 20, 30, 40, 50]``."""
    first, last = math.ceil(lo), math.floor(hi)
    if last < first:
        return []
    for step in (m * 10**k for k in range(19) for m in (1, 2, 5)):
        if last // step - -(-first // step) + 1 <= max(1, max_ticks):
            break
    return [v for v in range(first, last + 1) if v % step == 0]
