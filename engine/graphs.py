"""CUDA graphs: the trainer's whole step and generation's per-token step, captured once and replayed.

D2L's minibatch (32 × 35, vocabulary 28) is too small to keep a GPU busy: each of a step's few hundred
kernels finishes before Python has launched the next, so the card waits on the CPU. A CUDA graph records
the kernels of one step once and replays them all with a single launch. It replays *the same kernels on
the same memory*, so everything a step reads or writes must sit in tensors that outlive the capture:

* **training** (:class:`TrainStepGraph`, ``TrainConfig.cuda_graphs``): the minibatch ``X``, ``Y`` and the
  state it starts from are copied into static tensors; the graph runs the forward pass and the loss (under
  the run's autocast: ``engine.precision``), the backward pass, clipping and the optimizer step, and leaves
  the loss, the gradient norm, whether clipping changed it and the final state in static outputs. Shapes
  must not change, so ``TrainConfig`` allows it only for the samplers whose minibatches are all
  batch_size × num_steps (random, sequential, fixed) with one optimizer step per minibatch (truncation
  regular), on one process, and not with fp16 (its loss scaler decides on the CPU whether to step).
* **generation** (:class:`GraphedStepper`): one ``engine.stepper.Stepper`` step for batch 1 — the token
  and the per-layer state copied in, the logits and the new state out.

Before capturing, the step runs three times on a side stream (cuDNN and the allocator settle, Adam creates
its state); those warm-up steps change the weights, the optimizer state and the RNG, so all three are
copied before and put back after, in place (the graph records addresses). So the first replayed step is
the eager trainer's first step, and on a seed without dropout the replayed run is the eager run: the
eager path stays the reference (``bench/gpu_issue14.sh`` compares the two). With dropout the graph draws
its random numbers from its own Philox offsets, so the masks differ from eager's.

Why ``torch.cuda.graph`` by hand rather than ``torch.compile(mode="reduce-overhead")``: it replays
exactly the kernels the eager step launches (no generated Triton code, so the numbers are eager's), the
whole step — clipping and the optimizer included — is one graph, there is no compile time (an unrolled
35-step Python loop over time compiles for minutes) and no Triton toolchain to install, and nothing is
recompiled when a shape changes: the shape is fixed by the options instead.

``capture`` (the default :func:`capture_cuda`) is a parameter so that a test can replay by calling the
step again: the copying in and out, the warm-up's undoing and the trainer's use of the outputs are then
checked on the CPU against the eager loop. Nothing here runs unless ``cuda_graphs`` is on, which
``engine.precision.check_device`` allows only on CUDA. Left out: several processes (DDP's bucketed
all-reduce in a graph), variable shapes (a graph per shape), and fp16 loss scaling inside the graph.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from engine.config import TrainConfig
from engine.errors import RunError
from engine.models import RNNLM, State, detach_state
from engine.precision import autocast
from engine.stepper import Stepper
from engine.training import clip_gradients, sequence_loss

WARMUP = 3  # eager runs on a side stream before capture (PyTorch's documented recipe)

Step = Callable[[], Any]  # the captured work: reads and writes only tensors that outlive it
# capture(step, restore) -> replay: warm up, call restore() to undo the warm-up, capture; replay() runs the step
# once more and returns its outputs
Capture = Callable[[Step, Callable[[], None]], Callable[[], Any]]


def capture_cuda(step: Step, restore: Callable[[], None]) -> Callable[[], Any]:
    """PyTorch's recipe: warm ``step`` up on a side stream, ``restore()``, capture it into a ``CUDAGraph``;
    the returned replay launches the graph and returns the outputs the capture produced (static tensors,
    overwritten by every replay)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(WARMUP):
            step()
    torch.cuda.current_stream().wait_stream(side)
    restore()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = step()

    def replay() -> Any:
        graph.replay()
        return outputs

    replay.graph = graph  # type: ignore[attr-defined]  # kept alive with the replay
    return replay


def _captured(capture: Capture, step: Step, restore: Callable[[], None], what: str) -> Callable[[], Any]:
    """``capture(step, restore)``; a failure to capture (an op that syncs with the CPU, a kernel a graph cannot
    hold) is a RunError naming the option. Running out of memory stays what it is (the trainer reports it)."""
    try:
        return capture(step, restore)
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise RunError(f"cuda_graphs: {what} could not be captured as a CUDA graph ({detail}); "
                       "leave out --cuda-graphs") from exc


def _tensors(state: Any) -> list[torch.Tensor]:
    """The tensors of a state: a tensor, a tuple of them (LSTM) or a per-layer list of either."""
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for s in state for t in _tensors(s)]


def _clone(state: Any) -> Any:
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    return type(state)(_clone(s) for s in state)


