"""The trainer: ``train(...)`` is a generator of events (``engine.events``).

It is D2L's ``train_ch8`` loop (8.5.5) with the knobs of the chapter's
exercises: SGD/Adam/AdamW, clipping by norm/value/off, random or sequential
minibatches, regular, random or no truncation of BPTT between sequential
minibatches (``engine.truncation``), a held-out validation tail, and a seed
that makes the curve reproducible.

The hot loop keeps the loss and gradient-norm sums on the device and syncs
only when it yields a Progress (every ``log_interval_s`` and at each epoch end).
A non-finite gradient norm, or a loss beyond ln(vocab_size) + 20 nats per
token (e^20 times worse than guessing), stops the run with a ``Diverged`` event
naming the first bad step; the weights at the end of the last good epoch are
restored and saved, never the NaN ones. ``truncation`` none or random
(sequential only) keep graphs across minibatches — one optimizer step per
kept segment — and are refused when the estimated memory of the longest
exceeds ``bptt_limit_mb``.

With ``run`` (``engine.runs.Run``) every event is logged there and checkpoints
are saved; a run that has a checkpoint is resumed from it (step, epoch, best
perplexity, torch RNG; the minibatch order of epoch e depends only on the seed
and e). A run stopped mid-epoch resumes at the start of that epoch with the
weights it had when stopped; its saved figures describe those weights (the
partial epoch's running train perplexity, validation on them). While it trains a
run, the process holds the run's ``engine.live.Lease`` (a lock and a heartbeat in
live.json): a second trainer of the same folder gets ``RunBusy`` before anything
is touched.

With ``world`` (``engine.distributed.World``) of several processes, each trains on its shard of the
training ids through ``DistributedDataParallel`` and ``engine.distributed.Lockstep`` keeps their stops,
logs and divergence checks at the same steps; rank 0 alone is given the run, resumes it, validates and
samples; its figures are every rank's (``Lockstep.totals``; tokens/s is all ranks' together).

``precision`` bf16 or fp16 runs each minibatch's forward pass and loss, and the validation pass, under
``engine.precision.autocast``; fp16 scales the loss (``torch.amp.GradScaler``), clips the unscaled gradients,
and a step the scaler skips for an overflow counts with gradient norm 0 rather than as divergence.
``cuda_graphs`` replays each minibatch's whole step from a CUDA graph (``engine.graphs.TrainStepGraph``).

The parts: ``_Loop._epoch`` is one pass over the training tokens; it yields
Progress events and returns an ``Outcome`` (ok, stopped, or diverged at a
``BadStep``). ``_Sums`` keeps an epoch's sums on the device and holds the one
finite check; ``_Loop._step`` is the one optimizer step. The counters that are
snapshotted, checkpointed and resumed are one ``TrainState``
(``engine.train_state``); spikes are ``engine.spikes``'s ``SpikeDetector``.

Left out: schedules, early stopping on plateau.
"""

from __future__ import annotations

import copy
import math
import threading
import time
import weakref
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from engine.config import ModelConfig, TrainConfig
from engine.data import batches_per_epoch, train_batches
from engine.distributed import Lockstep, World, shard
from engine.errors import ConfigError, RunError
from engine.events import Checkpoint, Diverged, Event, Finished, Progress, Sample
from engine.live import Lease
from engine.models import RNNLM, build_model, detach_state
from engine.precision import autocast, float32_cudnn, grad_scaler
from engine.spikes import SpikeDetector
from engine.throughput import Throughput
from engine.train_state import TrainState
from engine.training import (MAX_LOSS, MEMORY_ADVICE, clip_gradients, evaluate, make_optimizer,
                             out_of_memory, perplexity, prepare_ids, resolve_device, sequence_loss, weight_decay_of)
from engine.truncation import Cuts

__all__ = ["train", "prepare_ids"]


# A model that guesses uniformly scores ln(vocab_size) nats per token; one that does
# e^20 (≈ 5e8) times worse than guessing has not "spiked", it has diverged.
DIVERGED_EXCESS = 20.0


_clock = time.perf_counter  # the loop's clock (tests replace it to time windows exactly)


# A model that has barely trained sits near perplexity vocab_size (uniform guessing), often a
# little above; one that ends more than twice as perplexed learned something wrong.
UNSTABLE_FACTOR = 2.0


