"""Data-parallel training over several processes with PyTorch's own engine (``torch.distributed``).

torchrun (or ``rnnlab train --nproc N``, which runs torchrun's launcher itself) starts one process
per rank and tells each its place in the environment: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``. ``World.from_env`` reads them, ``setup``
joins the process group (Gloo for CPU tensors; NCCL for CUDA tensors when torch has it) and
``cleanup`` leaves it. The trainer (``engine.trainer.train(..., world=...)``) does the rest with
these pieces, keeping the chapter's semantics per rank:

* **A contiguous shard per rank** (``shard``): rank ``r`` reads the ``r``-th of ``world_size``
  equal parts of the training ids (the fewer than ``world_size`` tokens left over at the end are
  not read). Sequential partitioning's rows, and the hidden state carried along them, mean in
  each shard what they mean in one process; a sampler that shuffled the whole stream across ranks
  would break that. Each rank's samplers draw from its shard with ``(seed, epoch, rank)``
  (``World.rng_key``).
* **Gradients averaged** by ``DistributedDataParallel``: each rank's loss is the mean over its
  ``batch_size`` rows, so the average of the ranks' gradients is the gradient of the mean over all
  ``batch_size × world_size`` rows, the effective batch, as one process would compute it on the
  ranks' minibatches stacked (``tests/test_distributed.py`` checks it against such a loop). DDP
  broadcasts rank 0's weights when it wraps the model; ``Lockstep.start`` sends the rest of rank
  0's state (optimizer moments, counters, RNG: a resumed checkpoint's) to the others. Then each rank
  but 0 reseeds its torch stream from ``(seed, step, rank)`` (``World.own_stream``), so dropout
  draws different masks on each rank's minibatches rather than the same units everywhere.
* **One decision for all** (``Lockstep``): before every minibatch one all-reduce (MAX) of three
  flags, on the CPU: some rank was asked to stop, some rank's epoch has no minibatch left (the
  shards' random offsets can leave one a minibatch short), some rank's progress window is due.
  So every rank takes the same minibatches, stops at the same step and logs at the same steps.
  At a log the epoch's sums are gathered (``Lockstep.totals``): losses and minibatches added (a
  perplexity over every rank's tokens), the worst loss and the earliest bad step over ranks, so a
  loss that blows up on one rank stops all of them at the same step.

Rank 0 alone writes the run folder (the others train with ``run=None``) and computes validation
on the whole held-out tail, as one process would, so its figures compare across world sizes.
Checkpoints hold the unwrapped model's weights, so a run resumes on any number of ranks and loads
on a CPU-only machine.

Left out: model parallelism, gradient accumulation, elastic membership (a failed rank ends the run;
torchrun's agent stops the others), and saving the streams of ranks other than 0 (a resume reseeds
them from its step instead).
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from engine.config import TrainConfig
from engine.data import min_tokens
from engine.errors import ConfigError, RunError

__all__ = ["World", "setup", "cleanup", "barrier", "broadcast", "shard", "Lockstep"]

_CPU = torch.device("cpu")


def _env_int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = env.get(name)
    if raw is None:
        if default is None:
            raise ConfigError(f"{name} is not set; start rnnlab under torchrun, which sets it")
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number (got {raw!r}); torchrun sets it") from None


@dataclass(frozen=True)
class World:
    """This process's place among the processes that train together (one process: the defaults)."""

    rank: int = 0  # 0 .. size-1; rank 0 writes the run folder
    size: int = 1  # processes training together: the world size
    local_rank: int = 0  # rank among this machine's processes (its GPU index)
    local_size: int = 1  # processes on this machine

    def __post_init__(self) -> None:
        if not (self.size >= 1 and 0 <= self.rank < self.size and 0 <= self.local_rank < max(1, self.local_size)):
            raise ConfigError(f"rank {self.rank} (local {self.local_rank}) does not fit a world of {self.size} "
                              f"processes ({self.local_size} on this machine); torchrun sets RANK, WORLD_SIZE, "
                              "LOCAL_RANK and LOCAL_WORLD_SIZE consistently")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> World | None:
        """The world torchrun describes in the environment; None when not started by torchrun."""
        env = os.environ if env is None else env
        if "WORLD_SIZE" not in env or "RANK" not in env:
            return None
        size = _env_int(env, "WORLD_SIZE")
        return cls(rank=_env_int(env, "RANK"), size=size, local_rank=_env_int(env, "LOCAL_RANK", 0),
                   local_size=_env_int(env, "LOCAL_WORLD_SIZE", size))

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the run folder and reports."""
        return self.rank == 0

    def rng_key(self, *words: int) -> list[int]:
        """The seed of a random stream: ``words`` in one process; with several, the rank appended, so each
        rank draws its own minibatch order from its shard. ``[0, 3]`` → ``[0, 3, 1]`` on rank 1."""
        return list(words) if self.size == 1 else [*words, self.rank]

    def own_stream(self, seed: int, step: int) -> None:
        """Give this rank's torch random stream (dropout's masks) a seed of its own: every rank starts from the
        same seed for the same initial weights, so without this all ranks would drop the same units on their
        different minibatches. Rank 0 keeps the run's stream (the one its checkpoints save); rank r > 0 draws
        from (seed, step, r), so a resumed run gives it new masks, the same ones on every resume from a step."""
        if self.size == 1 or self.is_main:
            return
        torch.manual_seed(int(np.random.SeedSequence(self.rng_key(seed, step)).generate_state(1)[0]))

    def place(self, device: torch.device) -> torch.device:
        """This rank's device: a CUDA device becomes ``cuda:LOCAL_RANK`` (one GPU per process)."""
        if device.type != "cuda" or self.size == 1:
            return device
        count = torch.cuda.device_count()
        if self.local_rank >= count:
            raise ConfigError(f"{self.local_size} processes on this machine need {self.local_size} GPUs, one each, "
                              f"but it has {count}; start fewer (--nproc / --nproc-per-node) or use --device cpu")
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)


