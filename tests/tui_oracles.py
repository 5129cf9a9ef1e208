"""Expected values for the TUI tests, computed by hand with plain torch from a run's saved weights.

Each figure the screens show is recomputed here without the engine's code for it:
``next_token_distribution`` / ``sampling_distribution`` (the bars), ``generate`` and the ``Stepper``
(generated text), ``evaluate`` (validation perplexity). What is shared with the engine: the model's
``forward`` (one call over a whole sequence, or one token at a time with the state carried), the
saved weights and tokenizer (``open_run``), and the corpus ids (``build_pipeline``). Character
tokenizers only (one id per character).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from engine.corpus import load_corpus
from engine.pipeline import build_pipeline
from engine.runs import open_run


def load(path: Path):
    """(model in eval mode, tokenizer) saved in run ``path``."""
    run = open_run(path)
    model = run.load_model("cpu")
    model.eval()
    return model, run.tokenizer


def hand_logits(model, tokenizer, ids: list[int], state=None):
    """Logits after ``ids`` (one forward, float64) with never-seen tokens set to -inf, and the state."""
    vocab = tokenizer.vocab
    freqs = dict(vocab.token_freqs)
    seen = torch.tensor([freqs.get(t, 0) > 0 for t in vocab.idx_to_token])
    with torch.no_grad():
        logits, state = model(torch.tensor([ids]), model.begin_state(1) if state is None else state)
    return logits[-1, 0].double().masked_fill(~seen, -torch.inf), state


def hand_q(path: Path, text: str, alpha: float = 1.0, top_k: int | None = None,
           top_p: float | None = None) -> list[tuple[str, float]]:
    """The 10 likeliest (displayed token, q) of q ∝ P^α (P kept on its top_k likeliest when set; then q kept
    on its fewest likeliest tokens whose mass reaches top_p), P the softmax of the run's model after ``text``."""
    model, tokenizer = load(path)
    ids = [tokenizer.vocab.token_to_idx[c] for c in text]
    P = torch.softmax(hand_logits(model, tokenizer, ids)[0], dim=0)
    if top_k is not None:
        P = torch.where(P >= torch.sort(P, descending=True).values[top_k - 1], P, torch.zeros_like(P))
    q = P ** alpha / (P ** alpha).sum()
    order = sorted(range(len(q)), key=lambda i: -float(q[i]))  # most likely first; ties in vocabulary order
    if top_p is not None:
        mass, kept = 0.0, []
        while mass < top_p:
            kept.append(order[len(kept)])
            mass += float(q[kept[-1]])
        q = torch.tensor([float(q[i]) / mass if i in kept else 0.0 for i in range(len(q))])
    order = sorted(range(len(q)), key=lambda i: -float(q[i]))[:10]  # zeros in vocabulary order, as shown
    return [(tokenizer.display_token(tokenizer.vocab.idx_to_token[i]), float(q[i])) for i in order]


def hand_continuation(path: Path, text: str, n: int, seed: int | None = None) -> str:
    """``n`` characters after ``text``, one forward step at a time with the state carried: the argmax
    each step (seed None) or a draw from q = softmax (α = 1) with a CPU generator seeded with ``seed``."""
    model, tokenizer = load(path)
    vocab = tokenizer.vocab
    logits, state = hand_logits(model, tokenizer, [vocab.token_to_idx[c] for c in text])
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        if generator is None:
            x = int(torch.argmax(logits))
        else:
            x = int(torch.multinomial(torch.softmax(logits.float(), dim=0), 1, generator=generator))
        out.append(vocab.idx_to_token[x])
        logits, state = hand_logits(model, tokenizer, [x], state)
    return "".join(out)


def hand_val_ppl(path: Path) -> float:
    """Validation perplexity of run ``path``'s saved weights: the tail ``val_fraction`` of the first
    ``max_tokens`` ids of its corpus, cut into min(batch_size, (n - 1) // num_steps) contiguous rows read
    left to right in one forward from a zero state; exp of the mean cross-entropy."""
    config = json.loads((path / "config.json").read_text())
    cfg = config["train"]
    ids = build_pipeline(load_corpus(config["corpus"]["name"]), mode=config["mode"]).ids[: cfg["max_tokens"]]
    val = torch.as_tensor(ids[len(ids) - round(len(ids) * cfg["val_fraction"]):], dtype=torch.long)
    rows = min(cfg["batch_size"], (len(val) - 1) // cfg["num_steps"])
    length = (len(val) - 1) // rows
    X, Y = val[: rows * length].reshape(rows, length), val[1: rows * length + 1].reshape(rows, length)
    model, _ = load(path)
    with torch.no_grad():
        logits, _ = model(X, model.begin_state(rows))  # (length, rows, vocab)
    loss = F.cross_entropy(logits.double().reshape(-1, logits.shape[-1]), Y.T.reshape(-1))
    return math.exp(float(loss))
