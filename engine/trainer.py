"""The trainer: ``train(...)`` is a generator of events (``engine.events``).

It is D2L's ``train_ch8`` loop (8.5.5) with the knobs of the chapter's
exercises: SGD/Adam/AdamW, clipping by norm/value/off, random or sequential
minibatches, detaching the state between sequential minibatches or not, a
held-out validation tail, and a seed that makes the curve reproducible.

The hot loop keeps the loss and gradient-norm sums on the device and syncs
only when it yields a Progress (every ``log_interval_s`` and at each epoch end).
A non-finite gradient norm, or a loss beyond ln(vocab_size) + 20 nats per
token (e^20 times worse than guessing), stops the run with a ``Diverged`` event
naming the first bad step; the weights at the end of the last good epoch are
restored and saved, never the NaN ones. ``detach=False`` (sequential only)
keeps one graph over the whole epoch — one optimizer step per epoch — and is
refused when its estimated memory exceeds ``bptt_limit_mb``.

With ``run`` (``engine.runs.Run``) every event is logged there and checkpoints
are saved; a run that has a checkpoint is resumed from it (step, epoch, best
perplexity, torch RNG; the minibatch order of epoch e depends only on the seed
and e). A run stopped mid-epoch resumes at the start of that epoch with the
weights it had when stopped; its saved figures describe those weights (the
partial epoch's running train perplexity, validation on them). Left out: schedules, early stopping on plateau.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from engine.config import ModelConfig, TrainConfig
from engine.errors import ConfigError, RunError
from engine.events import Checkpoint, Diverged, Event, Finished, Progress, Sample, Spike
from engine.models import RNNLM, build_model, detach_state
from engine.precision import float32_cudnn
from engine.throughput import Throughput
from engine.training import (MEMORY_ADVICE, clip_gradients, evaluate, make_optimizer, out_of_memory, perplexity,
                             prepare_ids, resolve_device, sequence_loss)

__all__ = ["train", "prepare_ids"]


MAX_LOSS = 700.0  # nats per token: beyond ~709 exp() overflows (perplexity inf)
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


def _sync(*values: torch.Tensor) -> list[float]:
    """One device sync for the loop's accumulators."""
    return torch.stack([v.to(torch.float64) for v in values]).tolist()


def _bad(step: int, loss_max: float, norm_sum: float, limit: float) -> tuple[int, float, str]:
    """(first bad step, the bad value, what it was) for a Diverged event."""
    if not loss_max <= limit:
        return step, loss_max, "loss"
    return step, norm_sum, "gradient norm"


