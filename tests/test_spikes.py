"""Spike detection (engine.spikes): the threshold, the re-arming midpoint, the metric watched, and the
best/spiking pair carried through a checkpoint into a resumed run."""

from __future__ import annotations

import json

import pytest

from engine.events import Progress, Spike
from engine.spikes import SpikeDetector
from engine.train_state import TrainState


def spikes_over(detector: SpikeDetector, ppls: list[float], state: TrainState | None = None) -> list[Spike]:
    """Feed one validation perplexity per epoch; the spikes reported."""
    state = state or TrainState()
    found = []
    for epoch, ppl in enumerate(ppls, start=1):
        state.epoch, state.val_ppl = epoch, ppl
        spike = detector.update(state)
        if spike is not None:
            found.append(spike)
    return found


def test_spike_event_when_perplexity_jumps():
    spikes = spikes_over(SpikeDetector(2.0), [10.0, 5.0, 4.0, 9.0, 12.0, 7.9, 8.5, 4.5, 20.0])
    assert [(s.epoch, s.val_ppl, s.best_val_ppl) for s in spikes] == [(4, 9.0, 4.0), (9, 20.0, 4.0)]
    assert all(isinstance(s, Spike) and s.metric == "validation" for s in spikes)


def test_threshold_is_strict_and_rearming_needs_the_midpoint():
    # factor 3 over best 2: a spike above 6 (strictly); re-armed only strictly below (1 + 3) / 2 · 2 = 4.
    ppls = [2.0, 6.0, 6.01, 4.0, 7.0, 3.99, 6.5]
    spikes = spikes_over(SpikeDetector(3.0), ppls)
    assert [(s.epoch, s.val_ppl, s.best_val_ppl) for s in spikes] == [(3, 6.01, 2.0), (7, 6.5, 2.0)]


def test_state_follows_the_best_and_the_flag():
    state = TrainState()
    detector = SpikeDetector(2.0)
    seen = []
    for ppl in [8.0, 3.0, 7.0, 5.0, 2.5]:
        state.val_ppl = ppl
        detector.update(state)
        seen.append((state.best_ppl, state.spiking))
    # 7 > 2·3 spikes; 5 is not below 1.5·3 = 4.5, so still spiking; 2.5 re-arms and is the new best
    assert seen == [(8.0, False), (3.0, False), (3.0, True), (3.0, True), (2.5, False)]


def test_without_a_split_the_train_perplexity_is_watched():
    state = TrainState(epoch=1, train_ppl=10.0)
    assert SpikeDetector(2.0).update(state) is None and state.best_ppl == 10.0
    state.epoch, state.train_ppl = 2, 25.0
    spike = SpikeDetector(2.0).update(state)
    assert spike == Spike(epoch=2, val_ppl=25.0, best_val_ppl=10.0, metric="train")
    nothing = TrainState(epoch=1)  # no figure at all yet: nothing to compare, nothing changes
    assert SpikeDetector(2.0).update(nothing) is None and nothing == TrainState(epoch=1)


@pytest.mark.parametrize("spiking, expected", [(False, [(3, 1.5)]), (True, [])])
def test_a_resumed_run_compares_with_the_checkpoints_best(pipeline, tmp_path, spiking, expected):
    from engine.config import ModelConfig, TrainConfig
    from engine.runs import create_run, open_run
    from engine.trainer import train

    mc = ModelConfig(kind="gru", vocab_size=len(pipeline.vocab), num_hiddens=16)
    tc = TrainConfig(epochs=2, batch_size=8, num_steps=10, max_tokens=2000, sample_every=0, threads=1)
    run = create_run(tmp_path, mc, tc, pipeline)
    list(train(pipeline, mc, tc, run=run))
    # A best far below anything this model reaches (perplexity ~20), as if an earlier epoch had scored 1.5.
    path = run.path / "checkpoint.json"
    doc = json.loads(path.read_text())
    doc.update(best_ppl=1.5, spiking=spiking)
    path.write_text(json.dumps(doc))
    events = list(train(pipeline, mc, TrainConfig(**{**tc.__dict__, "epochs": 3}), run=open_run(run.name, tmp_path)))
    val = [e.val_ppl for e in events if isinstance(e, Progress) and e.epoch_end]
    assert len(val) == 1 and val[0] > 2 * 1.5
    assert [(e.epoch, e.best_val_ppl) for e in events if isinstance(e, Spike)] == expected
    saved = open_run(run.name, tmp_path).trainer_state()
    assert (saved["best_ppl"], saved["spiking"]) == (1.5, True)  # the best stays; the spike is under way
