"""Everything the Corpus screen shows, computed once per pipeline (in a worker).

``build_view`` turns an ``engine`` text pipeline into plain figures: the counts
line, the top tokens, the Zipf curves (log10 rank vs log10 frequency for 1-,
2- and 3-grams, thinned to log-spaced ranks so the plot stays cheap) with the
exponents fitted by ``engine.stats``, the tokens of the first few hundred
characters and, for subword tokenizers, the merges or pieces in learned order.
Everything comes from one ``engine.stats.corpus_stats`` pass, so a big corpus
is counted once, within its memory bounds (n-grams on a prefix: ``ngram_tokens``).
Every token is shown through the tokenizer's own ``display_token`` (byte-level
pieces decoded, ``␣`` for a space, ``↵`` for a newline, ``##`` for a WordPiece
continuation), so the UI has no mapping of its own.

Left out: drawing (the screen does that) and any statistic the engine lacks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine import stats

PREVIEW_CHARS = 400  # how much of the corpus to show as tokens
ZIPF_NS = (1, 2, 3)
ZIPF_POINTS = 160  # log-spaced ranks drawn per curve


@dataclass
class ZipfCurve:
    n: int
    log_rank: list[float]
    log_freq: list[float]
    exponent: float


@dataclass
class CorpusView:
    """Display-ready figures for one pipeline."""

    pipeline: Any
    title: str
    lines: int
    tokens: int
    vocab_size: int
    unk_rate: float
    top: list[tuple[str, int]]  # (displayed token, count), most frequent first
    zipf: list[ZipfCurve]
    preview: list[list[str]]  # tokens per shown line, as displayed
    subword_title: str = ""  # "BPE merges (learned order)" or "pieces" or ""
    subword: list[str] = field(default_factory=list)  # displayed merges or pieces
    warnings: tuple[str, ...] = ()
    # engine.stats.corpus_summary: n-gram table (n = 1..4) and, for char/word, the
    # vocabulary size at min_freq 0 and 10 (D2L's cut-off) under "vocab_size_at_min_freq".
    summary: dict[str, Any] = field(default_factory=dict)


def _log_spaced_ranks(n: int, points: int = ZIPF_POINTS) -> np.ndarray:
    """Ranks 1..n (0-based indices) spread evenly on a log scale."""
    if n <= points:
        return np.arange(n)
    return np.unique(np.geomspace(1, n, points).astype(np.int64) - 1)


def zipf_curve(ids: np.ndarray, n: int) -> ZipfCurve:
    """log10 rank vs log10 frequency of the n-grams of the token ids (one id per shown token)."""
    return curve_from_frequencies(stats.ngram_frequencies(ids, n), n)


def curve_from_frequencies(freqs: np.ndarray, n: int) -> ZipfCurve:
    """The Zipf curve of n-gram counts sorted most frequent first, thinned to log-spaced ranks."""
    freqs = np.asarray(freqs, dtype=np.float64)
    if len(freqs) < 2:
        return ZipfCurve(n, [], [], float("nan"))
    idx = _log_spaced_ranks(len(freqs))
    exponent = float(stats.zipf_fit(freqs)[0])
    return ZipfCurve(n, np.log10(idx + 1).tolist(), np.log10(freqs[idx]).tolist(), exponent)


def _preview(pipeline: Any) -> list[list[str]]:
    """Displayed tokens of the first lines, up to about PREVIEW_CHARS characters."""
    lines: list[str] = []
    chars = 0
    for chunk in pipeline.chunks(chunk_chars=4 * PREVIEW_CHARS):  # only the text's head is read
        for line in chunk:
            if chars >= PREVIEW_CHARS:
                break
            if line:
                lines.append(line[: PREVIEW_CHARS - chars])
                chars += len(lines[-1])
        if chars >= PREVIEW_CHARS:
            break
    show = pipeline.tokenizer.display_token
    return [[show(t) for t in line] for line in pipeline.tokenizer.tokenize(lines)]


def _subword(tokenizer: Any) -> tuple[str, list[str]]:
    show = tokenizer.display_token
    merges = list(getattr(tokenizer, "merges", []) or [])
    if merges:  # ("Ġ", "t") -> "␣ + t → ␣t"
        return "BPE merges (learned order)", [f"{show(a)} + {show(b)} → {show(a + b)}" for a, b in merges]
    pieces = list(getattr(tokenizer, "pieces", []) or [])
    if pieces:
        return f"{tokenizer.kind} pieces (learned order)", [show(p) for p in pieces]
    return "", []


def build_view(
    pipeline: Any, top_k: int = 40, progress: Callable[[str, int, int | None], None] | None = None
) -> CorpusView:
    """All figures for ``pipeline``; slow parts (n-gram counts) happen here and
    report to ``progress(step, done, total)``."""
    vocab = pipeline.tokenizer.vocab
    corpus = pipeline.corpus
    title = getattr(corpus, "name", "corpus")
    try:
        from engine.corpus import catalog

        entry = catalog().get(title)
        if entry is not None:
            title = f"{entry.title} · {entry.author}"
    except Exception:  # a file corpus or no catalog: keep the name
        pass
    title_sub, subword = _subword(pipeline.tokenizer)
    counted = stats.corpus_stats(pipeline, max_n=4, curves=ZIPF_NS, progress=progress)
    summary = counted.summary
    return CorpusView(
        pipeline=pipeline,
        title=title,
        lines=summary["lines"],
        tokens=summary["tokens"],
        vocab_size=len(vocab),
        unk_rate=summary["unk_rate"],
        top=[(pipeline.tokenizer.display_token(t), c) for t, c in vocab.token_freqs[:top_k]],
        zipf=[curve_from_frequencies(counted.frequencies[n], n) for n in ZIPF_NS],
        preview=_preview(pipeline),
        subword_title=title_sub,
        subword=subword,
        warnings=tuple(getattr(pipeline, "warnings", None) or getattr(corpus, "warnings", ()) or ()),
        summary=summary,
    )


def format_exponent(a: float) -> str:
    return "–" if not math.isfinite(a) else f"{a:.2f}"
