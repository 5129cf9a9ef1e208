"""Following a run from its folder (issue 13): the events read back equal the events the trainer yielded,
lines being written wait for the next poll, damaged lines are skipped, and a rewritten log resets."""

from __future__ import annotations

import json
from pathlib import Path

from engine.config import ModelConfig, TrainConfig
from engine.corpus import load_corpus
from engine.events import Finished, Progress, Sample
from engine.follow import RunFollower
from engine.pipeline import build_pipeline
from engine.runs import create_run
from engine.trainer import train


def _tiny_run(tmp_path: Path):
    pipe = build_pipeline(load_corpus("timemachine"), mode="d2l", tokenizer="char")
    mc = ModelConfig(kind="gru", vocab_size=len(pipe.vocab), num_hiddens=8)
    tc = TrainConfig(epochs=3, batch_size=4, num_steps=8, max_tokens=800, sample_every=1, sample_len=10,
                     log_every_steps=2, device="cpu", threads=1)
    run = create_run(tmp_path / "runs", mc, tc, pipe)
    return run, pipe, mc, tc


def test_the_followed_events_are_the_trainers_own(tmp_path) -> None:
    run, pipe, mc, tc = _tiny_run(tmp_path)
    follower = RunFollower(run.path, prefix=tc.sample_prefix)
    yielded, followed = [], []
    for event in train(pipe, mc, tc, run=run):
        yielded.append(event)
        followed += follower.poll().events  # polled while training: each poll sees what was logged so far
    followed += follower.poll().events
    key = lambda e: (type(e).__name__, getattr(e, "epoch", 0), getattr(e, "step", 0))  # noqa: E731
    # The same events (the order across files may differ within a poll, so compare per kind)
    for kind in (Progress, Sample, Finished):
        mine = [e for e in yielded if isinstance(e, kind)]
        assert [e for e in followed if isinstance(e, kind)] == mine and mine
    assert sorted(map(key, followed)) == sorted(map(key, yielded))
    assert follower.poll().events == []  # nothing new


def test_partial_and_damaged_lines_and_a_rewritten_log(tmp_path) -> None:
    folder = tmp_path
    p1 = {"type": "Progress", "epoch": 1, "step": 1, "train_ppl": 20.0, "val_ppl": None, "tokens_per_s": 1.0,
          "grad_norm": 1.0, "lr": 1.0, "elapsed_s": 1.0, "eta_s": None, "epochs": 2}
    p2 = {**p1, "step": 2, "train_ppl": 18.0}
    metrics = folder / "metrics.jsonl"
    metrics.write_text(json.dumps(p1) + "\n{damaged\n" + json.dumps(p2)[:20])  # p2 still being written
    (folder / "samples.log").write_text("epoch 1: 'time traveller the'\nepoch 2: not a repr\n")
    follower = RunFollower(folder, prefix="time traveller")
    first = follower.poll()
    assert [e.step for e in first.events if isinstance(e, Progress)] == [1] and not first.reset
    assert [e for e in first.events if isinstance(e, Sample)] == [Sample(1, "time traveller", "time traveller the")]
    with open(metrics, "a") as f:
        f.write(json.dumps(p2)[20:] + "\n")  # the rest of the line arrives
    assert [e.train_ppl for e in follower.poll().events] == [18.0]
    metrics.write_text(json.dumps(p1) + "\n")  # a resume rewrote the log, shorter
    again = follower.poll()
    assert again.reset and [e.step for e in again.events] == [1]
