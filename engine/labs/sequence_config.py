"""The sequence lab's options and fixed choices (``engine.labs.sequence``), torch-free for the CLI's parser.

``SequenceConfig`` holds what a user sets (D2L 8.1's values where the book has them) and checks it,
raising ``ConfigError`` naming the option. The constants are the lab's fixed choices: the k of the
k-step predictions, the τ of the sweep, the regime changes and the switching series.
Left out: running anything (``engine.labs.sequence.run_lab``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.config import MODEL_KINDS, option
from engine.errors import ConfigError

EXPERIMENTS = ("models", "tau", "exact", "blocks", "regime", "switching")
KS = (1, 4, 16, 64)  # k of the k-step-ahead predictions (D2L 8.1.3)
TAUS = tuple(range(1, 17))  # the τ sweep, and the windows the switching series is tried with
MLP_HIDDENS = 10  # D2L's Linear(τ, 10)
LEVEL_SHIFT, SPEED_UP = 2.0, 3.0  # the regime changes: x + 2 from the change on; ω × 3 from the change on
SWITCH_T, SWITCH_SPLIT, SWITCH_DWELL, SWITCH_SIGMA = 2000, 1200, (19, 21), 0.1  # the switching series
COLUMNS = tuple(str(k) for k in KS) + ("multi",)  # the MSE columns: k-step for each k, then multi-step


@dataclass(frozen=True)
class SequenceConfig:
    """The lab's options; D2L 8.1's values where the book has them. Each field's help text (and a choice's
    allowed values) is its metadata, from which the CLI's flags and the Labs screen's form are made."""

    T: int = option(1000, "samples x_1 … x_T")
    omega: float = option(0.01, "ω in sin(ω t)")
    sigma: float = option(0.2, "σ of the noise ε ~ N(0, σ²); 0 = a clean sine")
    n_train: int = option(600, "training examples of τ = tau: the test part starts at n_train + tau")
    tau: int = option(4, "τ: past observations a window model reads, 1..16")
    kind: str = option("rnn", "recurrent cell of the two recurrent models", MODEL_KINDS, flag="--model")
    num_hiddens: int = option(16, "hidden units of the recurrent models")
    epochs: int = option(5, "epochs of the MLP and the recurrent window model")
    history_epochs: int = option(200, "epochs of the recurrent model over the whole history")
    num_steps: int = option(64, "subsequence length the history model trains on")
    batch_size: int = option(16, "minibatch size")
    lr: float = option(0.01, "Adam's learning rate")
    seed: int = option(0, "seeds the noise, the weights and the minibatch order")

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        for name in ("T", "n_train", "tau", "num_hiddens", "epochs", "history_epochs", "num_steps", "batch_size",
                     "seed"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool), f"{name} must be an integer (got {value!r})")
        for name in ("omega", "sigma", "lr"):
            value = getattr(self, name)
            need(isinstance(value, (int, float)) and math.isfinite(value), f"{name} must be a number (got {value!r})")
        need(1 <= self.tau <= TAUS[-1], f"tau must be in 1..{TAUS[-1]} (got {self.tau})")
        need(100 <= self.n_train, f"n_train must be at least 100 (got {self.n_train})")
        need(self.T - self.split >= 100 and self.T <= 100_000,
             f"T must leave at least 100 test samples after n_train + tau = {self.split} and be at most 100000 "
             f"(got {self.T})")
        need(0 < self.omega < math.pi, f"omega must be in (0, π): faster than π per step aliases (got {self.omega})")
        need(0 <= self.sigma <= 10, f"sigma must be in [0, 10] (got {self.sigma})")
        need(self.kind in MODEL_KINDS, f"kind must be one of {', '.join(MODEL_KINDS)} (got {self.kind!r})")
        need(1 <= self.num_hiddens <= 1024, f"num_hiddens must be in 1..1024 (got {self.num_hiddens})")
        need(1 <= self.epochs <= 1000, f"epochs must be in 1..1000 (got {self.epochs})")
        need(1 <= self.history_epochs <= 10_000, f"history_epochs must be in 1..10000 (got {self.history_epochs})")
        need(2 <= self.num_steps <= self.n_train // 2, f"num_steps must be in 2..n_train/2 = {self.n_train // 2} "
             f"(got {self.num_steps})")
        need(1 <= self.batch_size <= self.n_train, f"batch_size must be in 1..n_train (got {self.batch_size})")
        need(0 < self.lr <= 10, f"lr must be in (0, 10] (got {self.lr})")
        need(self.seed >= 0, f"seed must be zero or more (got {self.seed})")

    @property
    def split(self) -> int:
        """Index of the first test target: D2L trains on the first n_train examples of τ."""
        return self.n_train + self.tau


