"""Exercise 8.5.4: replace gradient clipping by nothing — does training still work, and when does clipping matter?

The same model is trained with clipping by global norm (θ = 1, D2L's) and without, at each learning
rate of ``lrs``, from the same seed and minibatch order (``engine.labs.bptt_grads.step_norms``: the
trainer's own steps, each step's gradient norm before clipping and whether clipping changed it).
Reported: perplexity on the last tenth of the steps (training) and on the held-out tail (validation,
``engine.training.evaluate``), the share of steps where clipping fired, and the largest gradient norm.
Where the gradient norm stays below θ, clipping never fires and both runs are the same; at a learning
rate where a few steps have huge gradients, the unclipped run is thrown far off and does not come back.

The default budget (``steps`` 400 = 50 of D2L's epochs, 64 hidden units) is indicative; ``--long`` runs
D2L's 500 epochs. Left out: clipping by value (``rnnlab train --clip value``).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.config import MODEL_KINDS, option
from engine.exercises.base import Exercise, Plot, Progress, Reference, Result, Series, check_stop, need
from engine.exercises.common import CORPUS_HELP, integer, pipeline

TAIL = 0.1  # training perplexity over this last share of the steps


@dataclass(frozen=True)
class Settings:
    """The model, the learning rates and the budget in optimizer steps."""

    corpus: str = option("timemachine", CORPUS_HELP)
    kind: str = option("rnn", "recurrent cell", MODEL_KINDS)
    num_hiddens: int = option(64, "hidden units (D2L: 512 scratch, 256 nn.RNN)")
    lrs: tuple[float, ...] = option((1.0, 3.0), "SGD learning rates tried (D2L: 1)")
    steps: int = option(400, "optimizer steps per run (8 per D2L epoch of 10,000 tokens)")
    clip_theta: float = option(1.0, "θ of clipping by global norm")
    seed: int = option(0, "seeds the weights and the minibatch order")

    def __post_init__(self) -> None:
        need(self.kind in MODEL_KINDS, f"kind must be one of {', '.join(MODEL_KINDS)} (got {self.kind!r})")
        integer("num_hiddens", self.num_hiddens, 1, 4096)
        need(isinstance(self.lrs, tuple) and len(self.lrs) > 0 and all(
            isinstance(v, (int, float)) and 0 < v <= 1000 for v in self.lrs),
            f"lrs must be a list of learning rates in (0, 1000] (got {self.lrs!r})")
        integer("steps", self.steps, 10, 1_000_000)
        need(isinstance(self.clip_theta, (int, float)) and 0 < self.clip_theta < math.inf,
             f"clip_theta must be a positive number (got {self.clip_theta!r})")
        integer("seed", self.seed, 0, 2**31 - 1)


def run_one(s: Any, lr: float, clip: str, stop: threading.Event | None, *, activation: str = "tanh",
            seed: int | None = None) -> dict[str, Any]:
    """Train one model (``s``: corpus, kind, num_hiddens, steps, clip_theta, seed); its figures and its
    per-step gradient norms (8.5.6 reuses it with ReLU and several seeds)."""
    import torch

    from engine.config import ModelConfig, TrainConfig
    from engine.labs.bptt_grads import step_norms
    from engine.models.lm import build_model
    from engine.training import evaluate, perplexity, prepare_ids

    p = pipeline(s.corpus)
    seed = s.seed if seed is None else seed
    model_cfg = ModelConfig(kind=s.kind, vocab_size=len(p.vocab), num_hiddens=s.num_hiddens, activation=activation)
    train_cfg = TrainConfig(lr=lr, clip=clip, clip_theta=s.clip_theta, seed=seed, device="cpu")
    torch.manual_seed(seed)
    model = build_model(model_cfg)
    records = list(step_norms(p.ids, model_cfg, train_cfg, s.steps, model=model, stop=stop))
    if stop is not None and stop.is_set():
        return {}
    losses = np.array([r.loss for r in records])
    tail = losses[-max(1, int(len(losses) * TAIL)):]
    _, val_ids = prepare_ids(p.ids, model_cfg, train_cfg)
    val = evaluate(model, val_ids, train_cfg.batch_size, train_cfg.num_steps, torch.device("cpu")) \
        if np.isfinite(losses).all() else math.inf
    norms = [r.grad_norm for r in records]
    return {"train_ppl": perplexity(float(np.mean(tail))) if np.isfinite(tail).all() else math.inf,
            "val_ppl": val, "clipped": float(np.mean([r.clipped for r in records])),
            "max_norm": float(np.nanmax(norms)) if np.isfinite(norms).any() else math.inf,
            "norms": norms, "V": float(len(p.vocab))}


class NoClipping(Exercise):
    id = "8.5.4"
    question = ("Replace gradient clipping with nothing (or another remedy). What happens to training, and at "
                "which learning rates does clipping matter?")
    Settings = Settings
    default = Settings()
    long = Settings(steps=4000)
    references = (  # seed 0 at the default settings; tolerances span seeds 0-1 (the long budget: none yet)
        Reference("clipped_share_lr1", 0.0, 0.0, "default", "‖g‖ stayed below θ = 1 at lr 1 for seeds 0-1"),
        Reference("val_ppl_clip_lr1", 9.71, 0.19, "default", "seeds 0-1 gave 9.71-9.90"),
        Reference("clipped_share_lr3", 0.89, 0.09, "default", "seeds 0-1 gave 0.89-0.98"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        rows, figures, series = [], {}, []
        runs = [(lr, clip) for lr in s.lrs for clip in ("norm", "off")]
        out: dict[tuple[float, str], dict[str, float]] = {}
        for i, (lr, clip) in enumerate(runs):
            check_stop(stop)
            progress(i, len(runs), f"lr {lr:g}, clipping {'on' if clip == 'norm' else 'off'}")
            r = run_one(s, lr, clip, stop)
            check_stop(stop)
            out[(lr, clip)] = r
            on = clip == "norm"
            rows.append([lr, "on" if on else "off", r["train_ppl"], r["val_ppl"], r["clipped"] if on else None,
                         r["max_norm"]])
            tag = f"{'clip' if on else 'noclip'}_lr{lr:g}"
            figures[f"train_ppl_{tag}"], figures[f"val_ppl_{tag}"] = r["train_ppl"], r["val_ppl"]
            figures[f"max_norm_{tag}"] = r["max_norm"]
            if on:
                figures[f"clipped_share_lr{lr:g}"] = r["clipped"]
            norms = np.log10(np.maximum(np.nan_to_num(np.array(r["norms"]), nan=1e30, posinf=1e30), 1e-12))
            series.append(Series(f"lr {lr:g} {'clip' if on else 'no clip'}", list(map(float, range(1, len(norms) + 1))),
                                 norms.tolist()))
        progress(len(runs), len(runs), "done")
        V = next(iter(out.values()))["V"]
        parts = []
        for lr in s.lrs:
            on, off = out[(lr, "norm")], out[(lr, "off")]
            bad = off["val_ppl"] > 2 * V or not math.isfinite(off["val_ppl"])
            if on["clipped"] == 0:
                parts.append(f"At lr {lr:g} the gradient norm never passed θ = {s.clip_theta:g} (largest "
                             f"{on['max_norm']:.2f}), so clipping never fired and both runs are the same: validation "
                             f"perplexity {on['val_ppl']:.2f} and {off['val_ppl']:.2f}.")
            else:
                parts.append(f"At lr {lr:g} clipping fired on {on['clipped']:.0%} of the steps; with it validation "
                             f"perplexity is {on['val_ppl']:.3g}, without it {off['val_ppl']:.3g}"
                             + (f" — the unclipped run was thrown off (largest ‖g‖ {off['max_norm']:.3g}) and worse "
                                f"than guessing uniformly (perplexity {V:.0f})." if bad else
                                f" (largest ‖g‖ without clipping {off['max_norm']:.3g})."))
        explanation = " ".join(parts) + (
            " Clipping is insurance: it changes nothing while gradients are small and bounds the step when one "
            "minibatch's gradient explodes, which a large learning rate turns into a jump the model does not "
            f"recover from. {s.steps} steps is indicative; --long trains D2L's 500 epochs, where the rare spikes "
            "of a long run show.")
        return Result(["lr", "clipping", "train ppl", "val ppl", "steps clipped", "max ‖g‖"], rows, explanation,
                      figures, [Plot("log10 ‖g‖ before clipping, per step", "step", "log10 ‖g‖", series)])


EXERCISE = NoClipping()
