"""Text generation: continue a prefix one token at a time (D2L 8.5.3's predict).

Sampling exponent α: the model gives P(next token); we sample from
``q ∝ P^α`` — the same as a softmax of the logits at temperature ``1/α``.
α = 1 samples from the model, α → ∞ (``math.inf``) is greedy argmax (D2L's
``predict_ch8``), α = 0 is uniform over the allowed tokens. Top-k keeps the k
tokens the model ranks highest; top-p (nucleus) keeps the fewest highest-ranked
tokens whose q-mass reaches p. Ranking always follows P (so α = 0 with top-k
is uniform over the model's top k); masses are renormalised over what is kept.

The prefix warms up the state once (one ``forward`` over it, in ``_warm_up``,
which ``generate`` and ``next_token_distribution`` share), then each new
token costs one step of an :class:`engine.stepper.Stepper` (the model's cells
with per-token tables, tokens never seen in training masked in the output
bias) under ``torch.inference_mode()`` on the model's device. An **empty
prefix** starts from a zero state with a first token drawn from the corpus's
unigram frequencies (``vocab.token_freqs``, with the same α: greedy picks the
most frequent token, e.g. ' ' for characters). Unknown characters in the
prefix map to ``<unk>``; the warning is in ``.warnings``. A tokenizer whose
size is not the model's vocab_size is refused (ConfigError); ``engine.runs``
checks a run's tokenizer.json against its weights' fingerprint. Sampling is
seedable and happens on the CPU, so a seed gives the same text on any device.
With ``graphs=True`` (CUDA only) each token's step is replayed from a CUDA graph
(``engine.graphs.GraphedStepper``): the same kernels, one launch per token.
Left out: beam search and repetition penalties.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from engine.errors import ConfigError
from engine.models import RNNLM
from engine.precision import float32_cudnn
from engine.stepper import Stepper


def check_sampling(alpha: float, top_k: int | None, top_p: float | None) -> None:
    if not (isinstance(alpha, (int, float)) and alpha >= 0):
        raise ConfigError(f"alpha must be zero or more (inf = greedy) (got {alpha!r})")
    if top_k is not None and not (isinstance(top_k, int) and top_k >= 1):
        raise ConfigError(f"top_k must be a positive integer (got {top_k!r})")
    if top_p is not None and not 0 < top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1] (got {top_p!r})")


def check_vocab(model: RNNLM, tokenizer: Any) -> None:
    """ConfigError unless the tokenizer has exactly the model's vocab_size tokens (another run's tokenizer
    would index past the model's output layer, or map ids to the wrong tokens)."""
    n = len(tokenizer.vocab)
    if n != model.cfg.vocab_size:
        raise ConfigError(f"the tokenizer has {n} tokens but the model was trained with {model.cfg.vocab_size}: "
                          "the tokenizer does not belong to this model; use the tokenizer saved with its run")


def sampling_distribution(logits: torch.Tensor, alpha: float = 1.0, top_k: int | None = None,
                          top_p: float | None = None) -> torch.Tensor:
    """q over the vocabulary for one position: logits (vocab,) → probabilities (vocab,) summing to 1."""
    logits = logits.float()
    if alpha > torch.finfo(logits.dtype).max:  # greedy (α = inf, or too big to scale by): the first argmax
        q = torch.zeros_like(logits)
        q[int(torch.argmax(logits))] = 1.0
        return q
    order = torch.argsort(logits, descending=True, stable=True)  # ranking by P
    keep = torch.ones_like(logits, dtype=torch.bool)
    if top_k is not None and top_k < logits.numel():
        keep[order[top_k:]] = False
    # q ∝ P^α = softmax(α · logits); α = 0 gives equal weights.
    # (α = 0 keeps P's zeros: a token the model rules out, logit -inf, stays out.)
    # Scale (logits - max) so a huge α gives exp(-inf) = 0, never inf - inf = nan.
    q = (torch.softmax(alpha * (logits - logits.max()), dim=-1) if alpha > 0
         else torch.isfinite(logits).to(logits.dtype))
    q = torch.where(keep, q, torch.zeros_like(q))
    q = q / q.sum()
    if top_p is not None and top_p < 1:
        cum = torch.cumsum(q[order], dim=0)
        # keep ranks up to and including the first whose cumulative mass reaches top_p
        n_keep = int(torch.searchsorted(cum, torch.tensor([top_p], dtype=cum.dtype)).item()) + 1
        mask = torch.zeros_like(keep)
        mask[order[:n_keep]] = True
        q = torch.where(mask, q, torch.zeros_like(q))
        q = q / q.sum()
    return q