def _data_iter(ids: np.ndarray, cfg: TrainConfig, rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    from engine.data import data_iter

    return data_iter(ids, cfg.batch_size, cfg.num_steps, cfg.sampler, rng=rng)


class _Loop:
    """State of one ``train`` call; the generator methods yield events."""

    def __init__(self, data: Any, model_cfg: ModelConfig, cfg: TrainConfig, tokenizer: Any, run: Any,
                 stop: threading.Event | None, model: RNNLM | None) -> None:
        self.cfg, self.run, self.stop = cfg, run, stop
        self.tokenizer = tokenizer if tokenizer is not None else getattr(data, "tokenizer", None)
        self.train_ids, self.val_ids = prepare_ids(data, model_cfg, cfg)
        self.device = resolve_device(cfg.device)
        self.max_loss = loss_limit(model_cfg.vocab_size)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if model is not None and getattr(model, "cfg", model_cfg) != model_cfg:
            raise ConfigError(f"model_cfg must describe the model passed in (got {model_cfg}, model has {model.cfg})")
        torch.manual_seed(cfg.seed)  # the weights' initialisation
        self.model = (model if model is not None else build_model(model_cfg)).to(self.device)
        self.model.train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.model, cfg)
        self.epoch, self.step, self.elapsed_prev = 0, 0, 0.0
        self.best, self.spiking = math.inf, False
        self.train_ppl: float | None = None
        self.val_ppl: float | None = None
        if run is not None and run.has_checkpoint():
            # Resume before recording the new options: config.json must keep describing
            # the checkpoint until the checkpoint has loaded into this configuration.
            self._resume(same_optimizer=run.train_config.optimizer == cfg.optimizer)
        if run is not None and run.train_config != cfg:
            run.save_train_config(cfg)
        self.snapshot = self._take_snapshot()
        self.t0 = _clock()
        self.last_ckpt = self.t0
        self.start_epoch = self.epoch
        self.last_rate = (0.0, 0.0, 0.0)  # (tokens/s, mean grad norm, clipped share) of the latest window
        self.batches_est = max(1, (len(self.train_ids) - 1) // (cfg.batch_size * cfg.num_steps))
        self.meter = Throughput()

    # --- state -------------------------------------------------------------
    def _counters(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "best_ppl": self.best, "spiking": self.spiking,
                "train_ppl": self.train_ppl, "val_ppl": self.val_ppl, "elapsed_s": self.elapsed()}

    def _take_snapshot(self) -> dict[str, Any]:
        return {"model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "counters": self._counters(), "rng": torch.get_rng_state()}

    def _resume(self, same_optimizer: bool) -> None:
        """Continue from the run's checkpoint. A different optimizer (say SGD, then
        Adam) starts with fresh state on the saved weights: its moments can't be
        made from another optimizer's."""
        model_state, opt_state, st, rng = self.run.load_checkpoint()
        try:
            self.model.load_state_dict(model_state)
            if same_optimizer:
                self.optimizer.load_state_dict(opt_state)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise RunError(f"{self.run.path}: the checkpoint does not fit this configuration ({exc}); "
                           "resume with the run's own model options, or start a new run") from None
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.lr  # a resumed run may change the learning rate
        self.epoch, self.step = int(st["epoch"]), int(st["step"])
        self.elapsed_prev = float(st.get("elapsed_s", 0.0))
        self.best = float(st.get("best_ppl") if st.get("best_ppl") is not None else math.inf)
        self.spiking = bool(st.get("spiking", False))
        self.train_ppl, self.val_ppl = st.get("train_ppl"), st.get("val_ppl")
        if rng is not None:
            torch.set_rng_state(rng)
        self.run.truncate_logs(self.step, self.epoch)

    def elapsed(self) -> float:
        return self.elapsed_prev + (_clock() - self.t0) if hasattr(self, "t0") else self.elapsed_prev

    def _emit(self, event: Event) -> Event:
        if self.run is not None and not isinstance(event, Checkpoint):
            self.run.log_event(event)
        return event

    def _save(self, status: str, snap: dict[str, Any] | None = None) -> Iterator[Event]:
        if self.run is None:
            return
        snap = snap or self._take_snapshot()
        state = {**snap["counters"], "status": status, "unstable": self._unstable(snap["counters"]),
                 "epochs": self.cfg.epochs, "device": str(self.device),
                 "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        state = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in state.items()}
        self.run.save_checkpoint(snap["model"], snap["optimizer"], state, snap["rng"])
        self.last_ckpt = _clock()
        ev = Checkpoint(epoch=state["epoch"], step=state["step"], path=str(self.run.path))
        self.run.log_event(ev)
        yield ev

    def _unstable(self, counters: dict[str, Any]) -> bool:
        """Worse than guessing: a uniform guess over the vocabulary scores perplexity vocab_size (D2L 8.4.4);
        saved weights past UNSTABLE_FACTOR times that learned nothing usable, whatever the status says."""
        ppl = counters["val_ppl"] if counters["val_ppl"] is not None else counters["train_ppl"]
        return ppl is not None and not ppl <= UNSTABLE_FACTOR * self.model.cfg.vocab_size

    # --- progress ----------------------------------------------------------
    def _progress(self, loss_sum: float, n_batches: int, tokens_per_s: float, norm: float, clipped: float,
                  frac: float, epoch_end: bool) -> Progress:
        epoch_tokens = self.batches_est * self.cfg.batch_size * self.cfg.num_steps
        tokens_left = (self.cfg.epochs - self.epoch + 1 - frac) * epoch_tokens
        eta = self.meter.eta(tokens_left, _clock() - self.t0)
        return Progress(epoch=self.epoch, step=self.step, train_ppl=perplexity(loss_sum / max(1, n_batches)),
                        val_ppl=self.val_ppl, tokens_per_s=tokens_per_s, grad_norm=norm,
                        lr=self.cfg.lr, elapsed_s=self.elapsed(), eta_s=eta, epochs=self.cfg.epochs,
                        epoch_end=epoch_end, clip_fraction=clipped)

    def _diverged(self, bad_step: int, value: float, what: str) -> Iterator[Event]:
        lr = self.cfg.lr
        hint = stability_hint(self.cfg.clip)
        shown = f"became {value}" if not math.isfinite(value) else f"reached {value:.4g} nats per token"
        yield self._emit(Diverged(
            epoch=self.epoch, step=bad_step, lr=lr, loss=value,
            message=f"{what} {shown} at step {bad_step} (epoch {self.epoch}, lr {lr:g}); {hint}. "
                    f"Kept the weights from the end of epoch {self.snapshot['counters']['epoch']}."))
        self.model.load_state_dict(self.snapshot["model"])
        self.optimizer.load_state_dict(self.snapshot["optimizer"])
        c = self.snapshot["counters"]
        self.epoch, self.step, self.train_ppl, self.val_ppl = c["epoch"], c["step"], c["train_ppl"], c["val_ppl"]
        yield from self._save("diverged", self.snapshot)

    # --- one epoch ---------------------------------------------------------
    def _epoch(self) -> Iterator[Event | tuple[str, float]]:
        """Yield Progress events, then ('ok'|'stopped'|'diverged', value) with the epoch's perplexity."""
        cfg, device = self.cfg, self.device
        rng = np.random.default_rng([cfg.seed, self.epoch])  # minibatch order: a function of (seed, epoch)
        zero = torch.zeros((), device=device)
        loss_sum, norm_sum, loss_max, clip_sum = zero.clone(), zero.clone(), zero.clone(), zero.clone()
        n_ok = torch.zeros((), dtype=torch.long, device=device)
        n_batches, last_batches, last_norm, last_clip, tokens = 0, 0, 0.0, 0.0, 0
        state, t_last, step0 = None, _clock(), self.step
        full_bptt = not cfg.detach
        epoch_loss: torch.Tensor | None = None
        for X, Y in _data_iter(self.train_ids, cfg, rng):
            if self.stop is not None and self.stop.is_set():
                ls, ns, lm, ok = _sync(loss_sum, norm_sum, loss_max, n_ok)
                if not (math.isfinite(ns) and lm <= self.max_loss):  # never save NaN weights, even when stopped
                    yield ("diverged", _bad(step0 + int(ok) + 1, lm, ns, self.max_loss))
                    return
                if self.step > step0:  # the weights moved since the last epoch's figures: describe these
                    self.train_ppl = perplexity(ls / (self.step - step0))  # running, as for a whole epoch
                    if len(self.val_ids):
                        self.val_ppl = evaluate(self.model, self.val_ids, cfg.batch_size, cfg.num_steps, device)
                yield ("stopped", math.nan)
                return
            X = torch.as_tensor(X).to(device, non_blocking=True)
            Y = torch.as_tensor(Y).to(device, non_blocking=True)
            if state is None or cfg.sampler == "random":
                state = self.model.begin_state(X.shape[0], device)  # D2L: fresh state per random minibatch
            elif cfg.detach:
                state = detach_state(state)  # truncated BPTT across sequential minibatches
            logits, state = self.model(X, state)
            loss = sequence_loss(logits, Y)
            n_batches += 1
            tokens += Y.numel()
            if full_bptt:  # one graph over the whole epoch: sum now, step once at the end
                epoch_loss = loss if epoch_loss is None else epoch_loss + loss
                continue
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm, clipped = clip_gradients(self.params, cfg.clip, cfg.clip_theta)
            self.optimizer.step()
            self.step += 1
            loss_sum += loss.detach()
            norm_sum += norm
            clip_sum += clipped
            # NaN/inf stick in the sums and the max, so this counts the steps before the first bad one.
            loss_max = torch.maximum(loss_max, loss.detach())
            n_ok += (loss_max <= self.max_loss) & torch.isfinite(norm_sum)
            now = _clock()
            if now - t_last >= cfg.log_interval_s or (cfg.log_every_steps and self.step % cfg.log_every_steps == 0):
                ls, ns, lm, ok, cs = _sync(loss_sum, norm_sum, loss_max, n_ok, clip_sum)
                if not (math.isfinite(ns) and lm <= self.max_loss):
                    yield ("diverged", _bad(step0 + int(ok) + 1, lm, ns, self.max_loss))
                    return
                k = n_batches - last_batches
                self.last_rate = (self.meter.add(tokens, now - t_last), (ns - last_norm) / k, (cs - last_clip) / k)
                yield self._progress(ls, n_batches, *self.last_rate, min(1.0, n_batches / self.batches_est), False)
                t_last, last_batches, last_norm, last_clip, tokens = _clock(), n_batches, ns, cs, 0
        if n_batches == 0:
            raise ConfigError(f"batch_size {cfg.batch_size} × num_steps {cfg.num_steps} leaves no minibatch in "
                              f"{len(self.train_ids)} training tokens; lower them or raise max_tokens")
        if full_bptt:
            assert epoch_loss is not None
            loss = epoch_loss / n_batches
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm, clipped = clip_gradients(self.params, cfg.clip, cfg.clip_theta)
            self.optimizer.step()
            self.step += 1
            loss_sum, norm_sum, loss_max, last_batches = epoch_loss.detach(), norm.detach(), loss.detach(), n_batches - 1
            clip_sum = clipped.to(zero.dtype)
            n_ok = torch.zeros((), dtype=torch.long, device=device)
        ls, ns, lm, ok, cs = _sync(loss_sum, norm_sum, loss_max, n_ok, clip_sum)
        if not (math.isfinite(ns) and lm <= self.max_loss):
            yield ("diverged", _bad(step0 + int(ok) + 1, lm, ns, self.max_loss))
            return
        self.meter.add(tokens, _clock() - t_last)  # training only, before the validation pass
        rate = self.meter.end_epoch()
        self.train_ppl = perplexity(ls / n_batches)
        if len(self.val_ids):
            self.val_ppl = evaluate(self.model, self.val_ids, cfg.batch_size, cfg.num_steps, device)
        if n_batches > last_batches:
            self.last_rate = (rate, (ns - last_norm) / (n_batches - last_batches), self.last_rate[2])
        steps = self.step - step0  # the epoch's optimizer steps (1 without detaching)
        yield self._progress(ls, n_batches, rate, self.last_rate[1], cs / max(1, steps), 1.0, True)
        yield ("ok", self.train_ppl)

    def _spike(self) -> Iterator[Event]:
        ppl, metric = (self.val_ppl, "validation") if self.val_ppl is not None else (self.train_ppl, "train")
        if ppl is None:
            return
        factor = self.cfg.spike_factor
        if ppl > factor * self.best and not self.spiking:
            yield self._emit(Spike(epoch=self.epoch, val_ppl=ppl, best_val_ppl=self.best, metric=metric))
            self.spiking = True
        elif self.spiking and ppl < (1 + factor) / 2 * self.best:
            self.spiking = False  # re-armed only well below the threshold: no event per wobble around it
        self.best = min(self.best, ppl)

    def _sample(self) -> Iterator[Event]:
        from engine.generate import generate

        if self.tokenizer is None or self.cfg.sample_len == 0:
            return
        prefix, cfg = self.cfg.sample_prefix, self.cfg
        text = "".join(generate(self.model, self.tokenizer, prefix, cfg.sample_len, alpha=cfg.sample_alpha,
                                seed=cfg.seed + self.epoch))
        yield self._emit(Sample(epoch=self.epoch, prefix=prefix, text=prefix + text))

    def run_all(self) -> Iterator[Event]:
        with float32_cudnn(self.device):  # float32 figures on CUDA too (engine.precision)
            cfg, reason = self.cfg, "completed"
            while self.epoch < cfg.epochs:
                self.epoch += 1
                outcome: tuple[str, Any] = ("ok", None)
                for item in self._epoch():
                    if isinstance(item, tuple):
                        outcome = item
                    else:
                        yield self._emit(item)
                if outcome[0] == "stopped":
                    self.epoch -= 1  # resume restarts the interrupted epoch (with the current weights)
                    reason = "stopped"
                    break
                if outcome[0] == "diverged":
                    yield from self._diverged(*outcome[1])
                    yield self._emit(Finished(self.epoch, self.step, self.train_ppl, self.val_ppl, True, "diverged",
                                              self._unstable(self._counters())))
                    return
                yield from self._spike()
                self.snapshot = self._take_snapshot()  # the last good state, for divergence
                last = self.epoch == cfg.epochs
                if cfg.sample_every and (self.epoch % cfg.sample_every == 0 or last):
                    yield from self._sample()
                if not last and _clock() - self.last_ckpt >= cfg.checkpoint_interval_s:
                    yield from self._save("running", self.snapshot)
            yield from self._save(reason)
            stopped_early = reason != "completed"
            yield self._emit(Finished(self.epoch, self.step, self.train_ppl, self.val_ppl, stopped_early, reason,
                                      self._unstable(self._counters())))


def train(data: Any, model_cfg: ModelConfig, train_cfg: TrainConfig, *, tokenizer: Any = None, run: Any = None,
          stop: threading.Event | None = None, model: RNNLM | None = None) -> Iterator[Event]:
    """Train and yield events; the last one is always ``Finished``.

    ``data``: a TextPipeline (its ``ids`` and ``tokenizer``) or a 1-D array of ids
    (then pass ``tokenizer`` for Sample events). ``run``: log and checkpoint
    there, resuming from its checkpoint if it has one. ``stop``: set it to stop
    cleanly (a checkpoint is saved). ``model``: train this model instead of a
    fresh ``build_model(model_cfg)``. Configuration problems raise ConfigError
    before the first event. Running out of memory raises RunError (the run's
    last checkpoint is kept and marked failed); a run that fails before it has
    logged or saved anything is removed.
    """
    if run is not None:
        run.begin_training()
    try:
        loop = _Loop(data, model_cfg, train_cfg, tokenizer, run, stop, model)
    except BaseException as exc:
        error = _failure(run, exc, None)
        if error is None:
            raise
    else:
        return _guarded(loop)
    raise error  # outside the handler: the out-of-memory error's frames (and tensors) are let go


def _guarded(loop: _Loop) -> Iterator[Event]:
    try:
        yield from loop.run_all()
    except BaseException as exc:  # GeneratorExit too: a consumer that gives up before anything was saved
        error = _failure(loop.run, exc, loop)
        if error is None:
            raise
    else:
        return
    raise error


def _failure(run: Any, exc: BaseException, loop: _Loop | None) -> RunError | None:
    """Clean up after ``exc`` ended training; the RunError to raise instead when it is out of memory."""
    error = None
    if out_of_memory(exc):
        at = f" at epoch {loop.epoch}, step {loop.step} on {loop.device}" if loop is not None else ""
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
