"""Exercise 8.7.2: besides clipping, what copes with exploding gradients? Remedies compared at one learning rate.

A plain tanh RNN trained with SGD at a learning rate ``lr`` high enough that, without clipping, a few
minibatches' gradients throw it off (its validation perplexity ends far above the vocabulary size, the
perplexity of guessing uniformly). Then, from the same seed and minibatch order, each remedy alone:

* ``clip``: clipping by global norm, θ = ``clip_theta`` (D2L 8.5's own remedy);
* ``gru`` / ``lstm``: gated cells (D2L 9.1-9.2), the same width, no clipping;
* ``small_lr``: the plain RNN at ``small_lr`` instead of ``lr``;
* ``weight_decay``: SGD's L2 penalty λ = ``weight_decay`` (``TrainConfig.weight_decay``), no clipping;
* ``irnn``: ReLU with W_hh = I and zero biases (``ModelConfig.init`` identity; Le, Jaitly & Hinton 2015).

Each run is the trainer's (``training_runs.train_lm`` with ``per_step``: its seed, minibatches,
optimizer and clipping, in a run folder tagged ``{"exercise": "8.7.2", "point": remedy}``), with the
gradient norm of every step before clipping and the validation perplexity after every epoch. A run's
status: ``diverged`` when the trainer stopped it (a loss or gradient norm not finite, or a loss past what
a float's perplexity holds), ``worse than uniform`` when validation ends above V, ``no better than
frequencies`` when it ends no better than the unigram model of the training characters (what a model that ignores its input can do:
a recurrent layer whose units all died gives that), ``ok`` otherwise.

The default budget (50 of D2L's epochs = 400 steps, 64 hidden units) is indicative; ``--long`` trains
D2L's 500 epochs. Left out: combinations of remedies (``--set remedies=…`` runs each alone), other
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
    epochs: int = option(50, "passes over D2L's 10,000 characters per run, 8 optimizer steps each (D2L: 500)")
    remedies: tuple[str, ...] = option(REMEDIES, "remedies tried, each alone: " + ", ".join(REMEDIES))
    clip_theta: float = option(1.0, "clip: θ of clipping by global norm")
    small_lr: float = option(1.0, "small_lr: the learning rate tried instead of lr")
    weight_decay: float = option(0.01, "weight_decay: SGD's L2 penalty λ")
    seed: int = option(0, "seeds the weights and the minibatch order")
    threads: int = option(1, "CPU threads for torch, set for the whole process as the trainer does (0 = leave "
                             "as is): models this small run slower on more, and far slower on a busy machine")

    def __post_init__(self) -> None:
        need(isinstance(self.corpus, str) and self.corpus != "", f"corpus must name a text (got {self.corpus!r})")
        integer("num_hiddens", self.num_hiddens, 1, 4096)
        _rate("lr", self.lr)
        _rate("small_lr", self.small_lr)
        integer("epochs", self.epochs, 1, 100_000)
        need(isinstance(self.remedies, tuple) and all(r in REMEDIES for r in self.remedies)
             and len(set(self.remedies)) == len(self.remedies),
             f"remedies must be some of {', '.join(REMEDIES)}, each once (got {self.remedies!r})")
        need(isinstance(self.clip_theta, (int, float)) and 0 < self.clip_theta < math.inf,
             f"clip_theta must be a positive number (got {self.clip_theta!r})")
        need(isinstance(self.weight_decay, (int, float)) and 0 < self.weight_decay < math.inf,
             f"weight_decay must be a positive number (got {self.weight_decay!r})")
        integer("seed", self.seed, 0, 2**31 - 1)
        integer("threads", self.threads, 0, 1024)


def configs(s: Settings, remedy: str, vocab_size: int) -> tuple[Any, Any, str]:
    """(ModelConfig, TrainConfig, what changed) of the plain run (``remedy`` "none") or of one remedy."""
    from engine.config import ModelConfig, TrainConfig

    model = dict(kind="rnn", vocab_size=vocab_size, num_hiddens=s.num_hiddens)
    train = dict(lr=s.lr, epochs=s.epochs, clip="off", clip_theta=s.clip_theta, seed=s.seed, device="cpu")
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


def train_run(p: Any, model_cfg: Any, train_cfg: Any, point: str, stop: threading.Event | None,
              progress: Progress, done: int, total: int) -> dict[str, Any]:
    """One run in a folder tagged ``point``: its per-step gradient norms and its validation perplexity after
    every epoch; it ends where the trainer stops a run that blew up (the weights are then the last good
    epoch's, which ``dead_units`` reads)."""
    from engine.exercises.training_runs import train_lm
    from engine.training import perplexity, prepare_ids

    _, val_ids = prepare_ids(p.ids, model_cfg, train_cfg)
    t = train_lm(p, model_cfg, train_cfg, progress, stop, done=done, total=total, label=point,
                 tags={"exercise": "8.7.2", "point": point}, per_step=True)
    last_step = {r.epoch: r.step for r in t.steps}  # the last step of each epoch
    vals = [(last_step.get(e.epoch, 0), e.val_ppl) for e in t.history if e.val_ppl is not None]
    finite = t.diverged is None
    norms = [r.grad_norm for r in t.steps]
    losses = [r.loss for r in t.steps]
    a = np.array(norms)
    final = vals[-1][1] if finite and vals else math.inf
    good = [v for _, v in vals if math.isfinite(v)]
    tail = losses[-max(1, int(len(losses) * TAIL)):]
    return {"vals": vals, "norms": norms, "finite": finite, "final_val": final,
            "train_ppl": perplexity(float(np.mean(tail))) if finite else math.inf,
            "best_val": min(good) if good else math.inf,
            # the largest norm before a blow-up (the step the trainer stopped at has none: nan)
            "max_norm": float(np.nanmax(a)) if np.isfinite(a).any() else math.inf,
            "max_step": int(np.nanargmax(a)) + 1 if np.isfinite(a).any() else 1,
            "diverged_step": t.diverged.step if t.diverged is not None else None,
            "over_theta": float(np.mean(~(a <= train_cfg.clip_theta))),  # nan is over too
            # of the weights kept at the end (a diverged run's: its last good epoch's)
            "dead_units": dead_units(t.model, val_ids) if model_cfg.activation == "relu" and finite else None,
            "run": t.run}


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
    long = Settings(epochs=500)
    references = (  # seed 0; the tolerances span seeds 0-1
        Reference("ok_none", 0, 0, "default", "the plain run diverged in its first epoch at seeds 0-1 (steps 8, 7)"),
        Reference("remedies_ok", 3, 0, "default", "seeds 0-1: gru, lstm and small_lr trained; clip, weight_decay and "
                                                  "irnn did not"),
        Reference("best_val_gru", 8.71, 0.01, "default", "seeds 0-1 gave 8.709-8.713"),
        Reference("best_val_lstm", 9.15, 0.01, "default", "seeds 0-1 gave 9.145-9.150"),
        Reference("best_val_small_lr", 9.71, 0.16, "default", "seeds 0-1 gave 9.56-9.71"),
        Reference("best_val_clip", 18.70, 5.7, "default", "seeds 0-1 gave 18.7-24.4"),
        Reference("diverged_step_irnn", 2, 0, "default", "the IRNN diverged at step 2 at seeds 0-1"),
        Reference("unigram_ppl", 17.42, 0.005, "default", "the training characters' frequencies: exact"),
        Reference("remedies_ok", 3, 0, "long", "seeds 0-1: gru, lstm, small_lr (the gated cells then overfit)"),
        Reference("best_val_gru", 8.58, 0.14, "long", "seeds 0-1 gave 8.58-8.71"),
        Reference("best_val_lstm", 8.82, 0.015, "long", "seeds 0-1 gave 8.819-8.832"),
        Reference("best_val_small_lr", 9.64, 0.08, "long", "seeds 0-1 gave 9.56-9.64"),
        Reference("diverged_step_irnn", 2, 0, "long", "seeds 0-1"),
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
        total = len(names) * s.epochs
        for i, name in enumerate(names):
            check_stop(stop)
            model_cfg, train_cfg, what = configs(s, name, V)
            if name == "none":
                train_ids, val_ids = prepare_ids(p.ids, model_cfg, train_cfg)
                unigram = unigram_perplexity(train_ids, val_ids, V)
            r = train_run(p, model_cfg, train_cfg, name, stop, progress, i * s.epochs, total)
            r["status"], r["what"] = status_of(r, V, unigram), what
            out[name] = r
            rows.append([name, what, r["best_val"], r["final_val"], r["train_ppl"], r["status"], r["max_norm"],
                         r["over_theta"]])
            figures[f"best_val_{name}"], figures[f"final_val_{name}"] = r["best_val"], r["final_val"]
            figures[f"max_norm_{name}"], figures[f"ok_{name}"] = r["max_norm"], float(trained(r["status"]))
            if r["diverged_step"] is not None:
                figures[f"diverged_step_{name}"] = float(r["diverged_step"])
            if r["dead_units"] is not None:
                figures[f"dead_units_{name}"] = float(r["dead_units"])
        progress(total, total, "done")
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
                       f"steps ‖g‖ > {s.clip_theta:g}"], rows, explain(s, out, V, unigram), figures, plots,
                      runs=[out[n]["run"] for n in names])


