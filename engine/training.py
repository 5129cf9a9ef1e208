"""Building blocks of the training loop (``TrainConfig`` itself is in
``engine.train_config``, re-exported here): the device, the train/validation split, the optimizer, gradient clipping and the
evaluation pass. ``engine.trainer`` puts them together into ``train``.

The math, in D2L's terms: the loss is the cross-entropy averaged over all
``batch_size * num_steps`` positions of a minibatch; perplexity is
``exp(mean loss per token)``. Clipping by global norm rescales every gradient
by ``min(1, θ / ‖g‖)`` (D2L 8.5.4); clipping by value clamps each entry to
``[-θ, θ]``.

Left out: learning-rate schedules and weight decay settings beyond the
optimizers' defaults.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from engine.errors import ConfigError
from engine.models import ModelConfig, RNNLM
from engine.train_config import CLIPS, DEVICES, OPTIMIZERS, SAMPLERS, TrainConfig, _choice

__all__ = ["CLIPS", "DEVICES", "OPTIMIZERS", "SAMPLERS", "TrainConfig", "resolve_device", "split_ids", "prepare_ids",
           "bptt_bytes", "make_optimizer", "clip_gradients", "sequence_loss", "perplexity", "evaluate"]


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
    if cfg.num_steps >= n:
        raise ConfigError(f"num_steps must be shorter than the training text ({cfg.num_steps} >= {n} tokens)")
    # Sequential sampling starts at an offset in [0, num_steps): keep room for it.
    if n - cfg.num_steps < cfg.batch_size * cfg.num_steps:
        most = max(1, (n - cfg.num_steps) // cfg.num_steps)
        raise ConfigError(
            f"batch_size must be at most {most} for num_steps={cfg.num_steps} and {n} training tokens "
            f"(got {cfg.batch_size}); lower batch_size or num_steps, or raise max_tokens"
        )
    return train_ids, val_ids


def prepare_ids(data: Any, model_cfg: ModelConfig, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train ids, validation ids) from a TextPipeline or an id array, checked against the configs."""
    ids = np.asarray(data.ids if hasattr(data, "ids") else data)
    if ids.ndim != 1 or len(ids) == 0:
        raise ConfigError(f"corpus ids must be a non-empty 1-D array (got shape {ids.shape})")
    train_ids, val_ids = split_ids(ids, cfg)
    top = int(max(train_ids.max(), val_ids.max() if len(val_ids) else 0))
    if top >= model_cfg.vocab_size:
        raise ConfigError(f"vocab_size must be larger than every token id (got {model_cfg.vocab_size}, max id {top})")
    if not cfg.detach:
        need = bptt_bytes(model_cfg, len(train_ids))
        if need > cfg.bptt_limit_mb * 2**20:
            raise ConfigError(
                f"detach=False keeps the whole epoch's graph: about {need / 2**20:.0f} MiB for {len(train_ids)} "
                f"training tokens (bptt_limit_mb={cfg.bptt_limit_mb}); lower max_tokens, detach, or raise the limit"
            )
    return train_ids, val_ids


def bptt_bytes(model_cfg: ModelConfig, n_tokens: int) -> int:
    """Rough activation memory of one graph over ``n_tokens`` positions (detach=False).

    Per position autograd keeps the input encoding, a few tensors of width
    num_hiddens per layer (3 for an RNN, ~10 for GRU/LSTM gates) and the logits
    with their softmax (3 × vocab), all float32.
    """
    per_layer = {"scratch": 3, "rnn": 3, "gru": 10, "lstm": 12}[model_cfg.kind]
    floats = model_cfg.input_size + per_layer * model_cfg.num_hiddens * model_cfg.num_layers + 3 * model_cfg.vocab_size
    return 4 * floats * n_tokens


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr)  # D2L's sgd: p -= lr * grad of the mean loss
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.AdamW(params, lr=cfg.lr)


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
    """Cross-entropy over all positions (mean or sum): logits (num_steps, batch, vocab), Y (batch, num_steps)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y.T.reshape(-1), reduction=reduction)


def perplexity(mean_loss: float) -> float:
    """exp(mean loss), saturating at inf instead of raising OverflowError."""
    return math.exp(mean_loss) if mean_loss < 700 else math.inf


@torch.no_grad()
def evaluate(model: RNNLM, ids: np.ndarray, batch_size: int, num_steps: int, device: torch.device) -> float:
    """Perplexity on ``ids``, read once in order: split into at most batch_size
    contiguous rows, walked num_steps at a time with the state carried along."""
    n = len(ids) - 1
    rows = max(1, min(batch_size, n // max(1, num_steps)))
    length = n // rows
    data = torch.from_numpy(np.asarray(ids[: rows * length + 1]).astype(np.int64))  # ids may be uint8/uint16
    X = data[:-1].reshape(rows, length).to(device)
    Y = data[1:].reshape(rows, length).to(device)
    was_training = model.training
    model.eval()
    state = model.begin_state(rows, device)
    total = torch.zeros((), device=device)
    for start in range(0, length, num_steps):
        logits, state = model(X[:, start : start + num_steps], state)
        total += sequence_loss(logits, Y[:, start : start + num_steps], reduction="sum")
    model.train(was_training)
    return perplexity(float(total) / (rows * length))
