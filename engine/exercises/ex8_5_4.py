"""Exercise 8.5.4: replace gradient clipping by nothing — does training still work, and when does clipping matter?

The same model is trained with clipping by global norm (θ = 1, D2L's) and without, at each learning
rate of ``lrs``, from the same seed and minibatch order, by the trainer (``training_runs.train_lm``
with ``per_step``: each optimizer step's gradient norm before clipping and whether clipping changed
it, from its Progress events). Each run is an ordinary run folder tagged ``{"exercise": "8.5.4",
"point": "lr 3, clip off"}``, so the Runs screen overlays them. Reported: perplexity on the last tenth
of the steps (training), validation perplexity after the last epoch, the share of steps where
clipping fired, and the largest gradient norm. Where the gradient norm stays below θ, clipping never
fires and both runs are the same; at a learning rate where a few steps have huge gradients, the
unclipped run is thrown far off and does not come back. A run the trainer stops as diverged (a loss
or gradient norm that is not finite) has validation perplexity ∞.

The default budget (50 epochs = 400 steps, 64 hidden units) is indicative; ``--long`` runs D2L's 500
epochs. Left out: clipping by value (``rnnlab train --clip value``).
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
    epochs: int = option(50, "passes over D2L's 10,000 characters, 8 optimizer steps each (D2L: 500)")
    clip_theta: float = option(1.0, "θ of clipping by global norm")
    seed: int = option(0, "seeds the weights and the minibatch order")

    def __post_init__(self) -> None:
        need(self.kind in MODEL_KINDS, f"kind must be one of {', '.join(MODEL_KINDS)} (got {self.kind!r})")
        integer("num_hiddens", self.num_hiddens, 1, 4096)
        need(isinstance(self.lrs, tuple) and len(self.lrs) > 0 and all(
            isinstance(v, (int, float)) and 0 < v <= 1000 for v in self.lrs),
            f"lrs must be a list of learning rates in (0, 1000] (got {self.lrs!r})")
        integer("epochs", self.epochs, 1, 100_000)
        need(isinstance(self.clip_theta, (int, float)) and 0 < self.clip_theta < math.inf,
             f"clip_theta must be a positive number (got {self.clip_theta!r})")
        integer("seed", self.seed, 0, 2**31 - 1)


def run_one(s: Any, lr: float, clip: str, stop: threading.Event | None, *, activation: str = "tanh",
            seed: int | None = None, exercise: str = "8.5.4", progress: Progress | None = None, done: int = 0,
            total: int | None = None) -> dict[str, Any]:
    """Train one model in a run folder tagged with ``exercise`` (``s``: corpus, kind, num_hiddens, epochs,
    clip_theta, seed); its figures and its per-step gradient norms (8.5.6 reuses it with ReLU and seeds).
    ``progress`` hears each epoch as step ``done + epoch`` of ``total``."""
    from engine.config import ModelConfig, TrainConfig
    from engine.exercises.training_runs import train_lm
    from engine.training import perplexity

    p = pipeline(s.corpus)
    seed = s.seed if seed is None else seed
    model_cfg = ModelConfig(kind=s.kind, vocab_size=len(p.vocab), num_hiddens=s.num_hiddens, activation=activation)
    train_cfg = TrainConfig(lr=lr, epochs=s.epochs, clip=clip, clip_theta=s.clip_theta, seed=seed, device="cpu")
    # the run's place in the comparison: "lr 3, clip off"; 8.5.6's "relu, lr 1, clip on, seed 2"
    words = [activation] if activation != "tanh" else []
    words += [f"lr {lr:g}", f"clip {'off' if clip == 'off' else 'on'}"]
    point = ", ".join(words + ([f"seed {seed}"] if exercise != "8.5.4" else []))
    t = train_lm(p, model_cfg, train_cfg, progress or (lambda *a: None), stop, done=done, total=total, label=point,
                 tags={"exercise": exercise, "point": point}, per_step=True)
    losses = np.array([r.loss for r in t.steps])
    tail = losses[-max(1, int(len(losses) * TAIL)):]
    ok = t.diverged is None and np.isfinite(losses).all()
    val = t.history[-1].val_ppl if ok and t.history and t.history[-1].val_ppl is not None else math.inf
    norms = [r.grad_norm for r in t.steps]
    return {"train_ppl": perplexity(float(np.mean(tail))) if ok else math.inf,
            "val_ppl": val, "clipped": float(np.mean([r.clipped for r in t.steps if math.isfinite(r.grad_norm)] or [0.0])),
            "max_norm": float(np.nanmax(norms)) if ok else math.inf,
            "norms": norms, "V": float(len(p.vocab)), "run": t.run, "diverged": t.diverged is not None}


class NoClipping(Exercise):
    id = "8.5.4"
    question = ("Replace gradient clipping with nothing (or another remedy). What happens to training, and at "
                "which learning rates does clipping matter?")
    Settings = Settings
    default = Settings()
    long = Settings(epochs=500)
    references = (  # seed 0; the tolerances span seeds 0-1
        Reference("clipped_share_lr1", 0.0, 0.0, "default", "‖g‖ stayed below θ = 1 at lr 1 for seeds 0-1"),
        Reference("val_ppl_clip_lr1", 9.71, 0.19, "default", "seeds 0-1 gave 9.71-9.90"),
        Reference("clipped_share_lr3", 0.83, 0.04, "default", "seeds 0-1 gave 0.83-0.87"),
        Reference("diverged_noclip_lr3", 1, 0, "default", "the unclipped run at lr 3 diverged at seeds 0-1"),
        Reference("val_ppl_clip_lr1", 13.98, 0.25, "long", "seeds 0-1 gave 13.74-14.23 (training 3.76-3.78: it "
                                                           "overfits)"),
        Reference("clipped_share_lr1", 0.0011, 0.0004, "long", "seeds 0-1: 3 and 6 of 4,000 steps"),
        Reference("clipped_share_lr3", 0.96, 0.012, "long", "seeds 0-1 gave 0.952-0.971"),
        Reference("diverged_noclip_lr3", 1, 0, "long", "seeds 0-1"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        rows, figures, series = [], {}, []
        runs = [(lr, clip) for lr in s.lrs for clip in ("norm", "off")]
        out: dict[tuple[float, str], dict[str, float]] = {}
        total = len(runs) * s.epochs
        for i, (lr, clip) in enumerate(runs):
            check_stop(stop)
            r = run_one(s, lr, clip, stop, progress=progress, done=i * s.epochs, total=total)
            out[(lr, clip)] = r
            on = clip == "norm"
            rows.append([lr, "on" if on else "off", r["train_ppl"], r["val_ppl"], r["clipped"] if on else None,
                         r["max_norm"]])
            tag = f"{'clip' if on else 'noclip'}_lr{lr:g}"
            figures[f"train_ppl_{tag}"], figures[f"val_ppl_{tag}"] = r["train_ppl"], r["val_ppl"]
            figures[f"max_norm_{tag}"] = r["max_norm"]
            figures[f"diverged_{tag}"] = float(r["diverged"])
            if on:
                figures[f"clipped_share_lr{lr:g}"] = r["clipped"]
            norms = np.log10(np.maximum(np.nan_to_num(np.array(r["norms"]), nan=1e30, posinf=1e30), 1e-12))
            series.append(Series(f"lr {lr:g} {'clip' if on else 'no clip'}", list(map(float, range(1, len(norms) + 1))),
                                 norms.tolist()))
        progress(total, total, "done")
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
                             + (" — the unclipped run diverged: a loss or gradient norm stopped being finite and "
                                "the trainer stopped it." if not math.isfinite(off["val_ppl"]) else
                                f" — the unclipped run was thrown off (largest ‖g‖ {off['max_norm']:.3g}) and worse "
                                f"than guessing uniformly (perplexity {V:.0f})." if bad else
                                f" (largest ‖g‖ without clipping {off['max_norm']:.3g}).")
                             + (f" Clipping kept the clipped run finite, yet it ends worse than guessing uniformly "
                                f"(perplexity {V:.0f}): each step is bounded at lr·θ = {lr * s.clip_theta:g}, still too "
                                "long to settle." if on["val_ppl"] > V else ""))
        explanation = " ".join(parts) + (
            " Clipping is insurance: it changes nothing while gradients are small and bounds the step when one "
            "minibatch's gradient explodes, which a large learning rate turns into a jump the model does not "
            "recover from." + (f" {s.epochs} epochs is indicative; --long trains D2L's 500 epochs, where the rare "
                               "spikes of a long run show." if s.epochs < 500 else ""))
        return Result(["lr", "clipping", "train ppl", "val ppl", "steps clipped", "max ‖g‖"], rows, explanation,
                      figures, [Plot("log10 ‖g‖ before clipping, per step", "step", "log10 ‖g‖", series)],
                      runs=[out[key]["run"] for key in runs])


EXERCISE = NoClipping()
