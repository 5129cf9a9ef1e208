"""Exercise 8.6.1: can the concise RNN overfit? Small data and a large model: training perplexity keeps falling
while validation perplexity turns and rises.

A GRU trained with Adam on the first ``max_tokens`` characters of the text, its last ``val_fraction`` held
out (the trainer's split: the tail of the cut text), for ``epochs`` epochs. Each epoch's training and
validation perplexity are recorded; the epoch of the validation minimum is where training should have
stopped, and past it the model memorises the training characters (training perplexity towards 1) while
its predictions of unseen text get worse.

Left out: remedies (dropout between layers needs num_layers > 1; weight decay: ``--optimizer adamw``).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from engine.config import MODEL_KINDS, option
from engine.exercises.base import Exercise, Plot, Progress, Reference, Result, Series, need
from engine.exercises.common import CORPUS_HELP, integer, pipeline
from engine.exercises.training_runs import train_lm


@dataclass(frozen=True)
class Settings:
    """Little data, a large model, many epochs."""

    corpus: str = option("timemachine", CORPUS_HELP)
    max_tokens: int = option(3000, "characters used (train and validation)")
    val_fraction: float = option(0.2, "held-out tail for validation")
    kind: str = option("gru", "recurrent cell", MODEL_KINDS)
    num_hiddens: int = option(128, "hidden units")
    epochs: int = option(60, "epochs")
    lr: float = option(0.01, "Adam's learning rate")
    batch_size: int = option(16, "subsequences per minibatch")
    seed: int = option(0, "seeds the weights and the minibatch order")

    def __post_init__(self) -> None:
        integer("max_tokens", self.max_tokens, 500, 10**9)
        need(isinstance(self.val_fraction, (int, float)) and 0.05 <= self.val_fraction <= 0.5,
             f"val_fraction must be in [0.05, 0.5] (got {self.val_fraction!r})")
        need(self.kind in MODEL_KINDS, f"kind must be one of {', '.join(MODEL_KINDS)} (got {self.kind!r})")
        integer("num_hiddens", self.num_hiddens, 1, 4096)
        integer("epochs", self.epochs, 2, 100_000)
        need(isinstance(self.lr, (int, float)) and 0 < self.lr <= 10, f"lr must be in (0, 10] (got {self.lr!r})")
        integer("batch_size", self.batch_size, 1, 1024)
        integer("seed", self.seed, 0, 2**31 - 1)


class Overfitting(Exercise):
    id = "8.6.1"
    question = ("Can you make the RNN overfit using the high-level API? Train a large model on little data: "
                "what do training and validation perplexity do?")
    Settings = Settings
    default = Settings()
    long = Settings(epochs=150)
    references = (  # seed 0; the tolerances span seeds 0-2
        Reference("best_val_epoch", 23, 1, "default", "seeds 0-2 gave 22-23"),
        Reference("best_val_ppl", 8.18, 0.15, "default", "seeds 0-2 gave 8.05-8.33"),
        Reference("final_val_ppl", 21.17, 0.25, "default", "epoch 60; seeds 0-2 gave 20.92-21.28"),
        Reference("final_train_ppl", 1.50, 0.16, "default", "epoch 60; seeds 0-2 gave 1.34-1.50"),
        Reference("best_val_epoch", 23, 1, "long", "the default's first 60 epochs, unchanged (no schedule)"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        from engine.config import ModelConfig, TrainConfig

        p = pipeline(s.corpus)
        model_cfg = ModelConfig(kind=s.kind, vocab_size=len(p.vocab), num_hiddens=s.num_hiddens)
        train_cfg = TrainConfig(epochs=s.epochs, optimizer="adam", lr=s.lr, max_tokens=s.max_tokens,
                                val_fraction=s.val_fraction, batch_size=s.batch_size, sample_every=0, seed=s.seed,
                                device="cpu")
        _, history, run, *_ = train_lm(p, model_cfg, train_cfg, progress, stop, tags={"exercise": self.id})
        rows = [[h.epoch, h.train_ppl, h.val_ppl] for h in history]
        vals = [(h.val_ppl if h.val_ppl is not None else math.inf, h.epoch) for h in history]
        best_val, best_epoch = min(vals)
        last = history[-1]
        figures = {"best_val_epoch": float(best_epoch), "best_val_ppl": best_val, "final_val_ppl": last.val_ppl,
                   "final_train_ppl": last.train_ppl,
                   "train_ppl_at_best": next(h.train_ppl for h in history if h.epoch == best_epoch)}
        rising = last.val_ppl is not None and last.val_ppl > best_val * 1.1
        explanation = (
            f"On {s.max_tokens:,} characters ({s.val_fraction:.0%} held out) a {s.kind.upper()} of "
            f"{s.num_hiddens} units reaches its best validation perplexity, {best_val:.2f}, at epoch {best_epoch} "
            f"(training perplexity then {figures['train_ppl_at_best']:.2f}). "
            + (f"After that training perplexity keeps falling, to {last.train_ppl:.2f} at epoch {last.epoch}, while "
               f"validation rises to {last.val_ppl:.2f}: the model memorises its {s.max_tokens * (1 - s.val_fraction):,.0f} "
               f"training characters instead of learning what carries over — overfitting. Stopping at the "
               f"validation minimum (early stopping), more data, a smaller model or regularisation "
               f"(weight decay, dropout) are the remedies." if rising else
               f"By epoch {last.epoch} validation has not risen much yet ({last.val_ppl:.2f}); train longer "
               f"(--long) to see it turn."))
        plot = Plot("perplexity per epoch", "epoch", "perplexity",
                    [Series("train", [float(h.epoch) for h in history], [h.train_ppl for h in history]),
                     Series("validation", [float(h.epoch) for h in history],
                            [h.val_ppl if h.val_ppl is not None else math.nan for h in history])])
        return Result(["epoch", "train ppl", "val ppl"], rows, explanation, figures, [plot], runs=[run])


EXERCISE = Overfitting()
