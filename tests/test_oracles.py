"""Oracles for the figures a user reads and the updates the trainer makes, each
computed independently of the code under test (issue 9).

- perplexity from a model whose every next-token distribution is a fixed ``p``
  (output weight 0, bias log p, frozen): exp(-mean log p[y]) from token counts,
  checked in ``evaluate``, Progress, Finished, checkpoint.json, ``list_runs``
  and ``rnnlab runs``;
- ``evaluate`` against one plain forward over the whole held-out text;
- the validation tail's exact token range;
- the first SGD update inside the trainer against a hand-made step (plain
  autograd, clipping by hand) for clip norm / value / off, and after a resume
  with a new learning rate;
- random sampling starting every minibatch from a zero state;
- a mid-epoch stop saving the optimizer state it stopped with (Adam);
- runs listed newest first; the ETA on a clock the test drives;
- ``val_fraction=0``: every token trains (minibatches per epoch and the
  positions read, counted by hand) and no validation perplexity anywhere;
- periodic checkpoints on a clock the test drives: written exactly when the
  interval has elapsed, each holding the step it claims and that step's weights;
- ``adamw``: two updates inside the trainer against AdamW written out by hand
  (Adam's moments, decoupled weight decay at torch's default λ = 0.01);
- embedding input: the forward against a table lookup and a hand-written cell
  per kind, and the trainer's first step updating the table by hand-made SGD;
- the ``sample_every`` cadence (Sample events after the listed epochs only).

tests/PLANTED.md records, for each bug of issue 9, the one-line plant and the
test here that fails on it. Left out: TUI figures (tests/test_tui_*.py).
"""

from __future__ import annotations

import copy
import math
import shutil
import threading
from collections import Counter

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import engine.trainer as trainer_mod
from engine.events import Finished, Progress
from engine.config import ModelConfig, TrainConfig
from engine.models import build_model
from engine.training import evaluate, split_ids

BASE = dict(epochs=1, batch_size=2, num_steps=4, max_tokens=0, val_fraction=0.0, sample_every=0, threads=1,
            log_interval_s=1e9, log_every_steps=1, checkpoint_interval_s=1e9)


def tcfg(**kw) -> TrainConfig:
    return TrainConfig(**{**BASE, **kw})


# --- helpers: the model's own forward, everything else by hand ---------------