def _device(model: RNNLM) -> torch.device:
    return next(model.parameters()).device


def _unigram_logits(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """log frequencies from the vocab (the empty-prefix start); uniform when unknown."""
    vocab = tokenizer.vocab
    counts = torch.zeros(vocab_size)
    for tok, freq in getattr(vocab, "token_freqs", []):
        idx = vocab.token_to_idx.get(tok)
        if idx is not None and idx < vocab_size:
            counts[idx] = freq
    if counts.sum() <= 0:
        counts += 1
    return torch.log(counts)  # log 0 = -inf: never-seen tokens are never drawn


def _unseen(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """Mask of the tokens with no occurrence in the training corpus (all False if unknown)."""
    unseen = torch.isinf(_unigram_logits(tokenizer, vocab_size))
    return unseen if not bool(unseen.all()) else torch.zeros_like(unseen)


def _prefix_warnings(tokenizer: Any, prefix: str) -> list[str]:
    unknown = list(dict.fromkeys(tokenizer.unknown_chars(prefix))) if prefix else []
    if not unknown:
        return []
    shown = ", ".join(repr(u) for u in unknown[:10])
    return [f"not in the vocabulary, read as <unk>: {shown}"]


@contextmanager
def _inference(model: RNNLM) -> Iterator[None]:
    """The model in eval mode, under inference_mode and float32 cuDNN; its training mode is put back after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), float32_cudnn(_device(model)):
            yield
    finally:
        model.train(was_training)


def _warm_up(model: RNNLM, tokenizer: Any, prefix: str, unseen: torch.Tensor) -> tuple[list[int], torch.Tensor, Any]:
    """Read the prefix once (inside ``_inference``): (its ids, the (1, vocab) logits of the first new token on the
    model's device with the ``unseen`` tokens at -inf, the state after it). An empty prefix starts from a zero
    state with the corpus's unigram log frequencies as logits."""
    device = _device(model)
    ids = [int(i) for i in tokenizer.encode(prefix)] if prefix else []
    state = model.begin_state(1, device)
    if ids:
        logits, state = model(torch.tensor([ids], dtype=torch.long, device=device), state)
        logits = logits[-1]
    else:
        logits = _unigram_logits(tokenizer, model.cfg.vocab_size)[None]
    return ids, logits.to(device).masked_fill(unseen, -math.inf), state


CHUNK = 16  # tokens computed per inference_mode block after the first
REPLACEMENT = "\ufffd"  # what a decoder shows for an incomplete UTF-8 sequence
MAX_CHAR_TOKENS = 4  # a UTF-8 character is at most 4 bytes, so at most 4 byte-level tokens


class Generation(Iterator[str]):
    """``generate``'s result: iterate for decoded pieces; ``warnings`` is filled before the first one."""

    def __init__(self, model: RNNLM, tokenizer: Any, prefix: str, num_tokens: int, *, alpha: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 graphs: bool = False) -> None:
        check_sampling(alpha, top_k, top_p)
        check_vocab(model, tokenizer)
        if num_tokens < 0:
            raise ConfigError(f"num_tokens must be zero or more (got {num_tokens})")
        if graphs and _device(model).type != "cuda":
            raise ConfigError(f"cuda_graphs needs the model on a CUDA GPU (it is on {_device(model).type}); "
                              "leave out --cuda-graphs")
        self.graphs = graphs
        self.model, self.tokenizer, self.prefix = model, tokenizer, prefix
        self.alpha, self.top_k, self.top_p = alpha, top_k, top_p
        self.remaining = num_tokens
        self.warnings: list[str] = _prefix_warnings(tokenizer, prefix)
        self.generator = torch.Generator()  # CPU: the same seed gives the same text on every device
        if seed is not None:
            self.generator.manual_seed(seed)
        else:
            self.generator.seed()
        self._device = _device(model)
        # Tokens never seen in training (a char corpus's <unk>) are never generated.
        self._unseen = _unseen(tokenizer, model.cfg.vocab_size).to(self._device)
        self._stepper: Any = None  # a Stepper, or a GraphedStepper with graphs
        self._state: list[Any] = []
        self._logits: torch.Tensor | None = None
        self._ids: list[int] = []
        self._held: list[int] = []  # byte tokens of a character not yet complete (see _piece)
        self._pending: list[int] = []  # computed, not yet handed out
        # Characters decode to themselves: a list lookup instead of a decode call per token.
        self._itos: list[str] | None = list(tokenizer.vocab.idx_to_token) if tokenizer.decodes_by_lookup else None

    def _pick(self, logits: torch.Tensor) -> torch.Tensor:
        """The next token as a (1,) long tensor on the model's device, from masked (1, vocab) logits."""
        if math.isinf(self.alpha):
            return logits.argmax(dim=1)  # greedy: stays on the device, no sampling
        q = sampling_distribution(logits[0].cpu(), self.alpha, self.top_k, self.top_p)
        return torch.multinomial(q, 1, generator=self.generator).to(self._device)

    def _piece(self, idx: int) -> str:
        if self._itos is not None:
            return self._itos[idx]
        # Word and subword tokens: decode with a little context so spacing between tokens comes out right.
        # A byte-level tokenizer may split a character over several tokens: those are held back (piece '')
        # until the character is whole, then shown at once, so the stream never shows a stray U+FFFD.
        ids = self._held + [idx]
        tail = self._ids[: len(self._ids) - len(self._held)][-4:]  # context: ids already shown
        before = self.tokenizer.decode(tail) if tail else ""
        after = self.tokenizer.decode(tail + ids)
        if after.endswith(REPLACEMENT) and len(ids) < MAX_CHAR_TOKENS:
            self._held = ids
            return ""
        self._held = []
        return after[len(before):] if after.startswith(before) else self.tokenizer.decode(ids)

    def __next__(self) -> str:
        if not self._pending:
            if self.remaining <= 0:
                raise StopIteration
            # The first token comes alone (instant feedback); then tokens are computed
            # CHUNK at a time inside one inference_mode block with one host sync, and
            # handed out one by one. Same tokens, less per-token Python and syncing.
            n = 1 if self._stepper is None else min(self.remaining, CHUNK)
            self._pending = self._advance(n)
            self.remaining -= n
        idx = self._pending.pop(0)
        piece = self._piece(idx)
        self._ids.append(idx)
        return piece

    def _advance(self, n: int) -> list[int]:
        """Run the model ``n`` tokens further; the chosen token ids."""
        with _inference(self.model):
            if self._stepper is None:
                self._ids, self._logits, state = _warm_up(self.model, self.tokenizer, self.prefix, self._unseen)
                self._stepper = Stepper(self.model, never=self._unseen)
                if self.graphs:
                    from engine.graphs import GraphedStepper

                    self._stepper = GraphedStepper(self._stepper, self._device)
                self._state = self._stepper.load(state)
            step, logits, state, picked = self._stepper, self._logits, self._state, []
            for _ in range(n):
                x = self._pick(logits)
                picked.append(x)
                logits, state = step(x, state)
            self._logits, self._state = logits, state
            return torch.cat(picked).tolist()


def generate(model: RNNLM, tokenizer: Any, prefix: str, num_tokens: int, *, alpha: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
             graphs: bool = False) -> Generation:
    """Yield ``num_tokens`` decoded pieces continuing ``prefix`` (the prefix itself is not yielded); ``graphs``:
    replay each token's step from a CUDA graph (the model on CUDA)."""
    return Generation(model, tokenizer, prefix, num_tokens, alpha=alpha, top_k=top_k, top_p=top_p, seed=seed,
                      graphs=graphs)


class TokenDistribution(list):
    """A list of (token, probability), most probable first, with ``warnings`` about the prefix."""

    warnings: list[str]


def next_token_distribution(model: RNNLM, tokenizer: Any, prefix: str, *, alpha: float = 1.0,
                            top_k: int | None = None, top_p: float | None = None, n: int = 10) -> TokenDistribution:
    """The top ``n`` (token, q) after ``prefix``, with α / top-k / top-p applied (the UI's bars)."""
    check_sampling(alpha, top_k, top_p)
    check_vocab(model, tokenizer)
    with _inference(model):
        _, logits, _ = _warm_up(model, tokenizer, prefix, _unseen(tokenizer, model.cfg.vocab_size).to(_device(model)))
        q = sampling_distribution(logits[0].cpu(), alpha, top_k, top_p)
    probs, idx = torch.sort(q, descending=True, stable=True)
    tokens = tokenizer.vocab.to_tokens([int(i) for i in idx[:n]])
    out = TokenDistribution((str(t), float(p)) for t, p in zip(tokens, probs[:n]))
    out.warnings = _prefix_warnings(tokenizer, prefix)
    return out
