"""Training throughput and the ETA that follows it.

Readings taken every ``log_interval_s`` are noisy: a window of one or two
minibatches that meets a garbage collection, a checkpoint write or a busy UI
thread can read 30× lower than the next one. So the rate shown is an average
over much more than one window: within an epoch it is the epoch's tokens so far
over its training seconds so far, with the previous epoch's average counted as
``PRIOR_S`` seconds of evidence (so an epoch's first windows don't swing it);
at an epoch's end it is exactly that epoch's average (validation and samples
excluded). In symbols, with r₀ the previous epoch's rate, n tokens and s
seconds so far: ``rate = (r₀·PRIOR_S + n) / (PRIOR_S + s)``.

The ETA scales the training time still to go by how much of the session's wall
time went into training, so validation passes, samples and checkpoints are
counted too: ``eta = tokens_left / rate × wall_s / train_s``.

Left out: per-batch timing (the trainer syncs only when it reports).
"""

from __future__ import annotations

from dataclasses import dataclass

PRIOR_S = 2.0  # seconds of training the previous epoch's average weighs in the next epoch's rate


@dataclass
class Throughput:
    """Tokens/s over one session of ``train``: ``add`` each window, ``end_epoch`` at each epoch end."""

    prior_s: float = PRIOR_S
    previous: float | None = None  # the last finished epoch's average (None during the first epoch)
    epoch_tokens: int = 0  # tokens trained in the current epoch
    epoch_seconds: float = 0.0  # seconds spent training them
    session_seconds: float = 0.0  # seconds spent training since ``train`` was called

    @property
    def rate(self) -> float | None:
        """The smoothed rate now (None before any reading)."""
        if self.previous is None:
            return self.epoch_tokens / self.epoch_seconds if self.epoch_seconds > 0 else None
        return (self.previous * self.prior_s + self.epoch_tokens) / (self.prior_s + self.epoch_seconds)

    def add(self, tokens: int, seconds: float) -> float:
        """Record a window of ``tokens`` trained in ``seconds``; return the smoothed rate.

        In the first epoch, ``add(1000, 1.0)`` → 1000.0, then ``add(3000, 1.0)`` → 2000.0 (4000 tokens
        in 2 s); after an epoch that averaged 1000 tok/s, ``add(3000, 1.0)`` → (2000 + 3000) / 3 ≈ 1666.7.
        """
        self.epoch_tokens += tokens
        self.epoch_seconds += max(0.0, seconds)
        self.session_seconds += max(0.0, seconds)
        return self.rate or 0.0

    def end_epoch(self) -> float:
        """The finished epoch's average rate; it becomes the prior of the next epoch."""
        avg = self.epoch_tokens / self.epoch_seconds if self.epoch_seconds > 0 else (self.rate or 0.0)
        self.previous = avg
        self.epoch_tokens, self.epoch_seconds = 0, 0.0
        return avg

    def eta(self, tokens_left: float, wall_s: float) -> float | None:
        """Seconds to train ``tokens_left`` more at the current rate, with the session's share of
        non-training time (``wall_s``: the session's wall time so far); None before any reading."""
        rate = self.rate
        if not rate or self.session_seconds <= 0:
            return None
        overhead = max(1.0, wall_s / self.session_seconds)
        return max(0.0, tokens_left) / rate * overhead
