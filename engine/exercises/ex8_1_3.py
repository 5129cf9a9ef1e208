"""Exercise 8.1.3: is text causal in time — does predicting it forwards differ from predicting it backwards?

The same model (cell, width, seed, optimizer, budget) is trained twice on the same characters: once in
reading order and once reversed, and both are scored on the same held-out characters (the trainer's
tail), each in its own direction: the training part and the held-out part are reversed separately. If the two validation perplexities differ,
one direction is easier to predict: the text is not symmetric in time. Both runs use the trainer with
the same minibatch order; only the order of the characters within the text differs.

Both are ordinary run folders tagged ``{"exercise": "8.1.3", "point": "forwards" | "reversed"}``. A run
folder names a corpus file, so the reversed characters are written as one (``reversed_corpus``: under the
corpus cache's ``derived/``, named by a hash of its text, read in ``raw`` mode so every character stays
as written). After the ``max_tokens`` characters the exercise reads, that file holds the rest of the book in
reading order: the character counts are the book's, so the vocabulary (ordered by count) is too.

Left out: word-level models, and deciding whether a difference means causation (the book's question is
whether text depends on time's direction; equal perplexity would say it carries the same information
either way, which an entropy argument says it must in the limit: H(forward) = H(backward) for the joint).
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.config import option
from engine.exercises.base import Exercise, Plot, Progress, Reference, Result, Series, need
from engine.exercises.common import pipeline
from engine.exercises.training_runs import LMSettings, train_lm


@dataclass(frozen=True)
class Settings(LMSettings):
    """The model and its budget, the same for both directions."""

    epochs: int = option(15, "training epochs (Adam) in each direction")
    max_tokens: int = option(10000, "characters used, 0 = all (the last 10% of each direction held out)")
    seed: int = option(0, "seeds the weights and the minibatch order (the same for both)")

    def check_max_tokens(self) -> None:
        need(self.max_tokens == 0 or (isinstance(self.max_tokens, int) and 2000 <= self.max_tokens <= 10**9),
             f"max_tokens must be 0 (all) or an integer in 2000..1000000000 (got {self.max_tokens!r})")


def reversed_split(ids: np.ndarray, train_cfg: object) -> np.ndarray:
    """``ids`` with its training part and its held-out tail each reversed in place, so the trainer holds out
    the same characters, read backwards: ``[a b c | d e] -> [c b a | e d]``."""
    from engine.training import split_ids

    train_part, val_part = split_ids(ids, train_cfg)  # type: ignore[arg-type]
    return np.concatenate([train_part[::-1], val_part[::-1]])


def reversed_corpus(p: Any, n: int, train_cfg: Any) -> Any:
    """A pipeline whose first ``n`` ids (0: all) are ``reversed_split`` of ``p``'s first ``n`` (a char-level
    pipeline), and whose corpus is a file the run folder can name: the characters written out (the rest of the
    book after them, in reading order) and read back in raw mode. ConfigError if they do not read back the same
    (a tokenizer other than characters)."""
    import hashlib

    from engine import paths
    from engine.checkpoint import atomic_write_bytes
    from engine.corpus import load_corpus
    from engine.pipeline import build_pipeline

    need(p.tokenizer.kind == "char", f"the reversed text is written character by character (got {p.tokenizer.kind})")
    ids = np.asarray(p.ids if n == 0 else p.ids[:n])
    stream = np.concatenate([reversed_split(ids, train_cfg), np.asarray(p.ids[len(ids):])])
    tokens = p.vocab.idx_to_token
    data = "".join(tokens[i] for i in stream.tolist()).encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()[:12]
    path = paths.corpus_cache_dir() / "derived" / f"{p.corpus.name}-reversed-{n or 'all'}-{digest}.txt"
    if not path.is_file() or path.stat().st_size != len(data):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
    back = build_pipeline(load_corpus(str(path)), mode="raw", tokenizer="char")
    same = "".join(back.vocab.idx_to_token[i] for i in np.asarray(back.ids).tolist()).encode("utf-8") == data
    need(same, f"{path} does not read back as the reversed characters; delete it and run again")
    return back


class ReversedText(Exercise):
    id = "8.1.3"
    question = ("Does causality apply to text? To what extent? Train the same model on the text forwards and "
                "reversed, and compare how well each predicts.")
    Settings = Settings
    default = Settings()
    long = Settings(epochs=50, max_tokens=50000)
    references = (  # seed 0; the tolerances span seeds 0-1 (the long budget: seeds 0-1 too)
        Reference("best_val_ppl_forwards", 8.13, 0.18, "default", "seeds 0-1 gave 8.13-8.31"),
        Reference("best_val_ppl_reversed", 8.82, 0.02, "default", "seeds 0-1 gave 8.82-8.84"),
        Reference("reversed_over_forwards", 1.084, 0.021, "default", "seeds 0-1 gave 1.064-1.084"),
        Reference("best_val_ppl_forwards", 6.02, 0.07, "long", "seeds 0-1 gave 5.96-6.02"),
        Reference("best_val_ppl_reversed", 5.91, 0.01, "long", "seeds 0-1 gave 5.913-5.921"),
        Reference("reversed_over_forwards", 0.981, 0.013, "long", "seeds 0-1 gave 0.981-0.994: reversed a little "
                                                                  "easier at 50,000 characters"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        from engine.config import ModelConfig, TrainConfig

        p = pipeline(s.corpus)
        n = len(p.ids) if s.max_tokens == 0 else min(s.max_tokens, len(p.ids))
        train_cfg = TrainConfig(epochs=s.epochs, optimizer="adam", lr=s.lr, max_tokens=s.max_tokens, sample_every=0,
                                seed=s.seed, device="cpu")
        split_cfg = dataclasses.replace(train_cfg, max_tokens=0)  # the split of the first n characters
        backwards = reversed_corpus(p, s.max_tokens, split_cfg)
        histories, runs = {}, []
        for i, (name, data) in enumerate((("forwards", p), ("reversed", backwards))):
            model_cfg = ModelConfig(kind=s.kind, vocab_size=len(data.vocab), num_hiddens=s.num_hiddens)
            t = train_lm(data, model_cfg, train_cfg, progress, stop, done=i * s.epochs, total=2 * s.epochs,
                         label=name, tags={"exercise": self.id, "point": name})
            histories[name] = t.history
            runs.append(t.run)
        rows, figures, series = [], {}, []
        for name, h in histories.items():
            best = min(e.val_ppl for e in h if e.val_ppl is not None)
            rows.append([name, h[-1].train_ppl, h[-1].val_ppl, best])
            figures[f"val_ppl_{name}"], figures[f"best_val_ppl_{name}"] = h[-1].val_ppl, best
            series.append(Series(name, [float(e.epoch) for e in h], [e.val_ppl for e in h]))
        f, b = figures["best_val_ppl_forwards"], figures["best_val_ppl_reversed"]
        figures["reversed_over_forwards"] = b / f
        explanation = (
            f"Same model, same budget ({s.epochs} epochs), same {n:,} characters: the best validation "
            f"perplexity is {f:.3f} forwards and {b:.3f} reversed ({b / f - 1:+.1%}). "
            + ("The difference is small: characters are about as predictable from what follows as from what "
               "precedes, as information theory says they must be in the limit (the joint entropy is the same "
               "read either way); what differs is how easily a small model learns each direction. "
               if abs(b / f - 1) < 0.05 else
               f"At this budget the {'forward' if f < b else 'reversed'} direction is easier for this model; in the "
               f"limit both carry the same information (the joint entropy is the same read either way), so the "
               f"gap measures how easily a small model learns each direction — one seed and a short budget, so "
               f"rerun with other seeds or --long before reading much into it. ")
            + "Text is causal in how it is produced, not in the statistics a model can use: a reversed text is "
            "still predictable, and bidirectional models (D2L 10.4) read both ways at once.")
        return Result(["direction", "train ppl", "val ppl", "best val ppl"], rows, explanation, figures,
                      [Plot("validation perplexity per epoch", "epoch", "perplexity", series)], runs=runs)


EXERCISE = ReversedText()