class Inputs:
    """Records the (X, state) of every training-mode forward of a model."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls: list[tuple[torch.Tensor, object]] = []
        model.register_forward_pre_hook(self._hook)

    def _hook(self, module, args) -> None:
        if module.training:
            X, state = args
            st = tuple(s.detach().clone() for s in state) if isinstance(state, tuple) else state.detach().clone()
            self.calls.append((X.detach().clone(), st))


def hand_sgd_step(model0: torch.nn.Module, X: torch.Tensor, Y: torch.Tensor, lr: float, clip: str,
                  theta: float) -> tuple[list[torch.Tensor], float, float]:
    """(weights after one SGD step, ‖g‖, max |g_i|) from a fresh state: cross-entropy averaged over all
    positions, clipped by hand (norm: g · min(1, θ/‖g‖); value: each g_i clamped to [-θ, θ])."""
    m = copy.deepcopy(model0)
    logits, _ = m(X, m.begin_state(X.shape[0]))
    V = logits.shape[-1]
    loss = F.cross_entropy(logits.reshape(-1, V), Y.T.reshape(-1))  # logits are time-major
    grads = torch.autograd.grad(loss, list(m.parameters()))
    norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
    gmax = max(float(g.abs().max()) for g in grads)
    if clip == "norm":
        grads = [g * min(1.0, theta / norm) for g in grads]
    elif clip == "value":
        grads = [g.clamp(-theta, theta) for g in grads]
    return [p.detach() - lr * g for p, g in zip(m.parameters(), grads)], norm, gmax


def cyclic_ids(n: int, V: int) -> np.ndarray:
    """0, 1, …, V-1, 0, 1, …: the target of token x is (x + 1) mod V, whatever the position."""
    return np.arange(n) % V


# --- 1. clipping as the trainer applies it ----------------------------------

@pytest.mark.parametrize("clip,theta", [("norm", 0.01), ("value", 0.002), ("off", 1.0)])
def test_first_update_inside_the_trainer_is_the_hand_clipped_sgd_step(clip, theta):
    V, lr = 7, 0.5
    mc = ModelConfig(kind="rnn", vocab_size=V, num_hiddens=8)
    cfg = tcfg(lr=lr, clip=clip, clip_theta=theta, sampler="random")
    torch.manual_seed(3)
    model = build_model(mc)
    model0 = copy.deepcopy(model)
    seen = Inputs(model)
    events = trainer_mod.train(cyclic_ids(60, V), mc, cfg, model=model)
    first = next(e for e in events if isinstance(e, Progress))
    assert first.step == 1 and len(seen.calls) == 1
    X = seen.calls[0][0]
    expected, norm, gmax = hand_sgd_step(model0, X, (X + 1) % V, lr, clip, theta)
    if clip == "norm":
        assert norm > theta and norm < 1.0  # clipping bites here, and θ = 1 would not clip
        assert first.grad_norm == pytest.approx(norm, rel=1e-5)
    if clip == "value":
        assert gmax > theta
    unclipped, _, _ = hand_sgd_step(model0, X, (X + 1) % V, lr, "off", theta)
    for (name, p), want in zip(model.named_parameters(), expected):
        off = float((p.detach() - want).abs().max())
        assert off <= 1e-6, f"{name} after the first step is off the hand-clipped SGD step by {off:.3g}"
    if clip != "off":  # the clipped step is told apart from the raw one
        assert any(float((w - r).abs().max()) > 1e-4 for w, r in zip(expected, unclipped))
    events.close()


# --- 2 and 4. perplexity in closed form, and the validation tail -------------

TRAIN_TEXT = "abcd" * 101  # 404 tokens: every window of 4 targets is a rotation of abcd
VAL_TEXT = "aaxy" * 25 + "a"  # 101 tokens: another distribution; 100 targets, 2 rows of 50


@pytest.fixture
def fixed_p(tmp_path):
    """A corpus whose tail differs, and a frozen model predicting the same p at every position."""
    from engine.corpus import load_corpus
    from engine.pipeline import build_pipeline

    path = tmp_path / "abcd.txt"
    path.write_text(TRAIN_TEXT + VAL_TEXT, encoding="utf-8")
    pipe = build_pipeline(load_corpus(str(path)), mode="raw", tokenizer="char")
    vocab = pipe.vocab.idx_to_token
    V = len(vocab)
    p = np.arange(1, V + 1, dtype=np.float64)
    p /= p.sum()  # p(token id i) ∝ i + 1
    mc = ModelConfig(kind="rnn", vocab_size=V, num_hiddens=4)
    torch.manual_seed(0)
    model = build_model(mc)
    with torch.no_grad():
        model.linear.weight.zero_()  # logits = log p whatever the state: softmax(logits) = p
        model.linear.bias.copy_(torch.tensor(np.log(p), dtype=torch.float32))
    model.linear.requires_grad_(False)  # frozen; the RNN's gradients are 0 through a zero output weight
    logp = {tok: math.log(p[i]) for i, tok in enumerate(vocab)}
    return pipe, mc, model, logp


def closed_form_ppl(targets: str, logp: dict[str, float]) -> float:
    """exp(-(1/N) Σ_tokens count(t) · log p(t)) over the target characters."""
    counts = Counter(targets)
    return math.exp(-sum(c * logp[t] for t, c in counts.items()) / sum(counts.values()))


def test_split_holds_out_exactly_the_tail():
    ids = np.arange(1000)
    train_ids, val_ids = split_ids(ids, TrainConfig(val_fraction=0.1, max_tokens=0, batch_size=4, num_steps=5))
    assert train_ids.tolist() == list(range(900)) and val_ids.tolist() == list(range(900, 1000))
    # max_tokens cuts first, then the tail of what is left: round(0.15 · 777) = 117 (116.55 rounds up)
    train_ids, val_ids = split_ids(ids, TrainConfig(val_fraction=0.15, max_tokens=777, batch_size=4, num_steps=5))
    assert val_ids.tolist() == list(range(660, 777)) and train_ids.tolist() == list(range(660))


def test_evaluate_is_exp_of_the_mean_loss_in_closed_form(fixed_p):
    pipe, _, model, logp = fixed_p
    val_ids = np.asarray(pipe.ids[len(TRAIN_TEXT):])
    want = closed_form_ppl(VAL_TEXT[1:], logp)
    assert evaluate(model, val_ids, 2, 4, "cpu") == pytest.approx(want, rel=1e-5)
    train_ids = np.asarray(pipe.ids[: len(TRAIN_TEXT) + 1])  # 404 targets: 101 of each of a, b, c, d
    assert evaluate(model, train_ids, 4, 4, "cpu") == pytest.approx(closed_form_ppl("abcd", logp), rel=1e-5)


def test_every_perplexity_the_user_reads_is_the_closed_form_one(fixed_p, tmp_path, capsys):
    from engine.runs import create_run, list_runs
    from tui.cli import main

    pipe, mc, model, logp = fixed_p
    train_ppl, val_ppl = closed_form_ppl("abcd", logp), closed_form_ppl(VAL_TEXT[1:], logp)
    assert abs(train_ppl - val_ppl) > 0.5  # the head and the tail read differently
    cfg = tcfg(epochs=2, lr=0.1, val_fraction=0.2, sampler="random")  # round(0.2 · 505) = 101: VAL_TEXT
    runs = tmp_path / "runs"
    run = create_run(runs, mc, cfg, pipe)
    events = list(trainer_mod.train(pipe, mc, cfg, run=run, model=model))
    progress = [e for e in events if isinstance(e, Progress)]
    assert [p.epoch for p in progress if p.epoch_end] == [1, 2] and len(progress) > 10
    for p in progress:  # running figures within the epoch, and the epoch's at its end
        assert p.train_ppl == pytest.approx(train_ppl, rel=1e-5)
    assert [p.val_ppl for p in progress if p.epoch_end] == pytest.approx([val_ppl, val_ppl], rel=1e-5)
    fin = events[-1]
    assert isinstance(fin, Finished) and fin.reason == "completed"
    assert (fin.train_ppl, fin.val_ppl) == pytest.approx((train_ppl, val_ppl), rel=1e-5)
    st = run.trainer_state()
    assert (st["train_ppl"], st["val_ppl"]) == pytest.approx((train_ppl, val_ppl), rel=1e-5)
    (summary,) = list_runs(runs)
    assert (summary.train_ppl, summary.val_ppl) == pytest.approx((train_ppl, val_ppl), rel=1e-5)
    capsys.readouterr()
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    header, row = (line.split("\t") for line in capsys.readouterr().out.splitlines())
    cells = dict(zip(header, row))
    assert (cells["train ppl"], cells["val ppl"]) == (f"{train_ppl:.3f}", f"{val_ppl:.3f}")


# --- 3. evaluate carries the state over the whole text ----------------------

def test_evaluate_equals_one_pass_with_the_state_carried():
    V, num_steps = 6, 5
    torch.manual_seed(1)
    model = build_model(ModelConfig(kind="rnn", vocab_size=V, num_hiddens=16))
    with torch.no_grad():
        model.rnn.weight_hh_l0.mul_(6.0)  # a state that matters: predictions depend on earlier tokens
        model.linear.weight.mul_(6.0)
    ids = np.random.default_rng(0).integers(0, V, 101)  # 2 rows of 50 targets
    X = torch.as_tensor(ids[:100]).reshape(2, 50)
    Y = torch.as_tensor(ids[1:101]).reshape(2, 50)
    model.eval()
    with torch.no_grad():
        logits, _ = model(X, model.begin_state(2))  # one pass: the state carried through all 50 steps
        carried = math.exp(float(F.cross_entropy(logits.reshape(-1, V), Y.T.reshape(-1))))
        losses = [F.cross_entropy(model(X[:, s:s + num_steps], model.begin_state(2))[0].reshape(-1, V),
                                  Y[:, s:s + num_steps].T.reshape(-1)) for s in range(0, 50, num_steps)]
        reset = math.exp(float(torch.stack(losses).mean()))
    assert abs(carried - reset) > 1e-3 * carried  # the two readings differ, so the check bites
    model.train()
    assert evaluate(model, ids, 2, num_steps, "cpu") == pytest.approx(carried, rel=1e-5)
    assert model.training  # evaluate restores the mode


# --- 5. random sampling starts every minibatch from a zero state ------------

def _states(sampler: str) -> list[object]:
    V = 7
    mc = ModelConfig(kind="rnn", vocab_size=V, num_hiddens=8)
    torch.manual_seed(0)
    model = build_model(mc)
    seen = Inputs(model)
    list(trainer_mod.train(np.random.default_rng(0).integers(0, V, 200), mc, tcfg(sampler=sampler, lr=0.1),
                           model=model))
    return [s for _, s in seen.calls]


def test_random_sampling_starts_every_minibatch_from_a_fresh_state():
    states = _states("random")
    assert len(states) >= 10
    carried = [i for i, s in enumerate(states) if float(s.abs().max()) != 0.0]
    assert not carried, f"minibatches {carried} of a random-sampling epoch started from a carried state"
    carried = _states("sequential")  # the control: sequential partitioning does carry it
    assert float(carried[0].abs().max()) == 0.0 and all(float(s.abs().max()) > 0 for s in carried[1:])


# --- 6. a mid-epoch stop saves the optimizer state it stopped with ----------

def test_a_mid_epoch_stop_saves_the_optimizer_state_of_the_stop(fixed_p, tmp_path, monkeypatch):
    from engine.runs import create_run, open_run

    pipe, mc, _, _ = fixed_p
    made = []
    real = trainer_mod.make_optimizer  # a spy: the trainer's own optimizer, kept to compare with the files
    monkeypatch.setattr(trainer_mod, "make_optimizer", lambda m, c: made.append(real(m, c)) or made[-1])
    cfg = tcfg(epochs=5, optimizer="adam", lr=0.01, sampler="sequential", val_fraction=0.2)
    run = create_run(tmp_path, mc, cfg, pipe)
    torch.manual_seed(0)
    model = build_model(mc)
    stop, at_epoch_end, in_epoch_2 = threading.Event(), None, 0
    for ev in trainer_mod.train(pipe, mc, cfg, run=run, model=model, stop=stop):
        if isinstance(ev, Progress) and ev.epoch_end and ev.epoch == 1:
            at_epoch_end = [made[0].state[p]["exp_avg"].clone() for p in model.parameters()]
        if isinstance(ev, Progress) and ev.epoch == 2 and not ev.epoch_end:
            in_epoch_2 += 1
            if in_epoch_2 == 3:
                stop.set()
    (opt,) = made
    params = list(model.parameters())
    now = [opt.state[p]["exp_avg"] for p in params]
    assert any(not torch.equal(a, b) for a, b in zip(now, at_epoch_end))  # the two states differ
    weights, opt_state, st, _ = open_run(run.path).load_checkpoint()
    assert st["status"] == "stopped" and st["step"] == int(opt.state[params[0]]["step"])
    for i, p in enumerate(params):
        off = float((opt_state["state"][i]["exp_avg"] - now[i]).abs().max())
        assert off == 0.0, f"saved exp_avg of parameter {i} is not the optimizer's at the stop (off by {off:.3g})"
        assert torch.equal(opt_state["state"][i]["exp_avg_sq"], opt.state[p]["exp_avg_sq"])
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


# --- 7. a resume takes the new learning rate ---------------------------------

def test_resume_with_a_new_lr_steps_with_it(tmp_path, monkeypatch):
    from engine.corpus import load_corpus
    from engine.pipeline import build_pipeline
    from engine.runs import create_run, open_run

    path = tmp_path / "text.txt"
    path.write_text("abcdefg" * 30, encoding="utf-8")
    pipe = build_pipeline(load_corpus(str(path)), mode="raw", tokenizer="char")
    V = len(pipe.vocab)
    assert pipe.vocab.idx_to_token == ["<unk>", *"abcdefg"]  # the target of id x is x % 7 + 1
    mc = ModelConfig(kind="rnn", vocab_size=V, num_hiddens=8)
    run = create_run(tmp_path / "runs", mc, tcfg(lr=0.1, clip="off", sampler="sequential"), pipe)
    list(trainer_mod.train(pipe, mc, run.train_config, run=run))
    saved = open_run(run.path).load_model().train()
    made = []
    real = trainer_mod.make_optimizer  # a spy: the trainer's own optimizer
    monkeypatch.setattr(trainer_mod, "make_optimizer", lambda m, c: made.append(real(m, c)) or made[-1])
    model = build_model(mc)
    seen = Inputs(model)
    events = trainer_mod.train(pipe, mc, tcfg(epochs=2, lr=0.5, clip="off", sampler="sequential"),
                               run=open_run(run.path), model=model)
    first = next(e for e in events if isinstance(e, Progress))
    assert first.epoch == 2
    X, state = seen.calls[0]
    assert float(state.abs().max()) == 0.0  # the epoch's first minibatch: a fresh state
    Y = X % 7 + 1
    want, _, _ = hand_sgd_step(saved, X, Y, 0.5, "off", 1.0)
    slow, _, _ = hand_sgd_step(saved, X, Y, 0.1, "off", 1.0)
    assert any(float((w - s).abs().max()) > 1e-4 for w, s in zip(want, slow))
    for (name, p), w in zip(model.named_parameters(), want):  # the update is made with the new lr
        off = float((p.detach() - w).abs().max())
        assert off <= 1e-6, f"{name} after the resumed run's first step is off the lr 0.5 step by {off:.3g}"
    assert made[0].param_groups[0]["lr"] == 0.5  # and the optimizer holds it
    events.close()


# --- 8. runs newest first ---------------------------------------------------

def test_runs_are_listed_newest_first(fixed_p, tmp_path, capsys):
    import json

    from engine.runs import create_run, list_runs
    from tui.cli import main

    pipe, mc, _, _ = fixed_p
    runs = tmp_path / "runs"
    made = create_run(runs, mc, tcfg(val_fraction=0.2), pipe)
    names = {"20240105-101010-rnn-abcd": "2024-01-05T10:10:10", "20300101-000000-rnn-abcd": "2030-01-01T00:00:00",
             "20250612-235959-rnn-abcd": "2025-06-12T23:59:59"}
    for name, created in names.items():
        shutil.copytree(made.path, runs / name)
        cfg = json.loads((runs / name / "config.json").read_text())
        (runs / name / "config.json").write_text(json.dumps({**cfg, "created": created}))
    shutil.rmtree(made.path)
    newest_first = ["20300101-000000-rnn-abcd", "20250612-235959-rnn-abcd", "20240105-101010-rnn-abcd"]
    assert [r.name for r in list_runs(runs)] == newest_first
    capsys.readouterr()
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    assert [ln.split("\t")[0] for ln in capsys.readouterr().out.splitlines()[1:]] == newest_first


# --- 9. the ETA -------------------------------------------------------------

class _Clock:
    """Moves only inside the model: 0.1 s per training minibatch, 0.5 s per validation chunk."""

    def __init__(self) -> None:
        self.now, self.train_s = 0.0, 0.0

    def __call__(self) -> float:
        return self.now

    def hook(self, module, args, output) -> None:
        step = 0.1 if module.training else 0.5
        self.now += step
        self.train_s += step if module.training else 0.0


def test_eta_counts_the_epochs_left_and_the_time_spent_off_training(fixed_p, monkeypatch):
    pipe, mc, _, _ = fixed_p
    cfg = tcfg(epochs=3, val_fraction=0.2, sampler="sequential", lr=0.1)
    clock = _Clock()
    torch.manual_seed(0)
    model = build_model(mc)
    model.register_forward_hook(clock.hook)
    monkeypatch.setattr(trainer_mod, "_clock", clock)
    tokens = cfg.batch_size * cfg.num_steps  # per minibatch
    per_epoch = (len(TRAIN_TEXT) - 1) // tokens  # the trainer's estimate of minibatches per epoch: 50
    checked = 0
    done: Counter[int] = Counter()
    for ev in trainer_mod.train(pipe, mc, cfg, model=model):
        if not isinstance(ev, Progress) or ev.epoch_end:
            continue
        done[ev.epoch] += 1
        if ev.epoch == 1:
            continue  # no validation yet: nothing off training to count
        left = (cfg.epochs - ev.epoch + 1) * per_epoch * tokens - done[ev.epoch] * tokens
        rate = tokens / 0.1  # every minibatch takes 0.1 s: the smoothed rate is exact
        assert clock.now > clock.train_s  # validation took time
        assert ev.eta_s == pytest.approx(left / rate * clock.now / clock.train_s, rel=1e-6)
        checked += 1
    assert checked > 20


# --- 10. val_fraction = 0: no validation, every token trains ---------------

# 44 tokens, num_steps 4, batch_size 2. Whatever offset o in 0..3 an epoch draws, random sampling cuts
# (44 - 1 - o) // 4 = 10 subsequences (43 // 4 = 40 // 4 = 10) and batches all of them: 5 minibatches,
# 40 distinct input positions. Holding out any tail costs minibatches: 40 tokens give 39 // 4 = 9
# subsequences at o = 0, so 4 minibatches.
N_ALL, STEPS_PER_EPOCH, POSITIONS_PER_EPOCH = 44, 5, 40


def test_no_validation_split_trains_on_every_token_and_reports_no_val_ppl(fixed_p, tmp_path, capsys):
    from engine.runs import create_run, list_runs
    from tui.cli import main

    # Token ids that name their own position: what each minibatch read is known exactly.
    mc = ModelConfig(kind="rnn", vocab_size=N_ALL, num_hiddens=4)
    model = build_model(mc)
    seen = Inputs(model)
    events = list(trainer_mod.train(np.arange(N_ALL), mc, tcfg(epochs=3, lr=0.1, val_fraction=0.0), model=model))
    ends = [e for e in events if isinstance(e, Progress) and e.epoch_end]
    assert [e.step for e in ends] == [STEPS_PER_EPOCH * k for k in (1, 2, 3)]
    assert len(seen.calls) == 3 * STEPS_PER_EPOCH
    for epoch in range(3):
        X = torch.cat([x for x, _ in seen.calls[epoch * STEPS_PER_EPOCH:(epoch + 1) * STEPS_PER_EPOCH]]).ravel()
        assert sorted(X.tolist()) == list(range(int(X.min()), int(X.min()) + POSITIONS_PER_EPOCH))
        assert int(X.min()) <= 3 and int(X.max()) + 1 <= N_ALL - 1  # the offset; the last target is in the text
    shown = [e.val_ppl for e in events if isinstance(e, Progress)]
    assert shown == [None] * len(shown)
    fin = events[-1]
    assert isinstance(fin, Finished) and fin.val_ppl is None and fin.train_ppl == ends[-1].train_ppl

    # With a run: checkpoint.json, list_runs and `rnnlab runs` say "no validation" too.
    pipe, mc, _, _ = fixed_p
    cfg = tcfg(epochs=2, lr=0.1, val_fraction=0.0, max_tokens=N_ALL)
    runs = tmp_path / "runs"
    run = create_run(runs, mc, cfg, pipe)
    events = list(trainer_mod.train(pipe, mc, cfg, run=run))
    assert [e.step for e in events if isinstance(e, Progress) and e.epoch_end] == [5, 10]
    fin = events[-1]
    st = run.trainer_state()
    assert st["val_ppl"] is None and st["train_ppl"] == fin.train_ppl and fin.val_ppl is None
    (summary,) = list_runs(runs)
    assert summary.val_ppl is None
    capsys.readouterr()
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    header, row = (line.split("\t") for line in capsys.readouterr().out.splitlines())
    cells = dict(zip(header, row))
    assert (cells["train ppl"], cells["val ppl"]) == (f"{fin.train_ppl:.3f}", "-")


# --- 11. periodic checkpoints on a clock the test drives ---------------------

class _StepClock:
    """Moves 1 s per training minibatch, nowhere else."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def hook(self, module, args, output) -> None:
        if module.training:
            self.now += 1.0


