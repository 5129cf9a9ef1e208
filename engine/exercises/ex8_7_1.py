"""Exercise 8.7.1: for a symmetric M with eigenvalues λ_i and eigenvectors v_i (|λ₁| > |λ₂| ≥ …), show that
M^k has eigenvalues λ_i^k, that M^k x lines up with v₁ for almost every x, and what that says about
gradients through time.

Four measurements on matrices built with a chosen spectrum (``engine.labs.bptt``'s power iteration):

* eigenvalues: those of M^k computed directly against λ_i^k (relative error, k = 2, 5, 10);
* alignment: |cos(M^k x, v₁)| for a random x at several gaps |λ₂/λ₁|, the first k past 0.99 and the k
  the bound gap^k · tan θ₀ guarantees; the smaller the gap, the sooner;
* x ⟂ v₁: then M^k x has no v₁ part to grow and lines up with v₂ instead — in exact arithmetic.
  In floating point rounding puts back a part of size ~1e-16 along v₁, which grows by 1/gap a step,
  so after ~log(1e16)/log(1/gap) steps it aligns with v₁ after all;
* M^k x is not λ₁^k x: x is no eigenvector, so the relative distance stays near 1, while the
  distance to c₁ λ₁^k v₁ (its part along v₁, scaled) goes to 0.

For BPTT: in a linear RNN h_t = W h_{t−1}, ∂h_T/∂h_t = W^{T−t}, so the gradient reaching step t is
(Wᵀ)^{T−t} times the one at T: its norm scales as |λ₁|^{T−t} (explodes above 1, vanishes below) and its
direction forgets everything but v₁ — the gradient from far back carries one direction's information.

Left out: nonsymmetric and random matrices (``rnnlab lab bptt power --matrix``) and nonlinear cells
(8.4.3, ``rnnlab lab bptt gradients``).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from engine.config import option
from engine.exercises.base import Exercise, Plot, Progress, Reference, Result, Series, check_stop, need
from engine.exercises.common import integer

EIG_POWERS = (2, 5, 10)


@dataclass(frozen=True)
class Settings:
    """The matrices: size, |λ₁|, the gaps tried, the powers, the seed."""

    n: int = option(10, "M is n × n")
    lambda1: float = option(1.1, "|λ₁|: > 1 makes ‖M^k x‖ explode, < 1 vanish")
    gaps: tuple[float, ...] = option((0.5, 0.8, 0.9, 0.95), "|λ₂/λ₁| tried, each in [0, 1)")
    steps: int = option(60, "k = 0..steps")
    seed: int = option(0, "draws the eigenvectors and x")

    def __post_init__(self) -> None:
        integer("n", self.n, 3, 200)
        need(isinstance(self.lambda1, (int, float)) and 0 < self.lambda1 <= 10,
             f"lambda1 must be in (0, 10] (got {self.lambda1!r})")
        need(isinstance(self.gaps, tuple) and len(self.gaps) > 0 and all(
            isinstance(g, (int, float)) and 0 <= g < 1 for g in self.gaps),
            f"gaps must be a list of numbers in [0, 1) (got {self.gaps!r})")
        integer("steps", self.steps, 1, 2000)
        integer("seed", self.seed, 0, 2**31 - 1)


def eigen_error(M: np.ndarray, lam: np.ndarray, k: int) -> float:
    """max_i |μ_i − λ_i^k| / max |λ^k| with μ the eigenvalues of M^k (symmetric: real, sorted)."""
    mu = np.sort(np.linalg.eigvalsh(np.linalg.matrix_power(M, k)))
    return float(np.max(np.abs(mu - np.sort(lam**k))) / np.max(np.abs(lam**k)))


def perpendicular_run(M: np.ndarray, steps: int, seed: int) -> tuple[list[float], list[float]]:
    """|cos| with v₁ and with v₂ of M^k x for an x with no part along v₁ (renormalised every step)."""
    lam, V = np.linalg.eigh(M)
    order = np.argsort(-np.abs(lam))
    v1, v2 = V[:, order[0]], V[:, order[1]]
    x = np.random.default_rng([seed, 2]).normal(size=len(M))
    x -= (x @ v1) * v1
    y = x / np.linalg.norm(x)
    with1, with2 = [abs(float(y @ v1))], [abs(float(y @ v2))]
    for _ in range(steps):
        y = M @ y
        y /= np.linalg.norm(y)
        with1.append(abs(float(y @ v1)))
        with2.append(abs(float(y @ v2)))
    return with1, with2


class PowerIteration(Exercise):
    id = "8.7.1"
    question = ("For a symmetric M with eigenvalues λ_i (eigenvectors v_i, |λ₁| > |λ_i| for i > 1): show that M^k "
                "has eigenvalues λ_i^k, and that for a random x, M^k x is very likely to line up with v₁. What does "
                "this mean for gradients through many time steps?")
    Settings = Settings
    default = Settings()
    long = Settings(n=50, gaps=(0.5, 0.8, 0.9, 0.95, 0.99), steps=600)
    references = (  # deterministic (seeded numpy); tolerances cover other BLAS libraries' rounding
        Reference("eig_rel_error", 0.0, 1e-12, "default", "λ(M^k) against λ^k, k = 2, 5, 10"),
        Reference("alignment_gap_0.8", 1.0, 1e-4, "default", "|cos(M^60 x, v₁)|"),
        Reference("steps_to_0.99_gap_0.8", 13, 0, "default", "first k past 0.99, seed 0 (the bound says ≤ 19)"),
        Reference("perp_alignment_v2", 1.0, 1e-3, "default", "x ⟂ v₁ lines up with v₂ first"),
        Reference("not_lambda_k_x", 8.43, 0.01, "default", "‖M^k x − λ₁^k x‖ / ‖M^k x‖ at k = 60"),
        Reference("log10_growth_per_step", 0.0414, 0.0001, "default", "log10 1.1 = 0.0414"),
        Reference("alignment_gap_0.8", 1.0, 1e-4, "long", ""),
        Reference("steps_to_0.99_gap_0.8", 7, 0, "long", "first k past 0.99, seed 0, n = 50"),
        Reference("perp_alignment_v1_end", 1.0, 1e-3, "long", "rounding brings v₁ back within 600 steps"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        from engine.labs.bptt import PowerConfig, power_iteration

        rows: list[list[object]] = []
        figures: dict[str, float] = {}
        series, total = [], len(s.gaps) + 2
        worst = 0.0
        for i, gap in enumerate(s.gaps):
            check_stop(stop)
            progress(i, total, f"power iteration, gap {gap}")
            cfg = PowerConfig(n=s.n, lambda1=s.lambda1, gap=gap, steps=s.steps, seed=s.seed)
            r = power_iteration(cfg)
            lam = np.real(np.array(r.eigenvalues))
            for k in EIG_POWERS:
                worst = max(worst, eigen_error(r.matrix, lam, k))
            rows.append(["alignment", f"gap {gap:g}", r.alignment[-1],
                         f"first k > 0.99: {r.steps_to_aligned if r.steps_to_aligned is not None else '> ' + str(s.steps)}"
                         f"; bound k ≥ {r.bound_to_aligned}"])
            figures[f"alignment_gap_{gap:g}"] = r.alignment[-1]
            figures[f"steps_to_0.99_gap_{gap:g}"] = float(r.steps_to_aligned) if r.steps_to_aligned is not None \
                else math.nan
            series.append(Series(f"gap {gap:g}", list(map(float, range(s.steps + 1))), r.alignment))
            if i == 0:
                first = r
        rows.insert(0, ["eigenvalues of M^k", f"k = {', '.join(map(str, EIG_POWERS))}", worst,
                        "max |λ(M^k) − λ^k| / max |λ^k|: rounding only"])
        figures["eig_rel_error"] = worst
        check_stop(stop)
        progress(len(s.gaps), total, "x perpendicular to v₁")
        gap = s.gaps[len(s.gaps) // 2]
        M = power_iteration(PowerConfig(n=s.n, lambda1=s.lambda1, gap=gap, steps=1, seed=s.seed)).matrix
        with1, with2 = perpendicular_run(M, s.steps, s.seed)
        back = next((k for k, a in enumerate(with1) if a > 0.99), None)
        k_mid = int(np.argmax(with2[: back if back is not None else None]))  # closest to v₂ before v₁ returns
        rows.append(["x ⟂ v₁", f"gap {gap:g}, k = {k_mid}", with2[k_mid],
                     f"largest |cos| with v₂; with v₁ then: {with1[k_mid]:.1e}"])
        rows.append(["x ⟂ v₁", f"gap {gap:g}, rounding", with1[-1],
                     f"|cos| with v₁ at k = {s.steps}; past 0.99 from k = {back if back is not None else '—'}"])
        figures["perp_alignment_v2"] = with2[k_mid]
        figures["perp_alignment_v1_end"] = with1[-1]
        series.append(Series(f"x⟂v₁: v₁ (gap {gap:g})", list(map(float, range(s.steps + 1))), with1))
        # M^k x against λ₁^k x without renormalising: k ≤ 100 keeps λ₁^k ≤ 1e100, finite
        progress(len(s.gaps) + 1, total, "M^k x against λ^k x")
        M1, x = first.matrix, first.x
        lam, V = np.linalg.eigh(M1)
        top = int(np.argmax(np.abs(lam)))
        v1, l1 = V[:, top], float(lam[top])
        kx = min(s.steps, 100)
        Mk_x = np.linalg.matrix_power(M1, kx) @ x
        not_lambda = float(np.linalg.norm(Mk_x - l1**kx * x) / np.linalg.norm(Mk_x))
        along = float(np.linalg.norm(Mk_x - (x @ v1) * l1**kx * v1) / np.linalg.norm(Mk_x))
        rows.append(["M^k x vs λ₁^k x", f"gap {s.gaps[0]:g}, k = {kx}", not_lambda, "‖M^k x − λ₁^k x‖ / ‖M^k x‖"])
        rows.append(["M^k x vs c₁λ₁^k v₁", f"gap {s.gaps[0]:g}, k = {kx}", along, "→ 0: only the v₁ part is left"])
        figures["not_lambda_k_x"], figures["not_c1_lambda_k_v1"] = not_lambda, along
        rate = first.rate()
        rows.append(["growth of ‖M^k x‖", f"λ₁ = {s.lambda1:g}", rate, f"log10 per step; log10 λ₁ = "
                     f"{math.log10(s.lambda1):.4f}"])
        figures["log10_growth_per_step"] = rate
        progress(total, total, "done")
        g8 = figures.get("steps_to_0.99_gap_0.8")
        order = sorted(s.gaps)
        steps_list = ", ".join(f"{figures[f'steps_to_0.99_gap_{g:g}']:.0f}" if math.isfinite(
            figures[f"steps_to_0.99_gap_{g:g}"]) else f">{s.steps}" for g in order)
        explanation = (
            f"The eigenvalues of M^k match λ_i^k to {worst:.1g} (relative): M^k v_i = λ_i^k v_i, applied k times. "
            f"From a random x, |cos(M^k x, v₁)| passes 0.99 after {steps_list} steps for gaps "
            f"{', '.join(f'{g:g}' for g in order)}: the other parts shrink like gap^k against the v₁ part"
            + (f" (k = {g8:.0f} at gap 0.8)" if g8 is not None and math.isfinite(g8) else "") + ". "
            f"With x ⟂ v₁ the iterate lines up with v₂ instead (|cos| {with2[k_mid]:.3f} at k = {k_mid}, while its "
            f"part along v₁ is {with1[k_mid]:.0e}); rounding "
            f"puts back a 1e-16 part along v₁ that grows by 1/gap a step"
            + (f", and it is aligned with v₁ again from k = {back}" if back is not None else "") + ". "
            f"M^k x is not λ₁^k x (relative distance {not_lambda:.2f} at k = {kx}) but c₁λ₁^k v₁ "
            f"({along:.1e}): only x's part along v₁ survives. For BPTT, ∂h_T/∂h_t = W^(T−t) in a linear RNN: "
            f"the gradient reaching step t grows by {10 ** rate:.3f}× a step here (|λ₁| = {s.lambda1:g}), "
            f"exploding or vanishing geometrically, and keeps only the direction of v₁.")
        plot = Plot("|cos(M^k x, v₁)| over k", "k", "alignment", series)
        return Result(["measurement", "setting", "value", "what it is"], rows, explanation, figures, [plot])


EXERCISE = PowerIteration()
