"""Where the windows of one epoch start, for rnnlab's samplers beyond D2L's two (8.3.4).

Each function returns the epoch's window starts as one flat ``int64`` array, in
minibatch order: minibatch ``k`` is ``starts[k * batch_size : (k + 1) * batch_size]``
(the last one may be shorter) and every window reads ``num_steps`` inputs plus one
target past them, so a start ``p`` needs ``p + num_steps + 1 <= n_tokens`` (uniform's
windows wrap around instead).
``engine.data`` turns starts into ``(X, Y)`` minibatches and into coverage counts.
Every window begins from a fresh state. Pure numpy; randomness only from the
``np.random.Generator`` passed in, drawn at once.

- **fixed**: D2L's random sampling with the offset pinned at 0. Subsequences
  always begin at multiples of ``num_steps``, so a token at position ``p`` always
  sits at index ``p % num_steps`` of its window: the tokens at multiples of
  ``num_steps`` are predicted from no context at all, every epoch, and the last
  ``(n_tokens - 1) % num_steps`` tokens (plus the target) are never read.
- **uniform**: a fresh random offset per epoch, drawn from the whole text rather
  than from ``0..num_steps-1``, and a shuffled partition, all of it used. The
  ``N = n_tokens - 1`` input positions are read as a ring: windows start at
  ``offset, offset + num_steps, …`` (mod ``N``), ``N // num_steps`` of them, so
  one window crosses from the last input back to the first (its targets stay
  each input's true next token; only its state runs from the end of the text
  into its beginning, as when packed documents meet in one window). The
  ``N % num_steps`` positions just before the offset are the epoch's only
  unread ones. The minibatches take the windows in a shuffled order, the last
  one shorter instead of dropping the remainder. Why it is more uniform:
  D2L's random sampling always loses the head before its offset and a tail
  (the first and last ``< num_steps`` tokens are read in only some epochs)
  and drops ``num_subseqs % batch_size`` random subsequences per epoch (29 of
  285 with its defaults, a tenth of the text), so some positions are missed
  far more often than others. Here an epoch misses fewer than ``num_steps``
  tokens, at a uniformly random place, so every position, the first and last
  ones included, is missed equally often on average; and each position's
  index within its window is uniform too, which is what the offset is for.
- **sliding**: windows at ``0, stride, 2·stride, …`` (no offset), shuffled into
  minibatches, every window used (a shorter last minibatch). With ``stride <
  num_steps`` windows overlap: each token is read ``≈ num_steps / stride`` times
  per epoch, at different indices of its window, so it is seen with different
  amounts of context. ``stride == num_steps`` is "uniform" at offset 0.

Left out: D2L's own samplers (``engine.data``), sentences (``engine.sentences``),
strides longer than ``num_steps`` (they would skip tokens; ``TrainConfig`` refuses them).
"""

from __future__ import annotations

import numpy as np


def stride_of(stride: int, num_steps: int) -> int:
    """The stride a sliding window uses: ``stride``, or ``num_steps // 2`` (at least 1) for 0."""
    return int(stride) if stride else max(1, num_steps // 2)


def fixed_starts(n_tokens: int, batch_size: int, num_steps: int, rng: np.random.Generator) -> np.ndarray:
    """D2L's random sampling at offset 0: ``num_subseqs % batch_size`` random subsequences dropped.
    (20 tokens, batch 2, 3 steps: 6 subsequences at 0, 3, …, 15, three minibatches.)"""
    num_subseqs = (n_tokens - 1) // num_steps
    num_batches = num_subseqs // batch_size
    return rng.permutation(num_subseqs)[: num_batches * batch_size].astype(np.int64) * num_steps


def uniform_starts(n_tokens: int, batch_size: int, num_steps: int, rng: np.random.Generator) -> np.ndarray:
    """Windows every ``num_steps`` from a random offset anywhere in the text, around the ring of the
    ``n_tokens - 1`` input positions (``engine.data`` reads position ``p`` of a window at ``p mod N``);
    shuffled. (0..34, 5 steps, offset 12: windows at 12, 17, 22, 27, 32 and 3; the one at 32 reads
    32, 33, 0, 1, 2 with targets 33, 34, 1, 2, 3; positions 8..11 are not read.)"""
    circle = n_tokens - 1  # input positions: the last token is only ever a target
    offset = int(rng.integers(circle))
    starts = (offset + np.arange(circle // num_steps, dtype=np.int64) * num_steps) % circle
    return starts[rng.permutation(len(starts))]


def sliding_starts(n_tokens: int, batch_size: int, num_steps: int, stride: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Windows at ``0, stride, 2·stride, …`` while ``start + num_steps + 1 <= n_tokens``, shuffled.
    (20 tokens, 5 steps, stride 2: starts 0, 2, …, 14: eight windows.)"""
    num_windows = (n_tokens - 1 - num_steps) // stride + 1
    return rng.permutation(num_windows).astype(np.int64) * stride


def num_windows(n_tokens: int, num_steps: int, sampler: str, stride: int = 0) -> int:
    """The most windows an epoch of fixed, uniform or sliding can have."""
    if sampler == "sliding":
        return (n_tokens - 1 - num_steps) // stride_of(stride, num_steps) + 1
    return (n_tokens - 1) // num_steps


def window_starts(n_tokens: int, batch_size: int, num_steps: int, sampler: str, rng: np.random.Generator,
                  stride: int = 0) -> np.ndarray:
    """The flat starts of one epoch of ``sampler`` (fixed, uniform or sliding)."""
    if sampler == "fixed":
        return fixed_starts(n_tokens, batch_size, num_steps, rng)
    if sampler == "uniform":
        return uniform_starts(n_tokens, batch_size, num_steps, rng)
    if sampler == "sliding":
        return sliding_starts(n_tokens, batch_size, num_steps, stride_of(stride, num_steps), rng)
    raise ValueError(f"no window layout for sampler {sampler!r}")
