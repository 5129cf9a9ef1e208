"""Exact values of what the trainer and its building blocks tell the user (issue 9's mutation score).

Each expected value is worked out by hand here, never read back from the code under test:

- the messages a user reads: ``unstable_message``, the ``Diverged`` message for a loss and for a
  gradient-norm blow-up (made to happen at a known step by setting the weights), and running out of
  memory before and during training;
- what a divergence keeps: the last good epoch's weights, step and elapsed time on a clock the test drives;
- the Sample events of a model whose next-token distribution is fixed (greedy: the argmax repeated);
- ``clip_gradients`` on gradients set by hand: the norm before clipping, whether clipping changed
  anything (equality included) and the clipped gradients, also on a torch without ``get_total_norm``.

Left out: CUDA (bench/check_cuda.py on a lent GPU).
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

import engine.trainer as trainer_mod
from engine.errors import ConfigError, RunError
from engine.events import Checkpoint, Diverged, Finished, Progress, Sample, Spike
from engine.models import build_model
from engine.trainer import train, unstable_message
from engine.training import clip_gradients

try:  # issue 10 moves both configs to engine.config
    from engine.config import ModelConfig, TrainConfig
except ImportError:  # the layout before it
    from engine.models import ModelConfig
    from engine.training import TrainConfig

BASE = dict(epochs=1, batch_size=2, num_steps=4, max_tokens=0, val_fraction=0.0, sample_every=0, threads=1,
            log_interval_s=1e9, log_every_steps=1, checkpoint_interval_s=1e9, lr=0.1)


def tcfg(**kw) -> TrainConfig:
    return TrainConfig(**{**BASE, **kw})


@pytest.fixture
def abcd(tmp_path):
    """'abcd' × 50 as raw characters: vocabulary <unk>, a, b, c, d (ids 0-4); every target is one of a-d."""
    from engine.corpus import load_corpus
    from engine.pipeline import build_pipeline

    path = tmp_path / "abcd.txt"
    path.write_text("abcd" * 50, encoding="utf-8")
    pipe = build_pipeline(load_corpus(str(path)), mode="raw", tokenizer="char")
    assert pipe.vocab.idx_to_token == ["<unk>", "a", "b", "c", "d"]
    return pipe


class Clock:
    """The trainer's clock, standing still until the test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- the messages ------------------------------------------------------------

def test_unstable_message_names_the_figures_and_the_fix_for_the_clip_setting():
    """The unstable-run sentence: the perplexity to 4 significant digits, 2×, the vocabulary size, and the
    fix: turn clipping on when it is off, else lower the learning rate (for both other clip settings)."""
    head = ("its perplexity 123.5 is more than 2× that of guessing uniformly among 28 tokens, "
            "so the model learned nothing usable; ")
    assert unstable_message(123.456, 28, "off") == head + "turn on gradient clipping (clip=norm)"
    assert unstable_message(123.456, 28, "norm") == head + "lower the learning rate"
    assert unstable_message(123.456, 28, "value") == head + "lower the learning rate"


def _relu_scratch(vocab_size: int) -> tuple[ModelConfig, torch.nn.Module]:
    mc = ModelConfig(kind="scratch", vocab_size=vocab_size, num_hiddens=8, activation="relu")
    torch.manual_seed(0)
    return mc, build_model(mc)


def _loss_40(module) -> None:
    """Output weights 0, bias 0 for <unk> and -40 for a-d: every a-d target costs 40 nats (to float32)."""
    with torch.no_grad():
        module.W_hq.zero_()
        module.b_q.copy_(torch.tensor([0.0, -40.0, -40.0, -40.0, -40.0]))


def test_an_infinite_gradient_norm_at_the_third_step_is_reported_as_such(abcd):
    """Before the 3rd minibatch every hidden unit is made to read 3e38 (relu, no recurrence) and the output
    weights 0: the logits are the bias (0), so the loss is finite (ln 5), but ∂L/∂W_hq = Hᵀ(P − Y)/N has
    entries of order 1e38 and the global norm overflows float32. After two good steps the run diverges
    at step 3 with a "gradient norm became inf" message and the hint for clip=norm (lower the learning
    rate); nothing trained is kept (epoch 0, step 0)."""
    mc, model = _relu_scratch(5)
    calls = [0]

    def hook(module, args):
        calls[0] += 1
        if calls[0] == 3:
            with torch.no_grad():
                module.W_xh.fill_(3e38)
                module.W_hh.zero_()
                module.b_h.zero_()
                module.W_hq.zero_()
                module.b_q.zero_()

    model.register_forward_pre_hook(hook)
    events = list(train(abcd, mc, tcfg(epochs=2, clip="norm"), model=model))
    assert [(type(e), getattr(e, "step", None)) for e in events[:2]] == [(Progress, 1), (Progress, 2)]
    assert events[2:] == [
        Diverged(epoch=1, step=3, lr=0.1, loss=math.inf, message=(
            "gradient norm became inf at step 3 (epoch 1, lr 0.1); lower the learning rate. "
            "Kept the weights from the end of epoch 0.")),
        Finished(epoch=0, step=0, train_ppl=None, val_ppl=None, stopped_early=True, reason="diverged",
                 unstable=False)]


