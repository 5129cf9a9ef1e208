"""The BPTT lab's experiments that run recurrent cells (D2L 8.7); see :mod:`engine.labs.bptt` for the math.

``gradient_flow`` (untrained cells of any registered kind) and
``run_gradient_flow`` (a saved run's language model on windows of its corpus,
``corpus_windows``) give ``‖∂L_T/∂h_t‖`` for t = 0..T as ``FlowCurve``s: the
sequence is stepped one time step at a time through the model's own forward
(the cells' hand-written backward included), every state kept in the graph with
``retain_grad``, so one backward from ``L_T`` leaves the total gradient on each
h_t. W_hh is scaled on a copy of the model. ``step_norms`` trains as the
trainer does and yields a ``StepRecord`` per optimizer step.

Left out: the truncation strategies (full, regular, randomised BPTT: see
:mod:`engine.labs.truncation`); CUDA for the gradient flow (float64 on the
CPU: its matrices are small).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.config import CELLS, ModelConfig, TrainConfig
from engine.data import train_batches
from engine.errors import ConfigError
from engine.labs.bptt import FlowConfig, FlowCurve, StepRecord, check_scales, parse_model
from engine.models import RNNLM, RecurrentCore, build_model, detach_state
from engine.models.cell import Cell, NNCell
from engine.precision import float32_cudnn
from engine.training import clip_gradients, make_optimizer, prepare_ids, resolve_device, sequence_loss


# ---------------------------------------------------------------------------------------------------------
# Gradient flow through time
# ---------------------------------------------------------------------------------------------------------
def recurrent_weights(holder: nn.Module, cell: Cell) -> list[torch.Tensor]:
    """Each layer's recurrent weight as the holder keeps it (rows: gate blocks of h), [] for a cell without one."""
    if cell.d2l_scratch:
        return [holder.W_hh]  # used as H W_hh: the transpose of nn's layout, the same spectral radii
    if isinstance(cell, NNCell):
        return [cell.weight_hh(holder, layer) for layer in range(cell.num_layers)]
    return []


def spectral_radii(W: torch.Tensor, num_hiddens: int) -> list[float]:
    """ρ of each h × h block of a recurrent weight (gates·h, h): max |eigenvalue|."""
    blocks = W.detach().to(torch.float64).split(num_hiddens, dim=0)
    return [float(torch.linalg.eigvals(b).abs().max()) for b in blocks]


