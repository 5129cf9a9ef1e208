"""The trainer on tiny seeded configs: learning, reproducibility, clipping,
truncation regular/none, divergence, stopping, resuming and config checks."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from engine.events import Checkpoint, Diverged, Finished, Progress
from engine.config import ModelConfig, TrainConfig
from engine.models import build_model
from engine.trainer import train
from engine.training import clip_gradients, sequence_loss

TINY = dict(epochs=4, batch_size=8, num_steps=10, max_tokens=2000, sample_every=0, threads=1, log_interval_s=0.0)


def configs(pipeline, model=None, **train):
    mc = ModelConfig(**{"kind": "gru", "vocab_size": len(pipeline.vocab), "num_hiddens": 32, **(model or {})})
    return mc, TrainConfig(**{**TINY, **train})


def epoch_ends(events):
    return [(e.epoch, e.step, e.train_ppl, e.val_ppl) for e in events if isinstance(e, Progress) and e.epoch_end]


def test_perplexity_falls_and_progress_is_complete(pipeline):
    events = list(train(pipeline, *configs(pipeline, optimizer="adam", lr=0.01)))
    ends = epoch_ends(events)
    assert [e[0] for e in ends] == [1, 2, 3, 4]
    assert ends[-1][2] < 0.7 * ends[0][2]  # training perplexity falls
    assert ends[-1][3] < ends[0][3]  # and so does validation perplexity
    assert ends[0][2] < len(pipeline.vocab) * 1.1  # starts near uniform guessing
    p = [e for e in events if isinstance(e, Progress)][-1]
    assert p.tokens_per_s > 0 and p.grad_norm > 0 and p.lr == 0.01 and p.epochs == 4
    assert p.epoch_end and p.eta_s == 0.0  # nothing left to train after the last epoch
    etas = [e.eta_s for e in events if isinstance(e, Progress) and e.epoch_end and e.epoch < 4]
    assert len(etas) == 3 and all(eta > 0 for eta in etas), f"ETA at the ends of epochs 1-3: {etas}"
    assert isinstance(events[-1], Finished) and events[-1].reason == "completed" and not events[-1].stopped_early


def test_same_seed_same_curve(pipeline):
    a = epoch_ends(train(pipeline, *configs(pipeline, epochs=2, sampler="sequential")))
    b = epoch_ends(train(pipeline, *configs(pipeline, epochs=2, sampler="sequential")))
    c = epoch_ends(train(pipeline, *configs(pipeline, epochs=2, sampler="sequential", seed=1)))
    assert a == b
    assert a != c


@pytest.mark.parametrize("clip,theta", [("norm", 0.05), ("value", 0.001), ("off", 1.0)])
def test_clipping_bounds_the_gradient(clip, theta):
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="rnn", vocab_size=10, num_hiddens=16))
    X = torch.randint(0, 10, (4, 6))
    loss = sequence_loss(model(X, model.begin_state(4))[0], torch.roll(X, 1, 1))
    loss.backward()
    params = list(model.parameters())
    before = [p.grad.clone() for p in params]
    pre = torch.linalg.vector_norm(torch.stack([g.norm() for g in before]))
    norm, changed = clip_gradients(params, clip, theta)
    assert bool(changed) == (clip != "off")  # theta is below |g| and ‖g‖ here: clipping bites unless off
    assert float(norm) == pytest.approx(float(pre), rel=1e-5)  # reported norm is the one before clipping
    post = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
    if clip == "norm":
        assert float(pre) > theta and float(post) == pytest.approx(theta, rel=1e-4)
    elif clip == "value":
        assert max(float(p.grad.abs().max()) for p in params) <= theta + 1e-9
        assert max(float(g.abs().max()) for g in before) > theta
    else:
        assert all(torch.equal(p.grad, g) for p, g in zip(params, before))


def test_progress_reports_norm_before_clipping(pipeline):
    events = list(train(pipeline, *configs(pipeline, epochs=1, clip_theta=1e-3)))
    norms = [e.grad_norm for e in events if isinstance(e, Progress)]
    assert min(norms) > 1e-3


@pytest.mark.parametrize("detach", [True, False])  # truncation regular / none
def test_detach_and_no_detach_both_train(pipeline, detach):
    events = list(train(pipeline, *configs(pipeline, sampler="sequential", truncation="regular" if detach else "none",
                                           optimizer="adam", lr=0.01)))
    ends = epoch_ends(events)
    assert len(ends) == 4 and all(math.isfinite(e[2]) for e in ends)
    assert ends[-1][2] < ends[0][2]
    if not detach:  # one graph per epoch: one optimizer step per epoch
        assert [e[1] for e in ends] == [1, 2, 3, 4]
    else:  # 1800 training tokens in 8 rows of (1799 - offset) // 8 = 223 or 224: 22 minibatches of 10 steps
        assert [e[1] for e in ends] == [22, 44, 66, 88]


def test_no_detach_refuses_when_the_graph_is_too_big(pipeline):
    with pytest.raises(ConfigError, match="truncation=none keeps the whole epoch"):
        list(train(pipeline, *configs(pipeline, sampler="sequential", truncation="none", bptt_limit_mb=1,
                                      max_tokens=100000)))


def test_divergence_is_caught_and_good_weights_are_kept(pipeline, tmp_path):
    from engine.runs import create_run

    mc, tc = configs(pipeline, lr=1e4, clip="off", epochs=3)
    run = create_run(tmp_path, mc, tc, pipeline)
    torch.manual_seed(0)
    trained = build_model(mc)
    good = [{k: v.clone() for k, v in trained.state_dict().items()}]  # the weights at the start and each epoch end
    events = []
    for ev in train(pipeline, mc, tc, run=run, model=trained):
        events.append(ev)
        if isinstance(ev, Progress) and ev.epoch_end and not any(isinstance(e, Diverged) for e in events):
            good.append({k: v.clone() for k, v in trained.state_dict().items()})
    div = [e for e in events if isinstance(e, Diverged)]
    assert len(div) == 1 and div[0].lr == 1e4 and div[0].step >= 1
    assert str(div[0].step) in div[0].message and "lr 10000" in div[0].message
    assert any(isinstance(e, Checkpoint) for e in events)
    assert isinstance(events[-1], Finished) and events[-1].reason == "diverged" and events[-1].stopped_early
    state = run.trainer_state()
    assert state["status"] == "diverged"
    model = run.load_model()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    kept = model.state_dict()  # the weights of the last good epoch end, not the blown-up ones
    assert all(torch.equal(kept[k], v) for k, v in good[-1].items())
    assert state["epoch"] == len(good) - 1


def test_stop_event_stops_cleanly_and_saves(pipeline, tmp_path):
    from engine.runs import create_run

    mc, tc = configs(pipeline, epochs=50)
    run = create_run(tmp_path, mc, tc, pipeline)
    stop = threading.Event()
    events = []
    for ev in train(pipeline, mc, tc, run=run, stop=stop):
        events.append(ev)
        if isinstance(ev, Progress) and ev.epoch_end and ev.epoch == 2:
            stop.set()
    fin = events[-1]
    assert isinstance(fin, Finished) and fin.reason == "stopped" and fin.stopped_early and fin.epoch == 2
    assert run.trainer_state()["step"] == fin.step


def test_resume_continues_like_an_uninterrupted_run(pipeline, tmp_path):
    from engine.runs import create_run, open_run

    mc, tc = configs(pipeline, optimizer="adam", lr=0.01, epochs=4, sampler="sequential")
    straight = epoch_ends(train(pipeline, mc, tc))
    run = create_run(tmp_path, mc, TrainConfig(**{**TINY, "optimizer": "adam", "lr": 0.01, "epochs": 2,
                                                  "sampler": "sequential"}), pipeline)
    first = epoch_ends(train(pipeline, mc, run.train_config, run=run))
    saved = run.trainer_state()
    assert (saved["epoch"], saved["step"]) == (2, first[-1][1])
    resumed_run = open_run(run.name, tmp_path)
    second = list(train(pipeline, mc, tc, run=resumed_run))
    progress = [e for e in second if isinstance(e, Progress)]
    assert progress[0].epoch == 3 and progress[0].step > saved["step"]
    resumed = [x for row in first + epoch_ends(second) for x in row]
    assert len(resumed) == 4 * len(straight)
    # Adam state and data order carried over (pytest.approx takes flat sequences only)
    assert resumed == pytest.approx([x for row in straight for x in row])
    steps = [m["step"] for m in resumed_run.metrics()]
    assert steps == sorted(steps) and steps[-1] == straight[-1][1]


@pytest.mark.parametrize("kw,field", [
    ({"lr": -1.0}, "lr"), ({"batch_size": 0}, "batch_size"), ({"num_steps": 0}, "num_steps"),
    ({"optimizer": "rmsprop"}, "optimizer"), ({"clip": "maybe"}, "clip"), ({"val_fraction": 0.9}, "val_fraction"),
    ({"device": "tpu"}, "device"), ({"truncation": "none"}, "truncation"), ({"epochs": 0}, "epochs"),
])
def test_bad_config_names_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**kw)


def test_num_steps_longer_than_the_corpus_is_a_config_error(pipeline):
    with pytest.raises(ConfigError, match="num_steps"):
        train(pipeline, *configs(pipeline, num_steps=5000))
    with pytest.raises(ConfigError, match="batch_size"):
        train(pipeline, *configs(pipeline, batch_size=500))
    with pytest.raises(ConfigError, match="vocab_size"):
        train(np.array([0, 1, 2, 40] * 500), *configs(pipeline))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_a_clear_error(pipeline):
    with pytest.raises(ConfigError, match="cuda is not available"):
        train(pipeline, *configs(pipeline, device="cuda"))


def test_train_config_json_round_trip():
    cfg = TrainConfig(sample_alpha=math.inf, lr=0.5)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_events_round_trip_through_json():
    import json

    from engine.events import Diverged, event_from_dict

    ev = Diverged(epoch=1, step=2, lr=10.0, loss=math.inf, message="m")
    d = json.loads(json.dumps(ev.to_dict()))
    assert d["type"] == "Diverged" and d["loss"] == "inf"
    assert event_from_dict(d) == ev


def test_resume_with_another_optimizer_keeps_the_weights_and_starts_fresh_state(pipeline, tmp_path):
    from engine.runs import create_run, open_run

    mc, sgd = configs(pipeline, epochs=1, sampler="sequential")
    run = create_run(tmp_path, mc, sgd, pipeline)
    list(train(pipeline, mc, sgd, run=run))
    weights = {k: v.clone() for k, v in open_run(run.name, tmp_path).load_model().state_dict().items()}
    adam = TrainConfig(**{**TINY, "epochs": 2, "sampler": "sequential", "optimizer": "adam", "lr": 0.01})
    model = build_model(mc)
    stream = train(pipeline, mc, adam, run=open_run(run.name, tmp_path), model=model)
    first = next(stream)  # a Progress after the first Adam step (log_interval_s=0)
    assert isinstance(first, Progress) and first.step == 23
    # Adam's first step from fresh moments moves every weight by lr · g / (|g| + eps): ±lr where |g| ≫ eps
    moved = torch.cat([(v - weights[k]).abs().ravel() for k, v in model.state_dict().items()])
    assert float(moved.max()) <= 0.01 * (1 + 1e-5)
    assert float((moved > 0.0099).float().mean()) > 0.5
    events = [first, *stream]
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.reason == "completed" and finished.epoch == 2
    resumed = open_run(run.name, tmp_path)
    assert resumed.train_config.optimizer == "adam"
    assert not all(torch.equal(weights[k], v) for k, v in resumed.load_model().state_dict().items())
    # and it resumes again from its own (Adam) checkpoint
    more = list(train(pipeline, mc, TrainConfig(**{**adam.__dict__, "epochs": 3}), run=resumed))
    assert more[-1].epoch == 3 and more[-1].reason == "completed"


def test_resume_that_does_not_fit_leaves_config_untouched(pipeline, tmp_path):
    from engine.errors import RunError
    from engine.runs import create_run, open_run

    mc, tc = configs(pipeline, epochs=1)
    run = create_run(tmp_path, mc, tc, pipeline)
    list(train(pipeline, mc, tc, run=run))
    bigger = ModelConfig(**{**mc.__dict__, "num_hiddens": mc.num_hiddens * 2})
    with pytest.raises(RunError, match="does not fit this configuration"):
        list(train(pipeline, bigger, TrainConfig(**{**TINY, "epochs": 2}), run=open_run(run.name, tmp_path)))
    assert open_run(run.name, tmp_path).train_config == tc


def test_resume_in_raw_mode_reencodes_the_corpus_like_the_pipeline_and_drops_stale_logs(corpus_dir, tmp_path):
    import shutil

    from engine.corpus import load_corpus
    from engine.runs import create_run, open_run
    from engine.pipeline import build_pipeline

    pipe = build_pipeline(load_corpus(str(corpus_dir / "war_of_the_worlds.txt")), mode="raw", tokenizer="char")
    mc, tc = configs(pipe, epochs=2, sample_every=1, sample_len=5)
    run = create_run(tmp_path, mc, TrainConfig(**{**tc.__dict__, "epochs": 1}), pipe)
    list(train(pipe, mc, run.train_config, run=run))
    saved = {f: (run.path / f).read_bytes() for f in ("model.safetensors", "optimizer.safetensors", "checkpoint.json")}
    reopened = open_run(run.name, tmp_path)
    assert np.array_equal(reopened.corpus_ids(), pipe.ids)  # raw mode keeps "\n": same ids as the pipeline
    list(train(reopened.corpus_ids(), mc, tc, tokenizer=reopened.tokenizer, run=reopened))  # epoch 2 logged
    for f, data in saved.items():  # roll the checkpoint back to epoch 1, as a crash would leave it
        (run.path / f).write_bytes(data)
    list(train(reopened.corpus_ids(), mc, tc, tokenizer=reopened.tokenizer, run=open_run(run.name, tmp_path)))
    samples = (run.path / "samples.log").read_text().splitlines()
    assert [ln.split(":")[0] for ln in samples] == ["epoch 1", "epoch 2"]  # no duplicate epoch 2
    final = open_run(run.name, tmp_path)
    # the first session's Finished (epoch 1) stays; the rolled-back epoch 2's is replaced by the rerun's
    assert [e["epoch"] for e in final.events() if e["type"] == "Finished"] == [1, 2]
    assert [m["step"] for m in final.metrics()] == sorted(m["step"] for m in final.metrics())


def test_a_loss_far_worse_than_guessing_counts_as_divergence(pipeline):
    from engine.trainer import loss_limit

    assert loss_limit(28) == pytest.approx(math.log(28) + 20) and loss_limit(2**60) <= 700
    events = list(train(pipeline, *configs(pipeline, lr=100.0, clip="off", epochs=3)))
    diverged = [e for e in events if isinstance(e, Diverged)]
    assert diverged and diverged[0].loss > loss_limit(len(pipeline.vocab)) and math.isfinite(diverged[0].loss)
    assert isinstance(events[-1], Finished) and events[-1].reason == "diverged"


def test_a_mid_epoch_stop_saves_figures_of_the_saved_weights(pipeline, tmp_path):
    from engine.runs import create_run, open_run
    from engine.training import evaluate, prepare_ids

    mc, tc = configs(pipeline, epochs=50, log_interval_s=1e9, log_every_steps=1)
    run = create_run(tmp_path, mc, tc, pipeline)
    stop, events = threading.Event(), []
    for ev in train(pipeline, mc, tc, run=run, stop=stop):
        events.append(ev)
        if sum(isinstance(e, Progress) and e.epoch == 3 and not e.epoch_end for e in events) == 5:
            stop.set()  # five steps into epoch 3 (of ~22)
    fin, progress = events[-1], [e for e in events if isinstance(e, Progress)]
    epoch2 = [e for e in progress if e.epoch_end][-1]
    assert fin.reason == "stopped" and fin.epoch == 2  # epoch 3 is redone on resume
    assert fin.step == epoch2.step + 5  # the saved weights have epoch 3's first five steps
    model = open_run(run.name, tmp_path).load_model()
    _, val_ids = prepare_ids(pipeline, mc, tc)
    assert fin.val_ppl == pytest.approx(evaluate(model, val_ids, tc.batch_size, tc.num_steps, "cpu"), rel=1e-6)
    assert fin.val_ppl != pytest.approx(epoch2.val_ppl, rel=1e-6)  # not epoch 2's figure
    assert fin.train_ppl == pytest.approx(progress[-1].train_ppl, rel=1e-6)  # the partial epoch's running figure
    assert run.trainer_state()["val_ppl"] == pytest.approx(fin.val_ppl)


# -- weight decay (exercise 8.7.2) ----------------------------------------------------------------------
def test_runs_saved_before_weight_decay_and_init_existed_still_load(pipeline, tmp_path):
    import json

    from engine.runs import create_run, open_run

    d = TrainConfig(lr=0.5, optimizer="adamw").to_dict()
    del d["weight_decay"]
    old = TrainConfig.from_dict(d)
    assert old.weight_decay == 0.0 and old == TrainConfig(lr=0.5, optimizer="adamw")
    mc, tc = configs(pipeline, model={"kind": "rnn"}, epochs=1)
    run = create_run(tmp_path, mc, tc, pipeline)
    path = run.path / "config.json"
    cfg = json.loads(path.read_text())
    assert cfg["train"]["weight_decay"] == 0.0 and cfg["model"]["init"] == "default"
    del cfg["train"]["weight_decay"], cfg["model"]["init"]  # as a run of an earlier version wrote it
    path.write_text(json.dumps(cfg))
    reopened = open_run(run.name, tmp_path)
    assert reopened.train_config == tc and reopened.model_config == mc


def test_weight_decay_is_each_optimizers_own_kind():
    from engine.training import make_optimizer

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="rnn", vocab_size=10, num_hiddens=8))
    w0 = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.25)
    lr, lam = 0.5, 0.1
    make_optimizer(model, TrainConfig(lr=lr, weight_decay=lam)).step()
    for p, w in zip(model.parameters(), w0):  # SGD: w - lr (g + λ w), the decay added to the gradient
        torch.testing.assert_close(p.detach(), w - lr * (0.25 + lam * w), atol=1e-7, rtol=0)
    groups = {opt: make_optimizer(model, TrainConfig(optimizer=opt, lr=0.01, weight_decay=wd)).param_groups[0]
              for opt, wd in (("adam", 0.2), ("adamw", 0.2), ("adamw", 0.0), ("sgd", 0.0))}
    assert groups["adam"]["weight_decay"] == 0.2 and not groups["adam"]["decoupled_weight_decay"]
    assert groups["adamw"]["weight_decay"] == 0.01  # 0 keeps AdamW's own λ (the last entry for adamw)
    assert groups["sgd"]["weight_decay"] == 0.0
    assert make_optimizer(model, TrainConfig(optimizer="adamw", weight_decay=0.2)).param_groups[0]["weight_decay"] == 0.2
    for bad in (-0.1, math.inf, math.nan, True):
        with pytest.raises(ConfigError, match=r"^weight_decay must be zero or a positive number"):
            TrainConfig(weight_decay=bad)


def test_a_resumed_run_takes_its_new_weight_decay(pipeline, tmp_path, monkeypatch):
    import engine.trainer as trainer_mod
    from engine.runs import create_run, open_run

    mc, tc = configs(pipeline, epochs=1)
    run = create_run(tmp_path, mc, tc, pipeline)
    list(train(pipeline, mc, tc, run=run))
    made = []
    real = trainer_mod.make_optimizer  # a spy: the trainer's own optimizer
    monkeypatch.setattr(trainer_mod, "make_optimizer", lambda m, c: made.append(real(m, c)) or made[-1])
    more = TrainConfig(**{**tc.__dict__, "epochs": 2, "weight_decay": 0.05})
    events = list(train(pipeline, mc, more, run=open_run(run.name, tmp_path)))
    assert events[-1].reason == "completed" and len(made) == 1
    # the checkpoint's optimizer state was saved with λ = 0; the resumed run steps with the λ it was given
    assert made[0].param_groups[0]["weight_decay"] == 0.05