def _copy_into(static: Any, state: Any) -> None:
    for dst, src in zip(_tensors(static), _tensors(state)):
        if dst is not src:
            dst.copy_(src)


class _Undo:
    """A copy of what warm-up steps change — weights, optimizer state, the device's RNG — put back in place."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                 device: torch.device) -> None:
        self.model, self.optimizer, self.device = model, optimizer, device
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.opt: dict[Any, dict[str, Any]] = {}
        if optimizer is not None:
            self.opt = {p: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in st.items()}
                        for p, st in optimizer.state.items()}
        self.rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()

    def __call__(self) -> None:
        with torch.no_grad():
            self.model.load_state_dict(self.weights)  # copies into the same tensors
            if self.optimizer is not None:
                for p, st in self.optimizer.state.items():
                    saved = self.opt.get(p, {})
                    for k, v in st.items():
                        if isinstance(v, torch.Tensor):
                            # state the warm-up created (a fresh Adam's moments and step) starts at zero, as the
                            # optimizer's own first step would create it
                            v.copy_(saved[k]) if k in saved else v.zero_()
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(self.rng, self.device)
        else:
            torch.set_rng_state(self.rng)


class TrainStepGraph:
    """``loss, norm, clipped, state = graph(X, Y, state)``: one optimizer step on the minibatch, replayed.

    ``loss`` is the minibatch's mean cross-entropy (detached), ``norm`` the gradient norm before clipping,
    ``clipped`` whether clipping changed the gradient, ``state`` the final state (detached: truncation
    regular). The first call captures the graph on that minibatch (and then takes its step)."""

    def __init__(self, model: RNNLM, optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter],
                 cfg: TrainConfig, device: torch.device, capture: Capture | None = None) -> None:
        self.model, self.optimizer, self.params, self.cfg, self.device = model, optimizer, params, cfg, device
        self.capture = capture or capture_cuda
        self._replay: Callable[[], Any] | None = None
        self.X = self.Y = torch.empty(0)
        self.state: Any = None

    def _step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, State]:
        """The eager trainer's step on the static tensors (``engine.trainer._Loop._step``)."""
        self.optimizer.zero_grad(set_to_none=True)  # at capture: the backward allocates the gradients it replays
        with autocast(self.device, self.cfg.precision, cache=False):
            logits, state = self.model(self.X, self.state)
            loss = sequence_loss(logits, self.Y)
        loss.backward()
        norm, clipped = clip_gradients(self.params, self.cfg.clip, self.cfg.clip_theta)
        self.optimizer.step()
        return loss.detach(), norm, clipped, detach_state(state)

    def __call__(self, X: torch.Tensor, Y: torch.Tensor,
                 state: State) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, State]:
        if self._replay is None:
            self.X, self.Y, self.state = X.clone(), Y.clone(), _clone(state)
            self._replay = _captured(self.capture, self._step, _Undo(self.model, self.optimizer, self.device),
                                     "the training step")
        elif X.shape != self.X.shape or Y.shape != self.Y.shape:
            raise RunError(f"cuda_graphs: a minibatch of shape {tuple(X.shape)} after the captured "
                           f"{tuple(self.X.shape)}; train without --cuda-graphs")
        self.X.copy_(X)
        self.Y.copy_(Y)
        _copy_into(self.state, state)
        return self._replay()  # type: ignore[no-any-return]


class GraphedStepper:
    """A :class:`engine.stepper.Stepper` whose per-token step (batch 1) is replayed from a CUDA graph: the
    same call, ``logits, state = step(x, state)``. The returned logits and state are overwritten by the next
    call (read them first, as ``engine.generate`` does). Capture happens on the first call."""

    def __init__(self, stepper: Stepper, device: torch.device, capture: Capture | None = None) -> None:
        self.stepper, self.device = stepper, device
        self.capture = capture or capture_cuda
        self._replay: Callable[[], Any] | None = None
        self.x = torch.empty(0)
        self.state: Any = None

    def _step(self) -> tuple[torch.Tensor, list[Any]]:
        return self.stepper(self.x, self.state)

    def __call__(self, x: torch.Tensor, state: list[Any]) -> tuple[torch.Tensor, list[Any]]:
        if self._replay is None:
            self.x, self.state = x.clone(), _clone(state)
            # a step changes nothing but its outputs: nothing to undo after the warm-up
            self._replay = _captured(self.capture, self._step, lambda: None, "the per-token step")
        self.x.copy_(x)
        _copy_into(self.state, state)
        return self._replay()  # type: ignore[no-any-return]

    def load(self, state: State) -> list[Any]:
        return self.stepper.load(state)

    def export(self, state: list[Any]) -> State:
        return self.stepper.export(_clone(state))
