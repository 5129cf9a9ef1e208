"""Tokenizers behind one interface, and the text pipeline (D2L 8.2).

A ``Tokenizer`` is fitted on a list of lines, then turns text into an array
of indices into its ``vocab`` and back, in the narrowest integer type that
holds them (``vocab.id_dtype``: ``uint8`` for a char vocabulary, ``uint16``
up to 65,536 tokens, else ``int32``). ``char`` and ``word`` are the book's
tokenizers; ``bpe``, ``wordpiece`` and ``unigram`` are subword tokenizers
trained with HuggingFace ``tokenizers`` (see ``engine.subword``).
``encode_corpus`` keeps D2L's semantics: the tokens of all lines concatenated,
with no separator between lines. ``build_pipeline`` goes from a loaded corpus
to those ids in one call.

Big corpora stream: ``corpus_chunks`` cuts the text at line breaks into
pieces of about ``CHUNK_CHARS`` characters and preprocesses one piece at a
time, so the lines of the whole text never exist at once. Fitting counts
tokens chunk by chunk (a ``Counter`` in first-seen order, so the vocabulary is
the one ``Vocab(all tokens)`` would give), encoding appends each chunk's ids
to one growing array. Chunks end at line breaks, so the result equals that of
the whole text. A subword trainer's memory grows with the distinct words it
sees, so ``bpe``/``wordpiece``/``unigram`` train on the lines of the first
``SUBWORD_FIT_CHARS`` characters (the pipeline's warnings say so) and then
encode all of the text. ``build_pipeline`` reports each pass to an optional
``progress(step, done, total)`` callback, in characters of text.

Left out: reading corpora (``engine.corpus``), n-gram statistics
(``engine.stats``) and minibatching (``engine.data``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat
from typing import Any, ClassVar

import numpy as np

from engine.errors import ConfigError
from engine.vocab import Vocab

TOKENIZER_KINDS = ("char", "word", "bpe", "wordpiece", "unigram")
SUBWORD_KINDS = ("bpe", "wordpiece", "unigram")
MAX_VOCAB_SIZE = 1_000_000
CHUNK_CHARS = 1 << 20  # characters per chunk of a streamed pass: bounds its temporaries (~20 MB)
SUBWORD_FIT_CHARS = 5_000_000  # subword kinds train on the text's first lines up to this many characters
_SUBWORD_CLASSES = {"BPETokenizer", "WordPieceTokenizer", "UnigramTokenizer", "SubwordTokenizer"}

Progress = Callable[[int, "int | None"], None]  # (done, total): as engine.corpus.Progress
StepProgress = Callable[[str, int, "int | None"], None]  # (step name, done, total)
Chunks = Callable[[], Iterator[list[str]]]  # a fresh pass over a corpus's lines, chunk by chunk


class IdArray:
    """A growing array of token ids of one dtype.

    Growth and the final trim resize the buffer in place (``realloc``), which
    for a big buffer moves pages rather than copying them: the ids of a big
    corpus are not held twice, as a list of parts plus ``np.concatenate`` would.
    """

    def __init__(self, dtype: np.dtype, capacity: int = 0) -> None:
        self._buf = np.empty(max(int(capacity), 1 << 12), dtype=dtype)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def extend(self, ids: np.ndarray) -> None:
        need = self._n + len(ids)
        if need > len(self._buf):
            self._buf.resize(max(need, len(self._buf) * 3 // 2), refcheck=False)
        self._buf[self._n : need] = ids
        self._n = need

    def finish(self) -> np.ndarray:
        """The ids appended so far, as one array (the buffer is handed over)."""
        buf, self._buf = self._buf, np.empty(0, dtype=self._buf.dtype)
        buf.resize(self._n, refcheck=False)
        return buf


_VISIBLE_WS = str.maketrans({" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"})


class Tokenizer:
    """Abstract base: fit on lines, encode text to ids, decode ids to text."""

    kind: ClassVar[str] = ""
    lossless: ClassVar[bool] = False  # decode(encode(x)) == x for text in the vocab

    def __init__(self, *, vocab_size: int = 1000, min_freq: int = 0) -> None:
        self.vocab_size = vocab_size
        self.min_freq = min_freq
        self.vocab = Vocab()
        self.merges: list[tuple[str, str]] = []
        self.pieces: list[str] = []

    @property
    def id_dtype(self) -> np.dtype:
        """The dtype of encoded ids: the narrowest integer type for ``len(vocab)``."""
        return self.vocab.id_dtype

    def fit(self, lines: list[str]) -> Tokenizer:
        self._fit(lambda: iter([lines]))
        return self

    def _fit(self, chunks: Chunks) -> None:
        """Learn the vocabulary from one or more passes over ``chunks()``."""
        raise NotImplementedError

    def fit_encode(self, chunks: Chunks, *, size_hint: int = 0) -> np.ndarray:
        """Fit on a corpus given as chunks of lines, then encode it (``encode_corpus``).

        ``chunks()`` starts a fresh pass each call: the first pass fits, the
        last one encodes. ``size_hint``: an upper bound on the number of tokens.
        """
        self._fit(chunks)
        return self.encode_chunks(chunks(), size_hint=size_hint)

    def tokenize(self, lines: list[str]) -> list[list[str]]:
        """Token strings per line."""
        raise NotImplementedError

    def encode(self, text: str) -> np.ndarray:
        """Indices of ``text``'s tokens (dtype ``id_dtype``); unknown tokens give ``vocab.unk``."""
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def encode_lines(self, lines: list[str]) -> np.ndarray:
        """D2L: the tokens of ``lines``, concatenated with no separator."""
        parts = [self.encode(line) for line in lines]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=self.id_dtype)

    def encode_corpus(self, lines: list[str]) -> np.ndarray:
        """D2L: the tokens of all lines, concatenated with no separator, as ``id_dtype``."""
        return self.encode_chunks(iter([lines]))

    def encode_chunks(self, chunks: Iterable[list[str]], *, size_hint: int = 0) -> np.ndarray:
        """``encode_corpus`` of the concatenated chunks, encoding one chunk at a time."""
        out = IdArray(self.id_dtype, size_hint)
        for lines in chunks:
            out.extend(self.encode_lines(lines))
        return out.finish()

    def unknown_chars(self, text: str) -> list[str]:
        """Distinct characters (or words) of ``text`` that would map to ``<unk>``."""
        raise NotImplementedError

    def display_token(self, token: str) -> str:
        """A token as a person should see it in a table: whitespace made visible
        (space ``␣``, newline ``↵``, tab ``⇥``), otherwise as written."""
        return token.translate(_VISIBLE_WS)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state; ``load_tokenizer`` rebuilds an equal tokenizer."""
        return {
            "kind": self.kind,
            "vocab_size": self.vocab_size,
            "min_freq": self.min_freq,
            "vocab": self.vocab.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tokenizer:
        tok = cls(vocab_size=int(d["vocab_size"]), min_freq=int(d["min_freq"]))
        tok.vocab = Vocab.from_dict(d["vocab"])
        return tok

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab={len(self.vocab)}, lossless={self.lossless})"


class CountingTokenizer(Tokenizer):
    """Char and word: the vocabulary is D2L's ``Vocab`` of the token counts."""

    def _fit(self, chunks: Chunks) -> None:
        counts: Counter[str] = Counter()
        for lines in chunks():
            self._count(lines, counts)
        self._set_vocab(Vocab.from_counts(counts, min_freq=self.min_freq))

    def _count(self, lines: list[str], counts: Counter[str]) -> None:
        """Add the tokens of ``lines`` to ``counts`` in stream order (new ones at the end)."""
        raise NotImplementedError

    def _set_vocab(self, vocab: Vocab) -> None:
        self.vocab = vocab

    def unfiltered(self) -> CountingTokenizer:
        """A copy whose vocabulary keeps every counted token (``min_freq`` 0): its ids
        are the tokens as written, with none mapped to ``<unk>``."""
        tok = type(self)(vocab_size=self.vocab_size, min_freq=0)
        counts = dict(self.vocab.token_freqs)  # most frequent first, ties first-seen: re-sorting keeps it
        tok._set_vocab(Vocab.from_counts(counts, reserved_tokens=self.vocab.reserved_tokens))
        return tok

    def drops_tokens(self) -> bool:
        """True when ``min_freq`` mapped some counted token to ``<unk>`` (then the
        rarest one, last in ``token_freqs``, is among them)."""
        freqs = self.vocab.token_freqs
        return bool(freqs) and freqs[-1][0] not in self.vocab.token_to_idx


