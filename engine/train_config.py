"""``TrainConfig``: every training option, checked when it is made.

Kept free of torch so the CLI can build its parser (and ``rnnlab --help``)
without importing it. The training loop lives in ``engine.trainer``; the
pieces it uses in ``engine.training``. Left out: model options
(``engine.models.ModelConfig``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from engine.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw")
CLIPS = ("norm", "value", "off")
SAMPLERS = ("random", "sequential")
DEVICES = ("auto", "cpu", "cuda", "mps")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)} (got {value!r})")


def _at_least(name: str, value: Any, low: float, what: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
        raise ConfigError(f"{name} must be {what or f'at least {low}'} (got {value!r})")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: D2L's defaults for the optimizer and data, rnnlab's for the rest."""

    optimizer: str = "sgd"  # sgd (D2L) | adam | adamw
    lr: float = 1.0  # learning rate (D2L: 1 with plain SGD)
    epochs: int = 50  # passes over the training tokens (D2L: 500)
    batch_size: int = 32  # subsequences per minibatch
    num_steps: int = 35  # time steps per subsequence (truncated BPTT length)
    clip: str = "norm"  # gradient clipping: by global norm (D2L) | by value | off
    clip_theta: float = 1.0  # θ: the norm bound (clip=norm) or the value bound (clip=value)
    sampler: str = "random"  # random | sequential partitioning (D2L 8.3.4)
    detach: bool = True  # sequential only: detach the state between minibatches (False: BPTT over the whole epoch)
    val_fraction: float = 0.1  # held-out tail of the (max_tokens-cut) corpus for validation; 0 = none
    max_tokens: int = 10000  # use only the first max_tokens tokens (D2L: 10000); 0 = all
    seed: int = 0  # seeds weights, minibatch order and sampling: same seed + config → same curve
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | mps
    threads: int = 0  # CPU threads for torch; 0 = torch's default
    sample_every: int = 10  # epochs between Sample events; 0 = never (the last epoch always samples)
    sample_prefix: str = "time traveller"  # prompt of the Sample events (D2L's)
    sample_len: int = 50  # tokens generated per sample (D2L: 50)
    sample_alpha: float = math.inf  # sampling exponent α for samples; inf = greedy (D2L's predict)
    log_interval_s: float = 0.25  # at least this many seconds between Progress events within an epoch
    log_every_steps: int = 0  # also yield Progress every this many steps; 0 = by time only
    checkpoint_interval_s: float = 30.0  # at least this long between checkpoints (one is always saved at the end)
    spike_factor: float = 2.0  # a Spike event when perplexity exceeds this × its best so far
    bptt_limit_mb: int = 2048  # detach=False: refuse when the epoch's graph would need more memory

    def __post_init__(self) -> None:
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("clip", self.clip, CLIPS)
        _choice("sampler", self.sampler, SAMPLERS)
        _choice("device", self.device, DEVICES)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number (got {self.lr!r})")
        for name in ("epochs", "batch_size", "num_steps"):
            _at_least(name, getattr(self, name), 1, "a positive integer")
        if not (self.clip_theta > 0 and math.isfinite(self.clip_theta)):
            raise ConfigError(f"clip_theta must be a positive number (got {self.clip_theta!r})")
        if not 0.0 <= self.val_fraction <= 0.5:
            raise ConfigError(f"val_fraction must be in [0, 0.5] (got {self.val_fraction!r})")
        for name in ("max_tokens", "seed", "threads", "sample_every", "sample_len", "log_every_steps"):
            _at_least(name, getattr(self, name), 0, "zero or a positive integer")
        for name in ("log_interval_s", "checkpoint_interval_s"):
            _at_least(name, getattr(self, name), 0, "zero or more seconds")
        _at_least("sample_alpha", self.sample_alpha, 0, "zero or more (inf = greedy)")
        if not self.spike_factor > 1:
            raise ConfigError(f"spike_factor must be greater than 1 (got {self.spike_factor!r})")
        _at_least("bptt_limit_mb", self.bptt_limit_mb, 1, "a positive number of MiB")
        if not self.detach and self.sampler != "sequential":
            raise ConfigError(
                "detach=False needs sampler='sequential' (random sampling starts every minibatch from a fresh state)"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: an infinite sample_alpha is written as the string 'inf'."""
        return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: (float(v) if v in ("inf", "nan") else v) for k, v in d.items() if k in known})
