"""Exercise 8.1.4: when is a latent autoregressive model needed — a series whose next value depends on a hidden
state that no fixed window shows.

The sequence lab's ``switching`` series: a level of +1 or −1 that flips after a dwell of 19–21 steps,
plus N(0, 0.1²) noise. Whether the level flips next depends on how long it has held — a hidden state.
A window of τ ≤ 16 values that all show the current level cannot tell an age of 16 from one of 19,
so no window model can beat ``engine.labs.series.window_bound`` (the least MSE against the level of any
function of the last τ noise-free values). A recurrent model carrying its state over the whole history
can count, and beats every window. Models: linear and MLP on τ = 1..16, a recurrent cell on a window of
16, and a recurrent model over the whole history; one-step test MSE against the observed x and against
the noise-free level.

Left out: the longer dwells where counting gets harder (edit ``SWITCH_DWELL`` in the lab's config).
"""

from __future__ import annotations

import threading

from engine.exercises import sequence_runs as seq
from engine.exercises.base import Exercise, Progress, Reference, Result


Settings = seq.RecurrentSettings


class LatentState(Exercise):
    id = "8.1.4"
    question = ("Give an example of a series where a latent autoregressive model — one that carries a hidden "
                "state — is needed to capture its dynamics, because no window of past values suffices.")
    Settings = Settings
    default = Settings()
    long = Settings(epochs=20, history_epochs=600)
    references = (  # seed 0; the tolerance spans seeds 0, 1, 2
        Reference("history_mse_signal", 0.106, 0.016, "default", "recurrent model over the history; seeds 0-2 "
                  "gave 0.101-0.122"),
        Reference("best_window_mse_signal", 0.170, 0.007, "default", "best of the 33 windows; seeds 0-2 gave "
                  "0.164-0.170"),
        Reference("window_bound", 0.16, 1e-12, "default", "exact: dwell 19-21, τ = 16"),
        Reference("window_bound", 0.16, 1e-12, "long", "exact"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        lab = seq.run(s, ("switching",), progress, stop)
        e = lab.experiments["switching"]
        rows = [[r["model"], r["window"], r["mse"], r["mse_signal"]] for r in e.table]
        f = e.facts
        best, hist = f["best_window"], f["history"]
        bound = float(f["window_bound"])
        figures = {"history_mse_signal": hist["mse_signal"], "history_mse": hist["mse"],
                   "best_window_mse_signal": best["mse_signal"], "best_window_mse": best["mse"],
                   "window_bound": bound}
        beats = hist["mse_signal"] < min(r["mse_signal"] for r in e.table[:-1])
        explanation = (
            f"Against the noise-free level, the best of the {len(e.table) - 1} window models "
            f"({seq.NAMES[best['model']]}, {best['window']}) reaches MSE {best['mse_signal']:.3f}; no function of "
            f"the last 16 values can go below {bound:.3f}, because once a window shows only the current level "
            f"it cannot tell how long that level has held. The recurrent model over the whole history reaches "
            f"{hist['mse_signal']:.3f}"
            + (", below that bound: its state carries the count of steps since the last flip, a latent "
               "variable no window shows — this is where a latent autoregressive model is needed."
               if hist["mse_signal"] < bound else
               (", better than every window but not yet below the bound; more history_epochs let it learn to "
                "count further." if beats else
                ": at this budget it has not learnt to count yet; more history_epochs (--long) let it."))
            + f" (Against the noisy observations add σ² = 0.01: {hist['mse']:.3f} and {best['mse']:.3f}.)")
        return Result(["model", "window", "MSE vs x", "MSE vs level"], rows, explanation, figures)


EXERCISE = LatentState()
