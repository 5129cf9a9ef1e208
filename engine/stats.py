"""Corpus statistics (D2L 8.3): token frequencies, n-grams and Zipf's law.

``ngram_counts(tokens, n)`` counts consecutive n-tuples of a token stream
(``['a', 'b', 'a', 'b'], 2 → {('a', 'b'): 2, ('b', 'a'): 1}``).
``zipf_fit`` fits Zipf's law ``n_i ∝ 1 / i^a`` to a frequency table by least
squares on ``log f = -a log r + c`` over a rank range (exercise 8.3.3);
``ngram_summary`` adds the number of distinct n-grams and the top k (8.3.1);
``ngram_frequencies`` gives the sorted counts of an id stream's n-grams.
``corpus_stats`` gathers it all for a ``TextPipeline``: a JSON-able summary
(``corpus_summary``), the one thing the CLI and the TUI show, and the sorted
counts behind each Zipf fit.

The stream is the book's: the tokens of all lines concatenated, so n-grams
run across line ends. Counts are of the tokens as written, before ``min_freq``
maps rare ones to ``<unk>`` (the ``<unk>`` rate is reported separately).

Memory: token counts (n = 1) are exact on any corpus. For n >= 2 each
position's n-gram gets a dense integer id, built level by level (the n-gram
at ``i`` is the (n-1)-gram at ``i`` followed by token ``i+n-1``) and counted
with one sort, about 20 bytes per token. On a corpus longer than
``NGRAM_MAX_TOKENS`` tokens the n-grams are counted on its first
``NGRAM_MAX_TOKENS`` tokens, and the summary says so (``ngram_tokens``).

Left out: plotting, smoothing (Laplace etc.) and sampling from n-gram models.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engine.errors import ConfigError
from engine.jsonfloat import finite_or_none

DEFAULT_RANK_RANGE = (10, 1000)
NGRAM_MAX_TOKENS = 2_000_000  # n >= 2 counted on at most this many tokens: ~40 MB of work arrays
CHUNK_IDS = 1 << 20  # ids per step of a pass over the whole id array

StepProgress = Callable[[str, int, "int | None"], None]  # (step name, done, total)


def token_frequencies(tokens: Sequence[str]) -> list[tuple[str, int]]:
    """``(token, count)`` most frequent first; ties keep first-seen order."""
    return Counter(tokens).most_common()


def ngram_counts(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    """Counts of each run of ``n`` consecutive tokens (D2L's bigram/trigram tokens)."""
    _check_n(n)
    return Counter(zip(*(tokens[i:] for i in range(n))))


MIN_FIT_RANKS = 5  # fewer ranks in the fitting range: no exponent


def zipf_fit(
    freqs: Sequence[int] | np.ndarray, rank_range: tuple[int, int] = DEFAULT_RANK_RANGE
) -> tuple[float, float]:
    """Fit ``log f = -a log r + c`` by least squares over ranks ``lo..hi``.

    ``freqs`` is any frequency table (sorted here, most frequent = rank 1);
    ranks beyond its length are ignored. Returns ``(a, c)``, natural logs;
    ``(nan, nan)`` when fewer than ``MIN_FIT_RANKS`` ranks fall in the range:
    a line through two or three points says nothing about a power law.
    """
    lo, hi = _check_rank_range(rank_range)
    f = np.asarray(freqs)
    if len(f) > hi:  # only the hi largest matter: partition instead of sorting them all
        f = np.partition(f, len(f) - hi)[len(f) - hi :]
    f = np.sort(f.astype(np.float64))[::-1][lo - 1 : hi]
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
    total: int  # number of n-grams counted: len(tokens) - n + 1
    top: list[tuple[tuple[str, ...], int]]  # the top_k most frequent, ties first-seen
    zipf_exponent: float  # a in n_i ∝ 1 / i^a over the rank range; nan if too few


@dataclass(frozen=True)
class NgramTable:
    """Every distinct n-gram of a code stream: where it first starts and how often it occurs."""

    n: int
    first: np.ndarray  # position of each distinct n-gram's first occurrence (int32 or int64)
    counts: np.ndarray  # count of each (int32 or int64)


def ngram_tables(codes: np.ndarray, max_n: int, min_n: int = 1) -> Iterator[NgramTable]:
    """The n-gram tables of ``codes`` (non-negative ints) for n = min_n..max_n, exact,
    one at a time (a table may be as long as ``codes``: use it, then let it go).

    ``[3, 5, 3, 5], 2`` → n=1: first [0, 1], counts [2, 2]; n=2: the grams
    (3, 5) at 0 twice and (5, 3) at 1 once. Each level re-numbers its n-grams
    densely (0..distinct-1), so the next level's key ``rank * base + code``
    stays below ``len(codes) * base``: no overflow, whatever the vocabulary.
    Work arrays are int32 where they can be (positions, ranks): ~17 bytes per
    token at the peak, plus the table.
    """
    _check_n(max_n)
    codes = np.asarray(codes)
    base = int(codes.max()) + 1 if len(codes) else 1
    if len(codes) and base > len(codes):  # sparse codes (a big vocabulary): number them densely
        codes = np.unique(codes, return_inverse=True)[1].ravel()
        base = int(codes.max()) + 1
    index = np.int32 if len(codes) < 2**31 else np.int64  # positions and dense ranks
    codes = codes.astype(index, copy=False)
    ranks = codes  # 1-grams: the codes themselves are ids below base
    for n in range(1, max_n + 1):
        total = len(codes) - n + 1
        if total <= 0:
            yield from (NgramTable(k, np.zeros(0, np.int64), np.zeros(0, np.int64)) for k in range(n, max_n + 1))
            return
        if n == 1 and min_n > 1:
            continue
        keys = ranks[:total].astype(np.int64)
        if n > 1:
            keys *= base
            keys += codes[n - 1 : n - 1 + total]
        del ranks
        order = _sort_keys(keys, index)  # keys sorted in place; positions in that order
        new = np.empty(total, dtype=bool)
        new[0] = True
        np.not_equal(keys[1:], keys[:-1], out=new[1:])
        del keys
        if n >= min_n:
            starts = np.flatnonzero(new)
            counts = np.diff(starts, append=total).astype(index)
            first = order[starts]
            del starts
            yield NgramTable(n, first, counts)
            del first, counts
        if n < max_n:
            dense = np.cumsum(new, dtype=index)
            dense -= 1
            ranks = np.empty(total, dtype=index)
            ranks[order] = dense  # the dense id of the n-gram at each position
            del dense
        del order, new


_BLOCK = 1 << 20  # elements per step of a blockwise operation (bounds its temporaries)


def _sort_keys(keys: np.ndarray, index: type) -> np.ndarray:
    """Sort int64 ``keys`` in place; return the positions (dtype ``index``) in that
    order, ties by position."""
    total = len(keys)
    if int(keys.max()) < (2**63 - 1) // total:
        # Sorting values is several times faster than argsort: sort key * total + position.
        keys *= total
        for s in range(0, total, _BLOCK):
            keys[s : s + _BLOCK] += np.arange(s, min(s + _BLOCK, total), dtype=np.int64)
        keys.sort()
        order = np.empty(total, dtype=index)
        np.remainder(keys, total, out=order, casting="unsafe")
        keys //= total
        return order
    order = np.argsort(keys, kind="stable").astype(index)
    keys[:] = keys[order]
    return order


def ngram_summary(
    tokens: Sequence[str],
    n: int,
    *,
    top_k: int = 10,
    rank_range: tuple[int, int] = DEFAULT_RANK_RANGE,
) -> NgramSummary:
    """Distinct count, top ``top_k`` and Zipf exponent of the n-grams of ``tokens``."""
    _check_n(n)
    codes, inverse = _encode(tokens)
    *_, table = ngram_tables(codes, n, min_n=n)
    return _summary(table, codes, inverse, top_k, rank_range)


def ngram_frequencies(codes: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """The count of each distinct n-gram of an id stream, most frequent first (a Zipf curve's y)."""
    _check_n(n)
    codes = np.asarray(codes, dtype=np.int64)
    if len(codes) < n:
        return np.zeros(0, dtype=np.int64)
    *_, table = ngram_tables(codes, n, min_n=n)
    return np.sort(table.counts)[::-1]


@dataclass
class CorpusStats:
    """``corpus_stats``' result: the summary and the sorted counts per n."""

    summary: dict[str, Any]  # JSON-able: see corpus_summary
    frequencies: dict[int, np.ndarray]  # n in curves -> count of every distinct n-gram, most frequent first


def corpus_summary(pipeline: Any, **kwargs: Any) -> dict[str, Any]:
    """Everything ``rnnlab corpus`` prints, as a JSON-able dict (``corpus_stats(...).summary``)."""
    return corpus_stats(pipeline, **kwargs).summary


def corpus_stats(
    pipeline: Any,
    *,
    max_n: int = 4,
    top_k: int = 10,
    rank_range: tuple[int, int] = DEFAULT_RANK_RANGE,
    min_freqs: Sequence[int] = (0, 10),
    max_ngram_tokens: int | None = None,
    curves: Sequence[int] = (),
    progress: StepProgress | None = None,
) -> CorpusStats:
    """Token and n-gram statistics of an ``engine.pipeline.TextPipeline``.

    Tokens (n = 1) are counted over the whole corpus; n >= 2 over its first
    ``max_ngram_tokens`` tokens (default ``NGRAM_MAX_TOKENS``), and then
    ``summary["ngram_tokens"]`` says how many (else it is None). The
    vocabulary size at each of ``min_freqs`` is given for ``char`` and
    ``word`` (D2L's cut-off); subword vocabularies are sized by training, so
    there it is ``None``. ``curves``: the n whose sorted counts to keep in
    ``frequencies`` (a Zipf plot's curves). ``progress("counting n-grams", n,
    max_n)`` hears each n done.
    """
    _check_n(max_n)
    if top_k < 1:
        raise ConfigError(f"top_k must be >= 1 (got {top_k})")
    limit = NGRAM_MAX_TOKENS if max_ngram_tokens is None else max(1, int(max_ngram_tokens))
    rank_range = _check_rank_range(rank_range)
    tok = pipeline.tokenizer
    ids = pipeline.ids
    step = "counting n-grams"
    if progress is not None:
        progress(step, 0, max_n)

    unigram, uni_counts = _unigrams(pipeline, top_k, rank_range)
    summaries = [unigram]
    frequencies = {1: np.sort(uni_counts)[::-1]} if 1 in curves else {}
    if progress is not None:
        progress(step, 1, max_n)
    prefix = len(ids) > limit
    if max_n > 1:
        codes, inverse = _prefix_codes(pipeline, min(limit, len(ids)))
        for table in ngram_tables(codes, max_n, min_n=2):
            summaries.append(_summary(table, codes, inverse, top_k, rank_range))
            if table.n in curves:
                frequencies[table.n] = np.sort(table.counts)[::-1]
            del table
            if progress is not None:
                progress(step, summaries[-1].n, max_n)
        del codes
    unk_count = _count_equal(ids, tok.vocab.unk)
    corpus = pipeline.corpus
    summary = {
        "corpus": {"name": corpus.name, "path": str(corpus.path)},
        "warnings": list(corpus.warnings),
        "mode": pipeline.mode,
        "tokenizer": tok.kind,
        "min_freq": tok.min_freq,
        "lines": int(pipeline.num_lines),
        "tokens": int(len(ids)),
        "vocab_size": len(tok.vocab),
        "vocab_size_at_min_freq": _vocab_sizes(tok, uni_counts, min_freqs),
        "unk_count": unk_count,
        "unk_rate": unk_count / len(ids) if len(ids) else 0.0,
        "top_tokens": [[gram[0], count] for gram, count in unigram.top],
        "zipf_rank_range": list(rank_range),
        "ngram_tokens": min(limit, len(ids)) if prefix and max_n > 1 else None,
        "ngrams": [_jsonable(s) for s in summaries],
    }
    return CorpusStats(summary, frequencies)


def _unigrams(pipeline: Any, top_k: int, rank_range: tuple[int, int]) -> tuple[NgramSummary, np.ndarray]:
    """Exact token counts of the whole corpus, as written (before ``min_freq``)."""
    tok = pipeline.tokenizer
    if tok.vocab_from_counts:
        # D2L's Vocab counted every token in stream order: most frequent first, ties first-seen.
        freqs = tok.vocab.token_freqs
        counts = np.array([c for _, c in freqs], dtype=np.int64)
        top = [((t,), c) for t, c in freqs[:top_k]]
        return NgramSummary(1, len(freqs), int(counts.sum()), top, zipf_fit(counts, rank_range)[0]), counts
    # Subword: count the ids a chunk at a time, noting where each first occurs (for ties).
    ids, size = pipeline.ids, len(tok.vocab)
    counts = np.zeros(size, dtype=np.int64)
    first = np.full(size, -1, dtype=np.int64)
    for start in range(0, len(ids), CHUNK_IDS):
        chunk = ids[start : start + CHUNK_IDS]
        here = np.bincount(chunk, minlength=size)
        counts += here
        if (first[here > 0] < 0).any():
            uniq, pos = np.unique(chunk, return_index=True)
            unseen = first[uniq] < 0
            first[uniq[unseen]] = start + pos[unseen]
    seen = np.flatnonzero(counts)
    table = NgramTable(1, first[seen], counts[seen])
    return _summary(table, ids, tok.vocab.idx_to_token, top_k, rank_range), counts[seen]


def _prefix_codes(pipeline: Any, limit: int) -> tuple[np.ndarray, list[str]]:
    """The first ``limit`` tokens as written, as ints, and the int → token list."""
    tok = pipeline.tokenizer
    if getattr(tok, "drops_tokens", lambda: False)():
        # min_freq mapped rare tokens to <unk>: encode the prefix again keeping every token.
        full = tok.unfiltered()
        parts, n = [np.zeros(0, dtype=np.int32)], 0
        for lines in pipeline.chunks():
            parts.append(full.encode_lines(lines))
            n += len(parts[-1])
            if n >= limit:
                break
        return np.concatenate(parts)[:limit].astype(np.int32), full.vocab.idx_to_token
    return np.asarray(pipeline.ids[:limit]).astype(np.int32), tok.vocab.idx_to_token


def _count_equal(ids: np.ndarray, value: int) -> int:
    """``np.count_nonzero(ids == value)`` without a full-size boolean temporary."""
    return sum(int(np.count_nonzero(ids[s : s + CHUNK_IDS] == value)) for s in range(0, len(ids), CHUNK_IDS))


def _vocab_sizes(tok: Any, counts: np.ndarray, min_freqs: Sequence[int]) -> list[dict[str, int]] | None:
    # D2L's Vocab: '<unk>', the reserved tokens, then every token with count >= min_freq.
    if not tok.vocab_from_counts:
        return None
    base = 1 + len(getattr(tok.vocab, "reserved_tokens", ()))
    return [{"min_freq": m, "vocab_size": base + int(np.count_nonzero(counts >= max(m, 1)))} for m in min_freqs]


def _jsonable(s: NgramSummary) -> dict[str, Any]:
    d = asdict(s)
    d["top"] = [[list(gram), count] for gram, count in s.top]
    d["zipf_exponent"] = finite_or_none(s.zipf_exponent)  # nan (too few ranks to fit): null
    return d


def _encode(tokens: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Tokens → int64 codes in first-seen order, and the code → token list."""
    index: dict[str, int] = {}
    codes = np.fromiter(
        (index.setdefault(t, len(index)) for t in tokens), dtype=np.int64, count=len(tokens)
    )
    return codes, list(index)


def _summary(
    table: NgramTable, codes: np.ndarray, inverse: Sequence[str], top_k: int, rank_range: tuple[int, int]
) -> NgramSummary:
    """Summary of one table; ``codes[first:first+n]`` spells an n-gram through ``inverse``."""
    n, counts, first = table.n, table.counts, table.first
    total = int(counts.sum(dtype=np.int64))
    if total == 0:
        return NgramSummary(n, 0, 0, [], math.nan)
    # Most frequent first, ties first-seen: the candidates are the n-grams at least as
    # frequent as the top_k-th; sort them by one int64 key (count <= total, first < total).
    kth = np.partition(counts, len(counts) - top_k)[len(counts) - top_k] if top_k < len(counts) else 0
    cand = np.flatnonzero(counts >= kth)
    key = (total - counts[cand].astype(np.int64)) * (total + 1) + first[cand]
    order = cand[np.argsort(key)[:top_k]]
    top = []
    for j in order.tolist():
        start = int(first[j])
        gram = tuple(inverse[c] for c in np.asarray(codes[start : start + n]).tolist())
        top.append((gram, int(counts[j])))
    return NgramSummary(n, len(counts), total, top, zipf_fit(counts, rank_range)[0])


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n must be an integer >= 1 (got {n!r})")


def _check_rank_range(rank_range: tuple[int, int]) -> tuple[int, int]:
    lo, hi = (int(r) for r in rank_range)
    if lo < 1 or hi < lo:
        raise ConfigError(f"rank_range must be (lo, hi) with 1 <= lo <= hi (got {tuple(rank_range)!r})")
    return lo, hi
