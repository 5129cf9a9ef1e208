"""Subword tokenizers (BPE, WordPiece, Unigram) trained with HuggingFace ``tokenizers``.

All three split text GPT-2 style: a byte-level pre-tokenizer maps every byte
to a visible symbol (a space becomes ``Ġ``, a newline ``Ċ``) and keeps a word's
leading space on the word (``" the"`` → ``Ġthe``). Decoding maps the symbols
back to bytes, so ``decode(encode(x)) == x`` for any text whose bytes occurred
in the fitted corpus: all three kinds are lossless. Bytes never seen in fitting
become ``<unk>`` (index 0, as in ``Vocab``).

- ``bpe`` learns merges of the most frequent adjacent pair (Sennrich et al.);
  ``merges`` lists them in the order learned, ``pieces`` the vocabulary in id
  order (specials, the alphabet, then one piece per merge).
- ``wordpiece`` marks word-internal pieces with ``♯♯`` (BERT's ``##``, but a
  symbol the byte-level alphabet cannot produce, so a literal ``##`` in the text
  stays unambiguous). Every alphabet symbol also gets its ``♯♯`` form, so no
  word falls back to ``<unk>`` as a whole.
- ``unigram`` is SentencePiece's unigram language model; ``pieces`` are in the
  trainer's order (by score).

``vocab.token_freqs`` counts each piece in the encoded fitting corpus. A big
corpus streams: the trainer reads the lines chunk by chunk
(``train_from_iterator``) and encoding goes one ``encode_batch`` per chunk.

Reproducibility: BPE training is deterministic. HuggingFace's WordPiece and
Unigram trainers are not (ties broken in hash order; parallel float sums), so
two fits of the same lines may differ by a few pieces; a fitted tokenizer is
saved whole with ``to_dict`` so a run stays reproducible after fitting. Left out:
normalisation (NFKC, lower-casing: use the ``d2l`` preprocessing mode), dropout,
byte fallback and added tokens other than ``<unk>``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from engine.errors import ConfigError
from engine.tokenizer_base import Chunks, Tokenizer
from engine.vocab import UNK, Vocab

WORDPIECE_PREFIX = "♯♯"
CHUNK_IDS = 1 << 20  # ids per bincount when counting pieces
ENCODE_BATCH_CHARS = 1 << 16  # characters of lines per encode_batch call


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table: each byte gets a printable symbol (printable Latin-1
    bytes keep their own; the rest are shifted past U+0100, so " " → "Ġ")."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shift = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shift)
            shift += 1
    return table


_BYTE_DECODER = {sym: b for b, sym in _bytes_to_unicode().items()}


def _byte_level() -> pre_tokenizers.ByteLevel:
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


class SubwordTokenizer(Tokenizer):
    """Shared plumbing: a HuggingFace tokenizer plus our ``Vocab`` of its pieces."""

    lossless = True

    def __init__(self, *, vocab_size: int = 1000, min_freq: int = 0) -> None:
        super().__init__(vocab_size=vocab_size, min_freq=min_freq)
        self._hf: HFTokenizer | None = None

    # -- subclasses say how to build and train ------------------------------
    def _new(self) -> tuple[HFTokenizer, Any]:
        raise NotImplementedError

    def _after_training(self, model: dict[str, Any]) -> dict[str, Any]:
        return model

    # -- fitting ------------------------------------------------------------
    def _fit(self, chunks: Chunks) -> None:
        self._train(chunks())
        self._count(self.encode_chunks(chunks()))

    def fit_encode(self, chunks: Chunks, *, size_hint: int = 0,
                   encode: Callable[[Chunks], np.ndarray] | None = None) -> np.ndarray:
        # One encoding pass gives both the ids and the piece counts.
        self._train(chunks())
        ids = encode(chunks) if encode is not None else self.encode_chunks(chunks(), size_hint=size_hint)
        self._count(ids)
        return ids

    def _train(self, chunks: Iterable[list[str]]) -> None:
        """Train the HuggingFace model on the lines, streamed chunk by chunk."""
        hf, trainer = self._new()
        chars: set[str] = set()  # for the error message only

        def lines() -> Iterator[list[str]]:
            for batch in chunks:
                chars.update(*batch)
                yield batch

        try:
            hf.train_from_iterator(lines(), trainer=trainer)
        except Exception as exc:  # the Rust trainer raises plain Exception
            alphabet = len(set("".join(chars).encode("utf-8", "surrogatepass")))
            raise ConfigError(
                f"vocab_size {self.vocab_size} is too small for {self.kind} on this text ({exc}); "
                f"it needs at least the {alphabet + 1} distinct bytes plus <unk>"
            ) from None
        spec = json.loads(hf.to_str())
        spec["model"] = self._after_training(spec["model"])
        self._set(HFTokenizer.from_str(json.dumps(spec)))
        self.vocab = Vocab.from_pieces(self.pieces, [0] * len(self.pieces))  # sized for id_dtype

    def _count(self, ids: np.ndarray) -> None:
        """Piece counts from the encoded corpus (bincount a chunk at a time: it widens to int64)."""
        freqs = np.zeros(len(self.pieces), dtype=np.int64)
        for start in range(0, len(ids), CHUNK_IDS):
            freqs += np.bincount(ids[start : start + CHUNK_IDS], minlength=len(self.pieces))
        self.vocab = Vocab.from_pieces(self.pieces, freqs.tolist())

    def _set(self, hf: HFTokenizer) -> None:
        self._hf = hf
        model = json.loads(hf.to_str())["model"]
        vocab = model["vocab"]
        if isinstance(vocab, dict):  # BPE, WordPiece: token -> id
            self.pieces = [tok for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
        else:  # Unigram: [piece, score] in id order
            self.pieces = [piece for piece, _ in vocab]
        # BPE merges are "a b" strings in older versions, [a, b] pairs in newer.
        self.merges = [
            tuple(m.split(" ", 1)) if isinstance(m, str) else (m[0], m[1])
            for m in model.get("merges", [])
        ]
        if self.pieces[:1] != [UNK]:
            raise RuntimeError(f"subword model must put {UNK!r} first (got {self.pieces[:1]!r})")

    @property
    def hf(self) -> HFTokenizer:
        if self._hf is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(lines) first")
        return self._hf

    # -- encoding and decoding ----------------------------------------------
    def tokenize(self, lines: list[str]) -> list[list[str]]:
        return [enc.tokens for enc in self.hf.encode_batch(lines, add_special_tokens=False)]

    def encode(self, text: str) -> np.ndarray:
        return np.array(self.hf.encode(text, add_special_tokens=False).ids, dtype=self.id_dtype)

    def encode_lines(self, lines: list[str]) -> np.ndarray:
        # HuggingFace keeps ~100 bytes per token of an encoding (strings, offsets,
        # masks): encode in batches of about ENCODE_BATCH_CHARS so that stays small.
        batch = getattr(self.hf, "encode_batch_fast", self.hf.encode_batch)
        parts, start, size = [], 0, 0
        for i, line in enumerate(lines):
            size += len(line)
            if size >= ENCODE_BATCH_CHARS or i == len(lines) - 1:
                encs = batch(lines[start : i + 1], add_special_tokens=False)
                parts.append(np.fromiter((t for enc in encs for t in enc.ids), dtype=self.id_dtype,
                                         count=sum(len(e.ids) for e in encs)))
                start, size = i + 1, 0
        return np.concatenate(parts) if parts else np.zeros(0, dtype=self.id_dtype)

    def decode(self, ids: Iterable[int]) -> str:
        # Keep <unk> visible, as CharTokenizer does, rather than dropping it.
        return self.hf.decode(np.asarray(ids, dtype=np.int64).tolist(), skip_special_tokens=False)

    def unknown_chars(self, text: str) -> list[str]:
        chars = list(dict.fromkeys(text))
        encs = self.hf.encode_batch(chars, add_special_tokens=False)
        return [c for c, enc in zip(chars, encs) if self.vocab.unk in enc.ids]

    def display_token(self, token: str) -> str:
        """Byte-level symbols back to text (``Ġthe`` → ``␣the``, ``Ċ`` → ``↵``);
        a piece that ends inside a multi-byte character shows ``�``."""
        prefix = ""
        if token.startswith(WORDPIECE_PREFIX):
            prefix, token = "##", token[len(WORDPIECE_PREFIX):]
        try:
            raw = bytes(_BYTE_DECODER[c] for c in token)
        except KeyError:  # a special token such as <unk>
            return prefix + token
        return prefix + super().display_token(raw.decode("utf-8", errors="replace"))

    # -- serialisation ------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "hf": self.hf.to_str()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SubwordTokenizer:
        tok = cls(vocab_size=int(d["vocab_size"]), min_freq=int(d["min_freq"]))
        tok._set(HFTokenizer.from_str(d["hf"]))
        tok.vocab = Vocab.from_dict(d["vocab"])
        return tok


class BPETokenizer(SubwordTokenizer):
    """Byte-level byte-pair encoding; ``min_freq`` is the least count of a merged pair."""

    kind = "bpe"

    def _new(self) -> tuple[HFTokenizer, Any]:
        hf = HFTokenizer(models.BPE(unk_token=UNK))
        hf.pre_tokenizer = _byte_level()
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=self.vocab_size,
            min_frequency=self.min_freq,
            special_tokens=[UNK],
            show_progress=False,
        )
        return hf, trainer


class WordPieceTokenizer(SubwordTokenizer):
    """Byte-level WordPiece (BERT's scheme, with ``♯♯`` marking word-internal pieces)."""

    kind = "wordpiece"

    def _new(self) -> tuple[HFTokenizer, Any]:
        hf = HFTokenizer(
            models.WordPiece(
                unk_token=UNK,
                continuing_subword_prefix=WORDPIECE_PREFIX,
                max_input_chars_per_word=1_000_000,  # never give up on a long word
            )
        )
        hf.pre_tokenizer = _byte_level()
        # Strip the prefix, glue pieces without spaces, then map symbols to bytes.
        hf.decoder = decoders.Sequence(
            [decoders.Replace(WORDPIECE_PREFIX, ""), decoders.ByteLevel()]
        )
        trainer = trainers.WordPieceTrainer(
            vocab_size=self.vocab_size,
            min_frequency=self.min_freq,
            special_tokens=[UNK],
            continuing_subword_prefix=WORDPIECE_PREFIX,
            show_progress=False,
        )
        return hf, trainer

    def _after_training(self, model: dict[str, Any]) -> dict[str, Any]:
        # A symbol seen only at word starts has no ♯♯ form, and WordPiece would
        # turn any word holding it inside into one <unk>: add the missing forms.
        vocab: dict[str, int] = model["vocab"]
        alphabet = [t for t in sorted(vocab, key=vocab.__getitem__) if len(t) == 1]
        for sym in alphabet:
            vocab.setdefault(WORDPIECE_PREFIX + sym, len(vocab))
        return model


class UnigramTokenizer(SubwordTokenizer):
    """Byte-level unigram language model (SentencePiece's algorithm); ignores ``min_freq``."""

    kind = "unigram"

    def _new(self) -> tuple[HFTokenizer, Any]:
        hf = HFTokenizer(models.Unigram())
        hf.pre_tokenizer = _byte_level()
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.UnigramTrainer(
            vocab_size=self.vocab_size,
            special_tokens=[UNK],
            unk_token=UNK,
            show_progress=False,
        )
        return hf, trainer