class CharTokenizer(CountingTokenizer):
    """One token per character (D2L's ``tokenize(lines, 'char')``)."""

    kind = "char"
    lossless = True

    def _count(self, lines: list[str], counts: Counter[str]) -> None:
        text = "".join(lines)
        cps = _code_points(text)
        if len(cps) == 0:
            return
        per_cp = np.bincount(cps)  # one count per code point 0..max: at most 1.1M entries
        present = np.flatnonzero(per_cp)
        new = [chr(c) for c in present.tolist() if chr(c) not in counts]
        for ch in sorted(new, key=text.find):  # first-seen order, as Counter(text) has
            counts[ch] = 0
        for c, n in zip(present.tolist(), per_cp[present].tolist()):
            counts[chr(c)] += n

    def _set_vocab(self, vocab: Vocab) -> None:
        self.vocab = vocab
        self._build_table()

    def _build_table(self) -> None:
        # Sorted code points of the single-character tokens and their indices:
        # encoding is then one np.searchsorted over the whole text.
        singles = [(ord(t), i) for i, t in enumerate(self.vocab.idx_to_token) if len(t) == 1]
        singles.sort()
        self._cps = np.array([c for c, _ in singles], dtype=np.uint32)
        self._ids = np.array([i for _, i in singles], dtype=self.id_dtype)

    def tokenize(self, lines: list[str]) -> list[list[str]]:
        return [list(line) for line in lines]

    def encode(self, text: str) -> np.ndarray:
        cps = _code_points(text)
        if len(self._cps) == 0:
            return np.full(len(cps), self.vocab.unk, dtype=self.id_dtype)
        pos = np.searchsorted(self._cps, cps).clip(max=len(self._cps) - 1)
        return np.where(self._cps[pos] == cps, self._ids[pos], self._ids.dtype.type(self.vocab.unk))

    def encode_lines(self, lines: list[str]) -> np.ndarray:
        return self.encode("".join(lines))

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.vocab.to_tokens(np.asarray(ids, dtype=np.int64).tolist()))

    def unknown_chars(self, text: str) -> list[str]:
        return [c for c in dict.fromkeys(text) if c not in self.vocab.token_to_idx]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        tok = super().from_dict(d)
        assert isinstance(tok, CharTokenizer)
        tok._build_table()
        return tok