def test_periodic_checkpoints_are_written_when_the_interval_has_elapsed(fixed_p, tmp_path, monkeypatch):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from engine.events import Checkpoint
    from engine.runs import create_run

    pipe, mc, _, _ = fixed_p
    # 5 minibatches (5 s) per epoch; an interval of 10 s has elapsed exactly at the ends of epochs 2 and 4
    # (10 s since the start, 10 s since the checkpoint of epoch 2). Epoch 6 is the last: it gets the final
    # checkpoint, and only that one.
    cfg = tcfg(epochs=6, lr=0.5, val_fraction=0.0, max_tokens=N_ALL, checkpoint_interval_s=2.0 * STEPS_PER_EPOCH)
    run = create_run(tmp_path, mc, cfg, pipe)
    clock = _StepClock()
    monkeypatch.setattr(trainer_mod, "_clock", clock)
    torch.manual_seed(0)
    model = build_model(mc)
    model.register_forward_hook(clock.hook)
    weights_at_end: dict[int, dict[str, torch.Tensor]] = {}
    saved: list[tuple[int, int]] = []
    on_disk_at_end: dict[int, int | None] = {}
    for ev in trainer_mod.train(pipe, mc, cfg, run=run, model=model):
        if isinstance(ev, Progress) and ev.epoch_end:
            assert clock.now == STEPS_PER_EPOCH * ev.epoch
            weights_at_end[ev.epoch] = {k: v.clone() for k, v in model.state_dict().items()}
            on_disk_at_end[ev.epoch] = run.trainer_state()["step"] if run.has_checkpoint() else None
        if isinstance(ev, Checkpoint):
            saved.append((ev.epoch, ev.step))
            st = run.trainer_state()
            assert (st["epoch"], st["step"]) == (ev.epoch, ev.step) == (ev.epoch, STEPS_PER_EPOCH * ev.epoch)
            path = run.path / "model.safetensors"
            with safe_open(str(path), framework="pt") as f:
                assert f.metadata()["step"] == str(ev.step)
            on_disk = load_file(str(path))
            assert on_disk.keys() == weights_at_end[ev.epoch].keys()
            for k, v in weights_at_end[ev.epoch].items():  # the weights of that epoch's end, and the model's now
                assert torch.equal(on_disk[k], v), f"checkpoint of epoch {ev.epoch}: {k} is not that epoch's"
                assert torch.equal(on_disk[k], model.state_dict()[k])
    assert saved == [(2, 10), (4, 20), (6, 30)]
    # nothing written between: at the ends of epochs 1, 3 and 5 the disk holds the previous checkpoint
    assert on_disk_at_end == {1: None, 2: None, 3: 10, 4: 10, 5: 20, 6: 20}
    for a, b in ((1, 2), (2, 3), (4, 5)):  # every epoch moves the weights: a neighbour's would not pass
        assert any(not torch.equal(weights_at_end[a][k], weights_at_end[b][k]) for k in weights_at_end[a])