def explain(s: Settings, out: dict[str, dict[str, Any]], V: int, unigram: float) -> str:
    """What the table says, read from its own numbers."""
    from engine.trainer import DIVERGED_EXCESS, loss_limit

    base = out["none"]
    f = lambda x: f"{x:.3g}" if math.isfinite(x) else "∞"  # noqa: E731
    if base["diverged_step"] is not None:
        first = (f"Without any remedy the tanh RNN at lr {s.lr:g} diverged at step {base['diverged_step']}, after "
                 f"gradient norms up to {f(base['max_norm'])} (the trainer stops a run whose loss stops being finite "
                 f"or passes ln V + {DIVERGED_EXCESS:g} nats, perplexity {math.exp(loss_limit(V)):.2g}, and keeps its "
                 "last good epoch).")
    else:
        first = (f"Without any remedy the tanh RNN at lr {s.lr:g} is {base['status']}: its best validation "
                 f"perplexity was {f(base['best_val'])} and it ends at {f(base['final_val'])}, with gradient norms "
                 f"up to {f(base['max_norm'])}.")
    parts = [first + f" For scale: guessing uniformly gives {V}, the character frequencies alone {unigram:.2f}."]
    ok = {n: trained(out[n]["status"]) for n in s.remedies}
    if any(ok.values()):
        parts.append("Trained (best validation perplexity): " + "; ".join(
            f"{n} {f(out[n]['best_val'])}" for n in s.remedies if ok[n]) + ".")
    if not all(ok.values()):
        parts.append("Did not: " + "; ".join(
            f"{n} ({out[n]['status']}" + (f" at step {out[n]['diverged_step']}" if out[n]["diverged_step"] else "")
            + (f", best {f(out[n]['best_val'])}" if math.isfinite(out[n]["best_val"]) else ", no epoch finished")
            + ")" for n in s.remedies if not ok[n]) + ".")
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
                         + (", and here that kept W_hh small enough." if ok[n] else
                            f": no match for the steps that throw the weights off (it diverged at step "
                            f"{r['diverged_step']})." if r["diverged_step"] else
                            f": no match for a minibatch whose gradient reaches {f(r['max_norm'])}, which throws the "
                            "weights off in one step."))
        elif n == "irnn":
            dead = r["dead_units"]
            parts.append("The identity start copies the state forward, so at first the gradient neither vanishes "
                         "nor explodes" + (
                             f"; but ReLU never saturates, and at lr {s.lr:g} step {r['max_step']} had ‖g‖ = "
                             f"{f(r['max_norm'])}: after it {dead} of {s.num_hiddens} units stayed at 0 on the whole "
                             "validation text, so the output layer could only learn the frequencies (Le et al. train "
                             "it with clipping and far smaller rates)." if not ok[n] and dead else
                             f"; but ReLU never saturates, so nothing bounds an activation once it grows, and at lr "
                             f"{s.lr:g} without clipping the run diverged at step {r['diverged_step']} (Le et al. train "
                             "it with clipping and far smaller rates)." if r["diverged_step"] else "."))
    late = [n for n in s.remedies if out[n]["status"] == "ok, then overfits"]
    if late:
        parts.append(", ".join(late) + " trained, then overfitted: validation ended at " + ", ".join(
            f(out[n]["final_val"]) for n in late) + " while training perplexity fell to " + ", ".join(
            f(out[n]["train_ppl"]) for n in late) + f" — {s.epochs} epochs on this text is more than it holds (8.6.1).")
    if s.epochs < 500:
        parts.append(f"{s.epochs} epochs is indicative; --long trains D2L's 500.")
    return " ".join(parts)


EXERCISE = ExplodingRemedies()