def test_a_loss_blow_up_in_epoch_two_keeps_epoch_one_with_its_step_weights_and_time(abcd, tmp_path, monkeypatch):
    """After step 1 of epoch 2 the test sets the output weights to 0 and the bias to 0 for <unk>, -40 for
    a-d: every target then costs -log(e^-40 / (1 + 4e^-40)) = 40 nats (to float32), past ln 5 + 20, so
    the next step is the first bad one. The Diverged event names that step, epoch 2, the loss 40 and
    the hint for clip=off; the checkpoint holds epoch 1's end: its step, its weights, its Adam moments
    (as checkpointed at epoch 1's end) and its elapsed time on the test's clock (started at 100 s: 5 s
    trained at epoch 1's end, 7 s when its sample is done and the 7 s checkpoint interval has just
    elapsed, 12 s when the divergence is found), with the run's epochs, the device and the time it was
    saved; the run's logs hold every event (Progress in metrics.jsonl)."""
    from engine.runs import create_run

    monkeypatch.setattr(trainer_mod, "_clock", clock := Clock())  # the module's documented test hook
    clock.now = 100.0
    mc, model = _relu_scratch(5)
    cfg = tcfg(epochs=3, clip="off", optimizer="adam", lr=0.01, checkpoint_interval_s=7.0, sample_every=1,
               sample_len=2, sample_prefix="a")
    run = create_run(tmp_path / "runs", mc, cfg, abcd)
    events, end1, moments1, broken_at = [], None, None, None
    for ev in train(abcd, mc, cfg, run=run, model=model):
        events.append(ev)
        if isinstance(ev, Progress) and ev.epoch == 1 and ev.epoch_end:
            end1 = (ev.step, {k: v.clone() for k, v in model.state_dict().items()})
            clock.now = 105.0
        elif isinstance(ev, Sample):
            clock.now = 107.0  # the sample took 2 s: 7 s since the start, the checkpoint interval exactly
        elif isinstance(ev, Checkpoint) and moments1 is None:
            moments1 = run.load_checkpoint()[1]["state"]  # the periodic checkpoint of epoch 1's end
            assert run.trainer_state()["status"] == "running" and run.trainer_state()["elapsed_s"] == 5.0
        elif isinstance(ev, Progress) and ev.epoch == 2 and broken_at is None:
            broken_at = ev.step
            _loss_40(model)
            clock.now = 112.0
    assert end1 is not None and broken_at == end1[0] + 1 and moments1
    (div,) = [e for e in events if isinstance(e, Diverged)]
    assert (div.epoch, div.step, div.lr) == (2, broken_at + 1, 0.01)
    assert div.loss == pytest.approx(40.0, rel=1e-6)
    assert div.message == (f"loss reached 40 nats per token at step {broken_at + 1} (epoch 2, lr 0.01); "
                           "turn on gradient clipping (clip=norm). Kept the weights from the end of epoch 1.")
    checkpoints = [(e.epoch, e.step) for e in events if isinstance(e, Checkpoint)]
    assert checkpoints == [(1, end1[0]), (1, end1[0])] and isinstance(events[-2], Checkpoint)
    fin = events[-1]
    assert (fin.epoch, fin.step, fin.reason, fin.stopped_early) == (1, end1[0], "diverged", True)
    st = run.trainer_state()
    assert (st["status"], st["epoch"], st["step"], st["elapsed_s"]) == ("diverged", 1, end1[0], 5.0)
    assert (st["epochs"], st["device"], st["unstable"]) == (3, "cpu", False)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", st["saved_at"]), st["saved_at"]
    assert {e.path for e in events if isinstance(e, Checkpoint)} == {str(run.path)}
    assert [e["type"] for e in run.events()] == ["Checkpoint", "Diverged", "Checkpoint", "Finished"]
    assert [e.epoch for e in events if isinstance(e, Sample)] == [1]
    assert len(run.metrics()) == sum(isinstance(e, Progress) for e in events)
    saved_model, saved_opt, _, _ = run.load_checkpoint()
    assert all(torch.equal(saved_model[k], v) for k, v in end1[1].items())
    for i, moments in moments1.items():  # Adam's step count and moments as they were at epoch 1's end
        for name, value in moments.items():
            assert torch.equal(saved_opt["state"][i][name], value), (i, name)