# --- 12. adamw: decoupled weight decay, Adam's moments ----------------------

def _adamw_by_hand(params: list[torch.Tensor], grads: list[list[torch.Tensor]], lr: float, weight_decay: float,
                   betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> list[torch.Tensor]:
    """AdamW (Loshchilov & Hutter) in float64, one step per entry of ``grads``:
    p ← p (1 − lr λ) − lr m̂ / (√v̂ + ε), m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ)."""
    b1, b2 = betas
    ps = [p.double() for p in params]
    m = [torch.zeros_like(p) for p in ps]
    v = [torch.zeros_like(p) for p in ps]
    for t, gs in enumerate(grads, start=1):
        for i, g in enumerate(gs):
            g = g.double()
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            ps[i] = ps[i] * (1 - lr * weight_decay) - lr * m_hat / (v_hat.sqrt() + eps)
    return ps


def _grads(model0: torch.nn.Module, weights: list[torch.Tensor], X: torch.Tensor,
           Y: torch.Tensor) -> list[torch.Tensor]:
    """Gradients of the mean cross-entropy at ``weights``, from a fresh state (random sampling)."""
    m = copy.deepcopy(model0)
    with torch.no_grad():
        for p, w in zip(m.parameters(), weights):
            p.copy_(w)
    logits, _ = m(X, m.begin_state(X.shape[0]))
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y.T.reshape(-1))
    return list(torch.autograd.grad(loss, list(m.parameters())))