def _parts(state: Any) -> tuple[torch.Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def _row_log10_norms(grad: torch.Tensor | None, like: torch.Tensor) -> np.ndarray:
    """log10 of each sequence's gradient norm (batch on dim 1 of a (layers, B, h) state, dim 0 of (B, h))."""
    g = torch.zeros_like(like) if grad is None else grad
    if g.dim() == 3:
        g = g.transpose(0, 1)
    with np.errstate(divide="ignore"):
        return np.log10(g.reshape(g.shape[0], -1).norm(dim=1).numpy())


def state_gradients(step: Any, inputs: Sequence[Any], state0: Any, loss: Any) -> tuple[list[float], list[float] | None]:
    """Run ``state = step(x, state)`` over ``inputs`` keeping every state in the graph, backpropagate
    ``loss(final state)``, and return the batch's mean log10 gradient norm of h_t for t = 0..T (and of the
    memory cell when the state is a pair (H, C)). The states are float64, as the model must be."""
    state = tuple(s.detach().to(torch.float64).requires_grad_() for s in _parts(state0))
    states = [state]
    for x in inputs:
        new = _parts(step(x, state if len(state) > 1 else state[0]))
        for s in new:
            s.retain_grad()
        states.append(new)
        state = new
    loss(state if len(state) > 1 else state[0]).backward()
    curves: list[list[float]] = [[] for _ in states[0]]
    for st in states:
        for i, s in enumerate(st):
            curves[i].append(float(_row_log10_norms(s.grad, s).mean()))  # -inf if any is 0
    return curves[0], (curves[1] if len(curves) > 1 else None)


def _scaled(holder: nn.Module, cell: Cell, scale: float) -> nn.Module:
    """A copy of ``holder`` with every layer's W_hh multiplied by ``scale``."""
    out = copy.deepcopy(holder)
    with torch.no_grad():
        for W in recurrent_weights(out, cell):
            W.mul_(scale)
    return out


def _top_h(cell: Cell, state: Any) -> torch.Tensor:
    """The top layer's hidden state H_T (B, h) of a state in the model's format."""
    top = cell.layer_states(state)[-1]
    return top[0] if isinstance(top, tuple) else top


def _curves(label: str, holder: nn.Module, cell: Cell, scales: Sequence[float], step: Any, inputs: Sequence[Any],
            state0: Any, loss: Any) -> list[FlowCurve]:
    out = []
    has_w = bool(recurrent_weights(holder, cell))
    for scale in (scales if has_w else [None]):
        h = _scaled(holder, cell, scale) if scale is not None and scale != 1.0 else holder
        radius = [spectral_radii(W, cell.num_hiddens) for W in recurrent_weights(h, cell)]
        norms, memory = state_gradients(lambda x, s, h=h: step(h, x, s), inputs, state0,
                                        lambda s, h=h: loss(h, s))
        out.append(FlowCurve(label, scale, radius, norms, memory))
    return out


def gradient_flow(cfg: FlowConfig) -> list[FlowCurve]:
    """One curve per (model, scale) for untrained cells (float64, eval mode) on the same N(0, 1) inputs,
    read out at step T through the same random unit vector u: L_T = Σ_batch u · h_T."""
    gen = torch.Generator().manual_seed(cfg.seed)
    X = torch.randn(cfg.num_steps, cfg.batch_size, cfg.input_size, generator=gen, dtype=torch.float64)
    u = torch.randn(cfg.num_hiddens, generator=gen, dtype=torch.float64)
    u /= u.norm()
    out: list[FlowCurve] = []
    for spec in cfg.models:
        kind, activation = parse_model(spec)
        torch.manual_seed(cfg.seed)  # the same initial weights for every scale
        core = RecurrentCore(kind, cfg.input_size, cfg.num_hiddens, cfg.num_layers, 0.0, activation)
        core = core.to(torch.float64).eval()
        label = f"{kind}:{activation}" if CELLS[kind].activation else kind
        out += _curves(label, core, core.cell, cfg.scales,
                       lambda m, x, s: m(x.unsqueeze(0), s)[1], list(X.unbind(0)),
                       core.begin_state(cfg.batch_size), lambda m, s: (_top_h(m.cell, s) @ u).sum())
    return out


def corpus_windows(ids: np.ndarray, num_steps: int, batch_size: int, seed: int) -> np.ndarray:
    """``batch_size`` windows of num_steps + 1 consecutive ids at seeded random offsets: (batch_size, num_steps + 1)."""
    ids = np.asarray(ids)
    if len(ids) < num_steps + 1:
        raise ConfigError(f"num_steps must be below the corpus's {len(ids)} tokens (got {num_steps}); lower it")
    starts = np.random.default_rng(seed).integers(0, len(ids) - num_steps, batch_size)
    return np.stack([ids[s : s + num_steps + 1] for s in starts]).astype(np.int64)


def run_gradient_flow(model: RNNLM, windows: np.ndarray, scales: Sequence[float], label: str) -> list[FlowCurve]:
    """Curves for a language model (a saved run's): ``windows`` (B, T + 1) ids from ``corpus_windows``; the
    loss is the cross-entropy of the last window token given the first T (summed over the batch)."""
    check_scales(scales)
    model = model.to("cpu", torch.float64).eval()
    X = torch.from_numpy(windows)
    target = X[:, -1]

    def loss(m: RNNLM, s: Any) -> torch.Tensor:
        logits = m.output(_top_h(m.cell, s).unsqueeze(0))[0]
        return nn.functional.cross_entropy(logits, target, reduction="sum")

    return _curves(label, model, model.cell, scales, lambda m, x, s: m(x.view(-1, 1), s)[1],
                   list(X[:, :-1].unbind(1)), model.begin_state(X.shape[0]), loss)



# ---------------------------------------------------------------------------------------------------------
# Per-step gradient norms during training
# ---------------------------------------------------------------------------------------------------------
def step_norms(ids: np.ndarray, model_cfg: ModelConfig, train_cfg: TrainConfig, steps: int, *,
               model: RNNLM | None = None, stop: threading.Event | None = None) -> Iterator[StepRecord]:
    """Train ``steps`` optimizer steps as ``engine.trainer.train`` does (its seed, minibatch order per epoch,
    state handling, optimizer and clipping; ``model``: start from these weights) and yield every step's
    record. The validation split is held out as the trainer holds it; nothing is evaluated or saved.
    Only ``truncation`` regular (one step per minibatch) is taken: the others step once per kept segment."""
    if not 1 <= steps <= 100_000:
        raise ConfigError(f"steps must be in 1..100000 (got {steps})")
    if train_cfg.truncation != "regular":
        raise ConfigError(f"per-step norms need truncation regular (got {train_cfg.truncation}): the others step "
                          "once per kept segment of minibatches, not once per minibatch")
    train_ids, _ = prepare_ids(ids, model_cfg, train_cfg)
    device = resolve_device(train_cfg.device)
    torch.manual_seed(train_cfg.seed)  # the weights' initialisation, as the trainer seeds it
    net = (model if model is not None else build_model(model_cfg)).to(device)
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = make_optimizer(net, train_cfg)
    with float32_cudnn(device):  # the trainer's float32 figures on CUDA too
        yield from _steps(net, params, optimizer, train_ids, train_cfg, device, steps, stop)


def _steps(net: RNNLM, params: list[nn.Parameter], optimizer: torch.optim.Optimizer, train_ids: np.ndarray,
           train_cfg: TrainConfig, device: torch.device, steps: int,
           stop: threading.Event | None) -> Iterator[StepRecord]:
    step, epoch = 0, 0
    while step < steps:
        epoch += 1
        rng = np.random.default_rng([train_cfg.seed, epoch])  # the trainer's minibatch order for this epoch
        state = None
        for X, Y in train_batches(train_ids, train_cfg, rng):
            if step >= steps or (stop is not None and stop.is_set()):
                return
            X, Y = torch.as_tensor(X).to(device), torch.as_tensor(Y).to(device)
            if state is None or not train_cfg.carries_state:
                state = net.begin_state(X.shape[0], device)
            else:
                state = detach_state(state)
            logits, state = net(X, state)
            loss = sequence_loss(logits, Y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm, clipped = clip_gradients(params, train_cfg.clip, train_cfg.clip_theta)
            optimizer.step()
            step += 1
            yield StepRecord(step, epoch, float(loss.detach()), float(norm), bool(clipped))
