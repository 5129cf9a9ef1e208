"""Exercise 8.5.6: replace tanh by ReLU in the RNN — does training still work, and does it need clipping?

ReLU does not saturate: φ′ is 1 for every active unit, so the product of Jacobians through time is not
damped the way tanh's is (8.4.3), and a single large gradient is more likely. The same model with ReLU
is trained with clipping by global norm (θ = 1) and without, from several seeds, by the trainer
(``engine.exercises.ex8_5_4.run_one``: a run folder tagged ``{"exercise": "8.5.6", "point": "relu, lr 1,
clip off, seed 2"}`` per run, every step's gradient norm), and compared by validation perplexity, the share of steps
clipped and the largest gradient norm; a run whose perplexity ends above twice the vocabulary size
(worse than guessing uniformly) counts as failed.

The default budget (40 epochs = 320 steps, 64 hidden units, 3 seeds) is indicative; ``--long`` trains longer.
Left out: identity initialisation of W_hh (Le et al. 2015; 8.7.2 when built).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from engine.config import option
from engine.exercises.base import Exercise, Progress, Reference, Result, check_stop, need
from engine.exercises.common import CORPUS_HELP, integer, positive_ints
from engine.exercises.ex8_5_4 import run_one

RELU_KINDS = ("rnn", "scratch")  # the cells with an activation option


def run_failed(val_ppl: float, vocab_size: float) -> bool:
    """Worse than guessing uniformly, with a margin: perplexity above 2 V (or not finite)."""
    return not math.isfinite(val_ppl) or val_ppl > 2 * vocab_size


@dataclass(frozen=True)
class Settings:
    """The model, the learning rate, the budget and the seeds."""

    corpus: str = option("timemachine", CORPUS_HELP)
    kind: str = option("rnn", "recurrent cell with an activation: rnn or scratch", RELU_KINDS)
    num_hiddens: int = option(64, "hidden units")
    lr: float = option(1.0, "SGD learning rate (D2L: 1)")
    epochs: int = option(40, "passes over D2L's 10,000 characters per run, 8 optimizer steps each (D2L: 500)")
    clip_theta: float = option(1.0, "θ of clipping by global norm")
    seeds: tuple[int, ...] = option((0, 1, 2), "seeds tried")

    def __post_init__(self) -> None:
        need(self.kind in RELU_KINDS, f"kind must be rnn or scratch, the cells with an activation (got {self.kind!r})")
        integer("num_hiddens", self.num_hiddens, 1, 4096)
        need(isinstance(self.lr, (int, float)) and 0 < self.lr <= 1000, f"lr must be in (0, 1000] (got {self.lr!r})")
        integer("epochs", self.epochs, 1, 100_000)
        need(isinstance(self.clip_theta, (int, float)) and 0 < self.clip_theta < math.inf,
             f"clip_theta must be a positive number (got {self.clip_theta!r})")
        positive_ints("seeds", self.seeds, 0, 2**31 - 1)

    @property
    def seed(self) -> int:  # run_one's default seed
        return self.seeds[0]


class ReLURNN(Exercise):
    id = "8.5.6"
    question = ("Replace the activation function of the RNN by ReLU and repeat the experiments. Do we still need "
                "gradient clipping? Why?")
    Settings = Settings
    default = Settings()
    long = Settings(epochs=500)
    references = (  # measured at the default settings (seeds 0-2 in one run, and seeds 3-4)
        Reference("val_ppl_clip_seed0", 9.50, 0.70, "default", "seeds 0-4 gave 9.46-10.20 with clipping"),
        Reference("failed_noclip", 0, 0, "default", "no unclipped run failed at seeds 0-4"),
        Reference("clipped_share_mean", 0.005, 0.002, "default", "seeds 0-4: 0.3%-0.6% of the steps"),
        Reference("val_ppl_clip_seed0", 11.41, 1.05, "long", "seeds 0-4 gave 10.93-12.46 (training 3.8-3.9: "
                                                            "they overfit)"),
        Reference("failed_noclip", 0, 0, "long", "no unclipped run failed at seeds 0-4"),
        Reference("clipped_share_mean", 0.032, 0.008, "long", "seeds 0-4: 2.7%-4.6% of the steps"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        runs = [(seed, clip) for seed in s.seeds for clip in ("norm", "off")]
        rows, figures = [], {}
        out = {}
        total = len(runs) * s.epochs
        for i, (seed, clip) in enumerate(runs):
            check_stop(stop)
            r = run_one(s, s.lr, clip, stop, activation="relu", seed=seed, exercise=self.id, progress=progress,
                        done=i * s.epochs, total=total)
            out[(seed, clip)] = r
            failed = run_failed(r["val_ppl"], r["V"])
            rows.append([seed, "on" if clip == "norm" else "off", r["train_ppl"], r["val_ppl"],
                         r["clipped"] if clip == "norm" else None, r["max_norm"], failed])
            tag = f"{'clip' if clip == 'norm' else 'noclip'}_seed{seed}"
            figures[f"val_ppl_{tag}"], figures[f"max_norm_{tag}"] = r["val_ppl"], r["max_norm"]
            if clip == "norm":
                figures[f"clipped_share_seed{seed}"] = r["clipped"]
        progress(total, total, "done")
        fail_on = sum(row[6] for row in rows if row[1] == "on")
        fail_off = sum(row[6] for row in rows if row[1] == "off")
        figures["failed_clip"], figures["failed_noclip"] = float(fail_on), float(fail_off)
        clipped = [out[(seed, "norm")]["clipped"] for seed in s.seeds]
        figures["clipped_share_mean"] = sum(clipped) / len(clipped)
        spikes = [out[(seed, "off")]["max_norm"] / float(np.nanmedian(out[(seed, "off")]["norms"])) for seed in s.seeds]
        figures["spike_ratio_max"] = max(spikes)
        n = len(s.seeds)
        vals = lambda clip: ", ".join(f"{out[(seed, clip)]['val_ppl']:.3g}" for seed in s.seeds)  # noqa: E731
        explanation = (
            f"With ReLU at lr {s.lr:g}, over seeds {', '.join(map(str, s.seeds))}: with clipping the validation "
            f"perplexities are {vals('norm')} ({fail_on} of {n} failed), without it {vals('off')} ({fail_off} of "
            f"{n} failed). Clipping fired on {figures['clipped_share_mean']:.0%} of the steps on average "
            f"(largest ‖g‖ without clipping: "
            + ", ".join(f"{out[(seed, 'off')]['max_norm']:.3g}" for seed in s.seeds) + "). "
            + ("So yes: without clipping ReLU runs fail where clipped ones train. " if fail_off > fail_on else
               "Here the unclipped runs survive as often as the clipped ones; " if fail_off == fail_on else
               "Here clipping did not save the runs; ")
            + f"ReLU's φ′ = 1 on active units leaves the product of Jacobians undamped, so a minibatch's gradient "
            f"can be far larger than the typical one (largest over median ‖g‖ up to {max(spikes):.0f}× here); "
            f"clipping bounds that step at no cost to the others, which is why it stays on whichever activation "
            f"is used.")
        return Result(["seed", "clipping", "train ppl", "val ppl", "steps clipped", "max ‖g‖", "failed"], rows,
                      explanation, figures, runs=[out[key]["run"] for key in runs])


EXERCISE = ReLURNN()