def stability_hint(clip: str) -> str:
    """What to change after a run blew up or ended worse than guessing."""
    return "turn on gradient clipping (clip=norm)" if clip == "off" else "lower the learning rate"


def unstable_message(ppl: float, vocab_size: int, clip: str) -> str:
    """The sentence the CLI and the TUI show for a run that ended unstable."""
    return (f"its perplexity {ppl:.4g} is more than {UNSTABLE_FACTOR:g}× that of guessing uniformly among "
            f"{vocab_size} tokens, so the model learned nothing usable; {stability_hint(clip)}")


def loss_limit(vocab_size: int) -> float:
    """The mean loss per token past which a run counts as diverged."""
    return min(MAX_LOSS, math.log(max(vocab_size, 2)) + DIVERGED_EXCESS)


def unstable(state: TrainState, vocab_size: int) -> bool:
    """Worse than guessing: a uniform guess over the vocabulary scores perplexity vocab_size (D2L 8.4.4);
    weights past UNSTABLE_FACTOR times that learned nothing usable, whatever the run's status says."""
    ppl = state.val_ppl if state.val_ppl is not None else state.train_ppl
    return ppl is not None and not ppl <= UNSTABLE_FACTOR * vocab_size


@dataclass(frozen=True)
class BadStep:
    """The first optimizer step whose loss or gradient norm blew up."""

    step: int
    value: float  # the bad loss (nats per token) or gradient norm
    what: str  # "loss" | "gradient norm"


@dataclass(frozen=True)
class Outcome:
    """How an epoch ended: every minibatch done (the default), ``stopped`` by the caller, or diverged at ``bad``."""

    stopped: bool = False
    bad: BadStep | None = None


@dataclass(frozen=True)
class _Totals:
    """An epoch's sums so far, read off the device."""

    loss: float  # sum of the minibatches' mean losses
    batches: float  # minibatches in that sum (padded ones: their share of real targets)
    norm: float  # sum of the gradient norms before clipping
    loss_max: float  # the largest minibatch loss
    ok: int  # optimizer steps before the first bad one
    clipped: float  # optimizer steps whose clipping changed the gradient


class _Sums:
    """An epoch's running sums, kept on the device so the hot loop never waits for it."""

    def __init__(self, device: torch.device, max_loss: float) -> None:
        zero = torch.zeros((), device=device)
        self.loss, self.norm, self.loss_max, self.clipped = zero.clone(), zero.clone(), zero.clone(), zero.clone()
        self.ok = torch.zeros((), dtype=torch.long, device=device)
        self.batches: float = 0  # minibatches whose loss is in the sums (padded ones: their share of real targets)
        self.max_loss = max_loss

    def add(self, loss: torch.Tensor, norm: torch.Tensor, clipped: torch.Tensor, batches: float,
            mean: torch.Tensor) -> None:
        """One optimizer step: the (detached) summed loss of its ``batches`` minibatches and their ``mean``
        loss, its gradient norm and whether clipping changed it."""
        self.loss += loss
        self.norm += norm
        self.clipped += clipped
        self.batches += batches
        # NaN/inf stick in the sums and the max, so this counts the steps before the first bad one.
        self.loss_max = torch.maximum(self.loss_max, mean)
        self.ok += (self.loss_max <= self.max_loss) & torch.isfinite(self.norm)

    def read(self) -> _Totals:
        """The sums, in one device sync."""
        ls, ns, lm, ok, cs = torch.stack([v.to(torch.float64) for v in (self.loss, self.norm, self.loss_max,
                                                                         self.ok, self.clipped)]).tolist()
        return _Totals(ls, self.batches, ns, lm, int(ok), cs)

    def bad_step(self, totals: _Totals, first_step: int) -> BadStep | None:
        """The finite check: None while every gradient norm is finite and no loss is past the limit; else the
        first bad step (``first_step`` is the epoch's first) and its bad value."""
        if math.isfinite(totals.norm) and totals.loss_max <= self.max_loss:
            return None
        if not totals.loss_max <= self.max_loss:
            return BadStep(first_step + totals.ok, totals.loss_max, "loss")
        return BadStep(first_step + totals.ok, totals.norm, "gradient norm")


@dataclass
class _Window:
    """Where the current Progress window began: its clock, step count and sums; tokens trained in it."""

    t: float
    step: int  # the optimizer's step count when it began
    norm: float = 0.0
    clipped: float = 0.0
    tokens: int = 0


