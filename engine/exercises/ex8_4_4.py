"""Exercise 8.4.4: what are the limits of this language model — how much of the past does it actually use?

An RNN language model may in principle condition on every earlier token, but what it has learnt to use
is another matter. A model is trained (the trainer, seeded), then scored on text after the part it was
trained on with its
state reset to zero every n tokens, n = 1, 2, 4 … and ∞ (never reset: the usual evaluation). Right
after a reset the model sees only the tokens since; so the perplexity at n shows how much a context of
up to n tokens is worth, and where the curve flattens is how far back the model's memory reaches.

Left out: per-position curves (loss at distance d from the reset) and gradients (8.4.3).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from engine.config import option
from engine.exercises.base import Exercise, Plot, Progress, Reference, Result, Series, check_stop, need
from engine.exercises.common import integer, pipeline, positive_ints
from engine.exercises.training_runs import LMSettings, train_lm

ROWS = 8  # the unseen text is read as this many contiguous rows


@dataclass(frozen=True)
class Settings(LMSettings):
    """The model, its training budget and the reset intervals."""

    max_tokens: int = option(10000, "characters trained on (D2L's 10,000; the trainer holds out the last 10%)")
    eval_tokens: int = option(20000, "characters after those, never trained on, that are scored")
    resets: tuple[int, ...] = option((1, 2, 4, 8, 16, 32, 64, 128), "reset the state every n tokens; ∞ is added")

    def __post_init__(self) -> None:
        super().__post_init__()
        integer("eval_tokens", self.eval_tokens, 1000, 10**9)
        positive_ints("resets", self.resets, 1, 10**6)


def reset_perplexity(model: object, ids: np.ndarray, every: int | None, rows: int = ROWS) -> float:
    """Perplexity of ``ids`` read as ``rows`` contiguous rows, the state reset to zero every ``every`` tokens
    (None: never), the first token of every row only an input."""
    import torch
    from torch.nn import functional as F

    n = (len(ids) - 1) // rows
    data = torch.as_tensor(np.asarray(ids[: rows * n + 1], dtype=np.int64))
    X, Y = data[:-1].reshape(rows, n), data[1:].reshape(rows, n)
    step = every if every is not None else 64  # never reset: carry the state across chunks of 64
    total = 0.0
    with torch.no_grad():
        model.eval()  # type: ignore[attr-defined]
        state = model.begin_state(rows)  # type: ignore[attr-defined]
        for start in range(0, n, step):
            if every is not None:
                state = model.begin_state(rows)  # type: ignore[attr-defined]
            logits, state = model(X[:, start:start + step], state)  # type: ignore[operator]
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                           Y[:, start:start + step].T.reshape(-1), reduction="sum"))
    return math.exp(total / (rows * n))


class UsedContext(Exercise):
    id = "8.4.4"
    question = ("What are the limits of this RNN language model? In particular, how much of the past does it "
                "really use when predicting the next character?")
    Settings = Settings
    default = Settings()
    long = Settings(epochs=100, num_hiddens=256)
    references = (  # seed 0; the tolerances span seeds 0-1 (the long budget: seeds 0-1 too)
        Reference("ppl_never", 9.01, 0.26, "default", "seeds 0-1 gave 9.01-9.27"),
        Reference("ppl_reset_1", 11.87, 0.18, "default", "seeds 0-1 gave 11.87-12.05"),
        Reference("ppl_reset_16", 9.29, 0.22, "default", "seeds 0-1 gave 9.29-9.51"),
        Reference("ppl_never", 44.0, 1.9, "long", "seeds 0-1 gave 44.0-45.8: the long model overfits, and a long "
                                                  "state misleads it"),
        Reference("ppl_reset_1", 11.41, 0.09, "long", "seeds 0-1 gave 11.41-11.50"),
        Reference("ppl_reset_16", 32.7, 0.9, "long", "seeds 0-1 gave 32.7-33.6"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        from engine.config import ModelConfig, TrainConfig

        p = pipeline(s.corpus)
        unseen = np.asarray(p.ids[s.max_tokens: s.max_tokens + s.eval_tokens])
        need(len(unseen) >= 1000, f"the corpus has {len(p.ids):,} characters: too few beyond max_tokens = "
             f"{s.max_tokens:,} to score (at least 1,000 needed)")
        model_cfg = ModelConfig(kind=s.kind, vocab_size=len(p.vocab), num_hiddens=s.num_hiddens)
        train_cfg = TrainConfig(epochs=s.epochs, optimizer="adam", lr=s.lr, max_tokens=s.max_tokens, sample_every=0,
                                seed=s.seed, device="cpu")
        total = s.epochs + 1
        model, history, run, *_ = train_lm(p, model_cfg, train_cfg, progress, stop, total=total,
                                       tags={"exercise": self.id})
        check_stop(stop)
        progress(s.epochs, total, "scoring with resets")
        rows, figures = [], {}
        never = reset_perplexity(model, unseen, None)
        for n in sorted(set(s.resets)):
            ppl = reset_perplexity(model, unseen, n)
            rows.append([str(n), ppl, ppl / never])
            figures[f"ppl_reset_{n}"] = ppl
        rows.append(["∞", never, 1.0])
        figures["ppl_never"] = never
        progress(total, total, "done")
        within = next((int(r[0]) for r in rows[:-1] if r[2] <= 1.05), None)
        first, last = rows[0], rows[-2]
        best = min(rows[:-1], key=lambda r: r[1])
        if best[1] * 1.05 < never:  # a short context beats the whole: the model learned its training text
            final = history[-1] if history else None
            explanation = (
                f"Trained {s.epochs} epochs on {s.max_tokens:,} characters, the model's perplexity on the next "
                f"{len(unseen):,} (never seen) is {never:.2f} when its state is never reset, yet {best[1]:.2f} when "
                f"it is reset every {best[0]} tokens: here a longer context makes its predictions worse. "
                + (f"It ended at training perplexity {final.train_ppl:.2f} against validation {final.val_ppl:.2f}: "
                   if final is not None and final.val_ppl is not None else "")
                + "it has learned its training text by heart (8.6.1), and a long state steers it towards that text's "
                "continuations, which new text does not follow, while a state of a few characters only carries what "
                "holds in any English. So this does not measure how much context language needs but how much of "
                "its state this overfitted model can use without being misled: fewer epochs (the default budget) or "
                "more text show the other side, where perplexity falls as the context grows.")
        else:
            explanation = (
                f"Trained {s.epochs} epochs on {s.max_tokens:,} characters, the model's perplexity on the next "
                f"{len(unseen):,} (never seen) is {never:.2f} when its state is never reset. Reset every token — "
                f"each character predicted from itself alone, a bigram model — it is "
                f"{first[1]:.2f}; every {last[0]} tokens, {last[1]:.2f}. "
                + (f"From n = {within} on the perplexity is within 5% of never resetting: what the model uses lies "
                   f"within about {within} characters — a few words — although BPTT over {train_cfg.num_steps} steps "
                   f"and the carried state could in principle reach further. "
                   if within is not None else
                   "Even the longest interval tried stays more than 5% worse than never resetting: the model uses "
                   "context further back than that. ")
                + "That is this model's limit: a small state, trained briefly, keeps the recent past; long-range "
                "facts (who speaks, what the chapter is about) fade, consistent with the vanishing gradients of 8.4.3.")
        plot = Plot("perplexity on unseen text, state reset every n tokens", "log2 n", "perplexity",
                    [Series("reset every n", [math.log2(int(r[0])) for r in rows[:-1]], [r[1] for r in rows[:-1]]),
                     Series("never reset", [math.log2(int(rows[0][0])), math.log2(int(rows[-2][0]))],
                            [never, never])])
        return Result(["reset every n", "perplexity", "× never reset"], rows, explanation, figures, [plot],
                      runs=[run])


EXERCISE = UsedContext()