def backend() -> str:
    """Gloo for CPU tensors, and NCCL for CUDA tensors where torch has it (one group serves both)."""
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "cpu:gloo,cuda:nccl"
    return "gloo"


def setup(world: World, timeout_s: float | None = None) -> None:
    """Join the process group torchrun's environment describes (MASTER_ADDR, MASTER_PORT); ``timeout_s``:
    how long a collective may wait for the other ranks (torch's default, 30 minutes, when None)."""
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; train with one process (no --nproc)")
    if dist.is_initialized():
        return
    if torch.cuda.is_available() and world.local_rank < torch.cuda.device_count():
        torch.cuda.set_device(world.local_rank)
    kw: dict[str, Any] = {} if timeout_s is None else {"timeout": timedelta(seconds=timeout_s)}
    try:
        dist.init_process_group(backend(), init_method="env://", rank=world.rank, world_size=world.size, **kw)
    except (RuntimeError, ValueError) as exc:
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        raise RunError(f"rank {world.rank} of {world.size} could not join the others at {where} "
                       f"({str(exc).strip().splitlines()[0][:200]}); start every rank with the same torchrun "
                       "--rdzv-endpoint (or --master-addr/--master-port)") from None


def cleanup() -> None:
    """Leave the process group (nothing to do when not in one). DDP wrappers still alive are collected first:
    one destroyed after its group aborts the process at exit (``terminate called without an active exception``)."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (an all-reduce of one CPU number: Gloo, whatever the training device)."""
    dist.all_reduce(torch.zeros(1))