def test_a_bad_step_found_when_a_stop_arrives_mid_epoch_is_a_divergence(abcd):
    """No Progress within the epoch (log interval 1e9 s), so the loss is first checked when the stop
    arrives: the blow-up (loss 40, as above) set before the 3rd minibatch makes step 3 the first bad
    one, the stop set during the 5th is seen before the 6th; the run diverged at step 3 of epoch 1, not
    stopped, and nothing trained is kept (epoch 0, step 0)."""
    import threading

    mc, model = _relu_scratch(5)
    stop, calls = threading.Event(), [0]

    def hook(module, args):
        if module.training:
            calls[0] += 1
            if calls[0] == 3:
                _loss_40(module)
            elif calls[0] == 5:
                stop.set()

    model.register_forward_pre_hook(hook)
    events = list(train(abcd, mc, tcfg(epochs=2, clip="off", log_every_steps=0), model=model, stop=stop))
    assert calls[0] == 5 and [type(e) for e in events] == [Diverged, Finished]
    div, fin = events
    assert (div.epoch, div.step, div.lr) == (1, 3, 0.1) and div.loss == pytest.approx(40.0, rel=1e-6)
    assert div.message == ("loss reached 40 nats per token at step 3 (epoch 1, lr 0.1); turn on gradient "
                           "clipping (clip=norm). Kept the weights from the end of epoch 0.")
    assert (fin.epoch, fin.step, fin.reason, fin.stopped_early) == (0, 0, "diverged", True)


@pytest.mark.parametrize("detach", [True, False])  # truncation regular / none
def test_a_blow_up_between_reports_is_found_at_the_epoch_end(abcd, detach):
    """No Progress within the epoch (log interval 1e9 s): the loss is first checked at the epoch's end.
    A blow-up made before the 3rd minibatch is found there, at step 3. Without detaching (one graph over
    the epoch, so the weights are set before it starts) the epoch's one step, step 1, has the mean loss
    of 24 minibatches at 40 nats each. Nothing trained is kept."""
    mc, model = _relu_scratch(5)
    if detach:
        calls = [0]

        def hook(module, args):
            calls[0] += 1
            if calls[0] == 3:
                _loss_40(module)

        model.register_forward_pre_hook(hook)
    else:
        _loss_40(model)
    cfg = tcfg(epochs=2, clip="off", sampler="sequential", truncation="regular" if detach else "none",
               log_every_steps=0)
    events = list(train(abcd, mc, cfg, model=model))
    assert [type(e) for e in events] == [Diverged, Finished]
    div, fin = events
    assert (div.epoch, div.step) == (1, 3 if detach else 1) and div.loss == pytest.approx(40.0, rel=1e-6)
    assert div.message == (f"loss reached 40 nats per token at step {div.step} (epoch 1, lr 0.1); turn on gradient "
                           "clipping (clip=norm). Kept the weights from the end of epoch 0.")
    assert (fin.epoch, fin.step, fin.reason) == (0, 0, "diverged")


class TrainingClock(Clock):
    """Moves 0.125 s (a binary fraction: sums are exact) per training minibatch (a forward hook), from 1000 s."""

    def __init__(self) -> None:
        self.now = 1000.0

    def hook(self, module, args, output) -> None:
        if module.training:
            self.now += 0.125


@pytest.mark.parametrize("detach", [True, False])  # truncation regular / none
def test_progress_figures_on_a_driven_clock(abcd, monkeypatch, detach):
    """'abcd' × 50 read sequentially in 2 rows of 4 steps: 199 // 2 = 99 positions per row, 24 minibatches
    of 8 tokens, every one the same (each row of 4 targets holds a, b, c, d once). The frozen p-model
    scores perplexity exp(-(3 ln 1/8 + ln 1/2) / 4) = 1024^(1/4) = 4√2 on every reading and its gradients
    are 0. At 0.125 s per minibatch (binary fractions: exact sums) with a log interval of 0.25 s, reached
    exactly every 2nd minibatch: 64 tokens/s, elapsed 0.125 s per minibatch so far, and an ETA of 0.125 s
    per minibatch left over both epochs (no time off training). Without detaching, one step per epoch
    and one report, at its end."""
    clock = TrainingClock()
    monkeypatch.setattr(trainer_mod, "_clock", clock)  # the module's documented test hook
    mc, model = _fixed_p(abcd)
    model.register_forward_hook(clock.hook)
    cfg = tcfg(epochs=2, sampler="sequential", truncation="regular" if detach else "none", lr=0.5,
               log_every_steps=0, log_interval_s=0.25)
    progress = [e for e in train(abcd, mc, cfg, model=model) if isinstance(e, Progress)]
    want = []  # (epoch, step, epoch_end, minibatches read so far, ETA)
    for epoch in (1, 2):
        read = (epoch - 1) * 24
        if detach:
            want += [(epoch, read + n, False, read + n, 0.125 * (48 - read - n)) for n in range(2, 25, 2)]
        want.append((epoch, epoch * 24 if detach else epoch, True, epoch * 24, 3.0 * (2 - epoch)))
    assert [(p.epoch, p.step, p.epoch_end) for p in progress] == [w[:3] for w in want]
    for p, (_, _, _, read, eta) in zip(progress, want):
        assert (p.val_ppl, p.lr, p.epochs, p.grad_norm, p.clip_fraction) == (None, 0.5, 2, 0.0, 0.0), p
        assert (p.train_ppl, p.tokens_per_s, p.elapsed_s, p.eta_s) == pytest.approx(
            (4 * math.sqrt(2), 64.0, 0.125 * read, eta), rel=1e-6, abs=1e-9), p


