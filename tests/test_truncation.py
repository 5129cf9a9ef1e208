"""Truncation of BPTT between sequential minibatches (engine.truncation, ``--truncation``), against full BPTT.

The expected values come from a second computation: the exact gradient of the summed loss over four
chained minibatches (one graph, no cut), and, for randomised truncation, its expectation enumerated over
all 2³ cut patterns of the three boundaries with their probabilities — not sampled.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from engine.config import ModelConfig, TrainConfig
from engine.errors import ConfigError
from engine.events import Progress
from engine.models import build_model, detach_state
from engine.trainer import train
from engine.training import sequence_loss
from engine.truncation import Cuts, graph_positions, scale_grad

V, K = 5, 4  # vocabulary, chained minibatches


def test_scale_grad_keeps_the_value_and_scales_the_gradient():
    x = torch.tensor([0.3, -1.7, 2.5], dtype=torch.float64, requires_grad=True)
    h = (x * 2, x.sin())
    y0, y1 = scale_grad(h, 4.0)
    assert torch.equal(y0, h[0]) and torch.equal(y1, h[1])  # bit for bit
    (y0.sum() + (y1 * 3).sum()).backward()
    assert torch.allclose(x.grad, 4.0 * (2 + 3 * x.detach().cos()), rtol=0, atol=1e-15)


@pytest.fixture(scope="module")
def chain():
    """A tanh RNN and K minibatches of 2 rows × 3 steps that continue each other."""
    torch.manual_seed(3)
    model = build_model(ModelConfig(kind="rnn", vocab_size=V, num_hiddens=6))
    with torch.no_grad():
        model.rnn.weight_hh_l0.mul_(3.0)  # a strong recurrence: long paths carry real gradient
    ids = torch.randint(0, V, (2, 3 * K + 1), generator=torch.Generator().manual_seed(5))
    batches = [(ids[:, 3 * k:3 * k + 3], ids[:, 3 * k + 1:3 * k + 4]) for k in range(K)]
    return model, batches


def _grad(model, batches, cut_after, carry) -> torch.Tensor:
    """The summed gradient of every segment's summed loss, as the trainer forms segments: the graph is cut after
    minibatch k when cut_after[k], else the state goes on through ``carry``; grads accumulate (no step)."""
    model.zero_grad(set_to_none=True)
    state, segment = None, None
    for k, (X, Y) in enumerate(batches):
        if state is None:
            state = model.begin_state(X.shape[0])
        else:
            state = detach_state(state) if segment is None else carry(state)
        logits, state = model(X, state)
        loss = sequence_loss(logits, Y)
        segment = loss if segment is None else segment + loss
        if cut_after[k] or k == len(batches) - 1:
            segment.backward()
            segment = None
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("p", [0.3, 0.5, 0.8])
def test_random_truncation_is_unbiased_exactly(chain, p):
    """E over the 8 cut patterns (probability p per cut) of the reweighted gradient = full BPTT's gradient,
    to float32 rounding; regular truncation (cut everywhere) is off by more than 10%, and so is the same
    randomisation without the 1/(1-p) reweighting (the bug this catches)."""
    model, batches = chain
    cuts = Cuts(TrainConfig(sampler="sequential", truncation="random", truncation_p=p), epoch=1)
    full = _grad(model, batches, [False] * K, lambda s: s)
    expected = torch.zeros_like(full)
    unweighted = torch.zeros_like(full)
    for pattern in itertools.product([True, False], repeat=K - 1):
        prob = math.prod(p if c else 1 - p for c in pattern)
        expected += prob * _grad(model, batches, [*pattern, True], cuts.carry)
        unweighted += prob * _grad(model, batches, [*pattern, True], lambda s: s)
    regular = _grad(model, batches, [True] * K, lambda s: s)
    assert torch.allclose(expected, full, rtol=1e-5, atol=1e-6)
    assert (regular - full).norm() > 0.1 * full.norm()
    assert (unweighted - full).norm() > 0.02 * full.norm()


def test_random_truncation_sampled_mean_approaches_full_bptt(chain):
    """The mean over 3000 epochs' own cut draws (Cuts' generator, p = 0.5) is within 4 standard errors of
    full BPTT in every coordinate; regular truncation is not (its bias is many standard errors). Each draw's
    gradient is that of its cut pattern, computed once per pattern."""
    model, batches = chain
    full = _grad(model, batches, [False] * K, lambda s: s)
    cfg = TrainConfig(sampler="sequential", truncation="random", truncation_p=0.5)
    carry = Cuts(cfg, epoch=0).carry
    by_pattern = {pattern: _grad(model, batches, [*pattern, True], carry)
                  for pattern in itertools.product([True, False], repeat=K - 1)}
    draws = []
    for epoch in range(3000):
        cuts = Cuts(cfg, epoch=epoch)
        draws.append(by_pattern[tuple(cuts.cut() for _ in range(K - 1))])
    g = torch.stack(draws)
    se = g.std(0) / math.sqrt(len(draws))
    assert ((g.mean(0) - full).abs() <= 4 * se + 1e-6).all()
    regular = by_pattern[(True,) * (K - 1)]
    assert ((regular - full).abs() > 4 * se).any()


def test_cut_decisions_per_strategy():
    """regular cuts every boundary, none never; random at about p, the same draws for the same (seed, epoch)."""
    def draws(truncation, p=0.5, seed=0, epoch=1, n=2000):
        cuts = Cuts(TrainConfig(sampler="sequential", truncation=truncation, truncation_p=p, seed=seed), epoch)
        return [cuts.cut() for _ in range(n)]
    assert all(draws("regular")) and not any(draws("none"))
    share = sum(draws("random", 0.3)) / 2000  # binomial: sd = sqrt(0.3 · 0.7 / 2000) ≈ 0.0102
    assert abs(share - 0.3) < 0.05
    assert draws("random", seed=4, epoch=7) == draws("random", seed=4, epoch=7)
    assert draws("random", seed=4, epoch=7) != draws("random", seed=4, epoch=8)


def test_graph_positions():
    """2 × 5 positions a minibatch; none keeps the 100 training tokens; random the segment whose longer
    lengths have probability under 1e-6: 0.5^20 < 1e-6 < 0.5^19, so 20 minibatches at p = 0.5."""
    def cfg(truncation, p=0.5):
        return TrainConfig(batch_size=2, num_steps=5, sampler="sequential", truncation=truncation, truncation_p=p)
    assert graph_positions(cfg("regular"), 100) == 10
    assert graph_positions(cfg("none"), 100) == 100
    assert graph_positions(cfg("random"), 1000) == 200
    assert graph_positions(cfg("random"), 150) == 150
    assert graph_positions(cfg("random", 1.0), 1000) == 10


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, True, float("nan")])
def test_truncation_p_is_checked(bad):
    with pytest.raises(ConfigError, match=r"truncation_p must be in \(0, 1\]"):
        TrainConfig(sampler="sequential", truncation="random", truncation_p=bad)


@pytest.mark.parametrize("truncation", ["random", "none"])
def test_truncation_other_than_regular_needs_sequential_sampling(truncation):
    with pytest.raises(ConfigError, match=f"truncation='{truncation}' needs sampler='sequential'"):
        TrainConfig(sampler="random", truncation=truncation)


def test_old_runs_detach_flag_is_read_as_truncation():
    assert TrainConfig.from_dict({"sampler": "sequential", "detach": False}).truncation == "none"
    assert TrainConfig.from_dict({"detach": True}).truncation == "regular"


# --- through the trainer -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ids():
    return np.random.default_rng(0).integers(0, V, 400)


def _weights(ids, model_cfg, **kw):
    base = dict(epochs=2, batch_size=2, num_steps=5, max_tokens=0, val_fraction=0.0, sample_every=0, threads=1,
                sampler="sequential", optimizer="sgd", clip="off", checkpoint_interval_s=1e9)
    torch.manual_seed(0)
    model = build_model(model_cfg)
    events = list(train(ids, model_cfg, TrainConfig(**{**base, **kw}), model=model))
    return [p.detach().clone() for p in model.parameters()], events


def test_random_truncation_with_p_1_is_regular(ids):
    """p = 1 cuts every boundary: the same steps at each epoch's end and, bit for bit, the same weights."""
    mc = ModelConfig(kind="gru", vocab_size=V, num_hiddens=8)
    w_reg, ev_reg = _weights(ids, mc, truncation="regular", lr=0.5)
    w_rnd, ev_rnd = _weights(ids, mc, truncation="random", truncation_p=1.0, lr=0.5)
    assert all(torch.equal(a, b) for a, b in zip(w_reg, w_rnd))
    ends = [[e.step for e in evs if isinstance(e, Progress) and e.epoch_end] for evs in (ev_reg, ev_rnd)]
    assert ends[0] == ends[1] == [39, 78]


