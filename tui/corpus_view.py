"""Everything the Corpus screen shows, computed once per pipeline (in a worker).

``build_view`` turns an ``engine`` text pipeline into plain figures: the counts
line, the top tokens, the Zipf curves (log10 rank vs log10 frequency for 1-,
2- and 3-grams, thinned to log-spaced ranks so the plot stays cheap) with the
exponents fitted by ``engine.stats``, the tokens of the first few hundred
characters and, for subword tokenizers, the merges or pieces in learned order.
Every token is shown through the tokenizer's own ``display_token`` (byte-level
pieces decoded, ``␣`` for a space, ``↵`` for a newline, ``##`` for a WordPiece
continuation), so the UI has no mapping of its own.

Left out: drawing (the screen does that) and any statistic the engine lacks.
"""

from __future__ import annotations

import math
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
    freqs = stats.ngram_frequencies(ids, n).astype(np.float64)
    if len(freqs) < 2:
        return ZipfCurve(n, [], [], float("nan"))
    idx = _log_spaced_ranks(len(freqs))
    try:
        exponent = float(stats.zipf_fit(freqs.astype(np.int64).tolist())[0])
    except Exception:  # too few ranks for the fit's range: show the curve anyway
        exponent = float("nan")
    return ZipfCurve(n, np.log10(idx + 1).tolist(), np.log10(freqs[idx]).tolist(), exponent)


def _preview(pipeline: Any) -> list[list[str]]:
    """Displayed tokens of the first lines, up to about PREVIEW_CHARS characters."""
    lines, chars = [], 0
    for line in pipeline.lines:
        if chars >= PREVIEW_CHARS:
            break
        if line:
            lines.append(line[: PREVIEW_CHARS - chars])
            chars += len(lines[-1])
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


def build_view(pipeline: Any, top_k: int = 40) -> CorpusView:
    """All figures for ``pipeline``; slow parts (n-gram counts) happen here."""
    ids = np.asarray(pipeline.ids)
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
    unk = float(np.mean(ids == vocab.unk)) if len(ids) else 0.0
    return CorpusView(
        pipeline=pipeline,
        title=title,
        lines=len(pipeline.lines),
        tokens=int(len(ids)),
        vocab_size=len(vocab),
        unk_rate=unk,
        top=[(pipeline.tokenizer.display_token(t), c) for t, c in vocab.token_freqs[:top_k]],
        zipf=[zipf_curve(ids, n) for n in ZIPF_NS],
        preview=_preview(pipeline),
        subword_title=title_sub,
        subword=subword,
        warnings=tuple(getattr(pipeline, "warnings", None) or getattr(corpus, "warnings", ()) or ()),
        summary=stats.corpus_summary(pipeline, max_n=4),
    )


def format_exponent(a: float) -> str:
    return "–" if not math.isfinite(a) else f"{a:.2f}"