def test_minibatches_are_drawn_with_the_seed_and_the_epoch(abcd):
    """Epoch e reads the minibatches engine.data.data_iter draws with numpy's default_rng([seed, e]), in
    that order (random ids, so every start position reads differently)."""
    from engine.data import data_iter

    ids = np.random.default_rng(0).integers(0, 5, 200)
    mc, model = _fixed_p(abcd)
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()) if m.training else None)
    list(train(ids, mc, tcfg(epochs=2, seed=7), model=model))
    want = [torch.as_tensor(X) for e in (1, 2)
            for X, _ in data_iter(ids, 2, 4, "random", rng=np.random.default_rng([7, e]))]
    assert len(seen) == len(want) and all(torch.equal(a, b) for a, b in zip(seen, want))


def _bias_only(pipe) -> tuple[ModelConfig, torch.nn.Module]:
    """The p-model with only its output bias b = log p trainable: the logits are b at every position, so
    the gradient of the mean loss is p − (the targets' frequencies) = p − (0, 1/4, 1/4, 1/4, 1/4) for any
    minibatch of whole a-b-c-d rows, = (1, -1, -1, 2, -1)/8, of norm √(4/64 + 4/64) = √(1/8)."""
    mc, model = _fixed_p(pipe)
    model.requires_grad_(False)
    model.linear.bias.requires_grad_(True)
    return mc, model


@pytest.mark.parametrize("theta,share", [(0.3, 1.0), (0.4, 0.0)])
@pytest.mark.parametrize("detach,every", [(True, 5), (False, 1)])
def test_gradient_norm_and_clipped_share_in_closed_form(abcd, theta, share, detach, every):
    """The gradient norm √(1/8) ≈ 0.354 of every step (lr 1e-6 keeps p put), reported as the mean over each
    Progress window — every 5th step, and at an epoch's end over its steps since the last report (4 or 3 of
    24) — or once per epoch
    without detaching (one step over the whole epoch's graph); clipping at θ = 0.3 changes every step,
    at θ = 0.4 none."""
    mc, model = _bias_only(abcd)
    cfg = tcfg(epochs=2, sampler="sequential", truncation="regular" if detach else "none", lr=1e-6, clip="norm",
               clip_theta=theta, log_every_steps=every)
    progress = [e for e in train(abcd, mc, cfg, model=model) if isinstance(e, Progress)]
    if detach:  # every 5th step of the run (steps 5-20, 25-45), and the ends of the epochs (24, 48)
        want = [(1, s, False) for s in (5, 10, 15, 20)] + [(1, 24, True)]
        want += [(2, s, False) for s in (25, 30, 35, 40, 45)] + [(2, 48, True)]
    else:
        want = [(1, 1, True), (2, 2, True)]
    assert [(p.epoch, p.step, p.epoch_end) for p in progress] == want
    for p in progress:
        assert p.grad_norm == pytest.approx(math.sqrt(1 / 8), rel=1e-4), p
        assert p.clip_fraction == share, p


def test_an_epoch_of_a_single_minibatch(abcd):
    """12 tokens read sequentially in 2 rows of 4 steps: (12 − 1 − offset) // 2 = 5 or 4 positions per row,
    so one minibatch (and one step) per epoch, whatever the offset; its perplexity is the epoch's."""
    mc, model = _fixed_p(abcd)
    events = list(train(np.asarray(abcd.ids[:12]), mc, tcfg(epochs=2, sampler="sequential"), model=model))
    ends = [e for e in events if isinstance(e, Progress) and e.epoch_end]
    assert [(e.epoch, e.step) for e in ends] == [(1, 1), (2, 2)]
    assert [e.train_ppl for e in ends] == pytest.approx([4 * math.sqrt(2)] * 2, rel=1e-6)  # a-b-c-d rows: 4√2
    assert isinstance(events[-1], Finished)
    assert (events[-1].reason, events[-1].stopped_early, events[-1].step) == ("completed", False, 2)


MEMORY_ADVICE = ("lower batch_size, num_steps, num_hiddens or num_layers, or shrink the vocabulary "
                 "(min_freq / vocab_size)")


def test_out_of_memory_before_the_first_step_names_the_error_type(abcd):
    """Moving the model to the device runs out of memory (a MemoryError without a message): the RunError
    says so with the error's type for detail, no epoch or step (none began), and that nothing was saved."""
    mc, model = _fixed_p(abcd)

    def no_memory(*args, **kwargs):
        raise MemoryError()

    model.to = no_memory
    with pytest.raises(RunError) as err:
        train(abcd, mc, tcfg(), model=model)
    assert str(err.value) == f"out of memory (MemoryError); nothing was saved; {MEMORY_ADVICE}"


