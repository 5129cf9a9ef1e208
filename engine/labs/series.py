"""The sequence lab's data (D2L 8.1): a noisy sine, the same sine changing regime, and a switching process.

Each series is an observed ``x`` and the ``signal`` it is built on (``x`` without
the noise), both float64 arrays of length ``T``, with time ``t = 1 … T`` as in the
book (``x[i]`` is x at t = i + 1):

* ``sine``: ``x_t = sin(ω t) + ε_t``, ``ε_t ~ N(0, σ²)`` — D2L's T = 1000, ω = 0.01, σ = 0.2;
* ``regime_change``: the sine until ``change_at``, then shifted up by ``level`` or ``speed`` times
  faster with no jump (the phase carries on): what was learnt before the change no longer holds after it;
* ``switching``: a level that is +1 or −1 and flips after a dwell of ``dwell_lo … dwell_hi``
  steps (drawn uniformly for each stay), plus noise. The level at ``t + 1`` depends on how long it
  has held: a hidden state that a window shorter than the dwell cannot see once the window holds
  only the current level, while a model that keeps a state over the whole history can count.

``window_bound`` is the smallest MSE against the level that any function of the last τ noise-free
values can reach on the switching series: what no window model can beat.

Randomness comes only from the seed. Torch-free. Left out: the models (``engine.labs.sequence_models``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Series:
    """A series to predict: observations, what they are built on, and where its regime changes (if it does)."""

    x: np.ndarray  # observations x_1 … x_T (float64)
    signal: np.ndarray  # the same without noise: sin(ω t), the switching level …
    name: str  # "sine" | "regime change" | "switching"
    change_at: int | None = None  # index (0-based) of the first sample of the new regime


def sine(T: int, omega: float, sigma: float, seed: int) -> Series:
    """D2L 8.1.2's data: ``x_t = sin(ω t) + N(0, σ²)`` for t = 1 … T."""
    time = np.arange(1, T + 1, dtype=np.float64)
    signal = np.sin(omega * time)
    return Series(signal + sigma * np.random.default_rng(seed).standard_normal(T), signal, "sine")


def regime_change(T: int, omega: float, sigma: float, seed: int, change_at: int, *, level: float = 0.0,
                  speed: float = 1.0) -> Series:
    """The sine (the same noise as ``sine``) with, from index ``change_at`` on, ``level`` added and its
    frequency ``speed`` times ω; the phase ω t carries on without a jump."""
    time = np.arange(1, T + 1, dtype=np.float64)
    t0 = float(change_at)  # time of the last sample of the old regime (index change_at - 1)
    after = time > t0
    signal = np.sin(np.where(after, omega * t0 + speed * omega * (time - t0), omega * time)) + level * after
    noise = sigma * np.random.default_rng(seed).standard_normal(T)
    name = " and ".join(part for part, on in ((f"level +{level:g}", level != 0), (f"ω × {speed:g}", speed != 1))
                        if on) or "no change"
    return Series(signal + noise, signal, name, change_at)


def switching(T: int, dwell_lo: int, dwell_hi: int, sigma: float, seed: int) -> Series:
    """Levels ±1 held for dwell_lo … dwell_hi steps each (uniform), starting at +1 part-way into a stay."""
    rng = np.random.default_rng(seed)
    signal = np.empty(T)
    level, t = 1.0, -int(rng.integers(0, dwell_lo))  # start inside a stay: the first dwell is cut short
    while t < T:
        dwell = int(rng.integers(dwell_lo, dwell_hi + 1))
        signal[max(t, 0):max(t + dwell, 0)] = level
        t, level = t + dwell, -level
    return Series(signal + sigma * rng.standard_normal(T), signal, "switching")


def window_bound(dwell_lo: int, dwell_hi: int, tau: int) -> float:
    """The least expected (x̂_{t+1} − level_{t+1})² of any predictor that sees only the last τ levels.

    Let a be the level's age (steps since it last flipped, 0 at the flip); age a has stationary weight
    P(dwell > a) and flips next with hazard h(a) = P(dwell = a + 1 | dwell > a). A window of τ values
    shows the flip, so the age, while a <= τ − 2; older ages all look the same, so the best guess for
    them is the level times 1 − 2ĥ with ĥ their pooled hazard. Predicting z(1 − 2h) for a level that
    flips with probability h costs 4 h (1 − h).
    """
    dwells = np.arange(dwell_lo, dwell_hi + 1)
    ages = np.arange(dwell_hi)
    survive = np.array([(dwells > a).mean() for a in ages])
    weight = survive / survive.sum()
    hazard = np.array([(dwells == a + 1).mean() for a in ages]) / survive
    seen = ages <= tau - 2
    cost = float((weight[seen] * 4 * hazard[seen] * (1 - hazard[seen])).sum())
    if (~seen).any():
        pooled = float((weight[~seen] * hazard[~seen]).sum() / weight[~seen].sum())
        cost += float(weight[~seen].sum()) * 4 * pooled * (1 - pooled)
    return cost
