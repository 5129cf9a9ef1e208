"""Exercise 8.7.2: besides clipping, what copes with exploding gradients? Remedies compared at one learning rate.

A plain tanh RNN trained with SGD at a learning rate ``lr`` high enough that, without clipping, a few
minibatches' gradients throw it off (its validation perplexity ends far above the vocabulary size, the
perplexity of guessing uniformly). Then, from the same seed and minibatch order, each remedy alone:

* ``clip``: clipping by global norm, θ = ``clip_theta`` (D2L 8.5's own remedy);
* ``gru`` / ``lstm``: gated cells (D2L 9.1-9.2), the same width, no clipping;
* ``small_lr``: the plain RNN at ``small_lr`` instead of ``lr``;
* ``weight_decay``: SGD's L2 penalty λ = ``weight_decay`` (``TrainConfig.weight_decay``), no clipping;
* ``irnn``: ReLU with W_hh = I and zero biases (``ModelConfig.init`` identity; Le, Jaitly & Hinton 2015).

Each run is the trainer's own steps (``engine.labs.bptt_grads.step_norms``: its seed, minibatches,
optimizer and clipping) with the gradient norm of every step before clipping; the validation tail is
scored every ``eval_every`` steps (``engine.training.evaluate``). A run's status: ``diverged`` when a loss
is not finite, ``worse than uniform`` when validation ends above V, ``no better than frequencies`` when it ends no
better than the unigram model of the training characters (what a model that ignores its input can do:
a recurrent layer whose units all died gives that), ``ok`` otherwise.

The default budget (400 steps = 50 of D2L's epochs, 64 hidden units) is indicative; ``--long`` trains
4,000 steps. Left out: combinations of remedies (``--set remedies=…`` runs each alone), other
optimizers (Adam rescales each step itself), and clipping by value.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.config import option
from engine.exercises.base import Exercise, Plot, Progress, Reference, Result, Series, check_stop, need
from engine.exercises.common import CORPUS_HELP, integer, pipeline

REMEDIES = ("clip", "gru", "lstm", "small_lr", "weight_decay", "irnn")
FREQ_MARGIN = 0.98  # "no better than frequencies": validation perplexity above 98% of the unigram model's
LATE_RISE = 1.5  # a run whose validation perplexity ends above 1.5 × its best went off after it
TAIL = 0.1  # training perplexity over this last share of the steps


def _rate(name: str, value: Any) -> None:
    need(isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1000,
         f"{name} must be a learning rate in (0, 1000] (got {value!r})")


@dataclass(frozen=True)
class Settings:
    """The plain RNN, the learning rate it fails at, the remedies and their own settings."""

    corpus: str = option("timemachine", CORPUS_HELP)
    num_hiddens: int = option(64, "hidden units of every model")
    lr: float = option(3.0, "SGD learning rate at which the plain tanh RNN fails without clipping (D2L: 1)")
    steps: int = option(400, "optimizer steps per run (8 per D2L epoch of 10,000 tokens)")
    remedies: tuple[str, ...] = option(REMEDIES, "remedies tried, each alone: " + ", ".join(REMEDIES))
    clip_theta: float = option(1.0, "clip: θ of clipping by global norm")
    small_lr: float = option(1.0, "small_lr: the learning rate tried instead of lr")
    weight_decay: float = option(0.01, "weight_decay: SGD's L2 penalty λ")
    eval_every: int = option(8, "steps between validation passes (8 ≈ one D2L epoch)")
    seed: int = option(0, "seeds the weights and the minibatch order")
    threads: int = option(1, "CPU threads for torch, set for the whole process as the trainer does (0 = leave "
                             "as is): models this small run slower on more, and far slower on a busy machine")

    def __post_init__(self) -> None:
        need(isinstance(self.corpus, str) and self.corpus != "", f"corpus must name a text (got {self.corpus!r})")
        integer("num_hiddens", self.num_hiddens, 1, 4096)
        _rate("lr", self.lr)
        _rate("small_lr", self.small_lr)
        integer("steps", self.steps, 10, 1_000_000)
        need(isinstance(self.remedies, tuple) and all(r in REMEDIES for r in self.remedies)
             and len(set(self.remedies)) == len(self.remedies),
             f"remedies must be some of {', '.join(REMEDIES)}, each once (got {self.remedies!r})")
        need(isinstance(self.clip_theta, (int, float)) and 0 < self.clip_theta < math.inf,
             f"clip_theta must be a positive number (got {self.clip_theta!r})")
        need(isinstance(self.weight_decay, (int, float)) and 0 < self.weight_decay < math.inf,
             f"weight_decay must be a positive number (got {self.weight_decay!r})")
        integer("eval_every", self.eval_every, 1, 1_000_000)
        integer("seed", self.seed, 0, 2**31 - 1)
        integer("threads", self.threads, 0, 1024)


def configs(s: Settings, remedy: str, vocab_size: int) -> tuple[Any, Any, str]:
    """(ModelConfig, TrainConfig, what changed) of the plain run (``remedy`` "none") or of one remedy."""
    from engine.config import ModelConfig, TrainConfig

    model = dict(kind="rnn", vocab_size=vocab_size, num_hiddens=s.num_hiddens)
    train = dict(lr=s.lr, clip="off", clip_theta=s.clip_theta, seed=s.seed, device="cpu")
    what = f"tanh RNN, lr {s.lr:g}, no clipping"
    if remedy == "clip":
        train["clip"], what = "norm", f"clipping by norm, θ = {s.clip_theta:g}"
    elif remedy in ("gru", "lstm"):
        model["kind"], what = remedy, f"{remedy.upper()} cell"
    elif remedy == "small_lr":
        train["lr"], what = s.small_lr, f"lr {s.small_lr:g}"
    elif remedy == "weight_decay":
        train["weight_decay"], what = s.weight_decay, f"weight decay λ = {s.weight_decay:g}"
    elif remedy == "irnn":
        model.update(activation="relu", init="identity")
        what = "ReLU, W_hh = I, biases 0 (IRNN)"
    return ModelConfig(**model), TrainConfig(**train), what


def unigram_perplexity(train_ids: np.ndarray, val_ids: np.ndarray, vocab_size: int) -> float:
    """Perplexity on ``val_ids`` of the training tokens' frequencies (add-one smoothed): a model without input.
    ``[0, 0, 1], [0, 1] -> counts 3, 2 of 5 -> exp(-(ln 0.6 + ln 0.4) / 2)`` (V = 2)."""
    counts = np.bincount(np.asarray(train_ids, dtype=np.int64), minlength=vocab_size) + 1.0
    q = counts / counts.sum()
    return float(np.exp(-np.mean(np.log(q[np.asarray(val_ids, dtype=np.int64)]))))


def status_of(r: dict[str, Any], vocab_size: float, unigram: float) -> str:
    """A run's outcome from its best validation perplexity (what stopping at the best epoch would keep), then
    what became of it: ``diverged`` | ``worse than uniform`` | ``no better than frequencies`` | ``ok`` |
    ``ok, then overfits`` (validation ends above LATE_RISE × its best while the training perplexity is below
    that best) | ``ok, then thrown off`` (it ends that far above with training no better)."""
    best, final = r["best_val"], r["final_val"]
    if not r["finite"] or not math.isfinite(final):
        return "diverged"
    if best > vocab_size:
        return "worse than uniform"
    if best >= FREQ_MARGIN * unigram:
        return "no better than frequencies"
    if final > LATE_RISE * best:
        return "ok, then overfits" if r["train_ppl"] < best else "ok, then thrown off"
    return "ok"


def trained(status: str) -> bool:
    return status.startswith("ok")


def train_run(p: Any, model_cfg: Any, train_cfg: Any, steps: int, eval_every: int,
              stop: threading.Event | None) -> dict[str, Any]:
    """One run's per-step gradient norms and its validation perplexity every ``eval_every`` steps (and at the
    end); it ends at the first loss that is not finite."""
    import torch

    from engine.labs.bptt_grads import step_norms
    from engine.models.lm import build_model
    from engine.training import evaluate, perplexity, prepare_ids

    torch.manual_seed(train_cfg.seed)
    model = build_model(model_cfg)
    _, val_ids = prepare_ids(p.ids, model_cfg, train_cfg)
    cpu = torch.device("cpu")
    norms: list[float] = []
    losses: list[float] = []
    vals: list[tuple[int, float]] = []
    finite = True
    for r in step_norms(p.ids, model_cfg, train_cfg, steps, model=model, stop=stop):
        norms.append(r.grad_norm)
        losses.append(r.loss)
        if not math.isfinite(r.loss):
            finite = False
            break
        if r.step % eval_every == 0 or r.step == steps:
            vals.append((r.step, evaluate(model, val_ids, train_cfg.batch_size, train_cfg.num_steps, cpu)))
    a = np.array(norms)
    final = vals[-1][1] if finite and vals else math.inf
    good = [v for _, v in vals if math.isfinite(v)]
    tail = losses[-max(1, int(len(losses) * TAIL)):]
    return {"vals": vals, "norms": norms, "finite": finite, "final_val": final,
            "train_ppl": perplexity(float(np.mean(tail))) if finite else math.inf,
            "best_val": min(good) if good else math.inf,
            "max_norm": float(a.max()) if np.isfinite(a).all() else math.inf,  # a nan norm counts as unbounded
            "max_step": int(np.argmax(np.nan_to_num(a, nan=np.inf))) + 1,
            "over_theta": float(np.mean(~(a <= train_cfg.clip_theta))),  # nan is over too
            "dead_units": dead_units(model, val_ids) if model_cfg.activation == "relu" else None}


def dead_units(model: Any, val_ids: np.ndarray) -> int:
    """Hidden units of the top layer that are 0 at every position of the validation text (ReLU only): a unit
    whose input term stays negative gets no gradient through φ′ and never comes back."""
    import torch

    X = torch.from_numpy(np.asarray(val_ids[:-1], dtype=np.int64))[None, :]
    with torch.no_grad():
        A = model.input_term(X, *model.cell.input_weights(model, 0))
        Hs, _ = model.cell.forward(model, A, model.begin_state(1), False)
    return int((~(Hs > 0).any(dim=(0, 1))).sum())


class ExplodingRemedies(Exercise):
    id = "8.7.2"
    question = ("Besides gradient clipping, what else can cope with exploding gradients in recurrent networks? "
                "Compare the remedies at one learning rate where a plain RNN blows up.")
    Settings = Settings
    default = Settings()
    long = Settings(steps=4000, eval_every=40)
    references = (  # seed 0; the tolerances span seeds 0-1
        Reference("ok_none", 0, 0, "default", "the plain run ended worse than uniform at seeds 0-1"),
        Reference("remedies_ok", 3, 0, "default", "seeds 0-1: gru, lstm and small_lr trained; clip, weight_decay and "
                                                  "irnn did not"),
        Reference("best_val_gru", 8.71, 0.01, "default", "seeds 0-1 gave 8.709-8.713"),
        Reference("best_val_lstm", 9.15, 0.01, "default", "seeds 0-1 gave 9.146-9.151"),
        Reference("best_val_small_lr", 9.71, 0.16, "default", "seeds 0-1 gave 9.56-9.71"),
        Reference("best_val_clip", 19.38, 3.4, "default", "seeds 0-1 gave 19.4-22.8"),
        Reference("dead_units_irnn", 64, 0, "default", "every unit dead after step 2 at seeds 0-1"),
        Reference("unigram_ppl", 17.42, 0.005, "default", "the training characters' frequencies: exact"),
        Reference("remedies_ok", 3, 0, "long", "seeds 0-1: gru, lstm, small_lr (the first two then overfit)"),
        Reference("best_val_gru", 8.71, 0.02, "long", "seeds 0-1 gave 8.709-8.726"),
        Reference("best_val_small_lr", 9.65, 0.07, "long", "seeds 0-1 gave 9.645-9.706"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        from engine.training import prepare_ids

        if s.threads:
            import torch

            torch.set_num_threads(s.threads)
        p = pipeline(s.corpus)
        V = len(p.vocab)
        names = ("none", *s.remedies)
        out: dict[str, dict[str, Any]] = {}
        rows, figures = [], {}
        for i, name in enumerate(names):
            check_stop(stop)
            model_cfg, train_cfg, what = configs(s, name, V)
            progress(i, len(names), f"{name}: {what}")
            if name == "none":
                train_ids, val_ids = prepare_ids(p.ids, model_cfg, train_cfg)
                unigram = unigram_perplexity(train_ids, val_ids, V)
            r = train_run(p, model_cfg, train_cfg, s.steps, s.eval_every, stop)
            check_stop(stop)
            r["status"], r["what"] = status_of(r, V, unigram), what
            out[name] = r
            rows.append([name, what, r["best_val"], r["final_val"], r["train_ppl"], r["status"], r["max_norm"],
                         r["over_theta"]])
            figures[f"best_val_{name}"], figures[f"final_val_{name}"] = r["best_val"], r["final_val"]
            figures[f"max_norm_{name}"], figures[f"ok_{name}"] = r["max_norm"], float(trained(r["status"]))
            if r["dead_units"] is not None:
                figures[f"dead_units_{name}"] = float(r["dead_units"])
        progress(len(names), len(names), "done")
        figures["unigram_ppl"] = unigram
        figures["remedies_ok"] = float(sum(trained(out[n]["status"]) for n in s.remedies))
        plots = [
            Plot("log10 ‖g‖ before clipping, per step", "step", "log10 ‖g‖",
                 [Series(n, [float(k) for k in range(1, len(out[n]["norms"]) + 1)],
                         np.log10(np.maximum(np.nan_to_num(np.array(out[n]["norms"]), nan=1e30, posinf=1e30),
                                             1e-12)).tolist()) for n in names]),
            Plot("log10 validation perplexity", "step", "log10 perplexity",
                 [Series(n, [float(k) for k, _ in out[n]["vals"]],
                         [math.log10(min(v, 1e30)) if math.isfinite(v) else 30.0 for _, v in out[n]["vals"]])
                  for n in names]),
        ]
        return Result(["remedy", "what changed", "best val ppl", "final val ppl", "train ppl", "status", "max ‖g‖",
                       f"steps ‖g‖ > {s.clip_theta:g}"], rows, explain(s, out, V, unigram), figures, plots)


def explain(s: Settings, out: dict[str, dict[str, Any]], V: int, unigram: float) -> str:
    """What the table says, read from its own numbers."""
    base = out["none"]
    f = lambda x: f"{x:.3g}" if math.isfinite(x) else "∞"  # noqa: E731
    parts = [f"Without any remedy the tanh RNN at lr {s.lr:g} is {base['status']}: its best validation perplexity "
             f"was {f(base['best_val'])} and it ends at {f(base['final_val'])}, with gradient norms up to "
             f"{f(base['max_norm'])}. For scale: guessing uniformly gives {V}, the character frequencies alone "
             f"{unigram:.2f}."]
    ok = {n: trained(out[n]["status"]) for n in s.remedies}
    if any(ok.values()):
        parts.append("Trained (best validation perplexity): " + "; ".join(
            f"{n} {f(out[n]['best_val'])}" for n in s.remedies if ok[n]) + ".")
    if not all(ok.values()):
        parts.append("Did not: " + "; ".join(
            f"{n} ({out[n]['status']}, best {f(out[n]['best_val'])})" for n in s.remedies if not ok[n]) + ".")
    first_gated = next((g for g in s.remedies if g in ("gru", "lstm")), None)
    for n in s.remedies:
        r = out[n]
        if n == "clip":
            parts.append("Clipping keeps each step's direction and bounds its length at lr·θ = "
                         f"{s.lr * s.clip_theta:g}: here it fired on {r['over_theta']:.0%} of the steps"
                         + (", so nearly every step had that same length, too long to settle: bounded is not small."
                            if not ok[n] else ", so a huge gradient cost one bounded step instead of a jump."))
        elif n == first_gated:  # both gated cells in one sentence
            gated = [g for g in s.remedies if g in ("gru", "lstm") and ok[g]]
            if gated:
                small = all(out[g]["max_norm"] < s.clip_theta for g in gated)
                parts.append(f"The {' and '.join(g.upper() for g in gated)} gradients stayed small from the start "
                             "(largest " + ", ".join(f(out[g]["max_norm"]) for g in gated)
                             + (f", below θ = {s.clip_theta:g}: clipping would never have fired" if small else "")
                             + "): a gated cell's state is a mix of the old state and a new candidate weighted by "
                             "its gates, not the old state pushed through W_hh and tanh′ at every step.")
        elif n == "small_lr":
            parts.append(f"lr {s.small_lr:g} shrinks every step, the harmful ones too"
                         + (f" (largest ‖g‖ {f(r['max_norm'])})." if ok[n] else ", yet not enough here."))
        elif n == "weight_decay":
            parts.append(f"Weight decay λ = {s.weight_decay:g} pulls the weights towards 0 a little each step"
                         + (f": no match for a minibatch whose gradient reaches {f(r['max_norm'])}, which throws the "
                            "weights off in one step." if not ok[n] else ", and here that kept W_hh small enough."))
        elif n == "irnn":
            dead = r["dead_units"]
            parts.append("The identity start copies the state forward, so at first the gradient neither vanishes "
                         "nor explodes" + (
                             f"; but ReLU never saturates, and at lr {s.lr:g} step {r['max_step']} had ‖g‖ = "
                             f"{f(r['max_norm'])}: after it {dead} of {s.num_hiddens} units stayed at 0 on the whole "
                             "validation text, so the output layer could only learn the frequencies (Le et al. train "
                             "it with clipping and far smaller rates)." if not ok[n] and dead else "."))
    late = [n for n in s.remedies if out[n]["status"] == "ok, then overfits"]
    if late:
        parts.append(", ".join(late) + " trained, then overfitted: validation ended at " + ", ".join(
            f(out[n]["final_val"]) for n in late) + " while training perplexity fell to " + ", ".join(
            f(out[n]["train_ppl"]) for n in late) + f" — {s.steps} steps on this text is more than it holds (8.6.1).")
    if s.steps < Settings.__dataclass_fields__["steps"].default * 10:
        parts.append(f"{s.steps} steps is indicative; --long trains D2L's 500 epochs (4,000 steps).")
    return " ".join(parts)


EXERCISE = ExplodingRemedies()
