"""Data-parallel training (issue 14) on the CPU with two Gloo processes.

One spawn of two ranks (``_ranks``, shared by the module's tests: starting torch twice costs more than the
training) plays five scenarios in one process group, each an ordinary ``train(..., world=...)`` call:

* ``sequential``/``random``: two ranks, batch 2 each, against a single-process loop written here
  (``_reference``) over the same global batch: rank r's shard is the r-th half of the training ids, its
  minibatches drawn with ``(seed, epoch, r)``, the two stacked into one minibatch of 4 rows, its mean
  loss's gradient clipped by hand and stepped by hand with SGD. The running train perplexity of every
  step, the final weights on both ranks and the validation perplexity (rank 0, the whole tail) must
  match it within float32 rounding;
* ``stop``: rank 1 alone is asked to stop after step 3: both end "stopped" at step 3, rank 0 saved;
* ``diverge``: rank 1's logits are scaled by 10⁴ from its 4th minibatch on (a loss thousands of nats
  past the limit, its gradient finite): both ranks report Diverged at step 4, rank 0 saves "diverged";
* ``resume_two``: a run trained one epoch by one process (Adam) resumes on two ranks: rank 1 starts from
  rank 0's weights, moments and counters, so the replicas stay equal and the step count continues.

Then a run trained on two ranks resumes in this process (one rank) and loads on the CPU, and
``rnnlab train --nproc 2`` (torchrun's launcher) stops on a SIGINT to the launcher with rank 0 saving.

Planted bugs each of these fails on (tried by hand): the model not wrapped in DDP (no gradient averaging:
replicas and reference differ); the shard ``ids[rank::2]`` instead of halves, or every rank reading all
ids; the rng without the rank; Progress from rank 0's own sums (curve off the reference); ``loss_max``
not gathered (rank 0 trains on while rank 1 diverged: the group times out); a rank's own stop event
used instead of the agreed one (rank 1 leaves, rank 0 times out); the optimizer state not sent at
start (replicas differ after the resume); the snapshot taken from the DDP wrapper ("module." keys: the
divergence's restore and a resume refuse them); ``_launch`` letting SignalException through (exit 1).
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch.nn import functional as F

from engine.config import ModelConfig, TrainConfig
from engine.data import train_batches
from engine.events import Diverged, Finished, Progress
from engine.models import build_model
from engine.training import evaluate

REPO = Path(__file__).resolve().parent.parent
MAX_TOKENS, VAL = 600, 0.1  # 540 training ids (two shards of 270), 60 for validation
BASE = dict(batch_size=2, num_steps=5, max_tokens=MAX_TOKENS, val_fraction=VAL, lr=1.0, clip="norm", clip_theta=0.5,
            sample_every=0, threads=1, log_every_steps=1, checkpoint_interval_s=1e9, device="cpu")  # Gloo on CPUs


def _model_cfg(vocab: int) -> ModelConfig:
    return ModelConfig(kind="gru", vocab_size=vocab, num_hiddens=16)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the ranks (spawned) ------------------------------------------------------------------------------
def _scale_logits_from(call: int, factor: float):
    """A forward hook: the model's logits times ``factor`` from its ``call``-th forward pass on."""
    calls = [0]

    def hook(module, inputs, output):
        calls[0] += 1
        logits, state = output
        return (logits * factor, state) if calls[0] >= call else output

    return hook


def _play(world, ids, vocab, name, cfg, run_path, out):
    """One scenario on this rank: its events' figures and its model's final weights into ``out[name]``."""
    from engine.runs import open_run
    from engine.trainer import train

    torch.manual_seed(cfg.seed)
    model = build_model(_model_cfg(vocab))
    stop = threading.Event()
    if name == "diverge" and world.rank == 1:
        model.register_forward_hook(_scale_logits_from(4, 1e4))
    run = open_run(run_path) if run_path and world.is_main else None
    progress, finished, diverged = [], None, None
    for ev in train(ids, _model_cfg(vocab), cfg, run=run, stop=stop, model=model, world=world):
        if isinstance(ev, Progress):
            progress.append((ev.step, ev.epoch_end, ev.train_ppl, ev.val_ppl))
            if name == "stop" and world.rank == 1 and ev.step == 3:
                stop.set()
        elif isinstance(ev, Diverged):
            diverged = ev.step
        elif isinstance(ev, Finished):
            finished = (ev.reason, ev.step)
    out[name] = {"progress": progress, "finished": finished, "diverged": diverged,
                 "weights": {k: v.clone() for k, v in model.state_dict().items()}, "rng": torch.get_rng_state()}


