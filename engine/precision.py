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
comes back when the last one leaves. Left out: other dtypes (bf16/fp16 training).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

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
