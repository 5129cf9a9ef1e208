"""Exercise 8.1.2: an investor fits a model to past returns to decide what to buy — why could that go wrong?

A series whose regime changes: D2L's noisy sine until half-way through the test part, then shifted up
by 2 (a level change) or three times faster (a change of speed), from the sequence lab's ``regime``
experiment. The linear model, the MLP and a recurrent model over the whole history, all fitted on the
old regime, predict both halves of the test part; their test MSE before and after the change shows
how far a model fitted on the past is from the new present — and each still gives one confident
number per step, with nothing that says it no longer knows.

Left out: uncertainty estimates (none of these models has one, which is the point).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from engine.config import MODEL_KINDS, option
from engine.exercises import sequence_runs as seq
from engine.exercises.base import Exercise, Progress, Reference, Result
from engine.exercises.common import integer


@dataclass(frozen=True)
class Settings(seq.SequenceSettings):
    """The sequence lab's options the regime experiment uses."""

    kind: str = option("rnn", "recurrent cell of the history model", MODEL_KINDS)
    epochs: int = option(5, "epochs of the MLP (D2L: 5)")
    tau: int = option(4, "τ: past observations the window models read")

    def __post_init__(self) -> None:
        super().__post_init__()
        integer("tau", self.tau, 1, 16)


class RegimeChange(Exercise):
    id = "8.1.2"
    question = ("An investor wants to find a good security to buy and looks at its past returns to decide which "
                "one is likely to do well. What could possibly go wrong with this strategy?")
    Settings = Settings
    default = Settings()
    long = Settings(epochs=20, history_epochs=500)
    references = (  # seed 0; the tolerance spans seeds 0, 1, 2
        Reference("level_linear_16step_ratio", 5.61, 0.75, "default", "16-step MSE after / before the level "
                  "change; seeds 0-2 gave 4.87-5.63"),
        Reference("level_rnn_history_1step_after", 1.21, 0.41, "default", "seeds 0-2 gave 0.80-1.21"),
        Reference("level_rnn_history_16step_ratio", 14.8, 4.9, "default", "seeds 0-2 gave 14.8-19.7"),
        Reference("level_linear_16step_ratio", 5.61, 0.75, "long", "the linear model does not train: as default"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        lab = seq.run(s, ("regime",), progress, stop)
        e = lab.experiments["regime"]
        rows, figures = [], {}
        for r in e.table:
            for when in ("before", "after"):
                rows.append([r["series"], r["model"], r["window"], when, *seq.mse_cells(r[when])])
            key = ("level" if r["series"].startswith("level") else "speed") + "_" + r["model"].replace(" ", "_")
            figures[f"{key}_1step_before"], figures[f"{key}_1step_after"] = r["before"]["1"], r["after"]["1"]
            figures[f"{key}_16step_ratio"] = r["after"]["16"] / r["before"]["16"]
        change = e.facts["change_at"]
        level = [r for r in e.table if r["series"].startswith("level")]
        worst = max(level, key=lambda r: r["after"]["1"] / r["before"]["1"])
        speed = [r for r in e.table if not r["series"].startswith("level")]
        sp = max(speed, key=lambda r: r["after"]["16"] / r["before"]["16"])
        best = min(level, key=lambda r: r["after"]["1"])
        explanation = (
            f"All three models learnt the sine before t = {change + 1}. After the level moves up by 2, one step "
            f"ahead the {seq.NAMES[worst['model']]} goes from MSE {worst['before']['1']:.3f} to "
            f"{worst['after']['1']:.3f}, and 16 steps ahead the linear model from {level[0]['before']['16']:.3f} "
            f"to {level[0]['after']['16']:.3f}: each keeps predicting the old regime. The "
            f"{seq.NAMES[best['model']]} recovers best one step ahead (MSE {best['after']['1']:.3f} after the "
            f"change)" + (", reading only the last values; the models that learnt where the sine lives pull their "
                          "predictions back to it." if best["model"] == "linear" else ".")
            + f" When the sine speeds up threefold, the {seq.NAMES[sp['model']]}'s 16-step MSE grows from "
            f"{sp['before']['16']:.3f} to {sp['after']['16']:.3f}. Past returns are such a series: a model fitted "
            f"on them assumes the future is drawn like the past, gives one confident number whatever happens, "
            f"and nothing in its output says the regime has changed.")
        return Result(["series", "model", "window", "test part", *seq.mse_columns()], rows, explanation, figures)


EXERCISE = RegimeChange()