def _rank_main(rank: int, port: int, ids: np.ndarray, vocab: int, plays: list, folder: str) -> None:
    from engine import distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    world = distributed.World(rank=rank, size=2, local_rank=rank, local_size=2)
    distributed.setup(world, timeout_s=60)  # a planted bug that leaves one rank waiting fails in a minute
    out: dict = {}
    try:
        for name, cfg, run_path in plays:
            _play(world, ids, vocab, name, cfg, run_path, out)
    finally:
        torch.save(out, Path(folder) / f"rank{rank}.pt")
        distributed.cleanup()


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{**BASE, **kw})


PLAYS = {
    "sequential": _cfg(sampler="sequential", epochs=2),
    "random": _cfg(sampler="random", epochs=2, seed=3),
    "stop": _cfg(sampler="sequential", epochs=50),
    "diverge": _cfg(sampler="random", epochs=3),
    "resume_two": _cfg(sampler="sequential", epochs=2, optimizer="adam", lr=0.01),
}


@pytest.fixture(scope="module")
def ranks(pipeline, tmp_path_factory):
    """Both ranks' results of every scenario, and the run folders rank 0 wrote."""
    from engine.runs import create_run, open_run
    from engine.trainer import train

    folder = tmp_path_factory.mktemp("ddp")
    vocab = len(pipeline.vocab)
    runs = {name: create_run(folder / "runs", _model_cfg(vocab), PLAYS[name], pipeline).path
            for name in ("sequential", "stop", "diverge", "resume_two")}
    one = open_run(runs["resume_two"])  # its first epoch by one process
    for _ in train(pipeline, _model_cfg(vocab), replace(PLAYS["resume_two"], epochs=1), run=one):
        pass
    plays = [(name, cfg, str(runs.get(name, ""))) for name, cfg in PLAYS.items()]
    ids = np.asarray(pipeline.ids)
    mp.spawn(_rank_main, args=(_free_port(), ids, vocab, plays, str(folder)), nprocs=2)
    got = [torch.load(folder / f"rank{r}.pt") for r in (0, 1)]
    return got, runs, ids, vocab


# --- the single-process reference ---------------------------------------------------------------------
def _reference(ids: np.ndarray, vocab: int, cfg: TrainConfig):
    """Two shards' minibatches stacked into one, trained by one process: (step, running train perplexity)
    after every step, the final weights and the validation perplexity at the end."""
    ids = ids[:MAX_TOKENS]
    n_val = round(MAX_TOKENS * VAL)
    train_ids, val_ids = ids[: MAX_TOKENS - n_val], ids[MAX_TOKENS - n_val :]
    half = len(train_ids) // 2
    shards = [train_ids[:half], train_ids[half : 2 * half]]
    torch.manual_seed(cfg.seed)
    model = build_model(_model_cfg(vocab))
    params = list(model.parameters())
    curve, step = [], 0
    for epoch in range(1, cfg.epochs + 1):
        streams = [train_batches(shards[r], cfg, np.random.default_rng([cfg.seed, epoch, r])) for r in (0, 1)]
        state, total, k = None, 0.0, 0
        for (X0, Y0), (X1, Y1) in zip(*streams):  # as many as the shorter rank has
            X, Y = torch.cat([X0, X1]), torch.cat([Y0, Y1])
            if state is None or cfg.sampler != "sequential":
                state = model.begin_state(X.shape[0])
            else:
                state = state.detach()
            logits, state = model(X, state)  # (num_steps, rows, vocab)
            loss = F.cross_entropy(logits.reshape(-1, vocab), Y.T.reshape(-1))
            for p in params:
                p.grad = None
            loss.backward()
            with torch.no_grad():
                norm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in params))
                for p in params:
                    if norm > cfg.clip_theta:
                        p.grad *= cfg.clip_theta / norm
                    p -= cfg.lr * p.grad
            step += 1
            total, k = total + float(loss.detach()), k + 1
            curve.append((step, math.exp(total / k)))
    val = evaluate(model, val_ids, cfg.batch_size, cfg.num_steps, torch.device("cpu"))
    return curve, model.state_dict(), val


