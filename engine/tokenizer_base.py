"""The tokenizer interface every kind implements, and the growing id array they encode into.

A ``Tokenizer`` is fitted on lines (or on chunks of lines, for a big corpus) and
turns text into ids of ``vocab`` in the narrowest integer type that holds them.
The kinds live elsewhere: ``engine.tokenizers`` (the book's char and word, and
``make_tokenizer``) and ``engine.subword`` (HuggingFace BPE, WordPiece, Unigram);
both import this module and neither imports the other's classes at load time.

Left out: any concrete kind, and choosing one by name (``engine.tokenizers``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import numpy as np

from engine.vocab import Vocab

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
    # What the rest of rnnlab asks a tokenizer instead of testing its kind:
    joiner: ClassVar[str] = " "  # between the tokens of an n-gram shown as text ("" for characters: "the␣")
    # the vocab is D2L's Vocab of the text's token counts: <unk>, then token_freqs (most frequent first, ties
    # first-seen) down to min_freq
    vocab_from_counts: ClassVar[bool] = False
    # decode(ids) is the ids' token strings end to end: one id's piece needs no context (characters)
    decodes_by_lookup: ClassVar[bool] = False

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

    def fit_encode(self, chunks: Chunks, *, size_hint: int = 0,
                   encode: Callable[[Chunks], np.ndarray] | None = None) -> np.ndarray:
        """Fit on a corpus given as chunks of lines, then encode it (``encode_corpus``).

        ``chunks()`` starts a fresh pass each call: the first pass fits, the
        last one encodes. ``size_hint``: an upper bound on the number of tokens.
        ``encode(chunks)``: does the encoding instead, once the tokenizer is fitted
        (``engine.token_cache`` writes a big corpus's ids to a file, or finds them there).
        """
        self._fit(chunks)
        return encode(chunks) if encode is not None else self.encode_chunks(chunks(), size_hint=size_hint)

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
