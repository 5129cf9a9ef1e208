"""Training a language model for an exercise: the trainer's own loop (``engine.trainer.train``, seeded, no run
folder), its epoch-end figures collected, its progress passed on, a stop honoured.

``train_lm`` returns the trained model and one ``EpochFigures`` per epoch (train and validation
perplexity). Shared by the exercises that need a trained model (8.1.3, 8.4.2, 8.4.4, 8.6.1).
Left out: saving runs (an exercise's models are not written to the runs folder).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from engine.exercises.base import Progress, Stopped


@dataclass(frozen=True)
class EpochFigures:
    """One epoch's end: its training perplexity and the validation perplexity after it."""

    epoch: int
    train_ppl: float
    val_ppl: float | None


def train_lm(data: Any, model_cfg: Any, train_cfg: Any, progress: Progress, stop: threading.Event | None, *,
             tokenizer: Any = None, done: int = 0, total: int | None = None,
             label: str = "training") -> tuple[Any, list[EpochFigures]]:
    """Train a fresh model (seeded by ``train_cfg.seed``) on ``data`` (a pipeline or ids); report each epoch as
    step ``done + epoch`` of ``total``."""
    import torch

    from engine.events import Finished, Progress as TrainProgress
    from engine.models.lm import build_model
    from engine.trainer import train

    torch.manual_seed(train_cfg.seed)
    model = build_model(model_cfg)
    total = total if total is not None else train_cfg.epochs
    history: list[EpochFigures] = []
    for event in train(data, model_cfg, train_cfg, tokenizer=tokenizer, stop=stop, model=model):
        if isinstance(event, TrainProgress) and event.epoch_end:
            history.append(EpochFigures(event.epoch, event.train_ppl, event.val_ppl))
            progress(done + event.epoch, total, f"{label}: epoch {event.epoch}, perplexity {event.train_ppl:.2f}")
        elif isinstance(event, Finished) and event.reason == "stopped":
            raise Stopped("stopped before the exercise finished: no result")
    return model, history
