"""Building blocks of the training loop (its options, ``TrainConfig``, are in ``engine.config``):
the device, the train/validation split, the optimizer, gradient clipping and the evaluation pass.
``engine.trainer`` puts them together into ``train``.

The math, in D2L's terms: the loss is the cross-entropy averaged over all
``batch_size * num_steps`` positions of a minibatch; perplexity is
``exp(mean loss per token)``. Clipping by global norm rescales every gradient
by ``min(1, θ / ‖g‖)`` (D2L 8.5.4); clipping by value clamps each entry to
``[-θ, θ]``.

Memory, in float32 bytes (``memory_estimate``): per parameter the weight,
its gradient, the optimizer's state (SGD none, Adam/AdamW two moments) and the
trainer's copy of the last good epoch (weights and optimizer state again); plus
the activations autograd keeps for one minibatch, ``bptt_bytes`` over
batch_size × num_steps positions (more without regular truncation: engine.truncation).
``prepare_ids`` refuses a configuration whose estimate exceeds the device's
free memory (``free_memory``), naming the options to lower.

Left out: learning-rate schedules, and weight decay that spares the biases
(``weight_decay`` applies to every parameter, biases included).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from engine.config import DEVICES, ModelConfig, TrainConfig, _choice
from engine.data import min_tokens
from engine.errors import ConfigError
from engine.models import RNNLM, build_model, cell_class
from engine.precision import autocast, check_device
from engine.truncation import graph_positions

__all__ = ["resolve_device", "split_ids", "prepare_ids", "bptt_bytes", "MemoryEstimate", "memory_estimate",
           "free_memory", "check_memory", "out_of_memory", "MEMORY_ADVICE", "weight_decay_of", "make_optimizer",
           "clip_gradients", "sequence_loss", "perplexity", "evaluate"]


def resolve_device(name: str) -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an unavailable device is a ConfigError."""
    _choice("device", name, DEVICES)
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise ConfigError("device cuda is not available (no CUDA GPU or a CPU-only torch build); use device cpu")
    if name == "mps" and not mps:
        raise ConfigError("device mps is not available (needs Apple silicon and an MPS torch build); use device cpu")
    return torch.device(name)


