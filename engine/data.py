"""Minibatches of subsequences for language modelling (D2L 8.3.4).

Both of the book's samplers start each epoch at a random offset drawn from
``0..num_steps-1``, so across epochs every token can begin a subsequence, and
both yield ``(X, Y)``: ``int64`` tensors of shape ``(batch_size, num_steps)``
where ``Y`` is ``X`` shifted one token to the right (the next-token targets).

- **random sampling** cuts the corpus into non-overlapping subsequences of
  ``num_steps`` tokens, shuffles them and batches them: neighbouring batches are
  not adjacent in the text, so the hidden state must be reset between them.
- **sequential partitioning** splits the corpus into ``batch_size`` long rows
  and walks along them: row ``i`` of batch ``k+1`` continues row ``i`` of batch
  ``k``, so the hidden state may be carried over (and detached).

Randomness comes only from the ``np.random.Generator`` passed in, and is drawn
when the iterator is created, so ``coverage`` can replay exactly which corpus
positions an epoch uses (exercise 8.3.5). Batches are gathered with one
fancy-index per batch (random) or sliced from two reshaped views of the corpus
(sequential). The corpus keeps its narrow id dtype (``uint8`` for characters):
only each batch is widened to ``int64``, so a 200 MB corpus is never copied
into 1.6 GB of ``int64``.

rnnlab's other samplers are dispatched here too, each of them starting every
minibatch from a fresh state: ``sliding``, ``uniform`` and ``fixed`` lay out
their windows in ``engine.samplers``; ``sentences`` pads whole sentences
(``engine.sentences``: its ``Y`` holds -100 at padding, which the loss skips).
``coverage`` and ``batches_per_epoch`` know all of them. Left out: devices
(the trainer moves batches).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from engine.config import SAMPLERS, TrainConfig
from engine.errors import ConfigError
from engine.samplers import num_windows, window_starts
from engine.sentences import SentenceEpoch, padded_block, pieces, sentence_epoch

Batch = tuple[torch.Tensor, torch.Tensor]


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1 (got {value!r})")
    return int(value)


def min_tokens(batch_size: int, num_steps: int) -> int:
    """The size rule: tokens a corpus needs for every epoch to yield a minibatch, ``(batch_size + 1) * num_steps``.

    Both samplers start at an offset in ``0..num_steps-1`` and need one token
    past the last subsequence for its targets; at the worst offset,
    ``num_steps - 1``, one batch takes ``num_steps - 1 + batch_size * num_steps + 1``
    tokens. (batch_size 32, num_steps 35: 1155 tokens.)
    """
    return (batch_size + 1) * num_steps


def check_sizes(n_tokens: int, batch_size: int, num_steps: int, sampler: str | None = None) -> None:
    """Raise ``ConfigError`` unless every offset yields at least one batch (``min_tokens``)."""
    if sampler is not None and sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)} (got {sampler!r})")
    batch_size = _positive("batch_size", batch_size)
    num_steps = _positive("num_steps", num_steps)
    if n_tokens < 2:
        raise ConfigError(f"corpus must hold at least 2 tokens (got {n_tokens})")
    if n_tokens >= min_tokens(batch_size, num_steps):
        return
    if n_tokens < min_tokens(batch_size, 1):  # too many rows for even one step each
        raise ConfigError(
            f"batch_size must be at most {n_tokens - 1} for a corpus of {n_tokens} tokens "
            f"(got {batch_size})"
        )
    raise ConfigError(
        f"num_steps must be at most {n_tokens // (batch_size + 1)} for a corpus of {n_tokens} tokens "
        f"with batch_size {batch_size} (got {num_steps})"
    )


def _random_starts(n_tokens: int, batch_size: int, num_steps: int, rng: np.random.Generator) -> np.ndarray:
    """Start positions of one epoch of random sampling, shape (num_batches, batch_size)."""
    offset = int(rng.integers(num_steps))  # 0..num_steps-1
    # Subtract 1: the last subsequence needs one more token for its targets Y.
    num_subseqs = (n_tokens - offset - 1) // num_steps
    num_batches = num_subseqs // batch_size
    chosen = rng.permutation(num_subseqs)[: num_batches * batch_size]
    return offset + chosen.reshape(num_batches, batch_size) * num_steps


def _sequential_layout(
    n_tokens: int, batch_size: int, num_steps: int, rng: np.random.Generator
) -> tuple[int, int, int]:
    """(offset, row_len, num_batches) of one epoch of sequential partitioning."""
    offset = int(rng.integers(num_steps))
    row_len = (n_tokens - offset - 1) // batch_size
    return offset, row_len, row_len // num_steps


def _as_array(corpus: np.ndarray | torch.Tensor) -> np.ndarray:
    """The corpus as a 1-D numpy array, in its own (possibly narrow) integer dtype."""
    if isinstance(corpus, torch.Tensor):
        corpus = corpus.detach().cpu().numpy()
    a = np.asarray(corpus)
    if a.ndim != 1:
        raise ConfigError(f"corpus must be a 1-D array of token indices (got shape {tuple(a.shape)})")
    return a


def _long(block: np.ndarray) -> torch.Tensor:
    """One batch's ids as an ``int64`` tensor (what embeddings and one_hot index with).
    Only the batch is widened: the corpus stays in its narrow dtype."""
    return torch.from_numpy(block.astype(np.int64))


def seq_data_iter_random(
    corpus: np.ndarray, batch_size: int, num_steps: int, *, rng: np.random.Generator | None = None
) -> Iterator[Batch]:
    """One epoch of random sampling (D2L's ``seq_data_iter_random``).

    No two subsequences of the epoch overlap; each is used at most once.
    """
    tokens = _as_array(corpus)
    check_sizes(len(tokens), batch_size, num_steps)
    starts = _random_starts(len(tokens), batch_size, num_steps, rng or np.random.default_rng())
    window = np.arange(num_steps + 1)

    def batches() -> Iterator[Batch]:
        for row_starts in starts:
            # (batch_size, num_steps + 1) tokens in one gather; X and Y are views.
            w = _long(tokens[row_starts[:, None] + window])
            yield w[:, :-1], w[:, 1:]

    return batches()


def seq_data_iter_sequential(
    corpus: np.ndarray, batch_size: int, num_steps: int, *, rng: np.random.Generator | None = None
) -> Iterator[Batch]:
    """One epoch of sequential partitioning (D2L's ``seq_data_iter_sequential``)."""
    tokens = _as_array(corpus)
    check_sizes(len(tokens), batch_size, num_steps)
    offset, row_len, num_batches = _sequential_layout(
        len(tokens), batch_size, num_steps, rng or np.random.default_rng()
    )
    num_tokens = row_len * batch_size
    # Views of the corpus: row i of batch k+1 continues row i of batch k.
    Xs = tokens[offset : offset + num_tokens].reshape(batch_size, row_len)
    Ys = tokens[offset + 1 : offset + 1 + num_tokens].reshape(batch_size, row_len)

    def batches() -> Iterator[Batch]:
        for i in range(0, num_steps * num_batches, num_steps):
            yield _long(Xs[:, i : i + num_steps]), _long(Ys[:, i : i + num_steps])

    return batches()


def _window_batches(tokens: np.ndarray, starts: np.ndarray, batch_size: int, num_steps: int) -> Iterator[Batch]:
    """Minibatches of ``batch_size`` consecutive starts (the last may be shorter), two gathers each.

    Input positions are taken mod ``N = len(tokens) - 1``, so a uniform window that runs past the
    last input continues at the first; each target is its input's own next token (``p + 1``).
    Other samplers' windows end before ``N``, where the mod changes nothing."""
    window, circle = np.arange(num_steps), len(tokens) - 1
    for i in range(0, len(starts), batch_size):
        pos = (starts[i : i + batch_size, None] + window) % circle
        yield _long(tokens[pos]), _long(tokens[pos + 1])


def _sentence_batches(tokens: np.ndarray, epoch: SentenceEpoch) -> Iterator[Batch]:
    """Each minibatch's pieces, padded to its longest (``engine.sentences.padded_block``)."""
    for rows in epoch.batches:
        X, Y = padded_block(tokens, epoch.starts[rows], epoch.lengths[rows])
        yield torch.from_numpy(X), torch.from_numpy(Y)


def data_iter(
    corpus: np.ndarray,
    batch_size: int,
    num_steps: int,
    sampler: str,
    *,
    rng: np.random.Generator | None = None,
    stride: int = 0,
    sentence_end_ids: tuple[int, ...] = (),
) -> Iterator[Batch]:
    """One epoch of ``(X, Y)`` minibatches from the named sampler.

    ``stride``: the sliding window's (0 = num_steps // 2). ``sentence_end_ids``: the
    ids that end a sentence (sampler sentences; ``engine.sentences.sentence_end_ids``).
    """
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)} (got {sampler!r})")
    if sampler in ("random", "sequential"):
        fn = seq_data_iter_random if sampler == "random" else seq_data_iter_sequential
        return fn(corpus, batch_size, num_steps, rng=rng)
    tokens = _as_array(corpus)
    check_sizes(len(tokens), batch_size, num_steps)
    rng = rng or np.random.default_rng()
    if sampler == "sentences":
        # Laid out now, so missing sentence_end_ids raise here rather than at the first minibatch.
        epoch = sentence_epoch(tokens, tuple(sentence_end_ids), batch_size, num_steps, rng)
        return _sentence_batches(tokens, epoch)
    starts = window_starts(len(tokens), batch_size, num_steps, sampler, rng, stride)
    return _window_batches(tokens, starts, batch_size, num_steps)