def broadcast(obj: Any, world: World) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; others pass anything, say None)."""
    box = [obj if world.is_main else None]
    dist.broadcast_object_list(box, src=0, device=_CPU)
    return box[0]


def shard(ids: np.ndarray, world: World, cfg: TrainConfig) -> np.ndarray:
    """Rank ``r``'s contiguous part of the training ids: ``ids[r*n:(r+1)*n]`` with ``n = len(ids) // size``.
    (10 ids, 2 ranks: rank 0 reads 0..4, rank 1 5..9; 11 ids: the last is read by nobody.)"""
    n = len(ids) // world.size
    need = min_tokens(cfg.batch_size, cfg.num_steps)
    if n < need:
        raise ConfigError(f"each of the {world.size} processes gets {n} of the {len(ids)} training tokens, but "
                          f"batch_size {cfg.batch_size} with num_steps {cfg.num_steps} needs {need}; start fewer "
                          "processes, lower batch_size or num_steps, or raise max_tokens")
    return ids[world.rank * n : (world.rank + 1) * n]


def _cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it moved to the CPU (an optimizer's state dict, before pickling)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


class Lockstep:
    """Keeps the ranks' decisions equal: one collective per minibatch (stop, epoch over, log due) and one per
    log (the epoch's sums). ``stop`` is the event the trainer checks: set on every rank at the same minibatch
    once any rank's ``asked`` event is set."""

    def __init__(self, world: World, asked: threading.Event | None) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise ConfigError(f"world of {world.size} processes but torch.distributed is not set up; call "
                              "engine.distributed.setup first (rnnlab train does under torchrun)")
        if dist.get_world_size() != world.size or dist.get_rank() != world.rank:
            raise ConfigError(f"the process group has {dist.get_world_size()} ranks (this is {dist.get_rank()}), "
                              f"the world passed in {world.size} (rank {world.rank})")
        self.world, self.asked = world, asked
        self.stop = threading.Event()
        self.due = False  # the progress window of the current minibatch's step is due on some rank

    def start(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: Any,
              device: torch.device) -> tuple[nn.Module, Any]:
        """(the model wrapped in DDP, rank 0's ``state``): DDP broadcasts rank 0's weights; its optimizer
        state and torch RNG are loaded on the others (all of them a resumed checkpoint's on rank 0)."""
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        mine = (state, _cpu(optimizer.state_dict()), torch.get_rng_state()) if self.world.is_main else None
        state, opt_state, rng = broadcast(mine, self.world)
        if not self.world.is_main:
            optimizer.load_state_dict(opt_state)
            torch.set_rng_state(rng)
        return net, state

    def batches(self, batches: Iterable[Any], due: Callable[[], bool]) -> Iterator[Any]:
        """``batches`` while every rank has one; before each, the flags of all ranks are combined (MAX): a stop
        asked on any rank sets ``self.stop`` (the trainer stops at this minibatch), an epoch over on any rank
        ends it on all, ``due()`` on any rank sets ``self.due`` for the step this minibatch ends."""
        it = iter(batches)
        while True:
            batch = next(it, None)
            asked = self.asked is not None and self.asked.is_set()
            flags = torch.tensor([float(asked), float(batch is None), float(due())])
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            stop, over, self.due = (v > 0 for v in flags.tolist())
            if stop:
                self.stop.set()
            if over:
                return
            yield batch

    def totals(self, totals: Any, tokens: int) -> tuple[Any, int]:
        """An epoch's sums over all ranks (``engine.trainer._Totals``) and the tokens read: losses, minibatches and
        tokens added, the worst loss (NaN if any rank's is) and the fewest good steps (the first bad step on any
        rank). The gradient norm and clipping are the same on every rank already (DDP averaged the gradients)."""
        mine = torch.tensor([totals.loss, totals.batches, totals.loss_max, totals.ok, tokens], dtype=torch.float64)
        every = [torch.empty_like(mine) for _ in range(self.world.size)]
        dist.all_gather(every, mine)
        loss, batches, worst, ok, read = zip(*torch.stack(every).tolist())
        worst_loss = float("nan") if any(w != w for w in worst) else max(worst)
        return replace(totals, loss=sum(loss), batches=sum(batches), loss_max=worst_loss, ok=int(min(ok))), int(sum(read))
