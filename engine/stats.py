"""Corpus statistics (D2L 8.3): token frequencies, n-grams and Zipf's law.

``ngram_counts(tokens, n)`` counts consecutive n-tuples of a token stream
(``['a', 'b', 'a', 'b'], 2 → {('a', 'b'): 2, ('b', 'a'): 1}``).
``zipf_fit`` fits Zipf's law ``n_i ∝ 1 / i^a`` to a frequency table by least
squares on ``log f = -a log r + c`` over a rank range (exercise 8.3.3);
``ngram_summary`` adds the number of distinct n-grams and the top k (8.3.1);
``ngram_frequencies`` gives the sorted counts of an id stream's n-grams.
``corpus_summary`` gathers it all for a ``TextPipeline`` as a JSON-able dict,
the one thing the CLI and the TUI show.

The stream is the book's: the tokens of all lines concatenated, so n-grams
run across line ends. Counts are of the tokens as written, before ``min_freq``
maps rare ones to ``<unk>`` (the ``<unk>`` rate is reported separately). Summaries count with numpy (each n-gram packed into one
int64 key) which keeps char-level 4-grams of a novel well under a second.

Left out: plotting, smoothing (Laplace etc.) and sampling from n-gram models.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engine.errors import ConfigError

DEFAULT_RANK_RANGE = (10, 1000)


def token_frequencies(tokens: Sequence[str]) -> list[tuple[str, int]]:
    """``(token, count)`` most frequent first; ties keep first-seen order."""
    return Counter(tokens).most_common()


def ngram_counts(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    """Counts of each run of ``n`` consecutive tokens (D2L's bigram/trigram tokens)."""
    _check_n(n)
    return Counter(zip(*(tokens[i:] for i in range(n))))


MIN_FIT_RANKS = 5  # fewer ranks in the fitting range: no exponent


def zipf_fit(
    freqs: Sequence[int], rank_range: tuple[int, int] = DEFAULT_RANK_RANGE
) -> tuple[float, float]:
    """Fit ``log f = -a log r + c`` by least squares over ranks ``lo..hi``.

    ``freqs`` is any frequency table (sorted here, most frequent = rank 1);
    ranks beyond its length are ignored. Returns ``(a, c)``, natural logs;
    ``(nan, nan)`` when fewer than ``MIN_FIT_RANKS`` ranks fall in the range:
    a line through two or three points says nothing about a power law.
    """
    lo, hi = _check_rank_range(rank_range)
    f = np.sort(np.asarray(freqs, dtype=np.float64))[::-1][lo - 1 : hi]
    if len(f) < MIN_FIT_RANKS:
        return math.nan, math.nan
    log_r = np.log(np.arange(lo, lo + len(f), dtype=np.float64))
    slope, intercept = np.polyfit(log_r, np.log(f), 1)
    return float(-slope), float(intercept)


@dataclass(frozen=True)
class NgramSummary:
    """What D2L 8.3 shows for one n."""

    n: int  # 1 = unigrams (tokens), 2 = bigrams, ...
    distinct: int  # number of different n-grams (exercise 8.3.1)
    total: int  # number of n-grams in the stream: len(tokens) - n + 1
    top: list[tuple[tuple[str, ...], int]]  # the top_k most frequent, ties first-seen
    zipf_exponent: float  # a in n_i ∝ 1 / i^a over the rank range; nan if too few


def ngram_summary(
    tokens: Sequence[str],
    n: int,
    *,
    top_k: int = 10,
    rank_range: tuple[int, int] = DEFAULT_RANK_RANGE,
) -> NgramSummary:
    """Distinct count, top ``top_k`` and Zipf exponent of the n-grams of ``tokens``."""
    codes, inverse = _encode(tokens)
    return _summary(codes, inverse, n, top_k, rank_range)


def corpus_summary(
    pipeline: Any,
    *,
    max_n: int = 4,
    top_k: int = 10,
    rank_range: tuple[int, int] = DEFAULT_RANK_RANGE,
    min_freqs: Sequence[int] = (0, 10),
) -> dict[str, Any]:
    """Everything ``rnnlab corpus`` prints, as a JSON-able dict.

    ``pipeline`` is an ``engine.tokenizers.TextPipeline``. The vocabulary size
    at each of ``min_freqs`` is given for ``char`` and ``word`` (D2L's cut-off);
    subword vocabularies are sized by training, so there it is ``None``.
    """
    _check_n(max_n)
    if top_k < 1:
        raise ConfigError(f"top_k must be >= 1 (got {top_k})")
    tok = pipeline.tokenizer
    tokens = [t for line in tok.tokenize(pipeline.lines) for t in line]
    codes, inverse = _encode(tokens)
    ngrams = [_summary(codes, inverse, n, top_k, rank_range) for n in range(1, max_n + 1)]
    ids = np.asarray(pipeline.ids)
    unk_count = int(np.count_nonzero(ids == tok.vocab.unk))
    corpus = pipeline.corpus
    return {
        "corpus": {"name": corpus.name, "path": str(corpus.path)},
        "warnings": list(corpus.warnings),
        "mode": pipeline.mode,
        "tokenizer": tok.kind,
        "min_freq": tok.min_freq,
        "lines": len(pipeline.lines),
        "tokens": int(len(ids)),
        "vocab_size": len(tok.vocab),
        "vocab_size_at_min_freq": _vocab_sizes(tok, ngrams[0], codes, min_freqs),
        "unk_count": unk_count,
        "unk_rate": unk_count / len(ids) if len(ids) else 0.0,
        "top_tokens": [[gram[0], count] for gram, count in ngrams[0].top],
        "zipf_rank_range": list(_check_rank_range(rank_range)),
        "ngrams": [_jsonable(s) for s in ngrams],
    }


def _vocab_sizes(
    tok: Any, unigrams: NgramSummary, codes: np.ndarray, min_freqs: Sequence[int]
) -> list[dict[str, int]] | None:
    # D2L's Vocab: '<unk>', the reserved tokens, then every token with count >= min_freq.
    if tok.kind not in ("char", "word"):
        return None
    counts = np.bincount(codes) if len(codes) else np.zeros(0, dtype=np.int64)
    base = 1 + len(getattr(tok.vocab, "reserved_tokens", ()))
    return [{"min_freq": m, "vocab_size": base + int(np.count_nonzero(counts >= max(m, 1)))} for m in min_freqs]


def _jsonable(s: NgramSummary) -> dict[str, Any]:
    d = asdict(s)
    d["top"] = [[list(gram), count] for gram, count in s.top]
    d["zipf_exponent"] = None if math.isnan(s.zipf_exponent) else s.zipf_exponent
    return d


def _encode(tokens: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Tokens → int64 codes in first-seen order, and the code → token list."""
    index: dict[str, int] = {}
    codes = np.fromiter(
        (index.setdefault(t, len(index)) for t in tokens), dtype=np.int64, count=len(tokens)
    )
    return codes, list(index)


def _packed_counts(codes: np.ndarray, n: int, base: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(distinct packed keys, first position of each, counts) of the n-grams of ``codes``
    (ints in ``0..base-1``); None when a packed key would overflow int64."""
    if base**n >= 2**62:
        return None
    total = len(codes) - n + 1
    # Pack each n-gram (c_0, ..., c_{n-1}) into one int: sum c_i * base^(n-1-i).
    keys = codes[:total].copy()
    for i in range(1, n):
        keys = keys * base + codes[i : i + total]
    return np.unique(keys, return_index=True, return_counts=True)  # type: ignore[return-value]


def ngram_frequencies(codes: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """The count of each distinct n-gram of an id stream, most frequent first (a Zipf curve's y)."""
    _check_n(n)
    codes = np.asarray(codes, dtype=np.int64)
    if len(codes) < n:
        return np.zeros(0, dtype=np.int64)
    packed = _packed_counts(codes, n, int(codes.max()) + 1)
    if packed is None:
        counts = np.fromiter(ngram_counts(codes.tolist(), n).values(), dtype=np.int64)  # type: ignore[arg-type]
    else:
        counts = packed[2]
    return np.sort(counts)[::-1]


def _summary(
    codes: np.ndarray, inverse: list[str], n: int, top_k: int, rank_range: tuple[int, int]
) -> NgramSummary:
    _check_n(n)
    total = max(len(codes) - n + 1, 0)
    if total == 0:
        return NgramSummary(n, 0, 0, [], math.nan)
    packed = _packed_counts(codes, n, max(len(inverse), 1))
    if packed is None:  # the packed key would overflow: count with a Counter
        counter = ngram_counts([inverse[c] for c in codes.tolist()], n)
        top = counter.most_common(top_k)
        freqs = np.fromiter(counter.values(), dtype=np.int64)
        return NgramSummary(n, len(counter), total, top, zipf_fit(freqs, rank_range)[0])
    uniq, first, counts = packed
    order = np.lexsort((first, -counts))  # most frequent first, ties first-seen
    top = []
    for j in order[:top_k]:
        start = int(first[j])
        gram = tuple(inverse[c] for c in codes[start : start + n].tolist())
        top.append((gram, int(counts[j])))
    return NgramSummary(n, len(uniq), total, top, zipf_fit(counts, rank_range)[0])


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n must be an integer >= 1 (got {n!r})")


def _check_rank_range(rank_range: tuple[int, int]) -> tuple[int, int]:
    lo, hi = (int(r) for r in rank_range)
    if lo < 1 or hi < lo:
        raise ConfigError(f"rank_range must be (lo, hi) with 1 <= lo <= hi (got {tuple(rank_range)!r})")
    return lo, hi