def train_batches(ids: np.ndarray, cfg: TrainConfig, rng: np.random.Generator) -> Iterator[Batch]:
    """One epoch of the trainer's minibatches: ``data_iter`` with the options of ``cfg`` (``TrainConfig``)."""
    return data_iter(ids, cfg.batch_size, cfg.num_steps, cfg.sampler, rng=rng, stride=cfg.stride,
                     sentence_end_ids=cfg.sentence_end_ids)


def batches_per_epoch(n_tokens: int, batch_size: int, num_steps: int, sampler: str, *, stride: int = 0,
                      ids: np.ndarray | None = None, sentence_end_ids: tuple[int, ...] = ()) -> int:
    """Batches in one epoch at offset 0: an upper bound (a larger offset may cost one).

    Sentences: exact given ``ids`` and ``sentence_end_ids``; without them the bound
    assumes one-input pieces, ``ceil((n_tokens - 1) / batch_size)``.
    """
    check_sizes(n_tokens, batch_size, num_steps, sampler)
    if sampler == "random":
        return ((n_tokens - 1) // num_steps) // batch_size
    if sampler == "sequential":
        return ((n_tokens - 1) // batch_size) // num_steps
    if sampler == "fixed":
        return num_windows(n_tokens, num_steps, sampler) // batch_size
    if sampler == "sentences":
        count = len(pieces(ids, sentence_end_ids, num_steps)[0]) if ids is not None else n_tokens - 1
        return -(-count // batch_size)
    return -(-num_windows(n_tokens, num_steps, sampler, stride) // batch_size)  # a shorter last minibatch


def _spans(n_tokens: int, batch_size: int, num_steps: int, sampler: str, rng: np.random.Generator, stride: int,
           ids: np.ndarray | None, end_ids: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the input positions one epoch reads, as ``data_iter`` would draw them from ``rng``."""
    if sampler == "random":
        starts = _random_starts(n_tokens, batch_size, num_steps, rng).ravel()
        return starts, starts + num_steps
    if sampler == "sequential":
        offset, row_len, num_batches = _sequential_layout(n_tokens, batch_size, num_steps, rng)
        starts = offset + np.arange(batch_size) * row_len
        return starts, starts + num_batches * num_steps
    if sampler == "sentences":
        if ids is None or len(ids) != n_tokens:
            raise ConfigError("coverage of sampler sentences needs the corpus ids (ids=..., n_tokens of them)")
        starts, lengths = pieces(ids, end_ids, num_steps)  # every piece once per epoch: no draw matters
        return starts, starts + lengths
    starts = window_starts(n_tokens, batch_size, num_steps, sampler, rng, stride)
    return starts, starts + num_steps


def coverage(
    n_tokens: int,
    batch_size: int,
    num_steps: int,
    sampler: str,
    epochs: int,
    seed: int | None = 0,
    *,
    stride: int = 0,
    ids: np.ndarray | None = None,
    sentence_end_ids: tuple[int, ...] = (),
) -> np.ndarray:
    """How often each corpus position is seen as input over ``epochs`` epochs.

    Replays the samplers with ``np.random.default_rng(seed)``, so the counts are
    exactly those of ``data_iter`` driven by a generator with the same seed.
    Returns an ``int64`` array of length ``n_tokens``. What to look for: the
    first ``num_steps - 1`` positions are skipped whenever the offset passes
    them; random sampling drops ``num_subseqs % batch_size`` random
    subsequences per epoch, sequential partitioning the end of every row; fixed
    never reads the tail past the last whole subsequence; uniform reads every
    interior position once per epoch; sliding about ``num_steps / stride``
    times. Sentences (pass ``ids`` and ``sentence_end_ids``) read every token
    once per epoch but the last of each sentence, which is only a target.
    """
    check_sizes(n_tokens, batch_size, num_steps, sampler)
    epochs = _positive("epochs", epochs)
    rng = np.random.default_rng(seed)
    # Difference array: +1 where a covered span starts, -1 just past its end.
    diff = np.zeros(n_tokens + 1, dtype=np.int64)
    circle = n_tokens - 1
    for _ in range(epochs):
        starts, ends = _spans(n_tokens, batch_size, num_steps, sampler, rng, stride, ids, tuple(sentence_end_ids))
        wraps = ends > circle  # a uniform window past the last input goes on at position 0
        np.add.at(diff, starts, 1)
        np.add.at(diff, np.minimum(ends, circle), -1)
        np.add.at(diff, np.zeros(int(wraps.sum()), dtype=np.int64), 1)
        np.add.at(diff, ends[wraps] - circle, -1)
    return np.cumsum(diff)[:n_tokens]
