"""engine.stats: frequencies, n-grams, Zipf fits and the corpus summary."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.corpus import load_corpus
from engine.errors import ConfigError
from engine.stats import corpus_summary, ngram_counts, ngram_summary, token_frequencies, zipf_fit
from engine.pipeline import build_pipeline


@pytest.fixture(scope="module")
def timemachine(corpus_dir):
    return load_corpus(str(corpus_dir / "timemachine.txt"))


def test_token_frequencies_ties_first_seen():
    assert token_frequencies(list("abracadabra")) == [("a", 5), ("b", 2), ("r", 2), ("c", 1), ("d", 1)]


def test_ngram_counts_worked_example():
    assert ngram_counts(["a", "b", "a", "b"], 2) == Counter({("a", "b"): 2, ("b", "a"): 1})
    assert ngram_counts(["a"], 2) == Counter()
    with pytest.raises(ConfigError, match="n must be an integer >= 1"):
        ngram_counts(["a"], 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from("abcde"), max_size=60), st.integers(1, 4))
def test_summary_agrees_with_counter(tokens, n):
    s = ngram_summary(tokens, n, top_k=5, rank_range=(1, 100))
    counter = ngram_counts(tokens, n)
    assert s.n == n and s.total == max(len(tokens) - n + 1, 0)
    assert s.distinct == len(counter)
    assert s.top == counter.most_common(5)  # same counts and the same first-seen tie order


def test_counter_fallback_for_huge_keys():
    # 3000 distinct tokens: 3000**6 does not fit an int64 key, so the Counter path runs.
    rng = np.random.default_rng(0)
    tokens = [f"w{i}" for i in rng.integers(0, 3000, size=5000)]
    tokens += [f"w{i}" for i in range(3000)]
    s = ngram_summary(tokens, 6, top_k=3)
    counter = ngram_counts(tokens, 6)
    assert s.distinct == len(counter) and s.top == counter.most_common(3)


def test_zipf_fit_recovers_exponent():
    ranks = np.arange(1, 2001)
    freqs = np.round(1e7 / ranks**1.5).astype(np.int64)
    rng = np.random.default_rng(0)
    a, c = zipf_fit(rng.permutation(freqs), rank_range=(1, 100))  # order of input is irrelevant
    assert a == pytest.approx(1.5, abs=1e-4) and c == pytest.approx(math.log(1e7), abs=1e-3)
    assert zipf_fit([5, 4, 3], rank_range=(3, 10)) == (pytest.approx(math.nan, nan_ok=True),) * 2
    assert math.isnan(zipf_fit([7, 7, 7, 7])[0])  # default ranks 10..1000: no points
    assert zipf_fit([7] * 20)[0] == pytest.approx(0.0, abs=1e-12)  # flat: exponent 0
    with pytest.raises(ConfigError, match="rank_range"):
        zipf_fit([3, 2, 1], rank_range=(0, 10))
    with pytest.raises(ConfigError, match="rank_range"):
        zipf_fit([3, 2, 1], rank_range=(5, 4))


def test_d2l_word_figures(timemachine):
    s = corpus_summary(build_pipeline(timemachine, tokenizer="word"), top_k=3)
    assert (s["lines"], s["tokens"], s["vocab_size"]) == (3221, 32775, 4580)
    assert s["top_tokens"] == [["the", 2261], ["i", 1267], ["and", 1245]]
    uni, bi, tri, four = s["ngrams"]
    assert bi["top"][0] == [["of", "the"], 309]
    assert tri["top"][0] == [["the", "time", "traveller"], 59]
    assert four["top"][0] == [["said", "the", "time", "traveller"], 12]
    assert [g["distinct"] for g in s["ngrams"]] == [4579, 20234, 29882, 32180]
    assert [g["total"] for g in s["ngrams"]] == [32775, 32774, 32773, 32772]
    # Zipf: word frequencies fall off roughly as 1/rank; n-grams fall off slower.
    assert uni["zipf_exponent"] == pytest.approx(1.044, abs=1e-3)
    assert 1 > bi["zipf_exponent"] > tri["zipf_exponent"] > four["zipf_exponent"] > 0
    assert s["vocab_size_at_min_freq"] == [
        {"min_freq": 0, "vocab_size": 4580},
        {"min_freq": 10, "vocab_size": 400},
    ]
    assert s["unk_rate"] == 0.0
    assert json.loads(json.dumps(s, allow_nan=False)) == s


def test_d2l_char_figures(timemachine):
    s = corpus_summary(build_pipeline(timemachine, tokenizer="char"), top_k=2, max_n=2)
    assert (s["lines"], s["tokens"], s["vocab_size"]) == (3221, 170580, 28)
    assert s["top_tokens"] == [[" ", 29927], ["e", 17838]]
    assert [g["n"] for g in s["ngrams"]] == [1, 2]
    assert s["ngrams"][1]["top"][0] == [["e", " "], 6037]
    assert [v["vocab_size"] for v in s["vocab_size_at_min_freq"]] == [28, 28]


def test_unk_rate_with_min_freq(timemachine):
    s = corpus_summary(build_pipeline(timemachine, tokenizer="word", min_freq=10))
    words = [w for line in build_pipeline(timemachine, tokenizer="word").lines for w in line.split()]
    rare = sum(c for c in Counter(words).values() if c < 10)
    assert s["vocab_size"] == 400 and s["min_freq"] == 10
    assert s["unk_count"] == rare and s["unk_rate"] == pytest.approx(rare / 32775)
    assert 0.1 < s["unk_rate"] < 0.5


def test_rank_range_and_bad_args(timemachine):
    p = build_pipeline(timemachine, tokenizer="word")
    wide = corpus_summary(p, max_n=1, rank_range=(1, 10_000))
    assert wide["zipf_rank_range"] == [1, 10_000]
    assert wide["ngrams"][0]["zipf_exponent"] != corpus_summary(p, max_n=1)["ngrams"][0]["zipf_exponent"]
    with pytest.raises(ConfigError, match="top_k"):
        corpus_summary(p, top_k=0)
    with pytest.raises(ConfigError, match="n must be"):
        corpus_summary(p, max_n=0)


def test_zipf_fit_needs_enough_ranks_to_mean_anything():
    from engine.stats import MIN_FIT_RANKS

    assert math.isnan(zipf_fit([9, 3], rank_range=(1, 10))[0])
    assert math.isnan(zipf_fit([9, 5, 3, 2], rank_range=(1, 10))[0]) and MIN_FIT_RANKS == 5
    assert zipf_fit([1000 / r for r in range(1, 6)], rank_range=(1, 10))[0] == pytest.approx(1.0)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_ngram_frequencies_are_the_sorted_ngram_counts(n):
    from engine import stats

    rng = np.random.default_rng(n)
    ids = rng.integers(0, 9, size=500)
    want = sorted(ngram_counts(ids.tolist(), n).values(), reverse=True)
    assert stats.ngram_frequencies(ids, n).tolist() == want
    # ids up to 9e6: a key packing all n ids would overflow int64 for n = 3, 5
    assert stats.ngram_frequencies(ids * 1_000_003, n).tolist() == want
    assert stats.ngram_frequencies(ids[: n - 1], n).tolist() == []


def test_a_zipf_exponent_too_few_ranks_to_fit_is_written_as_null(timemachine):
    """Ranks 100-200 of a character vocabulary (28 tokens) hold no point to fit: null in the JSON summary, which
    a strict JSON reader accepts, and '—' in the CLI's table."""
    from tui.cli.corpus import format_summary

    s = corpus_summary(build_pipeline(timemachine, tokenizer="char"), max_n=1, rank_range=(100, 200))
    assert s["ngrams"][0]["zipf_exponent"] is None
    assert json.loads(json.dumps(s, allow_nan=False)) == s
    rows = [line for line in format_summary(s, title="t").splitlines() if line.startswith("  1  ")]
    assert len(rows) == 1 and rows[0].endswith("  —")
