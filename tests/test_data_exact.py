"""Exact oracles for engine.data (issue 9, mutation score): every minibatch of both samplers for a
scripted offset and shuffle, checked against D2L 8.3's own code written out here; the size checks
over a grid against "(batch_size + 1) * num_steps tokens fit"; batches_per_epoch against a counting
loop; coverage in closed form and against the batches data_iter yields; the exact error messages."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from engine.data import batches_per_epoch, check_sizes, coverage, data_iter, min_tokens
from engine.errors import ConfigError

BOOK_SAMPLERS = ("random", "sequential")  # D2L 8.3.4's two; the others are in tests/test_iterators.py


class ScriptedRng:
    """Stands in for np.random.Generator: the offset and the shuffle are chosen by the test.

    ``integers(high)`` returns ``offset`` (which must lie in 0..high-1); ``permutation(n)`` returns
    0..n-1 reversed. Both calls are recorded."""

    def __init__(self, offset: int) -> None:
        self.offset, self.calls = offset, []

    def integers(self, high: int) -> int:
        self.calls.append(("integers", high))
        assert 0 <= self.offset < high
        return self.offset

    def permutation(self, n: int) -> np.ndarray:
        self.calls.append(("permutation", n))
        return np.arange(n)[::-1].copy()


def book_random(corpus: list[int], batch_size: int, num_steps: int, offset: int) -> list[tuple[list, list]]:
    """D2L 8.3.4's seq_data_iter_random with the offset given and the shuffle replaced by a reversal."""
    corpus = corpus[offset:]
    num_subseqs = (len(corpus) - 1) // num_steps
    initial_indices = list(range(0, num_subseqs * num_steps, num_steps))
    initial_indices = initial_indices[::-1]
    num_batches = num_subseqs // batch_size
    out = []
    for i in range(0, batch_size * num_batches, batch_size):
        idx = initial_indices[i: i + batch_size]
        out.append(([corpus[j: j + num_steps] for j in idx], [corpus[j + 1: j + 1 + num_steps] for j in idx]))
    return out


def book_sequential(corpus: list[int], batch_size: int, num_steps: int, offset: int) -> list[tuple[list, list]]:
    """D2L 8.3.4's seq_data_iter_sequential with the offset given."""
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    Xs = np.array(corpus[offset: offset + num_tokens]).reshape(batch_size, -1)
    Ys = np.array(corpus[offset + 1: offset + 1 + num_tokens]).reshape(batch_size, -1)
    num_batches = Xs.shape[1] // num_steps
    return [(Xs[:, i: i + num_steps].tolist(), Ys[:, i: i + num_steps].tolist())
            for i in range(0, num_steps * num_batches, num_steps)]


def tokens(n: int) -> np.ndarray:
    """A corpus whose values are not its positions (so a wrong gather shows), in a narrow dtype."""
    return ((np.arange(n) * 7 + 3) % 251).astype(np.uint8)


def fits(n: int, batch_size: int, num_steps: int) -> bool:
    """One batch at the worst offset (num_steps - 1) needs batch_size rows of num_steps tokens plus a target."""
    return n >= 2 and num_steps - 1 + batch_size * num_steps + 1 <= n


GRID = [(n, b, s) for n, b, s in itertools.product(range(1, 31), range(1, 6), range(1, 6))]