def split_ids(ids: np.ndarray, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Cut to ``max_tokens``, then hold out the tail ``val_fraction`` for validation.

    Raises ConfigError naming num_steps / batch_size when the training part is too
    short for one minibatch (whatever offset the sequential sampler draws).
    """
    ids = np.asarray(ids)
    if cfg.max_tokens:
        ids = ids[: cfg.max_tokens]
    n_val = int(round(len(ids) * cfg.val_fraction))
    if cfg.val_fraction > 0 and n_val < 2:
        raise ConfigError(f"val_fraction {cfg.val_fraction} leaves {n_val} validation tokens of {len(ids)}; need 2 or more")
    train_ids, val_ids = (ids[: len(ids) - n_val], ids[len(ids) - n_val :]) if n_val else (ids, ids[:0])
    n = len(train_ids)
    if n >= min_tokens(cfg.batch_size, cfg.num_steps):  # one minibatch at every offset (engine.data)
        return train_ids, val_ids
    if cfg.num_steps >= n:
        raise ConfigError(f"num_steps must be shorter than the training text ({cfg.num_steps} >= {n} tokens)")
    most = max(1, (n - cfg.num_steps) // cfg.num_steps)  # the largest batch_size that min_tokens allows
    raise ConfigError(
        f"batch_size must be at most {most} for num_steps={cfg.num_steps} and {n} training tokens "
        f"(got {cfg.batch_size}); lower batch_size or num_steps, or raise max_tokens"
    )


def prepare_ids(data: Any, model_cfg: ModelConfig, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train ids, validation ids) from a TextPipeline or an id array, checked against the configs."""
    ids = np.asarray(data.ids if hasattr(data, "ids") else data)
    if ids.ndim != 1 or len(ids) == 0:
        raise ConfigError(f"corpus ids must be a non-empty 1-D array (got shape {ids.shape})")
    train_ids, val_ids = split_ids(ids, cfg)
    top = int(max(train_ids.max(), val_ids.max() if len(val_ids) else 0))
    if top >= model_cfg.vocab_size:
        raise ConfigError(f"vocab_size must be larger than every token id (got {model_cfg.vocab_size}, max id {top})")
    if cfg.truncation != "regular":
        positions = graph_positions(cfg, len(train_ids))
        need = bptt_bytes(model_cfg, positions)
        if need > cfg.bptt_limit_mb * 2**20:
            kept = (f"the whole epoch's graph: about {need / 2**20:.0f} MiB for {len(train_ids)} training tokens"
                    if cfg.truncation == "none" else
                    f"graphs of up to {positions} positions (p={cfg.truncation_p:g}): about {need / 2**20:.0f} MiB")
            raise ConfigError(
                f"truncation={cfg.truncation} keeps {kept} (bptt_limit_mb={cfg.bptt_limit_mb}); lower max_tokens, "
                "use --truncation regular" + (" or a larger truncation_p" if cfg.truncation == "random" else "")
                + ", or raise the limit"
            )
    device = resolve_device(cfg.device)
    check_device(cfg, device)  # precision and cuda_graphs against the device auto resolved to
    check_memory(model_cfg, cfg, len(train_ids), device)
    return train_ids, val_ids


def bptt_bytes(model_cfg: ModelConfig, n_tokens: int) -> int:
    """Rough activation memory of one graph over ``n_tokens`` positions (``engine.truncation.graph_positions``).

    Per position autograd keeps the input encoding, the cell's ``bptt_floats`` tensors
    of width num_hiddens per layer (3 for an RNN, ~10 for GRU/LSTM gates) and the
    logits with their softmax (3 × vocab), all float32.
    """
    per_layer = cell_class(model_cfg.kind).bptt_floats
    floats = model_cfg.input_size + per_layer * model_cfg.num_hiddens * model_cfg.num_layers + 3 * model_cfg.vocab_size
    return 4 * floats * n_tokens


OPTIMIZER_STATES = {"sgd": 0, "adam": 2, "adamw": 2}  # floats of state per parameter (Adam: exp_avg, exp_avg_sq)
MEMORY_ADVICE = ("lower batch_size, num_steps, num_hiddens or num_layers, or shrink the vocabulary "
                 "(min_freq / vocab_size)")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes training holds at once (float32), in two parts."""

    weights: int  # weights, gradients, optimizer state and the trainer's copy of the last good epoch
    activations: int  # the largest graph kept: one minibatch's, or more (engine.truncation)

    @property
    def total(self) -> int:
        return self.weights + self.activations


def num_params(model_cfg: ModelConfig) -> int:
    """The model's parameter count, from the model itself built on the meta device (no memory used)."""
    with torch.device("meta"):
        model = build_model(model_cfg)
    return sum(p.numel() for p in model.parameters())


def memory_estimate(model_cfg: ModelConfig, cfg: TrainConfig, n_train_tokens: int) -> MemoryEstimate:
    """What training needs, per the module doc: P parameters take 4·P·(2 + k) bytes with the
    optimizer's k floats of state per parameter, and the trainer's snapshot 4·P·(1 + k) more."""
    k = OPTIMIZER_STATES[cfg.optimizer]
    weights = 4 * num_params(model_cfg) * ((2 + k) + (1 + k))
    positions = graph_positions(cfg, n_train_tokens)
    return MemoryEstimate(weights, bptt_bytes(model_cfg, positions))


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _cgroup_available() -> int | None:
    """Room left under a cgroup v2 memory limit (a container's or a cluster job's), page cache counted as free."""
    root = "/sys/fs/cgroup/"
    try:
        with open(root + "memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open(root + "memory.current", encoding="ascii") as f:
            used = int(f.read())
        with open(root + "memory.stat", encoding="ascii") as f:
            stat = dict(line.split() for line in f if line.count(" ") == 1)
        return int(limit) - used + int(stat.get("inactive_file", 0))
    except (OSError, ValueError):
        return None


def free_memory(device: torch.device) -> int | None:
    """Bytes free for training on ``device``: CUDA's free memory, or the RAM available to this process
    (MemAvailable, capped by a cgroup limit); None when unknown (mps)."""
    if device.type == "cuda":
        # mem_get_info counts what this process's caching allocator holds as used; it is free to us.
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(torch.cuda.mem_get_info(device)[0]) + cached
    if device.type != "cpu":
        return None
    known = [x for x in (_meminfo_available(), _cgroup_available()) if x is not None]
    return min(known) if known else None


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB" if n >= 10 * 2**20 else f"{n / 2**20:.2f} MiB"


def check_memory(model_cfg: ModelConfig, cfg: TrainConfig, n_train_tokens: int, device: torch.device) -> MemoryEstimate:
    """The estimate; ConfigError naming the options to lower when it exceeds the device's free memory."""
    need = memory_estimate(model_cfg, cfg, n_train_tokens)
    free = free_memory(device)
    if free is not None and need.total > free:
        graph = {"regular": f"one minibatch's graph ({cfg.batch_size} × {cfg.num_steps} positions)",
                 "none": "the whole epoch's graph (truncation none)",
                 "random": f"the longest graph kept (truncation random, p={cfg.truncation_p:g})"}[cfg.truncation]
        raise ConfigError(
            f"training needs about {_mib(need.total)} on {device} ({_mib(need.weights)} for the weights, gradients, "
            f"optimizer state and a copy of the last good epoch; {_mib(need.activations)} for {graph}) but only "
            f"{_mib(free)} is free; {MEMORY_ADVICE}")
    return need


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is the device or the host running out of memory: torch's OutOfMemoryError,
    Python's MemoryError, or a RuntimeError saying so (the CPU allocator's "can't allocate memory")."""
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    if isinstance(exc, (MemoryError, oom)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


ADAMW_WEIGHT_DECAY = 0.01  # torch's default, which adamw keeps when weight_decay is 0


def weight_decay_of(cfg: TrainConfig) -> float:
    """The λ the optimizer uses: ``cfg.weight_decay``, but adamw's own 0.01 for 0 (AdamW without decay is Adam)."""
    if cfg.optimizer == "adamw" and cfg.weight_decay == 0:
        return ADAMW_WEIGHT_DECAY
    return float(cfg.weight_decay)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer of ``cfg``. Weight decay λ (``weight_decay_of``): sgd and adam add λ·w to each gradient
    inside the step (after clipping, so the decay itself is never clipped); adamw shrinks the weights by lr·λ
    apart from the gradient."""
    params = [p for p in model.parameters() if p.requires_grad]
    wd = weight_decay_of(cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=wd)  # D2L's sgd: p -= lr * (grad + λ p)
    # Adam's step count lives on the device when its step is replayed from a CUDA graph (engine.graphs)
    capturable = cfg.cuda_graphs and bool(params) and params[0].is_cuda
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=wd, capturable=capturable)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=wd, capturable=capturable)


def _total_norm(grads: list[torch.Tensor], norm_type: float = 2.0) -> torch.Tensor:
    get_total_norm = getattr(nn.utils, "get_total_norm", None)  # torch >= 2.6
    if get_total_norm is not None:
        return get_total_norm(grads, norm_type)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, norm_type) for g in grads]), norm_type)


def clip_gradients(params: list[nn.Parameter], clip: str, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip in place; return (global gradient norm *before* clipping, whether clipping changed the
    gradient), both 0-d tensors, not synced. Clipping changes the gradient when ‖g‖ > θ (norm) or
    when some entry has |g_i| > θ (value); ``off`` never does."""
    if clip == "norm":
        norm = nn.utils.clip_grad_norm_(params, theta)
        return norm, norm > theta
    grads = [p.grad for p in params if p.grad is not None]
    norm = _total_norm(grads)
    if clip == "value":
        changed = _total_norm(grads, math.inf) > theta
        nn.utils.clip_grad_value_(params, theta)
        return norm, changed
    return norm, torch.zeros((), dtype=torch.bool, device=norm.device)


def sequence_loss(logits: torch.Tensor, Y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over all positions (mean or sum): logits (num_steps, batch, vocab), Y (batch, num_steps).
    Targets of -100 (the sentences sampler's padding, ``engine.sentences.IGNORE_INDEX``) are skipped,
    as ``cross_entropy``'s default ``ignore_index``: the mean is over the real targets only."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y.T.reshape(-1), reduction=reduction)


MAX_LOSS = 700.0  # nats per token: beyond ~709 exp() overflows (perplexity inf); the trainer's divergence cap too


def perplexity(mean_loss: float) -> float:
    """exp(mean loss), saturating at inf from MAX_LOSS on instead of raising OverflowError."""
    return math.exp(mean_loss) if mean_loss < MAX_LOSS else math.inf


@torch.no_grad()
def evaluate(model: RNNLM, ids: np.ndarray, batch_size: int, num_steps: int, device: torch.device,
             precision: str = "fp32") -> float:
    """Perplexity on ``ids``, read once in order: split into at most batch_size
    contiguous rows, walked num_steps at a time with the state carried along (under
    ``precision``'s autocast, as training's forward pass). The rows are views of ``ids``
    (a memory-mapped array stays on disk): only each step's columns are widened to int64."""
    n = len(ids) - 1
    rows = max(1, min(batch_size, n // max(1, num_steps)))
    length = n // rows
    data = np.asarray(ids[: rows * length + 1])  # ids may be uint8/uint16/uint32, or a memmap
    X = data[:-1].reshape(rows, length)
    Y = data[1:].reshape(rows, length)
    was_training = model.training
    model.eval()
    state = model.begin_state(rows, device)
    total = torch.zeros((), device=device)
    for start in range(0, length, num_steps):
        cols = slice(start, start + num_steps)
        X_t = torch.from_numpy(X[:, cols].astype(np.int64)).to(device)
        Y_t = torch.from_numpy(Y[:, cols].astype(np.int64)).to(device)
        with autocast(device, precision):
            logits, state = model(X_t, state)
            total += sequence_loss(logits, Y_t, reduction="sum")
    model.train(was_training)
    return perplexity(float(total) / (rows * length))
