"""The BPTT lab (D2L 8.7): why gradients through many time steps explode or vanish, in numbers.

Three experiments, each a pure function of its options (seeded). This module
holds the power iteration (numpy), the options and results of all three and
the summaries of a training run's steps, without torch, so that ``rnnlab``'s
parser can read their defaults quickly; :mod:`engine.labs.bptt_grads` runs the
cells (``gradient_flow``, ``run_gradient_flow``, ``step_norms``).

**Power iteration** (``power_iteration``). Backpropagating through T steps of
a linear recurrence multiplies the gradient by the same matrix T times, so
what ``M^k x`` does is what the gradient does. With ``x = Σ c_i v_i`` in the
eigenvectors of M, ``M^k x = Σ c_i λ_i^k v_i``: the term of the largest |λ|
takes over, so

    |cos(M^k x, v₁)| → 1,
    tan θ_k = √(Σ_{i>1} c_i² λ_i^{2k}) / |c₁ λ₁^k| ≤ |λ₂/λ₁|^k · tan θ_0      (symmetric M)

and ‖M^k x‖ ≈ |c₁| |λ₁|^k grows without bound for |λ₁| > 1 and vanishes for
|λ₁| < 1. The gap |λ₂/λ₁| sets the speed: alignment past 0.99 is certain once
``gap^k · tan θ_0 ≤ tan(arccos 0.99)``. The matrix is built with the spectrum
asked for (λ₁, λ₂ = gap·λ₁, the rest spread below λ₂ with random signs):
``symmetric`` is Q Λ Qᵀ with Q a random rotation; ``nonsymmetric`` is P Λ P⁻¹
with P a random (not orthogonal) basis, where the same limit is reached after
a transient; ``gaussian`` is a plain random matrix with N(0, λ₁²/n) entries
(spectral radius about λ₁, circular law), whose dominant eigenvalue may be a
complex pair — then ``M^k x`` settles into the pair's plane and rotates in it,
never onto one vector, so the alignment shown is with that plane.

**Gradient flow** (``bptt_grads.gradient_flow``). For a recurrent cell (any registered
kind, untrained, on Gaussian inputs; or a saved run's model on its corpus) and
one loss at the last step, ``L_T``, the total gradient reaching the state of
every step, ``‖∂L_T/∂h_t‖`` for t = 0..T, in float64 (float32 would underflow
to 0 within a hundred steps of a small W_hh). For the plain RNN
``∂h_t/∂h_{t-1} = diag(φ'(a_t)) W_hhᵀ``, so the curve falls or rises per step
by about the spectral radius ρ(W_hh) times φ''s typical size; scaling W_hh
moves it. Untrained models read the state through a fixed random unit vector
(``L_T = u · h_T``, so ‖∂L_T/∂h_T‖ = 1 exactly); a run's model uses its own
output layer and the cross-entropy of the token after step T. Reported per
sequence and averaged over the batch in log10 (a geometric mean).

**Per-step gradient norms** (``bptt_grads.step_norms``). The trainer's Progress reports
the mean gradient norm over a window of steps (``engine.trainer``), which hides
single spikes. This trains a few steps with the trainer's own pieces (same
seed, minibatch order, optimizer, clipping: ``engine.training``) and yields
every step's loss, gradient norm before clipping and whether clipping changed
the gradient; ``window_means`` gives what the trainer's windows would show.

The truncation strategies (full, regular, randomised BPTT) are compared in
:mod:`engine.labs.truncation`, with the trainer's ``truncation`` option.
Left out: plots (the TUI's Labs screen).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.config import ACTIVATIONS, CELLS, MODEL_KINDS, _choice
from engine.errors import ConfigError

MATRICES = ("symmetric", "nonsymmetric", "gaussian")
ALIGNED = 0.99  # the alignment the power-iteration table counts steps to


# ---------------------------------------------------------------------------------------------------------
# Power iteration
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerConfig:
    """A matrix M and how many times to apply it."""

    n: int = 10  # M is n × n
    lambda1: float = 1.1  # |λ₁|, the largest eigenvalue's magnitude (gaussian: the entries' scale, ≈ ρ(M))
    gap: float = 0.8  # |λ₂/λ₁| (symmetric, nonsymmetric); the other eigenvalues are smaller still
    steps: int = 60  # k = 0..steps
    matrix: str = "symmetric"  # symmetric (Q Λ Qᵀ) | nonsymmetric (P Λ P⁻¹) | gaussian (N(0, λ₁²/n) entries)
    seed: int = 0  # draws the eigenvectors, the signs of the small eigenvalues and x

    def __post_init__(self) -> None:
        _choice("matrix", self.matrix, MATRICES)
        if not 2 <= self.n <= 500:
            raise ConfigError(f"n must be in 2..500 (got {self.n})")
        if not (math.isfinite(self.lambda1) and self.lambda1 > 0):
            raise ConfigError(f"lambda1 must be a positive number (got {self.lambda1!r})")
        if not 0 <= self.gap < 1:
            raise ConfigError(f"gap must be in [0, 1) (got {self.gap!r}): |λ₂| below |λ₁| is what makes "
                              "M^k x settle on v₁")
        if not 1 <= self.steps <= 10_000:
            raise ConfigError(f"steps must be in 1..10000 (got {self.steps})")
        if self.seed < 0:
            raise ConfigError(f"seed must be zero or a positive integer (got {self.seed})")


@dataclass(frozen=True)
class PowerResult:
    """What ``M^k x`` did, for k = 0..steps (x of norm 1)."""

    config: PowerConfig
    matrix: np.ndarray  # M (n, n)
    x: np.ndarray  # the start vector, of norm 1
    eigenvalues: list[complex]  # all of M's, largest magnitude first
    gap: float  # |λ₂/λ₁| measured: the largest magnitude outside v₁ (a complex pair's plane) over |λ₁|
    alignment: list[float]  # |cos(M^k x, v₁)|; for a complex dominant pair, the cosine with its plane
    tangent: list[float]  # tan of that angle: → 0 as gap^k (symmetric M: ≤ gap^k · tangent[0])
    log10_norm: list[float]  # log10 ‖M^k x‖
    predicted: list[float] | None  # the closed form of the alignment (symmetric M), else None
    steps_to_aligned: int | None  # the first k with alignment > ALIGNED (None: not within steps)
    bound_to_aligned: int | None  # k from which gap^k tan θ_0 guarantees it (symmetric M; None otherwise)

    def rate(self) -> float:
        """log10 ‖M^k x‖ per step over the last half of the steps: ≈ log10 |λ₁| once v₁ dominates."""
        k0 = len(self.log10_norm) // 2
        k = len(self.log10_norm) - 1
        return (self.log10_norm[k] - self.log10_norm[k0]) / max(1, k - k0)


def spectrum(cfg: PowerConfig, rng: np.random.Generator) -> np.ndarray:
    """λ₁, λ₂ = gap·λ₁, then n − 2 magnitudes evenly below λ₂ (0.9·λ₂ … 0.1·λ₂) with random signs."""
    lam2 = cfg.gap * cfg.lambda1
    rest = lam2 * np.linspace(0.9, 0.1, cfg.n - 2) * rng.choice([-1.0, 1.0], cfg.n - 2)
    return np.concatenate([[cfg.lambda1, lam2], rest])


def make_matrix(cfg: PowerConfig) -> np.ndarray:
    """The lab's M (and nothing else drawn from the seed but x, afterwards)."""
    rng = np.random.default_rng(cfg.seed)
    if cfg.matrix == "gaussian":
        return rng.normal(0.0, cfg.lambda1 / math.sqrt(cfg.n), (cfg.n, cfg.n))
    lam = spectrum(cfg, rng)
    if cfg.matrix == "symmetric":
        Q, _ = np.linalg.qr(rng.normal(size=(cfg.n, cfg.n)))
        return (Q * lam) @ Q.T
    P = rng.normal(size=(cfg.n, cfg.n))
    return np.linalg.solve(P.T, (P * lam).T).T  # P Λ P⁻¹