@dataclass(frozen=True)
class _Snapshot:
    """A copy of the training state (the last good epoch's, or the one being saved)."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    state: TrainState
    rng: torch.Tensor
    scaler: dict[str, Any] | None = None  # fp16's loss scaler (its scale and growth count); None without one


class _Loop:
    """One ``train`` call: the model, its optimizer and the live TrainState; ``run_all`` yields the events."""

    def __init__(self, data: Any, model_cfg: ModelConfig, cfg: TrainConfig, tokenizer: Any, run: Any,
                 stop: threading.Event | None, model: RNNLM | None, world: World) -> None:
        if cfg.world_size != world.size:
            cfg = replace(cfg, world_size=world.size)  # recorded: the effective batch is batch_size × world_size
        self.cfg, self.run, self.stop, self.world = cfg, run, stop, world
        self.tokenizer = tokenizer if tokenizer is not None else getattr(data, "tokenizer", None)
        self.train_ids, self.val_ids = prepare_ids(data, model_cfg, cfg)
        self.lockstep = Lockstep(world, stop) if world.size > 1 else None
        if self.lockstep is not None:
            self.stop = self.lockstep.stop  # set on every rank at the same minibatch
            self.train_ids = shard(self.train_ids, world, cfg)
            if not world.is_main:  # rank 0 validates and samples
                self.val_ids, self.tokenizer = self.val_ids[:0], None
        self.device = world.place(resolve_device(cfg.device))
        self.max_loss = loss_limit(model_cfg.vocab_size)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if model is not None and model.cfg != model_cfg:
            raise ConfigError(f"model_cfg must describe the model passed in (got {model_cfg}, model has {model.cfg})")
        torch.manual_seed(cfg.seed)  # the weights' initialisation
        self.model = (model if model is not None else build_model(model_cfg)).to(self.device)
        self.model.train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.model, cfg)
        self.scaler = grad_scaler(cfg.precision, self.device)  # fp16's loss scaling (engine.precision); else None
        self.state = TrainState()
        self.spikes = SpikeDetector(cfg.spike_factor)
        if run is not None and run.has_checkpoint():
            # Resume before recording the new options: config.json must keep describing
            # the checkpoint until the checkpoint has loaded into this configuration.
            self._resume(same_optimizer=run.train_config.optimizer == cfg.optimizer)
        if run is not None and run.train_config != cfg:
            run.save_train_config(cfg)
        self.net: torch.nn.Module = self.model  # what the minibatches go through: DDP's wrapper with several ranks
        if self.lockstep is not None:
            self.net, self.state = self.lockstep.start(self.model, self.optimizer, self.state, self.device)
            world.own_stream(cfg.seed, self.state.step)  # dropout: each rank its own masks
        self.graph = None  # cuda_graphs: the whole step, captured at the first minibatch and replayed after
        if cfg.cuda_graphs:
            from engine.graphs import TrainStepGraph

            self.graph = TrainStepGraph(self.model, self.optimizer, self.params, cfg, self.device)
        self.elapsed_before, self.t0 = self.state.elapsed_s, _clock()  # earlier sessions' time; this one's start
        self.snapshot = self._take_snapshot()
        self.last_ckpt = self.t0
        self.last_rate = (0.0, 0.0, 0.0)  # (tokens/s, mean grad norm, clipped share) of the latest window
        self.batches_est = batches_per_epoch(len(self.train_ids), cfg.batch_size, cfg.num_steps, cfg.sampler,
                                             stride=cfg.stride, ids=self.train_ids,
                                             sentence_end_ids=cfg.sentence_end_ids)
        self.meter = Throughput()

    # --- state -------------------------------------------------------------
    def elapsed(self) -> float:
        """Wall time trained, including earlier sessions of a resumed run."""
        return self.elapsed_before + (_clock() - self.t0)

    def _take_snapshot(self) -> _Snapshot:
        return _Snapshot(model={k: v.detach().clone() for k, v in self.model.state_dict().items()},
                         optimizer=copy.deepcopy(self.optimizer.state_dict()),
                         state=replace(self.state, elapsed_s=self.elapsed()), rng=torch.get_rng_state(),
                         scaler=self.scaler.state_dict() if self.scaler is not None else None)

    def _resume(self, same_optimizer: bool) -> None:
        """Continue from the run's checkpoint. A different optimizer (say SGD, then
        Adam) starts with fresh state on the saved weights: its moments can't be
        made from another optimizer's."""
        model_state, opt_state, doc, rng = self.run.load_checkpoint()
        try:
            self.model.load_state_dict(model_state)
            if same_optimizer:
                self.optimizer.load_state_dict(opt_state)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise RunError(f"{self.run.path}: the checkpoint does not fit this configuration ({exc}); "
                           "resume with the run's own model options, or start a new run") from None
        for group in self.optimizer.param_groups:  # a resumed run may change the learning rate and weight decay
            group["lr"], group["weight_decay"] = self.cfg.lr, weight_decay_of(self.cfg)
        self.state = TrainState.from_json(doc)
        if rng is not None:
            torch.set_rng_state(rng)
        if self.scaler is not None and isinstance(doc.get("grad_scaler"), dict):
            # fp16 goes on at the scale it had learned, not at the first step's 2^16 (a run of skipped steps)
            self.scaler.load_state_dict(doc["grad_scaler"])
        self.run.truncate_logs(self.state.step, self.state.epoch)

    def _emit(self, event: Event) -> Event:
        if self.run is not None and not isinstance(event, Checkpoint):
            self.run.log_event(event)
        return event

    def _save(self, status: str, snap: _Snapshot | None = None) -> Iterator[Event]:
        if self.run is None:
            return
        snap = snap or self._take_snapshot()
        doc = {**snap.state.to_json(), "status": status, "unstable": unstable(snap.state, self.model.cfg.vocab_size),
               "epochs": self.cfg.epochs, "device": str(self.device), "world_size": self.world.size,
               "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if snap.scaler is not None:
            doc["grad_scaler"] = snap.scaler
        self.run.save_checkpoint(snap.model, snap.optimizer, doc, snap.rng)
        self.last_ckpt = _clock()
        ev = Checkpoint(epoch=snap.state.epoch, step=snap.state.step, path=str(self.run.path))
        self.run.log_event(ev)
        yield ev

    def _finished(self, reason: str) -> Finished:
        st = self.state
        return Finished(st.epoch, st.step, st.train_ppl, st.val_ppl, reason != "completed", reason,
                        unstable(st, self.model.cfg.vocab_size))

    # --- one epoch ---------------------------------------------------------
    def _step(self, loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on ``loss``: (gradient norm before clipping, whether clipping changed it)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            norm, clipped = clip_gradients(self.params, self.cfg.clip, self.cfg.clip_theta)
            self.optimizer.step()
        else:  # fp16: backward on the scaled loss, clipping on the unscaled gradients, a step the scaler may skip
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            norm, clipped = clip_gradients(self.params, self.cfg.clip, self.cfg.clip_theta)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            # A gradient that overflowed float16 makes the scaler skip the step and halve its scale: no
            # divergence, so it counts with norm 0 (a loss past the limit still ends the run).
            norm = torch.where(torch.isfinite(norm), norm, torch.zeros_like(norm))
        self.state.step += 1
        return norm, clipped

    def _step_segment(self, sums: _Sums, segment: torch.Tensor, n: int, reported: torch.Tensor,
                      weight: float) -> None:
        """The optimizer step at a cut, on the ``n`` minibatches since the previous one (``engine.truncation``):
        their mean loss under ``none`` (one graph over the epoch), their summed loss otherwise (``regular``: n = 1).
        The sums get the minibatches' ``reported`` loss (``weight`` minibatches' worth of real targets) and the
        one step's gradient norm."""
        loss = segment / n if self.cfg.truncation == "none" else segment
        sums.add(reported.detach(), *self._step(loss), batches=weight, mean=segment.detach() / n)

    def _progress(self, loss_sum: float, n_batches: float, tokens_per_s: float, norm: float, clipped: float,
                  frac: float, epoch_end: bool) -> Progress:
        """A Progress for the sums so far: ``n_batches`` minibatches' worth of loss (fractional for padded
        ones; more than 0, since progress follows an optimizer step)."""
        st, cfg = self.state, self.cfg
        epoch_tokens = self.batches_est * cfg.batch_size * cfg.num_steps * self.world.size  # all ranks'
        tokens_left = (cfg.epochs - st.epoch + 1 - frac) * epoch_tokens
        eta = self.meter.eta(tokens_left, _clock() - self.t0)
        return Progress(epoch=st.epoch, step=st.step, train_ppl=perplexity(loss_sum / n_batches),
                        val_ppl=st.val_ppl, tokens_per_s=tokens_per_s, grad_norm=norm,
                        lr=cfg.lr, elapsed_s=self.elapsed(), eta_s=eta, epochs=cfg.epochs,
                        epoch_end=epoch_end, clip_fraction=clipped)

    def _read(self, sums: _Sums, tokens: int = 0) -> tuple[_Totals, int]:
        """The epoch's sums and the ``tokens`` of a window; with several ranks, all ranks' (``Lockstep.totals``)."""
        totals = sums.read()
        return (totals, tokens) if self.lockstep is None else self.lockstep.totals(totals, tokens)

    def _stopped(self, sums: _Sums, step0: int) -> Outcome:
        """The caller stopped mid-epoch: "stopped", with figures of the weights as they are now."""
        totals, _ = self._read(sums)
        bad = sums.bad_step(totals, step0 + 1)
        if bad is not None:  # never save NaN weights, even when stopped
            return Outcome(bad=bad)
        if self.state.step > step0:  # the weights moved since the last epoch's figures: describe these
            self.state.train_ppl = perplexity(totals.loss / totals.batches)  # running, as for a whole epoch
            if len(self.val_ids):
                self.state.val_ppl = evaluate(self.model, self.val_ids, self.cfg.batch_size, self.cfg.num_steps,
                                              self.device, self.cfg.precision)
        return Outcome(stopped=True)

    def _epoch(self) -> Generator[Event, None, Outcome]:
        """One pass over the training tokens: yields Progress events, returns how the epoch ended."""
        cfg, device = self.cfg, self.device
        # minibatch order: a function of (seed, epoch), and of the rank with several
        rng = np.random.default_rng(self.world.rng_key(cfg.seed, self.state.epoch))
        sums, win = _Sums(device, self.max_loss), _Window(_clock(), self.state.step)
        n_batches, state, step0 = 0, None, self.state.step
        cuts = Cuts(cfg, self.state.epoch)
        # The summed losses of the minibatches since the last cut, and the same each weighted by its share of
        # real (unpadded) targets; None right after a cut.
        segment: torch.Tensor | None
        reported: torch.Tensor | None
        segment = reported = None
        seg_batches, seg_weight = 0, 0.0
        batches = train_batches(self.train_ids, cfg, rng)
        if self.lockstep is not None:  # every rank takes the same minibatches, stops and logs at the same steps
            batches = self.lockstep.batches(batches, lambda: _clock() - win.t >= cfg.log_interval_s)
        for X, Y in batches:
            if self.stop is not None and self.stop.is_set():
                return self._stopped(sums, step0)
            X = torch.as_tensor(X).to(device, non_blocking=True)
            Y = torch.as_tensor(Y).to(device, non_blocking=True)
            if state is None or not cfg.carries_state:
                state = self.model.begin_state(X.shape[0], device)  # D2L: fresh state per random minibatch
            elif segment is None:
                state = detach_state(state)  # the graph was cut after the previous minibatch (truncated BPTT)
            else:
                state = cuts.carry(state)  # the graph goes on across this boundary
            if self.graph is not None:  # the step replayed (engine.graphs): full minibatches, cut at each
                loss, norm, clipped, state = self.graph(X, Y, state)
                self.state.step += 1
                sums.add(loss, norm, clipped, batches=1, mean=loss)
                n_batches += 1
                win.tokens += Y.numel()
            else:
                with autocast(device, cfg.precision):  # fp32: nothing; bf16/fp16: engine.precision
                    logits, state = self.net(X, state)
                    loss = sequence_loss(logits, Y)
                n_batches += 1
                real = int((Y >= 0).sum()) if cfg.pads else Y.numel()  # padding targets are -100
                win.tokens += real
                # Perplexity is over real targets: a padded minibatch's mean loss counts for its real targets, in
                # units of a full minibatch's (a constant, so minibatches of fewer rows weigh right too).
                full = cfg.batch_size * cfg.num_steps
                weighted, weight = (loss * (real / full), real / full) if cfg.pads else (loss, 1)
                if segment is None:
                    segment, reported, seg_batches, seg_weight = loss, weighted, 1, weight
                else:
                    segment, reported = segment + loss, reported + weighted
                    seg_batches, seg_weight = seg_batches + 1, seg_weight + weight
                if not cuts.cut():
                    continue
                self._step_segment(sums, segment, seg_batches, reported, seg_weight)
                segment = None
            now = _clock()
            every = cfg.log_every_steps
            due = self.lockstep.due if self.lockstep is not None else now - win.t >= cfg.log_interval_s
            if due or (every and self.state.step % every == 0):
                totals, tokens = self._read(sums, win.tokens)
                bad = sums.bad_step(totals, step0 + 1)
                if bad is not None:
                    return Outcome(bad=bad)
                k = self.state.step - win.step  # steps in the window (one per minibatch, but for truncation)
                self.last_rate = (self.meter.add(tokens, now - win.t), (totals.norm - win.norm) / k,
                                  (totals.clipped - win.clipped) / k)
                yield self._emit(self._progress(totals.loss, totals.batches, *self.last_rate,
                                                min(1.0, n_batches / self.batches_est), False))
                win = _Window(_clock(), self.state.step, totals.norm, totals.clipped)
        if n_batches == 0:
            raise ConfigError(f"batch_size {cfg.batch_size} × num_steps {cfg.num_steps} leaves no minibatch in "
                              f"{len(self.train_ids)} training tokens; lower them or raise max_tokens")
        if segment is not None:  # the epoch's end cuts what is left
            self._step_segment(sums, segment, seg_batches, reported, seg_weight)
        totals, tokens = self._read(sums, win.tokens)
        bad = sums.bad_step(totals, step0 + 1)
        if bad is not None:
            return Outcome(bad=bad)
        self.meter.add(tokens, _clock() - win.t)  # training only, before the validation pass
        rate = self.meter.end_epoch()
        self.state.train_ppl = perplexity(totals.loss / totals.batches)
        if len(self.val_ids):
            self.state.val_ppl = evaluate(self.model, self.val_ids, cfg.batch_size, cfg.num_steps, device,
                                          cfg.precision)
        if self.state.step > win.step:
            self.last_rate = (rate, (totals.norm - win.norm) / (self.state.step - win.step), self.last_rate[2])
        steps = self.state.step - step0  # the epoch's optimizer steps (fewer than minibatches but for regular)
        yield self._emit(self._progress(totals.loss, totals.batches, rate, self.last_rate[1],
                                        totals.clipped / max(1, steps), 1.0, True))
        return Outcome()

    # --- between epochs ----------------------------------------------------
    def _diverged(self, bad: BadStep) -> Iterator[Event]:
        """Report the blow-up, put the last good epoch's weights and counters back, and save them."""
        lr, epoch, hint = self.cfg.lr, self.state.epoch, stability_hint(self.cfg.clip)
        shown = f"became {bad.value}" if not math.isfinite(bad.value) else f"reached {bad.value:.4g} nats per token"
        yield self._emit(Diverged(
            epoch=epoch, step=bad.step, lr=lr, loss=bad.value,
            message=f"{bad.what} {shown} at step {bad.step} (epoch {epoch}, lr {lr:g}); {hint}. "
                    f"Kept the weights from the end of epoch {self.snapshot.state.epoch}."))
        self.model.load_state_dict(self.snapshot.model)
        self.optimizer.load_state_dict(self.snapshot.optimizer)
        if self.scaler is not None and self.snapshot.scaler is not None:
            self.scaler.load_state_dict(self.snapshot.scaler)
        self.state = replace(self.snapshot.state)
        yield from self._save("diverged", self.snapshot)

    def _sample(self) -> Iterator[Event]:
        from engine.generate import generate

        if self.tokenizer is None or self.cfg.sample_len == 0:
            return
        prefix, cfg = self.cfg.sample_prefix, self.cfg
        text = "".join(generate(self.model, self.tokenizer, prefix, cfg.sample_len, alpha=cfg.sample_alpha,
                                seed=cfg.seed + self.state.epoch))
        yield self._emit(Sample(epoch=self.state.epoch, prefix=prefix, text=prefix + text))

    def run_all(self) -> Iterator[Event]:
        with float32_cudnn(self.device):  # float32 figures on CUDA too (engine.precision)
            cfg, reason = self.cfg, "completed"
            while self.state.epoch < cfg.epochs:
                self.state.epoch += 1
                outcome = yield from self._epoch()
                if outcome.stopped:
                    self.state.epoch -= 1  # resume restarts the interrupted epoch (with the current weights)
                    reason = "stopped"
                    break
                if outcome.bad is not None:
                    yield from self._diverged(outcome.bad)
                    yield self._emit(self._finished("diverged"))
                    return
                spike = self.spikes.update(self.state)
                if spike is not None:
                    yield self._emit(spike)
                self.snapshot = self._take_snapshot()  # the last good state, for divergence
                last = self.state.epoch == cfg.epochs
                if cfg.sample_every and (self.state.epoch % cfg.sample_every == 0 or last):
                    yield from self._sample()
                if not last and _clock() - self.last_ckpt >= cfg.checkpoint_interval_s:
                    yield from self._save("running", self.snapshot)
            yield from self._save(reason)
            yield self._emit(self._finished(reason))


def train(data: Any, model_cfg: ModelConfig, train_cfg: TrainConfig, *, tokenizer: Any = None, run: Any = None,
          stop: threading.Event | None = None, model: RNNLM | None = None,
          world: World | None = None) -> Iterator[Event]:
    """Train and yield events; the last one is always ``Finished``.

    ``data``: a TextPipeline (its ``ids`` and ``tokenizer``) or a 1-D array of ids
    (then pass ``tokenizer`` for Sample events). ``run``: log and checkpoint
    there, resuming from its checkpoint if it has one. ``stop``: set it to stop
    cleanly (a checkpoint is saved). ``model``: train this model instead of a
    fresh ``build_model(model_cfg)``. ``world``: this process's place among several that train together
    (``engine.distributed``; the process group set up): only rank 0 may be given ``run``, and every
    rank must be given the same data and configs. Configuration problems raise ConfigError
    before the first event. Running out of memory raises RunError (the run's
    last checkpoint is kept and marked failed); a run that fails before it has
    logged or saved anything is removed.
    """
    world = world or World()
    if run is not None and not world.is_main:
        raise ConfigError(f"rank {world.rank} was given the run {run.path}; only rank 0 writes it (pass run=None)")
    lease = Lease(run.path) if run is not None else None
    if lease is not None:
        lease.acquire()  # RunBusy when another process trains this run: before anything is touched
    try:
        if run is not None:
            run.begin_training()
        try:
            loop = _Loop(data, model_cfg, train_cfg, tokenizer, run, stop, model, world)
        except BaseException as exc:
            error = _failure(run, exc, None)
            if error is None:
                raise
        else:
            if lease is not None:  # readers show where it trains before its first checkpoint says so
                lease.note(device=str(loop.device))
            events = _guarded(loop, lease)
            if lease is not None:  # a generator dropped before its first step never runs its finally
                weakref.finalize(events, lease.release)
            return events
    except BaseException:
        if lease is not None:
            lease.release()
        raise
    if lease is not None:
        lease.release()
    raise error  # outside the handler: the out-of-memory error's frames (and tensors) are let go


def _guarded(loop: _Loop, lease: Lease | None) -> Iterator[Event]:
    try:
        try:
            yield from loop.run_all()
        except BaseException as exc:  # GeneratorExit too: a consumer that gives up before anything was saved
            error = _failure(loop.run, exc, loop)
            if error is None:
                raise
        else:
            return
        raise error
    finally:
        if lease is not None:
            lease.release()


def _failure(run: Any, exc: BaseException, loop: _Loop | None) -> RunError | None:
    """Clean up after ``exc`` ended training; the RunError to raise instead when it is out of memory."""
    error = None
    if out_of_memory(exc):
        at = f" at epoch {loop.state.epoch}, step {loop.state.step} on {loop.device}" if loop is not None else ""
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        reason = f"out of memory{at} ({detail})"
        kept = "nothing was saved"
        if run is not None and run.mark_failed(reason):
            st = run.trainer_state() or {}
            kept = f"the last checkpoint (epoch {st.get('epoch')}, step {st.get('step')}) is kept"
        error = RunError(f"{reason}; {kept}; {MEMORY_ADVICE}")
    if run is not None and not isinstance(exc, ConfigError):  # a bad option on resume removes nothing
        run.discard_if_unused()
    return error
