"""The vocabulary: a two-way map between tokens and integer indices (D2L 8.2).

``Vocab`` follows the book's class: ``'<unk>'`` is index 0, reserved tokens come
next, then every token whose count is at least ``min_freq``, most frequent
first (ties keep first-seen order, so the result is deterministic). Unknown
tokens map to ``<unk>``. ``token_freqs`` keeps the counts of every token seen,
including those ``min_freq`` dropped, so a UI can show what was cut.

``Vocab.from_counts`` builds the same vocabulary from counts gathered
elsewhere (a ``Counter`` filled chunk by chunk over a big corpus), and
``Vocab.from_pieces`` one whose order is fixed by someone else (a trained
subword model) and whose counts come from encoding the corpus. ``id_dtype``
is the narrowest integer type that holds every index: ``uint8`` up to 256
tokens, ``uint16`` up to 65,536, else ``int32``.

Left out: tokenisation itself (``engine.tokenizers``) and n-gram statistics
(``engine.stats``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, overload

import numpy as np

UNK = "<unk>"


def narrowest_dtype(vocab_size: int) -> np.dtype:
    """The narrowest integer type holding indices ``0..vocab_size-1``.

    ``uint8`` for up to 256 tokens (a char vocabulary), ``uint16`` for up to
    65,536, else ``int32`` (``MAX_VOCAB_SIZE`` is far below 2**31). Token ids of
    a 200 MB text then take 200 MB rather than 800 MB. Consumers widen a batch
    to ``int64`` when they index an embedding, never the whole array.
    """
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


class Vocab:
    """Vocabulary for text, with D2L semantics.

    >>> v = Vocab(list("abracadabra"))
    >>> v.idx_to_token
    ['<unk>', 'a', 'b', 'r', 'c', 'd']
    >>> v["a"], v["z"], v[["b", "r"]]
    (1, 0, [2, 3])
    """

    unk: int = 0

    def __init__(
        self,
        tokens: Iterable[str] | Iterable[Sequence[str]] = (),
        min_freq: int = 0,
        reserved_tokens: Sequence[str] = (),
    ) -> None:
        tokens = list(tokens)
        # D2L flattens a 2D list (one list of tokens per line) into one stream.
        if tokens and isinstance(tokens[0], (list, tuple)):
            tokens = [tok for line in tokens for tok in line]
        self._build(Counter(tokens), min_freq, reserved_tokens)

    @classmethod
    def from_counts(
        cls, counts: Mapping[str, int], min_freq: int = 0, reserved_tokens: Sequence[str] = ()
    ) -> Vocab:
        """``Vocab(tokens)`` from ``Counter(tokens)``: the same vocabulary, provided
        ``counts`` lists tokens in first-seen order (a ``Counter`` updated in
        stream order does), so ties are broken the same way."""
        v = cls.__new__(cls)
        v._build(counts, min_freq, reserved_tokens)
        return v

    def _build(self, counter: Mapping[str, int], min_freq: int, reserved_tokens: Sequence[str]) -> None:
        # sorted() is stable and Counter keeps insertion order: ties stay first-seen.
        self.token_freqs: list[tuple[str, int]] = sorted(
            counter.items(), key=lambda kv: kv[1], reverse=True
        )
        self.min_freq = min_freq
        self.reserved_tokens = list(reserved_tokens)
        self.idx_to_token: list[str] = []
        self.token_to_idx: dict[str, int] = {}
        for tok in [UNK, *self.reserved_tokens]:
            self._add(tok)
        for tok, freq in self.token_freqs:
            if freq < min_freq:
                break  # token_freqs is sorted: everything after is rarer still
            self._add(tok)

    def _add(self, token: str) -> None:
        if token not in self.token_to_idx:
            self.token_to_idx[token] = len(self.idx_to_token)
            self.idx_to_token.append(token)

    @classmethod
    def from_pieces(
        cls, pieces: Sequence[str], freqs: Sequence[int], reserved_tokens: Sequence[str] = ()
    ) -> Vocab:
        """A vocabulary in a given order (``pieces[0]`` must be ``'<unk>'``).

        ``freqs[i]`` is how often ``pieces[i]`` occurs; ``token_freqs`` lists
        every piece except ``<unk>`` and the reserved tokens, most frequent first.
        """
        if not pieces or pieces[0] != UNK:
            raise ValueError(f"pieces must start with {UNK!r} (got {list(pieces[:1])!r})")
        if len(freqs) != len(pieces):
            raise ValueError(f"freqs must have one count per piece ({len(pieces)}, got {len(freqs)})")
        v = cls.__new__(cls)
        v.min_freq = 0
        v.reserved_tokens = list(reserved_tokens)
        v.idx_to_token = list(pieces)
        v.token_to_idx = {tok: i for i, tok in enumerate(v.idx_to_token)}
        special = {UNK, *v.reserved_tokens}
        counted = [(tok, int(f)) for tok, f in zip(pieces, freqs) if tok not in special]
        v.token_freqs = sorted(counted, key=lambda kv: kv[1], reverse=True)
        return v

    def __len__(self) -> int:
        return len(self.idx_to_token)

    @property
    def id_dtype(self) -> np.dtype:
        """The narrowest integer type for this vocabulary's indices (``narrowest_dtype``)."""
        return narrowest_dtype(len(self))

    def __contains__(self, token: object) -> bool:
        return token in self.token_to_idx

    @overload
    def __getitem__(self, tokens: str) -> int: ...
    @overload
    def __getitem__(self, tokens: Sequence[str]) -> list[int]: ...
    def __getitem__(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Index of one token, or a list of indices; unknown tokens give 0."""
        if isinstance(tokens, str):
            return self.token_to_idx.get(tokens, self.unk)
        get = self.token_to_idx.get
        return [get(tok, self.unk) for tok in tokens]

    def to_tokens(self, indices: int | Iterable[int]) -> str | list[str]:
        """The token at one index, or a list of tokens for many."""
        # Scalars: int, numpy integers, 0-d arrays and tensors.
        if isinstance(indices, (int, np.integer)) or getattr(indices, "ndim", None) == 0:
            return self.idx_to_token[int(indices)]  # type: ignore[arg-type]
        if hasattr(indices, "tolist"):  # numpy arrays and torch tensors
            indices = indices.tolist()
        return [self.idx_to_token[int(i)] for i in indices]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description; ``Vocab.from_dict`` rebuilds it exactly."""
        return {
            "idx_to_token": list(self.idx_to_token),
            "token_freqs": [[tok, freq] for tok, freq in self.token_freqs],
            "min_freq": self.min_freq,
            "reserved_tokens": list(self.reserved_tokens),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocab:
        v = cls.__new__(cls)
        v.idx_to_token = [str(t) for t in d["idx_to_token"]]
        if not v.idx_to_token or v.idx_to_token[0] != UNK:
            raise ValueError(f"a vocab must start with {UNK!r}")
        v.token_to_idx = {tok: i for i, tok in enumerate(v.idx_to_token)}
        v.token_freqs = [(str(t), int(f)) for t, f in d.get("token_freqs", [])]
        v.min_freq = int(d.get("min_freq", 0))
        v.reserved_tokens = [str(t) for t in d.get("reserved_tokens", [])]
        return v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self.idx_to_token[:6])
        return f"Vocab(len={len(self)}, min_freq={self.min_freq}, [{head}{', …' if len(self) > 6 else ''}])"
