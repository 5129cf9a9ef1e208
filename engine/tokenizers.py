"""Tokenizers behind one interface, and the text pipeline (D2L 8.2).

A ``Tokenizer`` is fitted on a list of lines, then turns text into a compact
``int32`` array of indices into its ``vocab`` and back. ``char`` and ``word``
are the book's tokenizers; ``bpe``, ``wordpiece`` and ``unigram`` are subword
tokenizers trained with HuggingFace ``tokenizers`` (see ``engine.subword``).
``encode_corpus`` keeps D2L's semantics: the tokens of all lines concatenated,
with no separator between lines. ``build_pipeline`` goes from a loaded corpus
to those ids in one call.

Left out: reading corpora (``engine.corpus``), n-gram statistics
(``engine.stats``) and minibatching (``engine.data``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from engine.errors import ConfigError
from engine.vocab import Vocab

TOKENIZER_KINDS = ("char", "word", "bpe", "wordpiece", "unigram")
SUBWORD_KINDS = ("bpe", "wordpiece", "unigram")
MAX_VOCAB_SIZE = 1_000_000
_SUBWORD_CLASSES = {"BPETokenizer", "WordPieceTokenizer", "UnigramTokenizer", "SubwordTokenizer"}


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

    def fit(self, lines: list[str]) -> Tokenizer:
        raise NotImplementedError

    def tokenize(self, lines: list[str]) -> list[list[str]]:
        """Token strings per line."""
        raise NotImplementedError

    def encode(self, text: str) -> np.ndarray:
        """``int32`` indices of ``text``'s tokens; unknown tokens give ``vocab.unk``."""
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def encode_corpus(self, lines: list[str]) -> np.ndarray:
        """D2L: the tokens of all lines, concatenated with no separator, as ``int32``."""
        parts = [self.encode(line) for line in lines]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)

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


class CharTokenizer(Tokenizer):
    """One token per character (D2L's ``tokenize(lines, 'char')``)."""

    kind = "char"
    lossless = True

    def fit(self, lines: list[str]) -> CharTokenizer:
        self.vocab = Vocab("".join(lines), min_freq=self.min_freq)
        self._build_table()
        return self

    def _build_table(self) -> None:
        # Sorted code points of the single-character tokens and their indices:
        # encoding is then one np.searchsorted over the whole text.
        singles = [(ord(t), i) for i, t in enumerate(self.vocab.idx_to_token) if len(t) == 1]
        singles.sort()
        self._cps = np.array([c for c, _ in singles], dtype=np.uint32)
        self._ids = np.array([i for _, i in singles], dtype=np.int32)

    def tokenize(self, lines: list[str]) -> list[list[str]]:
        return [list(line) for line in lines]

    def encode(self, text: str) -> np.ndarray:
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        if len(self._cps) == 0:
            return np.full(len(cps), self.vocab.unk, dtype=np.int32)
        pos = np.searchsorted(self._cps, cps).clip(max=len(self._cps) - 1)
        return np.where(self._cps[pos] == cps, self._ids[pos], self.vocab.unk).astype(np.int32)

    def encode_corpus(self, lines: list[str]) -> np.ndarray:
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


class WordTokenizer(Tokenizer):
    """Whitespace-separated words (D2L's ``line.split()``); decoding joins with
    one space, so runs of whitespace and line ends are not restored."""

    kind = "word"
    lossless = False

    def fit(self, lines: list[str]) -> WordTokenizer:
        self.vocab = Vocab([w for line in lines for w in line.split()], min_freq=self.min_freq)
        return self

    def tokenize(self, lines: list[str]) -> list[list[str]]:
        return [line.split() for line in lines]

    def encode(self, text: str) -> np.ndarray:
        return np.array(self.vocab[text.split()], dtype=np.int32)

    def encode_corpus(self, lines: list[str]) -> np.ndarray:
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
    """A corpus, its preprocessed lines, the fitted tokenizer and the ids."""

    corpus: Any  # engine.corpus.Corpus (anything with .text)
    mode: str  # preprocessing mode: "d2l" or "raw"
    lines: list[str]  # preprocessed lines
    tokenizer: Tokenizer  # fitted on ``lines``
    ids: np.ndarray  # int32 token indices of the whole corpus (encode_corpus)

    @property
    def vocab(self) -> Vocab:
        return self.tokenizer.vocab


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


def build_pipeline(
    corpus: Any,
    *,
    mode: str = "d2l",
    tokenizer: str = "char",
    vocab_size: int = 1000,
    min_freq: int = 0,
) -> TextPipeline:
    """Preprocess ``corpus.text``, fit a tokenizer of kind ``tokenizer`` on the
    lines and encode them (D2L's ``load_corpus_time_machine``)."""

    _check_params(tokenizer, vocab_size, min_freq)
    lines = corpus_lines(corpus.text, mode, tokenizer)
    tok = make_tokenizer(tokenizer, vocab_size=vocab_size, min_freq=min_freq).fit(lines)
    return TextPipeline(corpus=corpus, mode=mode, lines=lines, tokenizer=tok, ids=tok.encode_corpus(lines))