def _assert_weights_equal(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=0), (k, float((a[k] - b[k]).abs().max()))


@pytest.mark.parametrize("name", ["sequential", "random"])
def test_two_ranks_train_as_one_process_on_the_stacked_minibatches(ranks, name):
    (r0, r1), _, ids, vocab = ranks
    curve, weights, val = _reference(ids, vocab, PLAYS[name])
    steps = [(s, ppl) for s, end, ppl, _ in r0[name]["progress"] if not end]
    assert [s for s, _ in steps] == [s for s, _ in curve] and len(curve) > 20
    np.testing.assert_allclose([p for _, p in steps], [p for _, p in curve], rtol=1e-4)
    _assert_weights_equal(r0[name]["weights"], weights, atol=2e-4)
    _assert_weights_equal(r1[name]["weights"], r0[name]["weights"], atol=0)  # the replicas stay equal
    last = r0[name]["progress"][-1]
    assert last[1] and last[3] == pytest.approx(val, rel=1e-4)  # validation: rank 0, the whole tail
    assert r0[name]["finished"] == r1[name]["finished"] == ("completed", curve[-1][0])


def test_a_stop_asked_on_one_rank_stops_both_at_the_same_step(ranks):
    from engine.runs import open_run

    (r0, r1), runs, _, _ = ranks
    assert r0["stop"]["finished"] == r1["stop"]["finished"] == ("stopped", 3)
    state = open_run(runs["stop"]).trainer_state()
    assert (state["status"], state["step"], state["world_size"]) == ("stopped", 3, 2)
    _assert_weights_equal(open_run(runs["stop"]).load_model().state_dict(), r0["stop"]["weights"], atol=0)


def test_a_loss_past_the_limit_on_one_rank_stops_both(ranks):
    from engine.runs import open_run

    (r0, r1), runs, _, _ = ranks
    assert r0["diverge"]["diverged"] == r1["diverge"]["diverged"] == 4
    assert r0["diverge"]["finished"][0] == r1["diverge"]["finished"][0] == "diverged"
    assert open_run(runs["diverge"]).trainer_state()["status"] == "diverged"


def test_a_one_process_run_resumes_on_two_ranks_in_step(ranks):
    from engine.runs import open_run

    (r0, r1), runs, _, _ = ranks
    _assert_weights_equal(r1["resume_two"]["weights"], r0["resume_two"]["weights"], atol=0)
    run = open_run(runs["resume_two"])
    steps = [m["step"] for m in run.metrics() if not m["epoch_end"]]
    assert steps == list(range(1, len(steps) + 1))  # epoch 1 by one process, epoch 2 by two, one log
    one_epoch = sum(1 for m in run.metrics() if m["epoch"] == 1 and not m["epoch_end"])
    assert r0["resume_two"]["progress"][0][0] == one_epoch + 1
    assert run.train_config.world_size == 2 and run.trainer_state()["epoch"] == 2


