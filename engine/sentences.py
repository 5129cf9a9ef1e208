"""Whole sentences as minibatches: split, cut, bucket by length, pad and mask (the ``sentences`` sampler).

**What a sentence is.** The token stream is cut just after a token that ends a
sentence: a vocabulary token whose text ends with ``.``, ``!`` or ``?``
(``sentence_end_ids``), so with characters the full stop itself, with words a
word like ``"said."``. A run of such tokens (``"?!"``, ``"..."``) ends one
sentence, at its last token. Whatever follows (the space or line break after
the full stop) begins the next sentence, so no token of the stream is lost:
``"Hi. Go!"`` → ``"Hi."``, ``" Go!"``. Abbreviations (``"Mr."``) end a sentence too:
a tokenizer knows nothing of them. D2L's preprocessing (mode d2l) deletes the
punctuation, so sentences need mode raw; ``with_sentence_ends`` says so.

**Pieces.** A sentence of ``L`` tokens is scored as the language model scores
any text: inputs its first ``L - 1`` tokens, targets its last ``L - 1``. A
sentence with more than ``num_steps`` inputs is cut into pieces of at most
``num_steps`` inputs (each piece's last target is the next piece's first
input), so ``num_steps`` is the longest sentence read whole. A one-token
sentence has no target and is skipped.

**Buckets and padding.** Pieces are sorted by length (ties in random order),
cut into minibatches of ``batch_size`` neighbours and the minibatches shuffled:
pieces of similar length share a minibatch, so little padding is needed. Each
minibatch is as long as its longest piece; shorter rows are padded at the
right, inputs with id 0 and targets with ``IGNORE_INDEX`` (-100, the value
``torch.nn.functional.cross_entropy`` skips by default). Padding sits after a
row's real tokens, so it can change no real position's output, and the mean
loss over the minibatch is the mean over its real targets: the same as scoring
each sentence alone (``tests/test_iterators.py`` checks it). ``padding_share``
reports the share of padded positions.

Left out: the tensors (``engine.data``), sentence boundaries from a parser,
begin-of-sentence tokens, and carrying a state across a sentence's pieces.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from engine.errors import ConfigError

IGNORE_INDEX = -100  # target of a padded position: cross_entropy's default ignore_index
SENTENCE_ENDS = ".!?"


def sentence_end_ids(tokenizer: Any, ends: str = SENTENCE_ENDS) -> tuple[int, ...]:
    """Ids of the vocabulary's tokens whose text ends with one of ``ends`` (``<unk>`` never does)."""
    unk = getattr(tokenizer.vocab, "unk", None)
    return tuple(i for i in range(len(tokenizer.vocab))
                 if i != unk and tokenizer.decode([i]).rstrip(" ")[-1:] in set(ends) - {""})


def with_sentence_ends(cfg: Any, tokenizer: Any) -> Any:
    """``cfg`` (a TrainConfig) with the corpus's ``sentence_end_ids`` when its sampler is sentences;
    a ConfigError that says what to do when the vocabulary has no such token."""
    if cfg.sampler != "sentences":
        return cfg
    ids = sentence_end_ids(tokenizer)
    if not ids:
        raise ConfigError(f"sampler sentences needs tokens that end a sentence ({', '.join(SENTENCE_ENDS)}) but "
                          "this vocabulary has none; d2l preprocessing removes punctuation, so use --mode raw "
                          "(or another sampler)")
    return replace(cfg, sentence_end_ids=ids)


SCAN_CHUNK = 1 << 20  # ids scanned for sentence ends at a time (three masks of this many bytes)