def test_out_of_memory_mid_epoch_names_the_place_and_the_first_200_characters(abcd):
    """The 3rd training forward fails with a two-line out-of-memory RuntimeError whose first line is 250
    characters long: the RunError names epoch 1, step 2 (two steps done) on cpu and the first 200
    characters of the first line."""
    mc, model = _fixed_p(abcd)
    first = "CPU out of memory: " + "x" * 231
    calls = [0]

    def hook(module, args):
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError(first + "\nsecond line")

    model.register_forward_pre_hook(hook)
    with pytest.raises(RunError) as err:
        list(train(abcd, mc, tcfg(), model=model))
    assert len(first) == 250
    assert str(err.value) == (f"out of memory at epoch 1, step 2 on cpu ({first[:200]}); nothing was saved; "
                              f"{MEMORY_ADVICE}")


@pytest.mark.parametrize("oom_at", ["start", "epoch 1", "epoch 2"])
def test_out_of_memory_with_a_run(abcd, tmp_path, oom_at):
    """With a run: running out of memory before anything was logged or saved (moving the model, or the 3rd
    minibatch of epoch 1) removes the run folder; after epoch 1's checkpoint (interval 0 s), at epoch 2's first
    minibatch, the run is kept, marked failed with the reason, and the message names that checkpoint."""
    from engine.runs import create_run, open_run

    mc, model = _fixed_p(abcd)
    cfg = tcfg(epochs=2, checkpoint_interval_s=0.0, log_every_steps=0)  # nothing logged within an epoch
    run = create_run(tmp_path / "runs", mc, cfg, abcd)
    calls, epoch = [0], [1]

    def hook(module, args):
        if module.training:
            calls[0] += 1
            if (oom_at, epoch[0], calls[0]) in {("epoch 1", 1, 3), ("epoch 2", 2, 1)}:
                raise MemoryError("no room left")

    def no_memory(*args, **kwargs):
        raise MemoryError("no room for the model")

    model.register_forward_pre_hook(hook)
    if oom_at == "start":
        model.to = no_memory
    events = []
    with pytest.raises(RunError) as err:
        for ev in train(abcd, mc, cfg, model=model, run=run):
            events.append(ev)
            if isinstance(ev, Progress) and ev.epoch_end:
                calls[0], epoch[0] = 0, 2
    if oom_at != "epoch 2":
        where = " at epoch 1, step 2 on cpu" if oom_at == "epoch 1" else ""
        detail = "no room left" if oom_at == "epoch 1" else "no room for the model"
        assert str(err.value) == f"out of memory{where} ({detail}); nothing was saved; {MEMORY_ADVICE}"
        assert not run.path.exists()
        return
    s1 = [e.step for e in events if isinstance(e, Progress) and e.epoch_end][0]
    reason = f"out of memory at epoch 2, step {s1} on cpu (no room left)"
    assert str(err.value) == f"{reason}; the last checkpoint (epoch 1, step {s1}) is kept; {MEMORY_ADVICE}"
    st = open_run(run.name, tmp_path / "runs").trainer_state()
    assert (st["status"], st["error"], st["epoch"], st["step"]) == ("failed", reason, 1, s1)


def _p_model(pipe, p: dict[str, float]) -> tuple[ModelConfig, torch.nn.Module]:
    """A frozen output layer predicting p (by token) whatever the state."""
    mc = ModelConfig(kind="rnn", vocab_size=len(pipe.vocab), num_hiddens=4)
    torch.manual_seed(0)
    model = build_model(mc)
    with torch.no_grad():
        model.linear.weight.zero_()
        model.linear.bias.copy_(torch.log(torch.tensor([p[t] for t in pipe.vocab.idx_to_token])))
    model.linear.requires_grad_(False)
    return mc, model


# c: 1/2; a, b, d: 1/48 each; <unk>: the rest, 21/48. On a-b-c-d targets the perplexity is
# exp((3 ln 48 + ln 2) / 4) = (48³ · 2)^(1/4) ≈ 21.6 > 2 × 5 (unstable); on c targets alone it is 2.
SKEWED = {"<unk>": 21 / 48, "a": 1 / 48, "b": 1 / 48, "c": 1 / 2, "d": 1 / 48}


def _tail_pipeline(tmp_path):
    """'abcd' × 50 then 50 c's: with val_fraction 0.2 the validation part is the c's."""
    from engine.corpus import load_corpus
    from engine.pipeline import build_pipeline

    path = tmp_path / "tail.txt"
    path.write_text("abcd" * 50 + "c" * 50, encoding="utf-8")
    return build_pipeline(load_corpus(str(path)), mode="raw", tokenizer="char")