def test_a_two_rank_run_resumes_on_one_process_and_loads_on_the_cpu(ranks, pipeline):
    from safetensors import safe_open

    from engine.runs import open_run
    from engine.trainer import train

    (r0, _), runs, _, vocab = ranks
    run = open_run(runs["sequential"])
    with safe_open(str(run.path / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if k.startswith("module.")]
    _assert_weights_equal(run.load_model("cpu").state_dict(), r0["sequential"]["weights"], atol=0)
    saved = run.trainer_state()["step"]
    events = list(train(pipeline, _model_cfg(vocab), replace(PLAYS["sequential"], epochs=3), run=run))
    first = next(e for e in events if isinstance(e, Progress))
    assert first.step == saved + 1 and first.epoch == 3
    assert events[-1].reason == "completed"
    run = open_run(run.path)
    assert run.train_config.world_size == 1 and run.trainer_state()["world_size"] == 1
    steps = [m["step"] for m in run.metrics() if not m["epoch_end"]]
    assert steps == list(range(1, len(steps) + 1))


def test_each_rank_draws_from_its_own_torch_stream(ranks):
    # the ranks start from one seed (the same initial weights) and rank 0's RNG is sent to the others, so
    # without a stream of their own every rank would draw the same dropout masks
    got, *_ = ranks
    for name in ("sequential", "random"):
        assert not torch.equal(got[0][name]["rng"], got[1][name]["rng"])
        _assert_weights_equal(got[0][name]["weights"], got[1][name]["weights"], atol=0)  # DDP keeps them one


def test_a_ranks_own_stream_is_a_function_of_seed_step_and_rank():
    from engine.distributed import World

    def state_after(world, seed, step):
        torch.manual_seed(123)
        world.own_stream(seed, step)
        return torch.get_rng_state()

    torch.manual_seed(123)
    untouched = torch.get_rng_state()
    one, zero = World(rank=1, size=2, local_rank=1, local_size=2), World(rank=0, size=2, local_rank=0, local_size=2)
    assert torch.equal(state_after(zero, 0, 5), untouched)  # rank 0 keeps the run's (checkpointed) stream
    assert torch.equal(state_after(World(), 0, 5), untouched)  # and so does a single process
    assert torch.equal(state_after(one, 0, 5), state_after(one, 0, 5))  # reproducible
    assert not torch.equal(state_after(one, 0, 5), untouched)
    assert not torch.equal(state_after(one, 0, 5), state_after(one, 0, 6))  # a resume from another step
    assert not torch.equal(state_after(one, 0, 5), state_after(one, 1, 5))
    two = World(rank=2, size=3, local_rank=2, local_size=3)
    assert not torch.equal(state_after(one, 0, 5), state_after(two, 0, 5))


def test_shards_are_contiguous_equal_parts():
    from engine.distributed import World, shard

    cfg = TrainConfig(batch_size=1, num_steps=1)
    ids = np.arange(11)
    assert [shard(ids, World(rank=r, size=2, local_rank=r, local_size=2), cfg).tolist() for r in (0, 1)] == [
        [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert World.from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == World(1, 2, 1, 2)
    assert World.from_env({}) is None


# --- rnnlab train --nproc 2 ---------------------------------------------------------------------------
def test_nproc_launches_two_ranks_and_a_sigint_to_the_launcher_stops_them_saved(tmp_path):
    env = {**os.environ, "RNNLAB_HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "tui.cli", "train", "--nproc", "2", "--model", "rnn", "--num-hiddens", "16",
           "--max-tokens", "2000", "--batch-size", "4", "--num-steps", "8", "--sampler", "sequential",
           "--epochs", "100000", "--sample-every", "0", "--log-every-steps", "1", "--device", "cpu"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        metrics = None
        while proc.poll() is None and metrics is None:
            found = list((tmp_path / "runs").glob("*/metrics.jsonl"))
            metrics = found[0] if found and found[0].stat().st_size else None
            time.sleep(0.2)
        assert metrics is not None, proc.communicate()[1]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "2 processes × batch 4 = effective batch 8" in err
    assert out.startswith("stopped: epoch")
    run = metrics.parent
    state = json.loads((run / "checkpoint.json").read_text())
    assert state["status"] == "stopped" and state["world_size"] == 2
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    steps = [m["step"] for m in lines if not m["epoch_end"]]
    assert steps == list(range(1, len(steps) + 1))  # every step logged once: rank 0 alone writes
    assert max(m["step"] for m in lines) == state["step"]
    assert json.loads((run / "config.json").read_text())["train"]["world_size"] == 2


@pytest.mark.parametrize("argv,env,needle", [
    (["--nproc", "0"], {}, "--nproc must be at least 1 (got 0)"),
    (["--nproc", "2", "--lr", "-1"], {}, "lr must be a positive number"),  # checked before any process starts
    (["--nproc", "3"], {"RANK": "0", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"},
     "--nproc 3 but torchrun started 2 processes on this machine"),
])
def test_bad_nproc_exits_2_naming_it(argv, env, needle, monkeypatch, capsys):
    from tui.cli import main

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["train", *argv]) == 2
    assert needle in capsys.readouterr().err
