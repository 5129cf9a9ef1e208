"""What the progress line reads: tokens/s (smoothed within an epoch, exact at its
end), the ETA that follows it, how often clipping changed the gradient, and the
"unstable" flag of a run that ends worse than guessing uniformly."""

from __future__ import annotations

import pytest
import torch

import engine.trainer as trainer_mod
from engine.events import Finished, Progress
from engine.models import build_model
from engine.throughput import Throughput
from engine.trainer import train
from test_trainer import configs


def test_throughput_in_closed_form():
    m = Throughput(prior_s=2.0)
    assert m.rate is None and m.eta(1000, 1.0) is None
    assert m.add(1000, 1.0) == 1000.0
    assert m.add(3000, 1.0) == 2000.0  # first epoch: 4000 tokens in 2 s
    assert m.end_epoch() == 2000.0
    # next epoch: the previous average weighs as 2 s of evidence: (2000·2 + 1000) / (2 + 1)
    assert m.add(1000, 1.0) == pytest.approx(5000 / 3)
    # 3 s of training so far in 6 s of wall time: every training second costs two
    assert m.eta(5000, 6.0) == pytest.approx(5000 / (5000 / 3) * 2.0)
    assert m.end_epoch() == 1000.0  # the epoch's own average, prior aside


class _Clock:
    """A clock that moves only when the model reads a training minibatch: 0.1 s each, and 2 s
    for the minibatches listed in ``stalls`` (as a busy UI thread or swapping would stall one)."""

    def __init__(self, stalls: set[int]) -> None:
        self.now, self.calls, self.stalls = 0.0, 0, stalls

    def __call__(self) -> float:
        return self.now

    def hook(self, module, args, output) -> None:
        if module.training:
            self.calls += 1
            self.now += 2.0 if self.calls in self.stalls else 0.1


def test_tokens_per_s_is_smoothed_and_exact_at_epoch_end(pipeline, monkeypatch):
    mc, tc = configs(pipeline, epochs=3, log_interval_s=1e9, log_every_steps=2)
    batches = (tc.max_tokens - round(tc.max_tokens * tc.val_fraction) - 1) // (tc.batch_size * tc.num_steps)
    per_batch = tc.batch_size * tc.num_steps
    stall = batches + 5  # the 5th minibatch of epoch 2
    clock = _Clock({stall})
    model = build_model(mc)
    model.register_forward_hook(clock.hook)
    monkeypatch.setattr(trainer_mod, "_clock", clock)
    progress = [e for e in train(pipeline, mc, tc, model=model) if isinstance(e, Progress)]
    ends = [p for p in progress if p.epoch_end]
    # each epoch's average, by hand: its tokens over its minibatches' clock time
    expected = [batches * per_batch / (batches * 0.1 + (1.9 if e == 2 else 0.0)) for e in (1, 2, 3)]
    assert [p.tokens_per_s for p in ends] == pytest.approx(expected, rel=1e-9)
    # The stalled window alone reads 2·per_batch / 2.1 s, 1/10.5 of the others; the shown rate moves far less.
    epoch2 = [p.tokens_per_s for p in progress if p.epoch == 2]
    assert min(b / a for a, b in zip(epoch2, epoch2[1:])) > 0.5
    assert min(epoch2) < 0.9 * expected[0]  # the stall does show
    # ETA follows the rate: the tokens left in this epoch and the ones after it, at the shown rate
    # (no validation time on this clock). Every reading, not only the last one (whose ETA is 0).
    readings = [p for p in progress if not p.epoch_end]
    for p in readings:
        done = 2 * sum(q.epoch == p.epoch and q.step <= p.step for q in readings)  # minibatches this epoch
        left = ((tc.epochs - p.epoch + 1) * batches - min(done, batches)) * per_batch
        assert p.eta_s == pytest.approx(left / p.tokens_per_s, rel=1e-6)
    assert sum(p.eta_s > 0 for p in readings) > len(readings) / 2


def test_clip_fraction_counts_the_steps_clipping_changed(pipeline):
    theta = 0.25  # about the median gradient norm of this tiny GRU early on
    mc, tc = configs(pipeline, epochs=2, log_interval_s=1e9, log_every_steps=1, clip="norm", clip_theta=theta)
    progress = [e for e in train(pipeline, mc, tc) if isinstance(e, Progress)]
    steps = [p for p in progress if not p.epoch_end]
    # one step per reading: clipped exactly when the norm before clipping exceeds θ
    assert [p.clip_fraction for p in steps] == [float(p.grad_norm > theta) for p in steps]
    assert 0 < sum(p.clip_fraction for p in steps) < len(steps)  # both kinds occur, so the check bites
    for end in (p for p in progress if p.epoch_end):
        ours = [p.clip_fraction for p in steps if p.epoch == end.epoch]
        assert end.clip_fraction == pytest.approx(sum(ours) / len(ours))
    off = [e for e in train(pipeline, *configs(pipeline, epochs=1, clip="off")) if isinstance(e, Progress)]
    assert all(p.clip_fraction == 0.0 for p in off)


def test_a_run_worse_than_guessing_is_flagged_unstable(pipeline, tmp_path, capsys):
    from engine.runs import create_run, list_runs

    mc, tc = configs(pipeline, epochs=1, lr=1e-6)
    model = build_model(mc)
    with torch.no_grad():  # all the probability on one token: every other token costs ~16 nats
        model.linear.bias.fill_(-8.0)
        model.linear.bias[0] = 8.0
    bad = create_run(tmp_path, mc, tc, pipeline)
    fin = list(train(pipeline, mc, tc, run=bad, model=model))[-1]
    assert isinstance(fin, Finished) and fin.reason == "completed"
    assert fin.val_ppl > 2 * len(pipeline.vocab) and fin.unstable  # uniform guessing scores len(vocab)
    assert bad.trainer_state()["unstable"] is True
    assert [e["unstable"] for e in bad.events() if e["type"] == "Finished"] == [True]
    # Barely trained: a shade above uniform guessing (the untrained start), which is not unstable.
    raw = create_run(tmp_path, mc, tc, pipeline)
    fin = list(train(pipeline, mc, tc, run=raw))[-1]
    assert len(pipeline.vocab) < fin.val_ppl < 1.2 * len(pipeline.vocab) and not fin.unstable
    mc, tc = configs(pipeline, epochs=1, optimizer="adam", lr=0.01)
    good = create_run(tmp_path, mc, tc, pipeline)
    fin = list(train(pipeline, mc, tc, run=good))[-1]
    assert fin.val_ppl < len(pipeline.vocab) and not fin.unstable
    flags = {r.name: r.unstable for r in list_runs(tmp_path)}
    assert flags == {bad.name: True, raw.name: False, good.name: False}
    from tui.cli import main

    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    rows = {ln.split("\t")[0]: ln.split("\t")[7] for ln in capsys.readouterr().out.splitlines()[1:]}
    assert rows == {bad.name: "completed, unstable", raw.name: "completed", good.name: "completed"}
