"""Training a language model for an exercise: the trainer's own loop (``engine.trainer.train``, seeded), its
epoch-end figures collected, its progress passed on, a stop honoured.

``train_lm`` returns a ``Trained``: the model, one ``EpochFigures`` per epoch (train and validation
perplexity) and the name of the run folder it wrote; with ``per_step`` also a ``StepRecord`` per optimizer
step (its loss, gradient norm before clipping and whether clipping fired), read from the trainer's
Progress events at ``log_every_steps`` 1, and the Diverged event that ended a run that blew up. A
training config that leaves ``threads`` at torch's default trains on one thread (``one_thread``).
Given ``tags`` (``{"exercise": "8.6.1"}``) and a corpus pipeline, the training is an ordinary run in
the runs folder (``engine.runs.create_run``), tagged, so the Runs screen lists and overlays it; a
stopped exercise leaves its run saved and marked stopped. Shared by the exercises that need a trained
model (8.1.3, 8.4.2, 8.4.4, 8.5.3, 8.5.4, 8.5.6, 8.6.1, 8.7.2). ``LMSettings`` holds the fields 8.1.3,
8.4.2 and 8.4.4 share (corpus, cell, width, Adam's budget, max_tokens, seed) and their checks.
Left out: runs of token ids that are not a corpus, which have no corpus file a run folder could name:
those train without a folder (8.1.3 writes its reversed text as a corpus file to get one).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass
from typing import Any, NamedTuple

from engine.config import MODEL_KINDS, option
from engine.exercises.base import Progress, Stopped, need
from engine.exercises.common import CORPUS_HELP, integer


@dataclass(frozen=True)
class LMSettings:
    """A character-level language model and its training budget (Adam, as the book's concise models)."""

    corpus: str = option("timemachine", CORPUS_HELP)
    kind: str = option("gru", "recurrent cell", MODEL_KINDS)
    num_hiddens: int = option(128, "hidden units")
    epochs: int = option(20, "training epochs (Adam) over max_tokens characters")
    lr: float = option(0.01, "Adam's learning rate")
    max_tokens: int = option(10000, "characters trained on")
    seed: int = option(0, "seeds the weights and the minibatch order")

    def __post_init__(self) -> None:
        need(self.kind in MODEL_KINDS, f"kind must be one of {', '.join(MODEL_KINDS)} (got {self.kind!r})")
        integer("num_hiddens", self.num_hiddens, 1, 4096)
        integer("epochs", self.epochs, 1, 100_000)
        need(isinstance(self.lr, (int, float)) and 0 < self.lr <= 10, f"lr must be in (0, 10] (got {self.lr!r})")
        self.check_max_tokens()
        integer("seed", self.seed, 0, 2**31 - 1)

    def check_max_tokens(self) -> None:
        integer("max_tokens", self.max_tokens, 2000, 10**9)


@dataclass(frozen=True)
class EpochFigures:
    """One epoch's end: its training perplexity and the validation perplexity after it."""

    epoch: int
    train_ppl: float
    val_ppl: float | None


class Trained(NamedTuple):
    """What ``train_lm`` leaves: the model, its epochs' figures, and its run folder's name (None: not saved);
    with ``per_step``, every optimizer step and the Diverged event (None: it did not blow up)."""

    model: Any
    history: list[EpochFigures]
    run: str | None
    steps: list[Any] = []
    diverged: Any = None


def step_losses(ppls: list[float]) -> list[float]:
    """Each step's mean loss from the running perplexity after it (within one epoch, every step weighing one
    minibatch): ``exp(mean of the first k losses)`` → loss_k = k·ln p_k − (k−1)·ln p_{k−1}.
    ``[e^2, e^3]`` (losses 2 then 4) → ``[2.0, 4.0]``."""
    out, prev = [], 0.0
    for k, ppl in enumerate(ppls, 1):
        total = k * math.log(ppl) if ppl < math.inf else math.inf
        out.append(total - prev if math.isfinite(total) else math.inf)
        prev = total
    return out


def one_thread(train_cfg: Any) -> Any:
    """``train_cfg`` with ``threads`` 1 where it leaves torch's default (0). An exercise's models are small: one
    thread trains them as fast as torch's default on an idle machine (8.5.6: 5.0 s against 5.9 s on 2 cores),
    and on a busy one torch's threads wait on each other (8.5.6 beside another training process: 6 s against
    more than 10 minutes)."""
    return dataclasses.replace(train_cfg, threads=1) if train_cfg.threads == 0 else train_cfg


def train_lm(data: Any, model_cfg: Any, train_cfg: Any, progress: Progress, stop: threading.Event | None, *,
             tokenizer: Any = None, done: int = 0, total: int | None = None,
             label: str = "training", tags: dict[str, str] | None = None, per_step: bool = False) -> Trained:
    """Train a fresh model (seeded by ``train_cfg.seed``) on ``data`` (a pipeline or ids); report each epoch as
    step ``done + epoch`` of ``total``. With ``tags`` and a pipeline, into a new run folder tagged so. With
    ``per_step`` (truncation regular, no padding: one step per minibatch), record every optimizer step."""
    import torch

    from engine.events import Diverged, Finished, Progress as TrainProgress
    from engine.labs.bptt import StepRecord
    from engine.models.lm import build_model
    from engine.runs import create_run
    from engine.trainer import train

    train_cfg = one_thread(train_cfg)
    if per_step:
        need(train_cfg.truncation == "regular" and not train_cfg.pads,
             "per-step records need truncation regular and no padding: one optimizer step per minibatch")
        train_cfg = dataclasses.replace(train_cfg, log_every_steps=1)
    run = create_run(None, model_cfg, train_cfg, data, tags=tags) if tags and hasattr(data, "corpus") else None
    torch.manual_seed(train_cfg.seed)
    model = build_model(model_cfg)
    total = total if total is not None else train_cfg.epochs
    history: list[EpochFigures] = []
    steps: list[StepRecord] = []
    epoch_steps: list[TrainProgress] = []  # this epoch's per-step Progress events
    diverged = None

    def flush() -> None:
        losses = step_losses([e.train_ppl for e in epoch_steps])
        steps.extend(StepRecord(e.step, e.epoch, loss, e.grad_norm, e.clip_fraction > 0)
                     for e, loss in zip(epoch_steps, losses))
        epoch_steps.clear()

    for event in train(data, model_cfg, train_cfg, tokenizer=tokenizer, run=run, stop=stop, model=model):
        if isinstance(event, TrainProgress) and event.epoch_end:
            flush()
            history.append(EpochFigures(event.epoch, event.train_ppl, event.val_ppl))
            progress(done + event.epoch, total, f"{label}: epoch {event.epoch}, perplexity {event.train_ppl:.2f}")
        elif isinstance(event, TrainProgress) and per_step:
            epoch_steps.append(event)
        elif isinstance(event, Diverged):
            flush()
            diverged = event
            if per_step:  # the step that blew up: its loss or its gradient norm was not finite (or past the limit)
                steps.append(StepRecord(event.step, event.epoch, math.nan, math.nan, False))
        elif isinstance(event, Finished) and event.reason == "stopped":
            raise Stopped("stopped before the exercise finished: no result"
                          + (f" (run {run.name} saved as stopped)" if run is not None else ""))
    return Trained(model, history, run.name if run is not None else None, steps, diverged)