@pytest.mark.parametrize("sampler", BOOK_SAMPLERS)
def test_every_batch_matches_d2l_for_a_scripted_offset_and_shuffle(sampler):
    """Both samplers, at every offset, give exactly D2L's minibatches (values, int64 dtype, count),
    and draw the offset from 0..num_steps-1 and shuffle exactly the epoch's subsequences."""
    book = book_random if sampler == "random" else book_sequential
    for n, batch_size, num_steps in [(20, 2, 3), (21, 2, 3), (23, 3, 2), (40, 4, 3), (17, 1, 4), (35, 2, 5)]:
        corpus = tokens(n)
        for offset in range(num_steps):
            rng = ScriptedRng(offset)
            got = [(X.tolist(), Y.tolist()) for X, Y in data_iter(corpus, batch_size, num_steps, sampler, rng=rng)]
            want = book(corpus.tolist(), batch_size, num_steps, offset)
            assert got == want, (n, batch_size, num_steps, offset)
            assert rng.calls[0] == ("integers", num_steps)
            if sampler == "random":  # every subsequence of the epoch is shuffled, used or not
                assert rng.calls[1] == ("permutation", (n - offset - 1) // num_steps)
            for X, Y in data_iter(corpus, batch_size, num_steps, sampler, rng=ScriptedRng(offset)):
                assert X.dtype == Y.dtype == torch.int64
                assert X.shape == Y.shape == (batch_size, num_steps)


def test_hand_worked_random_epoch():
    """Corpus 0..19, batch_size 2, num_steps 3, offset 1, shuffle reversed: 6 subsequences start at
    1, 4, 7, 10, 13, 16; reversed and paired they give three batches."""
    batches = list(data_iter(np.arange(20), 2, 3, "random", rng=ScriptedRng(1)))
    assert [X.tolist() for X, _ in batches] == [
        [[16, 17, 18], [13, 14, 15]],
        [[10, 11, 12], [7, 8, 9]],
        [[4, 5, 6], [1, 2, 3]],
    ]
    assert [Y.tolist() for _, Y in batches][0] == [[17, 18, 19], [14, 15, 16]]


def test_hand_worked_sequential_epoch_at_offset_2():
    """Corpus 0..22, batch_size 2, num_steps 3, offset 2: rows of (23 - 2 - 1) // 2 = 10 tokens start
    at 2 and 12; 10 // 3 = 3 batches walk along them."""
    batches = list(data_iter(np.arange(23), 2, 3, "sequential", rng=ScriptedRng(2)))
    assert [X.tolist() for X, _ in batches] == [
        [[2, 3, 4], [12, 13, 14]],
        [[5, 6, 7], [15, 16, 17]],
        [[8, 9, 10], [18, 19, 20]],
    ]
    assert [Y.tolist() for _, Y in batches][2] == [[9, 10, 11], [19, 20, 21]]


@pytest.mark.parametrize("sampler", BOOK_SAMPLERS)
def test_without_an_rng_an_epoch_still_has_the_batches_of_one_offset(sampler):
    """rng=None draws from a fresh generator: the epoch is one of the scripted offsets' epochs."""
    corpus, b = tokens(40), (1 if sampler == "random" else 2)  # batch_size 1: random uses every subsequence
    epochs = [[(X.tolist(), Y.tolist()) for X, Y in data_iter(corpus, b, 3, sampler, rng=ScriptedRng(o))]
              for o in range(3)]
    got = [(X.tolist(), Y.tolist()) for X, Y in data_iter(corpus, b, 3, sampler)]
    if sampler == "sequential":
        assert got in epochs
    else:  # the shuffle is random too: the same offset gives the same set of subsequences
        rows = sorted(r for X, _ in got for r in X)
        assert any(rows == sorted(r for X, _ in e for r in X) for e in epochs)


@pytest.mark.parametrize("sampler", BOOK_SAMPLERS)
def test_a_torch_corpus_gives_the_same_batches(sampler):
    """A torch tensor corpus is read like the numpy array it holds."""
    corpus = tokens(40)
    a = list(data_iter(corpus, 3, 4, sampler, rng=ScriptedRng(2)))
    b = list(data_iter(torch.from_numpy(corpus.astype(np.int64)), 3, 4, sampler, rng=ScriptedRng(2)))
    assert len(a) == len(b) > 0
    assert all(torch.equal(x, y) and torch.equal(u, v) for (x, u), (y, v) in zip(a, b))


@pytest.mark.parametrize("sampler", BOOK_SAMPLERS)
def test_a_two_dimensional_corpus_is_refused_with_its_shape(sampler):
    """A (2, 5) corpus is a ConfigError that names the shape."""
    with pytest.raises(ConfigError) as e:
        data_iter(np.zeros((2, 5), dtype=np.int64), 1, 1, sampler)
    assert str(e.value) == "corpus must be a 1-D array of token indices (got shape (2, 5))"


def test_check_sizes_accepts_exactly_the_sizes_that_fit_at_every_offset():
    """Over n = 1..30, batch_size 1..5, num_steps 1..5: accepted iff the worst offset leaves one batch."""
    for n, b, s in GRID:
        try:
            check_sizes(n, b, s)
            ok = True
        except ConfigError:
            ok = False
        assert ok == fits(n, b, s), (n, b, s)


def test_min_tokens_is_the_smallest_corpus_that_fits():
    """min_tokens(batch_size, num_steps) is the least n that leaves a batch at the worst offset, found by search."""
    for b in range(1, 8):
        for s in range(1, 8):
            assert min_tokens(b, s) == min(n for n in range(1, 100) if fits(n, b, s)), (b, s)


def test_check_sizes_messages_name_the_limit():
    """Each refusal names what to change and its largest allowed value, counted by hand."""
    for n, b, s in GRID:
        if fits(n, b, s):
            continue
        with pytest.raises(ConfigError) as e:
            check_sizes(n, b, s)
        if n < 2:
            want = f"corpus must hold at least 2 tokens (got {n})"
        elif not any(fits(n, b, k) for k in range(1, 31)):
            want = f"batch_size must be at most {n - 1} for a corpus of {n} tokens (got {b})"
        else:
            best = max(k for k in range(1, 31) if fits(n, b, k))
            want = f"num_steps must be at most {best} for a corpus of {n} tokens with batch_size {b} (got {s})"
        assert str(e.value) == want


@pytest.mark.parametrize("sampler", BOOK_SAMPLERS)
def test_the_iterators_refuse_sizes_that_do_not_fit(sampler):
    """data_iter checks the sizes itself: 10 tokens, batch_size 2 allow num_steps up to 3."""
    with pytest.raises(ConfigError) as e:
        data_iter(np.arange(10), 2, 4, sampler)
    assert str(e.value) == "num_steps must be at most 3 for a corpus of 10 tokens with batch_size 2 (got 4)"
    assert len(list(data_iter(np.arange(10), 2, 3, sampler, rng=ScriptedRng(2)))) == 1


@pytest.mark.parametrize("value", [0, -1, True, 2.5, "3", None])
@pytest.mark.parametrize("name", ["batch_size", "num_steps"])
def test_sizes_must_be_positive_integers(name, value):
    """0, negatives, bools, floats, strings and None are refused with the option's name and value."""
    sizes = {"batch_size": 1, "num_steps": 1, name: value}
    with pytest.raises(ConfigError) as e:
        check_sizes(100, sizes["batch_size"], sizes["num_steps"])
    assert str(e.value) == f"{name} must be an integer >= 1 (got {value!r})"


def test_numpy_integers_and_one_are_valid_sizes():
    """np.int64 sizes and the smallest sizes (1) are accepted; 2 tokens hold one batch of one step."""
    check_sizes(100, np.int64(3), np.int32(4), "random")
    check_sizes(2, 1, 1)
    assert batches_per_epoch(2, 1, 1, "random") == batches_per_epoch(2, 1, 1, "sequential") == 1


def test_unknown_sampler_is_refused_everywhere():
    """A sampler name outside SAMPLERS gets the same message from every entry point."""
    want = "sampler must be one of random, sequential, sliding, uniform, fixed, sentences (got 'shuffled')"
    calls = [lambda: check_sizes(100, 2, 3, "shuffled"), lambda: batches_per_epoch(100, 2, 3, "shuffled"),
             lambda: data_iter(np.arange(100), 2, 3, "shuffled"), lambda: coverage(100, 2, 3, "shuffled", 1)]
    for call in calls:
        with pytest.raises(ConfigError) as e:
            call()
        assert str(e.value) == want
    check_sizes(100, 2, 3, None)


@pytest.mark.parametrize("sampler", BOOK_SAMPLERS)
def test_batches_per_epoch_counts_the_offset_zero_epoch(sampler):
    """The count is the largest k with k * batch_size * num_steps + 1 <= n (a counting loop), an int,
    and exactly what data_iter yields at offset 0; every other offset yields that or one fewer."""
    for n, b, s in GRID:
        if not fits(n, b, s):
            continue
        k = 0
        while (k + 1) * b * s + 1 <= n:
            k += 1
        got = batches_per_epoch(n, b, s, sampler)
        assert type(got) is int and got == k, (n, b, s)
        counts = [len(list(data_iter(np.arange(n), b, s, sampler, rng=ScriptedRng(o)))) for o in range(s)]
        assert counts[0] == k and all(c in (k, k - 1) for c in counts)


def test_coverage_in_closed_form_for_one_step_subsequences():
    """num_steps = 1 has only offset 0. Sequential: the first batch_size * ((n - 1) // batch_size)
    positions are seen once per epoch, the rest never. Random: each epoch sees
    batch_size * ((n - 1) // batch_size) distinct positions, never the last one."""
    for n, b, epochs in [(10, 3, 1), (10, 3, 4), (11, 5, 2), (7, 1, 3), (30, 4, 5)]:
        seen = b * ((n - 1) // b)
        want = np.array([epochs if p < seen else 0 for p in range(n)])
        got = coverage(n, b, 1, "sequential", epochs, seed=7)
        assert got.dtype == np.int64 and got.tolist() == want.tolist()
        got = coverage(n, b, 1, "random", epochs, seed=7)
        assert got.sum() == epochs * seen and got[-1] == 0 and got.max() <= epochs and len(got) == n
        if seen == n - 1:
            assert got.tolist() == want.tolist()


def positions_seen(n: int, b: int, s: int, sampler: str, epochs: int, seed: int) -> list[int]:
    """How often each position of 0..n-1 is an input of data_iter, one default_rng(seed) driving the epochs."""
    rng, counts = np.random.default_rng(seed), [0] * n
    for _ in range(epochs):
        for X, _ in data_iter(np.arange(n), b, s, sampler, rng=rng):
            for p in X.flatten().tolist():
                counts[p] += 1
    return counts


@pytest.mark.parametrize("sampler", BOOK_SAMPLERS)
def test_coverage_counts_the_inputs_data_iter_yields(sampler):
    """coverage equals counting the positions in the batches (data_iter is pinned above by D2L's code);
    the default seed is 0."""
    for n, b, s, epochs in [(50, 3, 4, 3), (37, 2, 5, 2), (64, 4, 3, 5)]:
        assert coverage(n, b, s, sampler, epochs, seed=11).tolist() == positions_seen(n, b, s, sampler, epochs, 11)
        assert coverage(n, b, s, sampler, epochs).tolist() == positions_seen(n, b, s, sampler, epochs, 0)


@pytest.mark.parametrize("epochs", [0, -2, 1.5, True])
def test_coverage_refuses_a_bad_number_of_epochs(epochs):
    """epochs must be a positive integer; the message names it."""
    with pytest.raises(ConfigError) as e:
        coverage(50, 2, 3, "random", epochs)
    assert str(e.value) == f"epochs must be an integer >= 1 (got {epochs!r})"