def test_unstable_reads_the_validation_perplexity_then_the_training_one(abcd, tmp_path):
    """A run is unstable when the saved weights' perplexity exceeds 2 × vocab_size (10): the validation
    figure when there is one — 2 on a tail of c's, stable although training reads ≈ 21.6 — else the
    training figure (≈ 21.6 on 'abcd' × 50: unstable, in Finished and in the checkpoint). Each Progress
    carries the validation figure of the last epoch end (none during epoch 1)."""
    from engine.runs import create_run

    tail = _tail_pipeline(tmp_path)
    mc, model = _p_model(tail, SKEWED)
    events = list(train(tail, mc, tcfg(epochs=2, val_fraction=0.2, lr=0.01), model=model))  # val: the 50 c's
    fin, progress = events[-1], [e for e in events if isinstance(e, Progress)]
    during_1 = [p.val_ppl for p in progress if p.epoch == 1 and not p.epoch_end]
    after_1 = [p.val_ppl for p in progress if p.epoch == 2 or p.epoch_end]
    assert during_1 == [None] * len(during_1) and len(during_1) > 10
    assert after_1 == pytest.approx([2.0] * len(after_1), rel=1e-5) and len(after_1) > 10
    assert fin.train_ppl == pytest.approx((48**3 * 2) ** 0.25, rel=1e-5)
    assert fin.val_ppl == pytest.approx(2.0, rel=1e-5) and fin.unstable is False
    mc, model = _p_model(abcd, SKEWED)
    run = create_run(tmp_path / "runs", mc, tcfg(lr=0.01), abcd)
    fin = list(train(abcd, mc, tcfg(lr=0.01), model=model, run=run))[-1]
    assert fin.val_ppl is None and fin.train_ppl == pytest.approx((48**3 * 2) ** 0.25, rel=1e-5)
    assert fin.unstable is True and run.trainer_state()["unstable"] is True
    assert run.trainer_state()["status"] == "completed"


def test_a_jump_past_twice_the_best_perplexity_is_a_spike_event(abcd, tmp_path):
    """The frozen p-model scores 4√2 ≈ 5.66 in epoch 1 (no validation split: the training figure); the
    test then gives it the SKEWED distribution, ≈ 21.6 on 'abcd' targets, past 2 × 5.66: epoch 2 ends
    with a Spike naming both figures, logged in the run's events."""
    from engine.runs import create_run

    mc, model = _fixed_p(abcd)
    run = create_run(tmp_path / "runs", mc, tcfg(epochs=2, log_every_steps=0), abcd)
    events = []
    for ev in train(abcd, mc, tcfg(epochs=2, log_every_steps=0), model=model, run=run):
        events.append(ev)
        if isinstance(ev, Progress) and ev.epoch == 1:
            with torch.no_grad():
                model.linear.bias.copy_(torch.log(torch.tensor([SKEWED[t] for t in abcd.vocab.idx_to_token])))
    (spike,) = [e for e in events if isinstance(e, Spike)]
    assert (spike.epoch, spike.metric) == (2, "train")
    assert (spike.val_ppl, spike.best_val_ppl) == pytest.approx(((48**3 * 2) ** 0.25, 4 * math.sqrt(2)), rel=1e-5)
    assert [e["type"] for e in run.events()] == ["Spike", "Checkpoint", "Finished"]


@pytest.mark.parametrize("val,train_ppl,flag", [
    (10.0, 99.0, False),  # exactly 2 × 5: not past it (and validation wins over training)
    (math.nextafter(10.0, 11.0), 1.0, True),  # the next float past 2 × 5
    (None, 10.0, False), (None, math.nextafter(10.0, 11.0), True),  # no split: the training figure
    (None, None, False),  # nothing measured yet
    (math.inf, None, True),
])
def test_unstable_at_twice_the_vocabulary_size(val, train_ppl, flag):
    """unstable(state, 5) is whether the state's perplexity (validation, else training) is past 2 × 5."""
    from engine.train_state import TrainState
    from engine.trainer import unstable

    assert unstable(TrainState(val_ppl=val, train_ppl=train_ppl), 5) is flag


def test_resume_restores_the_random_state_dropout_draws_from(abcd, tmp_path):
    """A 2-layer GRU with dropout 0.5 between its layers draws a mask from torch's random state at every
    step, and Adam carries its moments: one epoch, a checkpoint, then a resumed second epoch ends exactly
    where two epochs in one go do (same step, perplexity) only if the checkpoint's random state and Adam's
    state are put back; the run's config.json then records the 2 epochs asked for."""
    from engine.runs import create_run, open_run

    mc = ModelConfig(kind="gru", vocab_size=5, num_hiddens=8, num_layers=2, dropout=0.5)
    both = tcfg(epochs=2, sampler="sequential", optimizer="adam", lr=0.05, log_every_steps=0)
    straight = [e for e in train(abcd, mc, both) if isinstance(e, Progress)]
    runs = tmp_path / "runs"
    run = create_run(runs, mc, replace(both, epochs=1), abcd)
    list(train(abcd, mc, run.train_config, run=run))
    second = [e for e in train(abcd, mc, both, run=open_run(run.name, runs)) if isinstance(e, Progress)]
    assert [(p.epoch, p.step, p.train_ppl) for p in second] == [(p.epoch, p.step, p.train_ppl) for p in straight[1:]]
    assert straight[0].train_ppl != straight[1].train_ppl  # the second epoch did move
    assert open_run(run.name, runs).train_config == both


