"""The events ``engine.trainer.train`` yields: small frozen dataclasses.

A caller (the CLI's progress bar, the TUI's plots) iterates over ``train(...)``
and dispatches on the event's type; nothing here knows how events are shown.
Every event converts to a JSON-safe dict with ``to_dict()`` (``type`` names the
class) so run folders can log them. Perplexity is ``exp(mean cross-entropy per
token)`` as in D2L 8.4.4; 1 is a perfect predictor, ``len(vocab)`` a uniform one.

Deliberately absent: per-batch events (the trainer throttles at the source) and
any formatting for humans beyond ``Diverged.message``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Union

from engine.jsonfloat import dump_float, float_fields, load_float


class _Event:
    def to_dict(self) -> dict[str, Any]:
        d = {k: dump_float(v) for k, v in asdict(self).items()}  # type: ignore[call-overload]
        return {"type": type(self).__name__, **d}


@dataclass(frozen=True)
class Progress(_Event):
    """Where training stands; yielded every ``log_interval_s`` and at each epoch end."""

    epoch: int  # the epoch in progress (1-based); the finished epoch when epoch_end
    step: int  # optimizer updates so far, over the whole run (resumes continue it)
    train_ppl: float  # training perplexity over the epoch so far
    val_ppl: float | None  # perplexity on the held-out tail at the last epoch end (None: none yet / no split)
    tokens_per_s: float  # training throughput: smoothed within an epoch, the epoch's average at epoch_end
    grad_norm: float  # mean global gradient norm *before* clipping since the previous Progress
    lr: float  # learning rate of the optimizer
    elapsed_s: float  # wall time spent training, including earlier sessions of a resumed run
    eta_s: float | None  # estimated seconds left for the remaining epochs (None: unknown yet)
    epochs: int  # epochs the run is configured for
    epoch_end: bool = False  # True for the one Progress at the end of each epoch (full-epoch train_ppl)
    clip_fraction: float = 0.0  # share of optimizer steps since the previous Progress (the epoch's, at
    # epoch_end) whose gradient clipping changed: ‖g‖ > θ (norm) or some |g_i| > θ (value); 0 with clip off


@dataclass(frozen=True)
class Sample(_Event):
    """A continuation of ``prefix`` by the model (D2L prints ``predict('time traveller')``)."""

    epoch: int  # after this epoch
    prefix: str  # the fixed prompt
    text: str  # the prompt followed by the generated tokens


@dataclass(frozen=True)
class Diverged(_Event):
    """Loss or gradient norm blew up (NaN/inf, or perplexity past a float's range); training
    stopped and the last good weights were restored (and saved, with a run)."""

    epoch: int  # epoch in which it happened
    step: int  # first optimizer step with a non-finite loss or gradient norm
    lr: float  # learning rate in use
    loss: float  # the bad value: a loss that is nan/inf or above 700 nats/token (perplexity overflows), or the grad norm
    message: str  # what happened and what to try, written for the user


@dataclass(frozen=True)
class Spike(_Event):
    """Perplexity jumped above ``spike_factor`` × its best so far (e.g. nn.RNN at lr 1 after ~1800 epochs)."""

    epoch: int  # epoch whose end showed the jump
    val_ppl: float  # the perplexity that jumped (validation, or training when there is no split)
    best_val_ppl: float  # best perplexity of the same kind so far
    metric: str = "validation"  # which perplexity: "validation" or "train" (when val_fraction == 0)


@dataclass(frozen=True)
class Checkpoint(_Event):
    """Weights and optimizer state were written to the run folder."""

    epoch: int  # epochs completed in the saved state
    step: int  # optimizer steps in the saved state
    path: str  # the run folder


@dataclass(frozen=True)
class Finished(_Event):
    """The last event of every ``train`` call."""

    epoch: int  # epochs completed
    step: int  # optimizer steps taken
    train_ppl: float | None  # train perplexity of the saved weights' epoch (a stopped one's so far; None: none yet)
    val_ppl: float | None  # validation perplexity of the saved weights (None: none)
    stopped_early: bool  # True when stopped by the caller or by divergence
    reason: str  # "completed" | "stopped" | "diverged"
    unstable: bool = False  # the saved weights' perplexity is over twice that of uniform guessing (2 × vocab size)


Event = Union[Progress, Sample, Diverged, Spike, Checkpoint, Finished]
EVENT_TYPES: dict[str, type] = {c.__name__: c for c in (Progress, Sample, Diverged, Spike, Checkpoint, Finished)}


def event_from_dict(d: dict[str, Any]) -> Event:
    """Inverse of ``to_dict`` (strings 'inf'/'nan' become floats again)."""
    cls = EVENT_TYPES[d["type"]]
    floats = float_fields(cls)
    return cls(**{k: (load_float(v) if k in floats else v) for k, v in d.items() if k != "type"})
