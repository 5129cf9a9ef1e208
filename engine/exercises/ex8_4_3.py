"""Exercise 8.4.3: what happens to the gradient when it is backpropagated through a long sequence?

For untrained cells on random inputs and a loss at the last step T, the gradient reaching the state of
every earlier step, ‖∂L_T/∂h_t‖ for t = T … 0 (``engine.labs.bptt_grads.gradient_flow``, float64). For
a plain RNN, ∂h_t/∂h_{t−1} = diag(φ′(a_t)) W_hhᵀ, so each step back multiplies the gradient by about
the spectral radius ρ(W_hh) times φ′'s typical size: with ρ below 1 it vanishes geometrically, above
it explodes (ReLU) or saturates into vanishing (tanh, whose φ′ shrinks as units saturate). Scaling W_hh
moves ρ; GRU and LSTM gates let some of the gradient pass almost unchanged.

Left out: trained models (``rnnlab lab bptt gradients --run``) and the per-step clipping of training (8.5.4).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from engine.config import option
from engine.exercises.base import Exercise, Plot, Progress, Reference, Result, Series, check_stop, need
from engine.exercises.common import integer

DISTANCES = (10, 50, 100)  # steps back from the loss reported in the table


@dataclass(frozen=True)
class Settings:
    """The cells, the W_hh scales and the sequence length."""

    models: tuple[str, ...] = option(("rnn:tanh", "rnn:relu", "gru", "lstm"), "cells as kind[:activation]")
    scales: tuple[float, ...] = option((0.5, 1.0, 2.0, 4.0), "factors W_hh is multiplied by")
    num_steps: int = option(150, "T: the loss sits at the last of T steps")
    num_hiddens: int = option(64, "hidden units")
    seed: int = option(0, "seeds the weights, the inputs and the readout")

    def __post_init__(self) -> None:
        need(isinstance(self.models, tuple) and len(self.models) > 0, "models must name at least one cell")
        need(isinstance(self.scales, tuple) and len(self.scales) > 0 and all(
            isinstance(v, (int, float)) and 0 <= v < 100 for v in self.scales),
            f"scales must be a list of factors in [0, 100) (got {self.scales!r})")
        integer("num_steps", self.num_steps, max(DISTANCES), 5000)
        integer("num_hiddens", self.num_hiddens, 1, 4096)
        integer("seed", self.seed, 0, 2**31 - 1)


class LongGradients(Exercise):
    id = "8.4.3"
    question = "What happens to the gradient if you backpropagate through a long sequence?"
    Settings = Settings
    default = Settings()
    long = Settings(num_steps=500, num_hiddens=256)
    references = (  # deterministic given the seed (float64): the tolerance covers other BLAS libraries
        Reference("rnn:tanh_x1_at_100", -21.757, 0.01, "default", "log10 ‖∂L/∂h‖ 100 steps back, seed 0"),
        Reference("rnn:relu_x4_at_100", 26.116, 0.01, "default", "explodes"),
        Reference("lstm_x1_at_100", -20.481, 0.01, "default", "untrained gates"),
        Reference("rnn:tanh_x1_at_100", -24.38, 0.08, "long", "seeds 0-1 gave -24.45 to -24.38 (256 units)"),
        Reference("rnn:relu_x4_at_100", 21.05, 0.23, "long", "seeds 0-1 gave 21.05-21.28"),
        Reference("lstm_x1_at_100", -20.49, 0.26, "long", "seeds 0-1 gave -20.49 to -20.23"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        from engine.labs.bptt import FlowConfig
        from engine.labs.bptt_grads import gradient_flow

        cfg = FlowConfig(models=s.models, scales=s.scales, num_steps=s.num_steps, num_hiddens=s.num_hiddens,
                         seed=s.seed)
        check_stop(stop)
        progress(0, 1, "backpropagating")
        curves = gradient_flow(cfg)
        progress(1, 1, "done")
        rows, figures, series = [], {}, []
        for c in curves:
            scale = "–" if c.scale is None else f"{c.scale:g}"
            at = [c.at_distance(d) for d in DISTANCES]
            rows.append([c.model, scale, c.largest_radius, c.per_step(), *at])
            for d, v in zip(DISTANCES, at):
                figures[f"{c.model}_x{scale}_at_{d}"] = v
            figures[f"{c.model}_x{scale}_per_step"] = c.per_step()
            T = c.num_steps
            ys = [v if math.isfinite(v) else -300.0 for v in c.log10_norm]
            series.append(Series(f"{c.model} ×{scale}", [float(T - t) for t in range(T + 1)], ys))
        far = max(DISTANCES)
        plain = [c for c in curves if c.model.startswith(("rnn", "scratch"))]
        vanish = [c for c in plain if c.at_distance(far) < -3]
        explode = [c for c in plain if c.at_distance(far) > 3]
        gated = [c for c in curves if not c.model.startswith(("rnn", "scratch"))]
        damped = [c for c in plain if (c.largest_radius or 0) > 1 and c.per_step() < 1]

        def name(c: object) -> str:
            return f"{c.model} ×{'–' if c.scale is None else f'{c.scale:g}'}"  # type: ignore[attr-defined]

        explanation = (
            f"{far} steps back from the loss the plain RNN's gradient norm is "
            + ", ".join(f"10^{c.at_distance(far):.1f} ({name(c)}, ρ(W_hh) = {c.largest_radius:.2f})"
                        for c in plain)
            + f": {len(vanish)} of {len(plain)} vanish below 10^-3 and {len(explode)} explode above 10^3. Each step "
            "back multiplies the gradient by diag(φ′) W_hhᵀ, so it shrinks or grows geometrically — "
            + ", ".join(f"{c.per_step():.3g}× per step for {name(c)}" for c in plain[:3])
            + " … — and the first steps of a long sequence get either almost no signal or a huge one that "
            "clipping must cut. "
            + (f"A large W_hh explodes ({', '.join(name(c) for c in explode)}). " if explode else "")
            + (("φ′ (below 1 for saturating tanh units, 0 for inactive ReLU ones) damps the product, so ρ above 1 "
                "can still vanish: " + ", ".join(f"{name(c)} at {c.per_step():.3g}× per step" for c in damped)
                + ". ") if damped else "")
            + (("At initialisation the gated cells lose it too (gates near ½): " + ", ".join(
                f"{name(c)} 10^{c.at_distance(far):.1f}" for c in gated) + "; it is trained gates that learn to "
                "pass the gradient on (D2L 9.1–9.2).") if gated else ""))
        plot = Plot("log10 ‖∂L_T/∂h_t‖ against steps back from T", "T − t", "log10 norm", series)
        return Result(["cell", "W_hh ×", "ρ(W_hh)", "per step", *(f"log10 at {d} back" for d in DISTANCES)],
                      rows, explanation, figures, [plot])


EXERCISE = LongGradients()