def test_adamw_updates_are_the_hand_made_adamw_steps():
    V, lr, weight_decay = 7, 0.05, 0.01  # torch's AdamW default λ: rnnlab leaves weight decay at it
    mc = ModelConfig(kind="rnn", vocab_size=V, num_hiddens=8)
    torch.manual_seed(3)
    model = build_model(mc)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)  # weights far from 0, so the decay term lr λ p shows
    model0 = copy.deepcopy(model)
    seen = Inputs(model)
    events = trainer_mod.train(cyclic_ids(60, V), mc, tcfg(optimizer="adamw", lr=lr, clip="off"), model=model)
    progress = [next(e for e in events if isinstance(e, Progress)) for _ in range(2)]
    assert [p.step for p in progress] == [1, 2] and len(seen.calls) == 2
    (X1, _), (X2, _) = seen.calls
    w0 = [p.detach().clone() for p in model0.parameters()]
    g1 = _grads(model0, w0, X1, (X1 + 1) % V)
    w1 = _adamw_by_hand(w0, [g1], lr, weight_decay)
    g2 = _grads(model0, [w.float() for w in w1], X2, (X2 + 1) % V)
    w2 = _adamw_by_hand(w0, [g1, g2], lr, weight_decay)
    adam = _adamw_by_hand(w0, [g1, g2], lr, 0.0)  # plain Adam: what ignoring the decay would give
    tol = 2e-6
    assert max(float((a - b).abs().max()) for a, b in zip(w2, adam)) > 100 * tol  # ~2 lr λ |p| ≈ 9e-4
    for (name, p), want in zip(model.named_parameters(), w2):
        off = float((p.detach().double() - want).abs().max())
        assert off <= tol, f"{name} after two adamw steps is off the hand-made AdamW steps by {off:.3g}"
    events.close()


