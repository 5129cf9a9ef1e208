"""Tokenizers behind one interface (D2L 8.2).

A ``Tokenizer`` is fitted on a list of lines, then turns text into an array
of indices into its ``vocab`` and back, in the narrowest integer type that
holds them (``vocab.id_dtype``: ``uint8`` for a char vocabulary, ``uint16``
up to 65,536 tokens, else ``int32``). ``char`` and ``word`` are the book's
tokenizers; ``bpe``, ``wordpiece`` and ``unigram`` are subword tokenizers
trained with HuggingFace ``tokenizers`` (see ``engine.subword``).
``encode_corpus`` keeps D2L's semantics: the tokens of all lines concatenated,
with no separator between lines.

Big corpora come in chunks of lines (``fit_encode``, ``encode_chunks``): char
and word count tokens chunk by chunk in a ``Counter`` in first-seen order, so
the vocabulary is the one ``Vocab(all tokens)`` would give, and encoding
appends each chunk's ids to one growing ``IdArray`` (``engine.tokenizer_base``,
with the ``Tokenizer`` interface the subword kinds share).

Left out: reading corpora (``engine.corpus``), preprocessing and the chunked
pipeline from a corpus to its ids (``engine.pipeline``), n-gram statistics
(``engine.stats``) and minibatching (``engine.data``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import repeat
from typing import Any

import numpy as np

from engine.errors import ConfigError
from engine.tokenizer_base import Chunks, Tokenizer
from engine.vocab import Vocab

TOKENIZER_KINDS = ("char", "word", "bpe", "wordpiece", "unigram")
SUBWORD_KINDS = ("bpe", "wordpiece", "unigram")
MAX_VOCAB_SIZE = 1_000_000

class CountingTokenizer(Tokenizer):
    """Char and word: the vocabulary is D2L's ``Vocab`` of the token counts."""

    vocab_from_counts = True

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
    joiner = ""
    decodes_by_lookup = True

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