def _code_points(text: str) -> np.ndarray:
    """The code points of ``text`` as ``uint32`` (lone surrogates kept, as Python has them)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


class WordTokenizer(CountingTokenizer):
    """Whitespace-separated words (D2L's ``line.split()``); decoding joins with
    one space, so runs of whitespace and line ends are not restored."""

    kind = "word"
    lossless = False

    def _count(self, lines: list[str], counts: Counter[str]) -> None:
        counts.update(" ".join(lines).split())

    def tokenize(self, lines: list[str]) -> list[list[str]]:
        return [line.split() for line in lines]

    def encode(self, text: str) -> np.ndarray:
        words = text.split()
        get = self.vocab.token_to_idx.get
        return np.fromiter(map(get, words, repeat(self.vocab.unk)), dtype=self.id_dtype, count=len(words))

    def encode_lines(self, lines: list[str]) -> np.ndarray:
        return self.encode(" ".join(lines))

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.vocab.to_tokens(np.asarray(ids, dtype=np.int64).tolist()))

    def unknown_chars(self, text: str) -> list[str]:
        return [w for w in dict.fromkeys(text.split()) if w not in self.vocab.token_to_idx]


def _check_params(kind: str, vocab_size: int, min_freq: int) -> None:
    if kind not in TOKENIZER_KINDS:
        raise ConfigError(f"tokenizer must be one of {', '.join(TOKENIZER_KINDS)} (got {kind!r})")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or not (
        1 <= vocab_size <= MAX_VOCAB_SIZE
    ):
        raise ConfigError(f"vocab_size must be an integer in 1..{MAX_VOCAB_SIZE} (got {vocab_size!r})")
    if isinstance(min_freq, bool) or not isinstance(min_freq, (int, np.integer)) or min_freq < 0:
        raise ConfigError(f"min_freq must be an integer >= 0 (got {min_freq!r})")


def _classes() -> dict[str, type[Tokenizer]]:
    from engine import subword  # imports HuggingFace tokenizers only when needed

    return {
        "char": CharTokenizer,
        "word": WordTokenizer,
        "bpe": subword.BPETokenizer,
        "wordpiece": subword.WordPieceTokenizer,
        "unigram": subword.UnigramTokenizer,
    }


def make_tokenizer(kind: str, *, vocab_size: int = 1000, min_freq: int = 0) -> Tokenizer:
    """An unfitted tokenizer. ``vocab_size`` bounds the subword kinds only;
    ``min_freq`` is D2L's cut-off for char/word and the minimum pair count of a
    merge for bpe/wordpiece (unigram has no such knob and ignores it)."""
    _check_params(kind, vocab_size, min_freq)
    cls = CharTokenizer if kind == "char" else WordTokenizer if kind == "word" else _classes()[kind]
    return cls(vocab_size=int(vocab_size), min_freq=int(min_freq))


def load_tokenizer(d: dict[str, Any]) -> Tokenizer:
    """Rebuild a fitted tokenizer from ``Tokenizer.to_dict()``."""
    kind = d.get("kind")
    if kind not in TOKENIZER_KINDS:
        raise ConfigError(f"tokenizer must be one of {', '.join(TOKENIZER_KINDS)} (got {kind!r})")
    cls = CharTokenizer if kind == "char" else WordTokenizer if kind == "word" else _classes()[kind]
    return cls.from_dict(d)


def __getattr__(name: str) -> Any:
    # The subword classes live in engine.subword; reach them lazily from here.
    if name in _SUBWORD_CLASSES:
        from engine import subword

        return getattr(subword, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True, eq=False)  # identity equality: ids is an array
class TextPipeline:
    """A corpus, the fitted tokenizer and the ids of the whole corpus."""

    corpus: Any  # engine.corpus.Corpus (anything with .text)
    mode: str  # preprocessing mode: "d2l" or "raw"
    tokenizer: Tokenizer  # fitted on the corpus's preprocessed lines
    ids: np.ndarray  # token indices of the whole corpus (encode_corpus), dtype vocab.id_dtype
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

    ids = tok.fit_encode(chunks, size_hint=_token_bound(text, tokenizer))
    from engine.corpus import mode_warnings

    warnings = tuple(getattr(corpus, "warnings", ())) + mode_warnings(corpus.text, mode)
    if fit_end < len(text):
        warnings += (f"{tokenizer} was trained on the first {fit_end:,} of {len(text):,} characters "
                     "(a subword trainer's memory grows with the text); all of the text is encoded",)
    return TextPipeline(corpus=corpus, mode=mode, tokenizer=tok, ids=ids, num_lines=num_lines, warnings=warnings)
