"""Float32 on CUDA: keep cuDNN's RNN kernels off TF32 while rnnlab computes.

torch lets cuDNN use TF32 tensor-core math by default
(``torch.backends.cudnn.allow_tf32``). For the RNN kernels that rounds every
matrix product's inputs to a 10-bit mantissa: on an H100 a 2-layer ReLU RNN's
gradients moved by 1.1e-2 relative from float32's (GRU 4.8e-4), while
the cells' own recurrences (``engine.models``) and every other matmul here stay float32
(``torch.backends.cuda.matmul.allow_tf32`` is off by default). rnnlab's figures
are float32 on every device, so training, evaluation and generation run inside
:func:`float32_cudnn`; at these sizes the kernels are launch-bound and TF32
bought no speed.

The flag is process-wide: nested and concurrent users (a training thread and a
generation thread) share it, and the value found before the first one entered
comes back when the last one leaves.

Mixed precision (``TrainConfig.precision``, issue 14): ``fp32`` is the default and the book's numbers.
``bf16`` and ``fp16`` run the forward pass and the loss under ``torch.autocast`` (:func:`autocast`), for
training and evaluation alike: matmuls (the input term of an embedding, every layer above the first, the
output layer, cuDNN's fused RNN kernels on CUDA) compute in 16 bits, while the cross-entropy, the weights,
their gradients and the optimizer state stay float32. The hand-written recurrences of ``engine.models``
keep float32 (``Cell.forward`` hands them float32 input terms; oneDNN's LSTM steps aside under CPU
autocast). ``fp16``'s five exponent bits underflow small gradients, so it needs loss scaling
(:func:`grad_scaler`: ``torch.amp.GradScaler``, CUDA only; the trainer checkpoints its state, so a resume
goes on at the scale it had found); bf16 keeps float32's exponent and needs none.
:func:`check_device` refuses what the device cannot do (fp16 off CUDA, bf16 on a GPU without it, CUDA graphs
off CUDA) with a ``ConfigError`` naming the option. Left out: 16-bit weights (``model.half()``), fp8,
and generation in 16 bits (it is launch-bound; ``engine.graphs`` is what speeds it up).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch

from engine.config import FP16_OFF_CUDA, TrainConfig
from engine.errors import ConfigError

_lock = threading.Lock()
_users = 0
_before = True


@contextmanager
def float32_cudnn(device: torch.device | str) -> Iterator[None]:
    """cuDNN in float32 (no TF32) while inside, when ``device`` is a CUDA device; else nothing."""
    global _users, _before
    if torch.device(device).type != "cuda":
        yield
        return
    with _lock:
        if _users == 0:
            _before = torch.backends.cudnn.allow_tf32
            torch.backends.cudnn.allow_tf32 = False
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                torch.backends.cudnn.allow_tf32 = _before


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # autocast's dtype for each 16-bit precision


def autocast(device: torch.device | str, precision: str, *, cache: bool = True) -> AbstractContextManager[Any]:
    """The context the forward pass and the loss run in: nothing for fp32, else ``torch.autocast`` on the
    device's type with ``precision``'s dtype. ``cache=False`` inside a CUDA graph capture (autocast's cast
    cache would hold tensors from outside the graph's memory pool)."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[precision], cache_enabled=cache)


def check_device(cfg: TrainConfig, device: torch.device) -> None:
    """ConfigError when ``cfg.precision`` or ``cfg.cuda_graphs`` cannot run on ``device`` (the resolved one:
    ``TrainConfig`` itself already refuses fp16 and CUDA graphs on an explicit cpu or mps)."""
    shown = "auto, which is " + device.type if cfg.device == "auto" else device.type
    if cfg.precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision fp16 needs a CUDA GPU (device is {shown}): {FP16_OFF_CUDA}")
    if cfg.precision == "bf16" and device.type not in ("cpu", "cuda"):
        raise ConfigError(f"precision bf16 runs on the CPU or a CUDA GPU, not on {shown}; use --precision fp32")
    if cfg.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16 arithmetic; use "
                          "--precision fp16 or fp32")
    if cfg.cuda_graphs and device.type != "cuda":
        raise ConfigError(f"cuda_graphs needs a CUDA GPU (device is {shown}); leave out --cuda-graphs")


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16's loss scaler (the loss is multiplied by a scale before the backward pass, so small gradients do
    not underflow float16; the step is skipped and the scale halved when a gradient overflows); None otherwise."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