def dominant_subspace(M: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(eigenvalues by decreasing magnitude, an orthonormal basis (n, 1 or 2) of the dominant eigenvector —
    the plane of Re v, Im v for a complex pair — and the gap |λ_next/λ₁| outside it)."""
    lam, V = np.linalg.eig(M)
    order = np.argsort(-np.abs(lam), kind="stable")
    lam, V = lam[order], V[:, order]
    complex_pair = abs(lam[0].imag) > 1e-12 * max(1.0, abs(lam[0]))
    basis = np.stack([V[:, 0].real, V[:, 0].imag], axis=1) if complex_pair else V[:, :1].real
    U, _ = np.linalg.qr(basis)
    outside = 2 if complex_pair else 1
    top = abs(lam[0])
    gap = float(abs(lam[outside]) / top) if top > 0 and len(lam) > outside else 0.0
    return lam, U, gap


def power_iteration(cfg: PowerConfig) -> PowerResult:
    """Apply M to a random unit x ``steps`` times; see the module docstring."""
    M = make_matrix(cfg)
    lam, U, gap = dominant_subspace(M)
    rng = np.random.default_rng([cfg.seed, 1])
    x = rng.normal(size=cfg.n)
    x /= np.linalg.norm(x)
    # Renormalise every step and keep the log of the norm, so λ₁ = 10 over 1000 steps never overflows.
    y, log_norm = x.copy(), 0.0
    alignment, tangent, log10_norm = [], [], []
    for k in range(cfg.steps + 1):
        if k:
            y = M @ y
            s = float(np.linalg.norm(y))  # > 0: x has a part along v₁ and λ₁ ≠ 0
            y, log_norm = y / s, log_norm + math.log10(s)
        along = U.T @ y
        alignment.append(float(np.linalg.norm(along)))
        # tan θ from the part off v₁ itself: 1 − cos² would lose it to rounding once θ < 1e-8.
        tangent.append(float(np.linalg.norm(y - U @ along) / np.linalg.norm(along)))
        log10_norm.append(log_norm)
    predicted, bound = None, None
    if cfg.matrix == "symmetric":
        predicted, bound = _closed_form(M, x, cfg.steps)
    first = next((k for k, a in enumerate(alignment) if a > ALIGNED), None)
    return PowerResult(cfg, M, x, [complex(v) for v in lam], gap, alignment, tangent, log10_norm, predicted, first,
                       bound)


def _closed_form(M: np.ndarray, x: np.ndarray, steps: int) -> tuple[list[float], int | None]:
    """For a symmetric M (orthonormal eigenvectors v_i, real λ_i) and x = Σ c_i v_i: the alignment
    |c₁ λ₁^k| / √(Σ c_i² λ_i^{2k}) for each k, and the k from which gap^k tan θ_0 ≤ tan(arccos ALIGNED)."""
    lam, V = np.linalg.eigh(M)
    order = np.argsort(-np.abs(lam), kind="stable")
    lam, V = lam[order], V[:, order]
    c = V.T @ x
    ratio = np.abs(lam / lam[0])  # |λ_i/λ₁| ≤ 1: powers of it never overflow
    out = []
    for k in range(steps + 1):
        w = np.abs(c) * ratio**k
        out.append(float(w[0] / np.linalg.norm(w)))
    gap = float(ratio[1])
    tan0 = float(np.linalg.norm(c[1:]) / abs(c[0]))
    target = math.tan(math.acos(ALIGNED))
    if tan0 <= target:
        return out, 0
    if gap == 0.0:
        return out, 1
    return out, math.ceil(math.log(tan0 / target) / math.log(1 / gap))


# ---------------------------------------------------------------------------------------------------------
# Gradient flow through time
# ---------------------------------------------------------------------------------------------------------
DEFAULT_MODELS = ("rnn:tanh", "rnn:relu", "gru", "lstm")


def parse_model(spec: str) -> tuple[str, str]:
    """``"rnn:relu"`` -> ("rnn", "relu"); ``"gru"`` -> ("gru", "tanh"). Only the rnn and scratch cells take
    an activation (``engine.config.CELLS``)."""
    kind, _, activation = spec.strip().partition(":")
    if kind not in MODEL_KINDS:
        raise ConfigError(f"model must be one of {', '.join(MODEL_KINDS)}, optionally with :tanh or :relu for "
                          f"{', '.join(k for k, c in CELLS.items() if c.activation)} (got {spec!r})")
    if activation and not CELLS[kind].activation:
        raise ConfigError(f"model {spec!r}: the {kind} cell has no activation to choose; write {kind}")
    activation = activation or "tanh"
    _choice("activation", activation, ACTIVATIONS)
    return kind, activation


@dataclass(frozen=True)
class FlowConfig:
    """Untrained cells on random inputs, and the W_hh scales to try."""

    models: tuple[str, ...] = DEFAULT_MODELS  # cells as kind[:activation]
    scales: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)  # W_hh multiplied by each (cells without W_hh: once, as is)
    num_steps: int = 150  # T: the loss sits at the last of T steps
    num_hiddens: int = 64
    num_layers: int = 1
    input_size: int = 8  # features per step of the N(0, 1) inputs
    batch_size: int = 16  # sequences; the curve is their mean of log10 norms
    seed: int = 0  # weights, inputs and the readout vector

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("models must name at least one cell, e.g. rnn:tanh")
        for spec in self.models:
            kind, _ = parse_model(spec)
            if CELLS[kind].one_layer and self.num_layers != 1:
                raise ConfigError(f"num_layers must be 1 for the {kind} cell (got {self.num_layers})")
        check_scales(self.scales)
        check_flow_sizes(self.num_steps, self.batch_size, self.seed)
        for name, top in (("num_hiddens", 4096), ("num_layers", 16), ("input_size", 4096)):
            if not 1 <= getattr(self, name) <= top:
                raise ConfigError(f"{name} must be in 1..{top} (got {getattr(self, name)})")


def check_scales(scales: Sequence[float]) -> None:
    if not scales:
        raise ConfigError("scales must hold at least one factor, e.g. 1")
    for s in scales:
        if not (math.isfinite(s) and s >= 0):
            raise ConfigError(f"scales must be numbers ≥ 0 (got {s!r})")


def check_flow_sizes(num_steps: int, batch_size: int, seed: int) -> None:
    if not 1 <= num_steps <= 5000:
        raise ConfigError(f"num_steps must be in 1..5000 (got {num_steps})")
    if not 1 <= batch_size <= 1024:
        raise ConfigError(f"batch_size must be in 1..1024 (got {batch_size})")
    if seed < 0:
        raise ConfigError(f"seed must be zero or a positive integer (got {seed})")


@dataclass(frozen=True)
class FlowCurve:
    """‖∂L_T/∂h_t‖ for t = 0..T of one model (W_hh scaled by ``scale``)."""

    model: str  # "rnn:relu", "gru", or a run's name
    scale: float | None  # W_hh's factor; None for a cell without W_hh (minGRU: gates from the input only)
    radius: list[list[float]]  # ρ of each layer's W_hh, one per gate block (h × h) in nn's gate order
    log10_norm: list[float]  # index t: the batch's mean of log10 ‖∂L_T/∂h_t‖ (-inf where all are 0)
    log10_memory: list[float] | None = None  # the same for the LSTM's memory cell C_t; None for other cells

    @property
    def num_steps(self) -> int:
        return len(self.log10_norm) - 1

    def at_distance(self, d: int) -> float:
        """log10 ‖∂L_T/∂h_{T−d}‖: d steps back from the loss."""
        return self.log10_norm[self.num_steps - d]

    def per_step(self) -> float:
        """The typical factor per step back: (‖∂L_T/∂h_0‖ / ‖∂L_T/∂h_T‖)^(1/T); 0 when it reaches 0."""
        first, last = self.log10_norm[0], self.log10_norm[-1]
        if not math.isfinite(first):
            return 0.0
        return 10 ** ((first - last) / max(1, self.num_steps))

    @property
    def largest_radius(self) -> float | None:
        flat = [r for layer in self.radius for r in layer]
        return max(flat) if flat else None


# ---------------------------------------------------------------------------------------------------------
# Per-step gradient norms during training
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepRecord:
    """One optimizer step, as the trainer takes it."""

    step: int  # 1, 2, … (the trainer's step counter)
    epoch: int  # the pass over the training tokens it belongs to
    loss: float  # the minibatch's mean cross-entropy (nats per token), before the step
    grad_norm: float  # the global gradient norm ‖g‖ before clipping
    clipped: bool  # whether clipping changed the gradient (‖g‖ > θ for clip norm)


def window_means(records: Sequence[StepRecord], window: int) -> list[tuple[int, float, float]]:
    """What a Progress every ``window`` steps would show: (last step, mean ‖g‖, clipped share) per window
    of consecutive steps (the last window may be shorter)."""
    if window < 1:
        raise ConfigError(f"window must be a positive number of steps (got {window})")
    out = []
    for i in range(0, len(records), window):
        w = records[i : i + window]
        out.append((w[-1].step, sum(r.grad_norm for r in w) / len(w), sum(r.clipped for r in w) / len(w)))
    return out


@dataclass(frozen=True)
class StepSummary:
    """The per-step figures against the windows' means."""

    steps: int
    mean_norm: float
    median_norm: float
    max_norm: float
    max_step: int  # the step with the largest ‖g‖
    clipped: int  # steps whose clipping changed the gradient
    max_window_mean: float  # the largest window mean: what the trainer's plot peaks at
    spikes: list[StepRecord] = field(default_factory=list)  # steps with ‖g‖ > SPIKE × the median, largest first


SPIKE = 3.0  # a step whose gradient norm exceeds this many times the median counts as a spike


def summarize(records: Sequence[StepRecord], window: int) -> StepSummary:
    if not records:
        raise ConfigError("no steps to summarize: train at least one step")
    norms = np.array([r.grad_norm for r in records])
    top = int(np.argmax(norms))
    median = float(np.median(norms))
    spikes = sorted((r for r in records if r.grad_norm > SPIKE * median), key=lambda r: -r.grad_norm)
    return StepSummary(len(records), float(norms.mean()), median, float(norms[top]), records[top].step,
                       sum(r.clipped for r in records), max(m for _, m, _ in window_means(records, window)),
                       spikes)