def test_resuming_with_other_model_options_says_what_to_do(abcd, tmp_path):
    """Resuming a run with a model its checkpoint does not fit (6 hidden units instead of 4) is refused
    naming the run, torch's reason, and the two ways out."""
    from engine.runs import create_run, open_run

    mc = ModelConfig(kind="rnn", vocab_size=5, num_hiddens=4)
    run = create_run(tmp_path / "runs", mc, tcfg(), abcd)
    list(train(abcd, mc, tcfg(), run=run))
    with pytest.raises(RunError) as err:
        list(train(abcd, replace(mc, num_hiddens=6), tcfg(epochs=2), run=open_run(run.name, tmp_path / "runs")))
    msg = str(err.value)
    assert msg.startswith(f"{run.path}: the checkpoint does not fit this configuration (") and "size mismatch" in msg
    assert msg.endswith("); resume with the run's own model options, or start a new run"), msg


def test_a_stop_keeps_the_figures_of_the_weights_it_stops_with(tmp_path):
    """With the SKEWED p-model (≈ 21.6 on a-b-c-d targets, 2 on the c tail): a stop that arrives during
    epoch 3's 3rd minibatch ends the run before the 4th, with the three steps of epoch 3 taken, their
    running training perplexity and the validation perplexity of those weights, and epoch 3 left to redo
    (epoch 2); a stop set at epoch 2's end ends it before epoch 3's first step, with epoch 2's figures."""
    import threading

    tail = _tail_pipeline(tmp_path)
    train_ppl, val_ppl = (48**3 * 2) ** 0.25, 2.0
    cfg = tcfg(epochs=3, val_fraction=0.2, lr=0.01, log_every_steps=0)
    for at_epoch_end in (False, True):
        mc, model = _p_model(tail, SKEWED)
        stop, calls, events = threading.Event(), [-math.inf], []

        def hook(module, args):
            if module.training:
                calls[0] += 1
                if calls[0] == 3:
                    stop.set()

        model.register_forward_pre_hook(hook)
        for ev in train(tail, mc, cfg, model=model, stop=stop):
            events.append(ev)
            if isinstance(ev, Progress) and ev.epoch_end and ev.epoch == 2:
                end2 = ev
                if at_epoch_end:
                    stop.set()
                else:
                    calls[0] = 0  # count epoch 3's minibatches
        fin = events[-1]
        steps = end2.step + (0 if at_epoch_end else 3)
        assert (fin.epoch, fin.step, fin.reason, fin.stopped_early, fin.unstable) == (2, steps, "stopped", True, False)
        assert (fin.train_ppl, fin.val_ppl) == pytest.approx((train_ppl, val_ppl), rel=1e-5)


# --- samples -----------------------------------------------------------------

def _fixed_p(pipe) -> tuple[ModelConfig, torch.nn.Module]:
    """A frozen output layer predicting p = (1, 1, 1, 4, 1)/8 over <unk>, a, b, c, d whatever the state."""
    mc = ModelConfig(kind="rnn", vocab_size=len(pipe.vocab), num_hiddens=4)
    torch.manual_seed(0)
    model = build_model(mc)
    with torch.no_grad():
        model.linear.weight.zero_()
        model.linear.bias.copy_(torch.log(torch.tensor([1.0, 1.0, 1.0, 4.0, 1.0]) / 8))
    model.linear.requires_grad_(False)  # the RNN below gets zero gradients through the zero weight
    return mc, model


def _samples(pipe, **kw) -> list[Sample]:
    mc, model = _fixed_p(pipe)
    return [e for e in train(pipe, mc, tcfg(**kw), model=model) if isinstance(e, Sample)]


@pytest.mark.parametrize("sample_len,text", [(10, "abcccccccccc"), (1, "abc"), (0, None)])
def test_greedy_samples_repeat_the_most_likely_token(abcd, sample_len, text):
    """Greedy (α = inf) continues the prefix with the argmax of p, 'c', sample_len times, after every
    epoch with sample_every=1; sample_len=0 means no Sample event at all."""
    got = _samples(abcd, epochs=2, sample_every=1, sample_len=sample_len, sample_prefix="ab", sample_alpha=math.inf)
    want = [] if text is None else [Sample(epoch=1, prefix="ab", text=text), Sample(epoch=2, prefix="ab", text=text)]
    assert got == want


def test_samples_draw_with_the_sampling_exponent_and_the_seed_plus_the_epoch(abcd):
    """With α = 1 the sample after epoch e is generate()'s draw from p seeded with seed + e (so a rerun
    gives the same samples): not greedy (the 'c' × 10 of α = inf), and a different draw for each epoch."""
    from engine.generate import generate

    got = _samples(abcd, epochs=2, seed=3, sample_every=1, sample_len=10, sample_prefix="ab", sample_alpha=1.0)
    _, model = _fixed_p(abcd)
    want = ["ab" + "".join(generate(model, abcd.tokenizer, "ab", 10, alpha=1.0, seed=3 + e)) for e in (1, 2)]
    assert [(s.epoch, s.prefix, s.text) for s in got] == [(1, "ab", want[0]), (2, "ab", want[1])]
    assert want[0] != want[1] and "abcccccccccc" not in want


