"""From a corpus to its token ids, a chunk of lines at a time (D2L 8.2).

``build_pipeline`` preprocesses a corpus's text, fits a tokenizer on the lines
and encodes them (D2L's ``load_corpus_time_machine``) into a ``TextPipeline``.
Big corpora stream: ``corpus_chunks`` cuts the text at line breaks into pieces
of about ``CHUNK_CHARS`` characters and preprocesses one piece at a time, so
the lines of the whole text never exist at once; since pieces end at line
breaks, the result equals that of the whole text (``corpus_lines``). A subword
trainer's memory grows with the distinct words it sees, so ``bpe``/
``wordpiece``/``unigram`` train on the lines of the first ``SUBWORD_FIT_CHARS``
characters (the pipeline's warnings say so) and then encode all of the text.
Each pass reports to an optional ``progress(step, done, total)`` callback, in
characters of text. A corpus file of ``engine.token_cache.CACHE_MIN_CHARS`` or more
is encoded into the token cache and its ``ids`` are a read-only memory map of it
(a second pipeline of the same file and tokenizer skips the encoding pass).

Left out: reading corpora (``engine.corpus``), the tokenizers themselves
(``engine.tokenizers``) and statistics (``engine.stats``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.tokenizers import SUBWORD_KINDS, Tokenizer, _check_params, make_tokenizer
from engine.vocab import Vocab

CHUNK_CHARS = 1 << 20  # characters per chunk of a streamed pass: bounds its temporaries (~20 MB)
SUBWORD_FIT_CHARS = 5_000_000  # subword kinds train on the text's first lines up to this many characters

Progress = Callable[[int, "int | None"], None]  # (done, total): as engine.corpus.Progress
StepProgress = Callable[[str, int, "int | None"], None]  # (step name, done, total)


@dataclass(frozen=True, eq=False)  # identity equality: ids is an array
class TextPipeline:
    """A corpus, the fitted tokenizer and the ids of the whole corpus."""

    corpus: Any  # engine.corpus.Corpus (anything with .text)
    mode: str  # preprocessing mode: "d2l" or "raw"
    tokenizer: Tokenizer  # fitted on the corpus's preprocessed lines
    ids: np.ndarray  # token indices of the whole corpus (encode_corpus), dtype vocab.id_dtype; a big corpus's
    # are a read-only np.memmap of engine.token_cache's file, dtype uint8/uint16/uint32
    num_lines: int  # number of preprocessed lines
    warnings: tuple[str, ...] = ()  # the corpus's own, and one when the mode drops most of its letters

    @property
    def vocab(self) -> Vocab:
        return self.tokenizer.vocab

    @property
    def lines(self) -> list[str]:
        """The preprocessed lines, rebuilt from the text on every access: on a big
        corpus they take several times its size, so stream ``chunks()`` instead."""
        return corpus_lines(self.corpus.text, self.mode, self.tokenizer.kind)

    def chunks(self, chunk_chars: int | None = None, progress: Progress | None = None) -> Iterator[list[str]]:
        """The preprocessed lines, chunk by chunk (``corpus_chunks``)."""
        return corpus_chunks(self.corpus.text, self.mode, self.tokenizer.kind, chunk_chars, progress)


def corpus_lines(text: str, mode: str, tokenizer: str) -> list[str]:
    """The lines a tokenizer of kind ``tokenizer`` is fitted on and encodes."""
    from engine.corpus import preprocess

    lines = preprocess(text, mode)
    if mode == "raw" and tokenizer != "word":
        # D2L concatenates lines with no separator, which is right for its
        # letters-only lines but would glue raw text's lines together: keep
        # each line's "\n" so the model learns (and generates) line breaks.
        lines = [line + "\n" for line in lines[:-1]] + lines[-1:]
    return lines


def text_pieces(text: str, chunk_chars: int, end: int | None = None) -> Iterator[str]:
    """``text[:end]`` in consecutive pieces of about ``chunk_chars`` characters,
    each ending just after a line break (the last one may not; a longer line is
    one piece). ``"ab\ncd\ne", 4`` → ``"ab\n", "cd\n", "e"``."""
    start, n = 0, len(text) if end is None else min(end, len(text))
    while start < n:
        stop = start + max(1, chunk_chars)
        if stop >= n:
            yield text[start:n]
            return
        cut = text.rfind("\n", start, stop)
        if cut < 0:
            cut = text.find("\n", stop, n)
            if cut < 0:
                yield text[start:n]
                return
        yield text[start : cut + 1]
        start = cut + 1


def line_end(text: str, pos: int) -> int:
    """The offset just past the line break at or after ``pos`` (``len(text)`` if none)."""
    cut = text.find("\n", pos) if pos < len(text) else -1
    return len(text) if cut < 0 else cut + 1


def corpus_chunks(
    text: str,
    mode: str,
    tokenizer: str,
    chunk_chars: int | None = None,
    progress: Progress | None = None,
    *,
    end: int | None = None,
) -> Iterator[list[str]]:
    """``corpus_lines(text, mode, tokenizer)``, one piece of text at a time.

    The chunks concatenated are exactly ``corpus_lines``: pieces (of about
    ``chunk_chars``, default ``CHUNK_CHARS``) end at line breaks, and only the
    text's last line goes without its ``"\n"`` in raw mode. ``end`` (a line
    end, see ``line_end``) stops early: the lines of ``text[:end]``, as they
    are in the whole text. ``progress(done, total)`` is called before the first
    chunk and after each one, in characters of ``text[:end]``.
    """
    from engine.corpus import preprocess

    total = len(text) if end is None else min(end, len(text))
    done = 0
    chunk_chars = chunk_chars or CHUNK_CHARS
    if progress is not None:
        progress(0, total)
    keep_breaks = mode == "raw" and tokenizer != "word"
    for piece in text_pieces(text, chunk_chars, total):
        done += len(piece)
        lines = preprocess(piece, mode)
        if keep_breaks:
            last = lines.pop() if done == len(text) and lines else None
            lines = [line + "\n" for line in lines]
            if last is not None:
                lines.append(last)
        yield lines
        if progress is not None:
            progress(done, total)


def _token_bound(text: str, kind: str) -> int:
    """An upper bound on the number of tokens of ``text`` (sizes the id array)."""
    # A char token is a character; a word needs a character and a separator;
    # a subword piece at least one UTF-8 byte (ASCII assumed: the array grows if not).
    return len(text) if kind != "word" else len(text) // 2 + 1


def build_pipeline(
    corpus: Any,
    *,
    mode: str = "d2l",
    tokenizer: str = "char",
    vocab_size: int = 1000,
    min_freq: int = 0,
    progress: StepProgress | None = None,
) -> TextPipeline:
    """Preprocess ``corpus.text``, fit a tokenizer of kind ``tokenizer`` on the
    lines and encode them (D2L's ``load_corpus_time_machine``), streaming.

    ``progress(step, done, total)`` hears each pass over the text: ``"counting
    tokens"`` or ``"training <kind>"``, then ``"encoding"``, in characters.
    A subword tokenizer is trained on the lines of the first
    ``SUBWORD_FIT_CHARS`` characters (a warning then says so) and encodes all.
    """
    from engine.corpus import preprocess

    _check_params(tokenizer, vocab_size, min_freq)
    preprocess("", mode)  # a bad mode raises ConfigError before any work
    text = corpus.text
    tok = make_tokenizer(tokenizer, vocab_size=vocab_size, min_freq=min_freq)
    # A subword trainer's memory grows with the distinct words it has seen: fit on the head.
    fit_end = len(text) if tokenizer not in SUBWORD_KINDS else line_end(text, SUBWORD_FIT_CHARS)
    steps = iter(["counting tokens" if tokenizer in ("char", "word") else f"training {tokenizer}"])
    num_lines = 0

    def chunks() -> Iterator[list[str]]:
        nonlocal num_lines
        step = next(steps, "encoding")
        report = None if progress is None else (lambda done, total: progress(step, done, total))
        num_lines = 0
        end = len(text) if step == "encoding" else fit_end
        for lines in corpus_chunks(text, mode, tokenizer, progress=report, end=end):
            num_lines += len(lines)
            yield lines

    cache_notes: list[str] = []

    def encode(chunks: Callable[[], Iterator[list[str]]]) -> np.ndarray:
        # Once fitted: a big corpus file's ids go to (or come from) the token cache, memory-mapped
        from engine import token_cache

        cache = token_cache.for_file(getattr(corpus, "path", None), len(text), mode, tok)
        if cache is None:
            return tok.encode_chunks(chunks(), size_hint=_token_bound(text, tokenizer))
        ids, note = cache.encode(chunks)
        cache_notes.extend([note] if note else [])
        return ids

    ids = tok.fit_encode(chunks, encode=encode)
    from engine.corpus import mode_warnings

    warnings = tuple(getattr(corpus, "warnings", ())) + mode_warnings(corpus.text, mode) + tuple(cache_notes)
    if fit_end < len(text):
        warnings += (f"{tokenizer} was trained on the first {fit_end:,} of {len(text):,} characters "
                     "(a subword trainer's memory grows with the text); all of the text is encoded",)
    return TextPipeline(corpus=corpus, mode=mode, tokenizer=tok, ids=ids, num_lines=num_lines, warnings=warnings)