def test_random_truncation_that_never_cuts_is_full_bptt(ids):
    """p = 1e-12 keeps every boundary (reweighted by 1 + 1e-12): one step per epoch on the epoch's summed
    loss. none steps on the mean over the epoch's 39 minibatches (399 // 2 // 5), so with SGD at lr/39 it
    moves the weights the same: equal to float32 rounding, after 2 epochs."""
    mc = ModelConfig(kind="lstm", vocab_size=V, num_hiddens=8)
    w_none, ev_none = _weights(ids, mc, truncation="none", lr=0.39)
    w_rnd, ev_rnd = _weights(ids, mc, truncation="random", truncation_p=1e-12, lr=0.01)
    ends = lambda evs: [e.step for e in evs if isinstance(e, Progress) and e.epoch_end]  # noqa: E731
    assert ends(ev_none) == ends(ev_rnd) == [1, 2]
    for a, b in zip(w_none, w_rnd):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    moved = max((a - b).abs().max() for a, b in zip(w_none, _weights(ids, mc, truncation="none", lr=1e-9)[0]))
    assert moved > 1e-3  # the weights did move: the comparison is not between two untouched models


def test_random_truncation_steps_once_per_segment(ids):
    """Each epoch steps once per cut among its first 38 boundaries, plus once for the segment the epoch's end
    closes (whatever the 39th draw says): the Progress step counts follow the epochs' own cut draws."""
    mc = ModelConfig(kind="rnn", vocab_size=V, num_hiddens=8)
    cfg = dict(truncation="random", truncation_p=0.3, lr=0.1, seed=11)
    _, events = _weights(ids, mc, **cfg)
    steps, total = [], 0
    for epoch in (1, 2):
        cuts = Cuts(TrainConfig(sampler="sequential", **cfg), epoch)
        total += sum(cuts.cut() for _ in range(38)) + 1
        steps.append(total)
    assert [e.step for e in events if isinstance(e, Progress) and e.epoch_end] == steps
    assert steps[0] not in (1, 39)  # the draws cut some boundaries and kept others