# --- 13. embedding input -----------------------------------------------------

def _hand_forward(model, X: torch.Tensor, state) -> tuple[torch.Tensor, torch.Tensor]:
    """The embedding looked up by indexing its table, then D2L's cell for the kind, one step at a time
    (torch.nn's gate order: GRU r, z, n; LSTM i, f, g, o). Returns (logits, last hidden state)."""
    kind = model.cfg.kind
    E = model.embedding.weight[X.T]  # (num_steps, batch, embed_size)
    if kind == "scratch":
        Hh, outs = state, []
        for e in E:
            Hh = torch.tanh(e @ model.W_xh + Hh @ model.W_hh + model.b_h)
            outs.append(Hh @ model.W_hq + model.b_q)
        return torch.stack(outs), Hh
    r = model.rnn
    W_ih, W_hh, b_ih, b_hh = r.weight_ih_l0, r.weight_hh_l0, r.bias_ih_l0, r.bias_hh_l0
    h, c = (state[0][0], state[1][0]) if kind == "lstm" else (state[0], None)
    outs = []
    for e in E:
        a, b = e @ W_ih.T + b_ih, h @ W_hh.T + b_hh
        if kind == "rnn":
            h = torch.tanh(a + b)
        elif kind == "gru":
            (ar, az, an), (br, bz, bn) = a.chunk(3, -1), b.chunk(3, -1)
            rr, z = torch.sigmoid(ar + br), torch.sigmoid(az + bz)
            h = (1 - z) * torch.tanh(an + rr * bn) + z * h
        else:
            i, f, g, o = (a + b).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h @ model.linear.weight.T + model.linear.bias)
    return torch.stack(outs), h