def sentence_bounds(ids: np.ndarray, end_ids: tuple[int, ...] | list[int]) -> np.ndarray:
    """Where sentences begin and end: ``[0, e1, e2, …, n]``, each ``e`` just past a run of end tokens.
    ``"Hi. Go!"`` as characters → ``[0, 3, 7]``; a text that does not end a sentence ends one at n."""
    if len(end_ids) == 0:
        raise ConfigError("sampler sentences needs sentence_end_ids (the ids of the tokens that end a "
                          "sentence); set them with engine.sentences.with_sentence_ends(cfg, tokenizer)")
    ids, ends, n = np.asarray(ids), np.asarray(end_ids), len(ids)
    # A chunk at a time (a memory-mapped corpus is never scanned whole into a mask): position i ends a run
    # when it is an end token and i + 1 is not, so each chunk looks one token past its end.
    parts = [np.zeros(0, dtype=np.int64)]
    for lo in range(0, n, SCAN_CHUNK):
        hi = min(n, lo + SCAN_CHUNK)
        is_end = np.isin(ids[lo : hi + 1], ends)
        after = is_end[1:] if hi < n else np.append(is_end[1:], False)
        parts.append(np.flatnonzero(is_end[: hi - lo] & ~after) + lo + 1)
    cuts = np.concatenate(parts)
    if len(cuts) == 0 or cuts[-1] != n:
        cuts = np.append(cuts, len(ids))
    return np.concatenate([[0], cuts]).astype(np.int64)


def pieces(ids: np.ndarray, end_ids: tuple[int, ...] | list[int], num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, number of inputs) of every piece, in text order.

    A sentence ``[a, b)`` has ``b - a - 1`` inputs at ``a .. b-2``; it is cut every ``num_steps``.
    ``"Hi. Go!"``, num_steps 2 → sentences [0, 3) and [3, 7): pieces (0, 2), (3, 2), (5, 1).
    """
    bounds = sentence_bounds(ids, end_ids)
    a, m = bounds[:-1], bounds[1:] - bounds[:-1] - 1  # sentence starts and input counts
    a, m = a[m > 0], m[m > 0]
    k = -(-m // num_steps)  # pieces per sentence
    first = np.repeat(np.cumsum(k) - k, k)
    index = np.arange(k.sum()) - first  # piece number within its sentence
    starts = np.repeat(a, k) + index * num_steps
    lengths = np.minimum(num_steps, np.repeat(a + m, k) - starts)
    return starts.astype(np.int64), lengths.astype(np.int64)


@dataclass(frozen=True)
class SentenceEpoch:
    """One epoch of the sentences sampler: the pieces and which of them each minibatch holds."""

    starts: np.ndarray  # start of every piece, text order
    lengths: np.ndarray  # inputs of every piece (1..num_steps)
    batches: list[np.ndarray]  # piece indices of each minibatch, in minibatch order

    @property
    def padded_positions(self) -> int:
        return int(sum(len(b) * self.lengths[b].max() for b in self.batches))

    @property
    def padding_share(self) -> float:
        """Padded positions over all positions of the epoch's minibatches."""
        total = self.padded_positions
        return 1.0 - float(self.lengths.sum()) / total if total else 0.0


def sentence_epoch(ids: np.ndarray, end_ids: tuple[int, ...] | list[int], batch_size: int, num_steps: int,
                   rng: np.random.Generator) -> SentenceEpoch:
    """Bucket by length: shuffle, stable-sort by length, cut into minibatches, shuffle the minibatches."""
    starts, lengths = pieces(ids, end_ids, num_steps)
    order = rng.permutation(len(lengths))
    order = order[np.argsort(lengths[order], kind="stable")]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches = [batches[j] for j in rng.permutation(len(batches))]
    return SentenceEpoch(starts, lengths, batches)


def padded_block(tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y) of one minibatch as int64 arrays of shape (rows, longest): X padded with 0, Y with IGNORE_INDEX."""
    width = int(lengths.max())
    cols = np.arange(width)
    real = cols[None, :] < lengths[:, None]
    pos = np.where(real, starts[:, None] + cols[None, :], 0)
    # Widen first: with uint8 ids, np.where(…, -100) would wrap the padding target to 156.
    X = np.where(real, tokens[pos].astype(np.int64), 0)
    Y = np.where(real, tokens[np.where(real, pos + 1, 0)].astype(np.int64), IGNORE_INDEX)
    return X, Y