def test_samples_from_a_bare_id_array_need_the_tokenizer_passed(abcd):
    """Training on a bare id array with no tokenizer cannot decode a sample: no Sample event, no error;
    with the tokenizer passed, the greedy samples are there."""
    mc, model = _fixed_p(abcd)
    cfg = tcfg(epochs=2, sample_every=1, sample_len=3, sample_prefix="ab")
    events = list(train(np.asarray(abcd.ids), mc, cfg, model=model))
    assert not [e for e in events if isinstance(e, Sample)]
    assert isinstance(events[-1], Finished) and events[-1].reason == "completed"
    samples = [e for e in train(np.asarray(abcd.ids), mc, cfg, model=model, tokenizer=abcd.tokenizer)
               if isinstance(e, Sample)]
    assert samples == [Sample(epoch=1, prefix="ab", text="abccc"), Sample(epoch=2, prefix="ab", text="abccc")]


def test_a_model_that_model_cfg_does_not_describe_is_refused(abcd):
    """A model built from another ModelConfig than the one passed is refused before training, naming both."""
    mc, model = _fixed_p(abcd)
    other = ModelConfig(kind="rnn", vocab_size=5, num_hiddens=6)
    with pytest.raises(ConfigError) as err:
        train(abcd, other, tcfg(), model=model)
    assert str(err.value) == f"model_cfg must describe the model passed in (got {other}, model has {mc})"




# --- clipping ----------------------------------------------------------------

def _params() -> list[torch.nn.Parameter]:
    """Two parameters with gradients set by hand: g1 = (6, -8) (‖g1‖ = 10, max |g| = 8) and
    g2 = ((4, 2), (1, 0)) (‖g2‖ = √21, max |g| = 4): ‖g‖ = √(100 + 21) = 11, max |g_i| = 8."""
    p1, p2 = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2, 2))
    p1.grad = torch.tensor([6.0, -8.0])
    p2.grad = torch.tensor([[4.0, 2.0], [1.0, 0.0]])
    return [p1, p2]


# (clip, θ, changed, the gradients after clipping): norm rescales by θ/‖g‖ when ‖g‖ > θ, value clamps to ±θ
CLIPS = [
    ("off", 1.0, False, [[6, -8], [[4, 2], [1, 0]]]),
    ("norm", 5.5, True, [[3, -4], [[2, 1], [0.5, 0]]]),
    ("norm", 11.0, False, [[6, -8], [[4, 2], [1, 0]]]),  # ‖g‖ = θ: not changed
    ("value", 7.5, True, [[6, -7.5], [[4, 2], [1, 0]]]),
    ("value", 8.0, False, [[6, -8], [[4, 2], [1, 0]]]),  # max |g_i| = θ (while ‖g‖ = 11 > θ): not changed
]


@pytest.mark.parametrize("clip,theta,changed,after", CLIPS)
@pytest.mark.parametrize("old_torch", [False, True])
def test_clip_gradients_by_hand(clip, theta, changed, after, old_torch, monkeypatch):
    """clip_gradients returns ‖g‖ = 11 before clipping, whether clipping changed the gradient (strictly
    past θ; a 0-d bool tensor), and leaves the clipped gradients in place; the same on a torch without
    nn.utils.get_total_norm (before 2.6, which pyproject allows), where the norms are computed by hand."""
    if old_torch:
        monkeypatch.delattr(torch.nn.utils, "get_total_norm", raising=False)
    params = _params()
    norm, did = clip_gradients(params, clip, theta)
    assert float(norm) == pytest.approx(11.0, rel=1e-6)
    assert bool(did) is changed and did.dtype == torch.bool and did.shape == ()  # a 0-d flag, as documented
    for p, want in zip(params, after):
        assert p.grad.flatten().tolist() == pytest.approx(torch.tensor(want).flatten().tolist(), rel=1e-5)


def test_the_loss_limit_is_inclusive():
    """A step whose loss equals the limit is good (counted in ``ok``, no bad step); one float32 step above it
    is the first bad one. With a non-finite gradient norm and the loss at the limit, the norm is to blame."""
    from engine.trainer import BadStep, _Sums

    sums = _Sums(torch.device("cpu"), 21.0)
    sums.add(torch.tensor(21.0), torch.tensor(0.5), torch.tensor(0.0), 1, torch.tensor(21.0))
    totals = sums.read()
    assert (totals.ok, sums.bad_step(totals, 1)) == (1, None)
    above = float(np.nextafter(np.float32(21.0), np.float32(22.0)))
    sums.add(torch.tensor(above), torch.tensor(0.5), torch.tensor(0.0), 1, torch.tensor(above))
    totals = sums.read()
    assert (totals.ok, sums.bad_step(totals, 1)) == (1, BadStep(2, above, "loss"))
    inf_norm = _Sums(torch.device("cpu"), 21.0)
    inf_norm.add(torch.tensor(21.0), torch.tensor(math.inf), torch.tensor(0.0), 1, torch.tensor(21.0))
    totals = inf_norm.read()
    assert (totals.ok, inf_norm.bad_step(totals, 1)) == (0, BadStep(1, math.inf, "gradient norm"))