@pytest.mark.parametrize("kind", ["scratch", "rnn", "gru", "lstm"])
def test_embedding_forward_is_a_table_lookup_then_the_recurrence(kind):
    V, B, T = 9, 3, 5  # batch ≠ num_steps: a transposed input cannot pass unnoticed
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, vocab_size=V, num_hiddens=6, encoding="embedding", embed_size=4))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.7)  # away from D2L's 0.01 scale: every term matters
    X = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(1))
    state = model.begin_state(B)
    logits, new = model(X, state)
    want, h = _hand_forward(model, X, state)
    assert logits.shape == (T, B, V)
    torch.testing.assert_close(logits, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(new[0] if kind == "lstm" else new, h if kind == "scratch" else h.unsqueeze(0),
                               atol=1e-5, rtol=0)


def test_training_with_an_embedding_updates_it_by_the_hand_made_sgd_step():
    V, lr = 7, 0.5
    mc = ModelConfig(kind="gru", vocab_size=V, num_hiddens=8, encoding="embedding", embed_size=3)
    torch.manual_seed(3)
    model = build_model(mc)
    model0 = copy.deepcopy(model)
    seen = Inputs(model)
    events = trainer_mod.train(cyclic_ids(60, V), mc, tcfg(lr=lr, clip="off", sampler="random"), model=model)
    next(e for e in events if isinstance(e, Progress))
    X = seen.calls[0][0]
    expected, _, _ = hand_sgd_step(model0, X, (X + 1) % V, lr, "off", 1.0)
    names = [n for n, _ in model.named_parameters()]
    table = expected[names.index("embedding.weight")]
    used = sorted(set(X.ravel().tolist()))
    moved = (table - model0.embedding.weight.detach()).abs().amax(1)
    assert float(moved[used].min()) > 1e-4  # every row the minibatch read moves …
    assert all(float(moved[i]) == 0.0 for i in range(V) if i not in used)  # … the others cannot
    for (name, p), want in zip(model.named_parameters(), expected):
        off = float((p.detach() - want).abs().max())
        assert off <= 1e-6, f"{name} after the first step is off the hand-made SGD step by {off:.3g}"
    events.close()


# --- 14. the sample_every cadence --------------------------------------------

@pytest.mark.parametrize("epochs,sample_every,sampled", [
    (7, 3, [3, 6, 7]),  # every third epoch, and the last
    (6, 3, [3, 6]),  # the last is a multiple: sampled once
    (3, 1, [1, 2, 3]),
    (3, 5, [3]),  # fewer epochs than the cadence: the last only
    (4, 0, []),  # 0: never
])
def test_samples_follow_the_cadence(fixed_p, epochs, sample_every, sampled):
    from engine.events import Sample

    pipe, mc, _, _ = fixed_p
    cfg = tcfg(epochs=epochs, sample_every=sample_every, sample_prefix="ab", sample_len=4, lr=0.5,
               val_fraction=0.0, max_tokens=N_ALL)
    torch.manual_seed(0)
    events = list(trainer_mod.train(pipe, mc, cfg, model=build_model(mc)))
    samples = [(i, e) for i, e in enumerate(events) if isinstance(e, Sample)]
    assert [e.epoch for _, e in samples] == sampled
    for i, s in samples:  # right after its epoch's end, before anything of the next epoch
        before = events[i - 1]
        assert isinstance(before, Progress) and before.epoch_end and before.epoch == s.epoch
        assert s.prefix == "ab" and s.text.startswith("ab") and len(s.text) == 2 + 4
