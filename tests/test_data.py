"""D2L 8.3 samplers: shapes, targets, continuity, non-overlap, offsets, seeding,
coverage. The corpus is ``arange(n)``, so every token is its own position."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.data import (
    SAMPLERS,
    batches_per_epoch,
    check_sizes,
    coverage,
    data_iter,
    seq_data_iter_random,
    seq_data_iter_sequential,
)
from engine.errors import ConfigError

BOOK_SAMPLERS = ("random", "sequential")  # D2L 8.3.4's two; the others are in tests/test_iterators.py


def epoch(n: int, batch_size: int, num_steps: int, sampler: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    return list(data_iter(np.arange(n, dtype=np.int32), batch_size, num_steps, sampler, rng=rng))


@pytest.mark.parametrize("sampler", BOOK_SAMPLERS)
def test_shapes_dtype_and_targets_shifted_by_one(sampler):
    batches = epoch(1000, 4, 7, sampler)
    assert len(batches) > 0
    for X, Y in batches:
        assert X.dtype == Y.dtype == torch.int64
        assert X.shape == Y.shape == (4, 7)
        assert torch.equal(Y, X + 1)  # arange corpus: the next token is position + 1


def test_sequential_rows_continue_across_batches():
    batches = epoch(1000, 4, 7, "sequential", seed=3)
    for (X0, _), (X1, _) in zip(batches, batches[1:]):
        assert torch.equal(X1[:, 0], X0[:, -1] + 1)
    # rows are contiguous stretches laid side by side
    rows = torch.cat([X for X, _ in batches], dim=1)
    assert torch.equal(rows[:, 1:] - rows[:, :-1], torch.ones_like(rows[:, 1:]))


def test_sequential_matches_d2l_layout():
    # D2L 8.3.4 with offset 0: corpus 0..34, batch_size 2, num_steps 5
    class OffsetZero:
        def integers(self, high: int) -> int:
            return 0

    batches = list(seq_data_iter_sequential(np.arange(35), 2, 5, rng=OffsetZero()))  # type: ignore[arg-type]
    assert [X.tolist() for X, _ in batches] == [
        [[0, 1, 2, 3, 4], [17, 18, 19, 20, 21]],
        [[5, 6, 7, 8, 9], [22, 23, 24, 25, 26]],
        [[10, 11, 12, 13, 14], [27, 28, 29, 30, 31]],
    ]


def test_random_subsequences_never_overlap_and_share_one_offset():
    batches = epoch(1000, 4, 7, "random", seed=5)
    X = torch.cat([X for X, _ in batches]).numpy()
    assert len(np.unique(X)) == X.size  # no position is used twice in one epoch
    starts = X[:, 0]
    offset = starts.min() % 7
    assert ((starts - offset) % 7 == 0).all()
    # batches are shuffled, not in corpus order
    assert not (np.diff(starts) > 0).all()


@pytest.mark.parametrize("sampler", BOOK_SAMPLERS)
def test_offset_is_drawn_from_0_to_num_steps_minus_1(sampler):
    offsets = set()
    for seed in range(200):
        X = torch.cat([X for X, _ in epoch(200, 2, 6, sampler, seed)])
        offsets.add(int(X[:, 0].min()) % 6 if sampler == "random" else int(X[0, 0]))
    assert offsets == set(range(6))


@pytest.mark.parametrize("sampler", BOOK_SAMPLERS)
def test_same_seed_same_batches_other_seed_differs(sampler):
    a, b, c = epoch(500, 3, 5, sampler, 1), epoch(500, 3, 5, sampler, 1), epoch(500, 3, 5, sampler, 2)
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(a, b)) and len(a) == len(b)
    assert len(a) != len(c) or not all(torch.equal(x, y) for (x, _), (y, _) in zip(a, c))


@pytest.mark.parametrize("sampler", BOOK_SAMPLERS)
def test_batches_per_epoch_is_a_tight_upper_bound(sampler):
    bound = batches_per_epoch(1000, 4, 7, sampler)
    counts = {len(epoch(1000, 4, 7, sampler, seed)) for seed in range(30)}
    assert max(counts) <= bound and min(counts) >= bound - 1
    # random: 999 // 7 = 142 subsequences, 142 // 4 = 35 batches; sequential: rows of 999 // 4 = 249, 249 // 7 = 35
    assert bound == 35


@pytest.mark.parametrize("sampler", BOOK_SAMPLERS)
def test_smallest_corpus_still_yields_a_batch_at_every_offset(sampler):
    batch_size, num_steps = 3, 4
    n = (batch_size + 1) * num_steps
    for seed in range(40):
        assert len(epoch(n, batch_size, num_steps, sampler, seed)) >= 1
    with pytest.raises(ConfigError, match=r"^num_steps must be at most 3 for a corpus of 15 tokens"):
        epoch(n - 1, batch_size, num_steps, sampler)


@pytest.mark.parametrize("batch_size, num_steps", [(1, 1), (5, 1), (3, 4), (8, 10)])
def test_the_trainers_split_and_the_samplers_share_one_size_rule(batch_size, num_steps):
    """(batch_size + 1) · num_steps tokens are the fewest that both the samplers and the trainer's split accept:
    the worst offset, num_steps - 1, plus batch_size subsequences of num_steps, plus one target."""
    from engine.config import TrainConfig
    from engine.training import split_ids

    need = (batch_size + 1) * num_steps
    cfg = TrainConfig(batch_size=batch_size, num_steps=num_steps, val_fraction=0.0, max_tokens=0)
    for n in range(max(2, need - 3), need + 3):
        refused = []
        for sampler in SAMPLERS:
            try:
                check_sizes(n, batch_size, num_steps, sampler)
            except ConfigError:
                refused.append(sampler)
        try:
            split_ids(np.arange(n), cfg)
        except ConfigError:
            refused.append("split_ids")
        assert refused == ([] if n >= need else [*SAMPLERS, "split_ids"]), f"{n} tokens"


@pytest.mark.parametrize(
    "args, message",
    [
        ((100, 0, 5, "random"), "^batch_size must be an integer >= 1"),
        ((100, 2, True, "random"), "^num_steps must be an integer >= 1"),
        ((100, 2, 5, "shuffled"), "^sampler must be one of random, sequential"),
        ((100, 200, 1, "sequential"), "^batch_size must be at most 99"),
        ((1, 1, 1, "random"), "^corpus must hold at least 2 tokens"),
    ],
)
def test_bad_sizes_raise_config_error(args, message):
    n, batch_size, num_steps, sampler = args
    with pytest.raises(ConfigError, match=message):
        data_iter(np.arange(n), batch_size, num_steps, sampler)  # raises before iterating
    with pytest.raises(ConfigError, match=message):
        coverage(n, batch_size, num_steps, sampler, epochs=1, seed=0)


def test_corpus_must_be_one_dimensional():
    with pytest.raises(ConfigError, match="^corpus must be a 1-D array"):
        seq_data_iter_random(np.zeros((10, 10), dtype=np.int64), 2, 2)


def test_torch_corpus_is_accepted():
    X, Y = next(seq_data_iter_random(torch.arange(100, dtype=torch.int32), 2, 5))
    assert X.dtype == torch.int64 and torch.equal(Y, X + 1)


@pytest.mark.parametrize("sampler", BOOK_SAMPLERS)
def test_coverage_replays_data_iter_exactly(sampler):
    n, batch_size, num_steps, epochs, seed = 503, 4, 6, 25, 11
    rng = np.random.default_rng(seed)
    seen = np.zeros(n, dtype=np.int64)
    n_batches = 0
    for _ in range(epochs):
        for X, _ in data_iter(np.arange(n), batch_size, num_steps, sampler, rng=rng):
            np.add.at(seen, X.numpy().ravel(), 1)
            n_batches += 1
    counts = coverage(n, batch_size, num_steps, sampler, epochs, seed)
    assert counts.dtype == np.int64 and counts.shape == (n,)
    assert np.array_equal(counts, seen)
    assert counts.sum() == n_batches * batch_size * num_steps
    assert counts.max() <= epochs  # at most once per epoch (no overlap)
    assert counts[-1] == 0  # the last token is only ever a target


def test_coverage_shows_the_offset_skipping_the_first_positions():
    counts = coverage(2000, 4, 10, "sequential", epochs=400, seed=0)
    # position p < num_steps is skipped whenever the offset is > p (about uniform)
    early = counts[:10] / 400
    assert np.all(np.diff(early) >= 0)
    assert early[0] == pytest.approx(0.1, abs=0.05) and early[9] == 1.0


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 400),
    batch_size=st.integers(1, 6),
    num_steps=st.integers(1, 12),
    sampler=st.sampled_from(BOOK_SAMPLERS),
    seed=st.integers(0, 2**32 - 1),
)
def test_invariants_for_any_valid_sizes(n, batch_size, num_steps, sampler, seed):
    if n < (batch_size + 1) * num_steps:
        with pytest.raises(ConfigError):
            epoch(n, batch_size, num_steps, sampler, seed)
        return
    batches = epoch(n, batch_size, num_steps, sampler, seed)
    assert 1 <= len(batches) <= batches_per_epoch(n, batch_size, num_steps, sampler)
    X = torch.cat([X for X, _ in batches]).numpy()
    assert len(np.unique(X)) == X.size and X.max() < n - 1
    assert all(torch.equal(Yb, Xb + 1) for Xb, Yb in batches)
