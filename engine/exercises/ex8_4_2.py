"""Exercise 8.4.2: why can an RNN condition the next token on *all* earlier tokens — and does a trained one?

In principle h_t = f(x_t, h_{t−1}) folds every earlier token into the state, so P(x_{t+1} | h_t) can depend
on any of them; an n-gram model cannot see past n − 1 tokens. Measured on a trained model (the trainer,
seeded): contexts of ``context`` characters are taken from text it was not trained on, and the one
character d steps before the end is replaced by another (drawn at random); how far the next-character
distribution moves (total variation distance, ½ Σ |p − p′|) and how often its most likely character
changes, for d = 1 … ``context``. Two prompts with the same last characters and different earlier text
show the same in words.

Left out: attributions by gradient (saliency), and word-level models.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from engine.config import option
from engine.exercises.base import Exercise, Plot, Progress, Reference, Result, Series, check_stop, need
from engine.exercises.common import integer, pipeline
from engine.exercises.training_runs import LMSettings, train_lm

DISTANCES = (1, 2, 4, 8, 16, 32, 64)
PROMPTS = ("the time traveller looked at the", "in the garden of the white sphinx the")  # same last 4 characters


@dataclass(frozen=True)
class Settings(LMSettings):
    """The model, its training budget and the probe."""

    seed: int = option(0, "seeds training and the probes")
    context: int = option(64, "characters of context per probe (the largest distance)")
    probes: int = option(300, "contexts probed, from the text after max_tokens")

    def __post_init__(self) -> None:
        super().__post_init__()
        integer("context", self.context, 2, 1024)
        integer("probes", self.probes, 1, 100_000)


def next_distributions(model: object, contexts: np.ndarray) -> np.ndarray:
    """P(next token) after each row of ``contexts`` (probes, length), from a zero state."""
    import torch

    X = torch.as_tensor(contexts, dtype=torch.long)
    with torch.no_grad():
        model.eval()  # type: ignore[attr-defined]
        logits, _ = model(X, model.begin_state(len(X)))  # type: ignore[operator, attr-defined]
        return torch.softmax(logits[-1], dim=-1).numpy()


def influence(model: object, contexts: np.ndarray, d: int, vocab_size: int,
              rng: np.random.Generator) -> tuple[float, float]:
    """(mean total variation distance, share of changed argmax) when the token d steps back is replaced by
    another token drawn uniformly from the rest of the vocabulary (never <unk>, id 0)."""
    changed = contexts.copy()
    col = contexts.shape[1] - d
    shift = rng.integers(1, vocab_size - 1, len(contexts))  # 1..V-2: a different id among 1..V-1
    changed[:, col] = (contexts[:, col] - 1 + shift) % (vocab_size - 1) + 1
    p, q = next_distributions(model, contexts), next_distributions(model, changed)
    tv = 0.5 * np.abs(p - q).sum(axis=1)
    return float(tv.mean()), float(np.mean(p.argmax(1) != q.argmax(1)))


class AllPreviousTokens(Exercise):
    id = "8.4.2"
    question = ("Why can RNNs express the conditional probability of a token given all the previous tokens of "
                "the sequence? Does a trained one use them?")
    Settings = Settings
    default = Settings()
    long = Settings(epochs=100, num_hiddens=256)
    references = (  # seed 0; the tolerances span seeds 0-1 (the long budget: seeds 0-1 too)
        Reference("tv_1", 0.685, 0.03, "default", "seeds 0-1 gave 0.656-0.685"),
        Reference("tv_4", 0.305, 0.045, "default", "seeds 0-1 gave 0.305-0.349"),
        Reference("tv_16", 0.023, 0.008, "default", "seeds 0-1 gave 0.023-0.030"),
        Reference("tv_1", 0.731, 0.011, "long", "seeds 0-1 gave 0.720-0.731"),
        Reference("tv_4", 0.560, 0.016, "long", "seeds 0-1 gave 0.560-0.575"),
        Reference("tv_16", 0.204, 0.01, "long", "seeds 0-1 gave 0.204-0.213"),
        Reference("tv_64", 0.035, 0.01, "long", "seeds 0-1 gave 0.034-0.044"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        from engine.config import ModelConfig, TrainConfig

        p = pipeline(s.corpus)
        V = len(p.vocab)
        unseen = np.asarray(p.ids[s.max_tokens:], dtype=np.int64)
        need(len(unseen) >= s.context + s.probes, f"the corpus has too few characters after max_tokens "
             f"({len(unseen):,}) for {s.probes} probes of {s.context}")
        model_cfg = ModelConfig(kind=s.kind, vocab_size=V, num_hiddens=s.num_hiddens)
        train_cfg = TrainConfig(epochs=s.epochs, optimizer="adam", lr=s.lr, max_tokens=s.max_tokens, sample_every=0,
                                seed=s.seed, device="cpu")
        total = s.epochs + 1
        model, _, run, *_ = train_lm(p, model_cfg, train_cfg, progress, stop, total=total, tags={"exercise": self.id})
        check_stop(stop)
        progress(s.epochs, total, "probing")
        rng = np.random.default_rng([s.seed, 7])
        starts = rng.choice(len(unseen) - s.context, s.probes, replace=False)
        contexts = np.stack([unseen[a:a + s.context] for a in starts])
        rows, figures = [], {}
        for d in [d for d in DISTANCES if d <= s.context]:
            tv, flips = influence(model, contexts, d, V, rng)
            rows.append([d, tv, flips])
            figures[f"tv_{d}"], figures[f"argmax_changed_{d}"] = tv, flips
        tok = p.tokenizer
        shown, dists = [], []
        for prompt in PROMPTS:
            dist = next_distributions(model, np.asarray(tok.encode(prompt), dtype=np.int64)[None, :])[0]
            top = np.argsort(-dist)[:3]
            shown.append(", ".join(f"{tok.display_token(tok.vocab.to_tokens(int(i)))!s} {dist[i]:.2f}" for i in top))
            dists.append(dist)
        figures["prompts_tv"] = float(0.5 * np.abs(dists[0] - dists[1]).sum())
        progress(total, total, "done")
        first, last = rows[0], rows[-1]
        explanation = (
            f"Changing the last character moves the next-character distribution by {first[1]:.2f} in total "
            f"variation (its top choice changes {first[2]:.0%} of the time); a change {rows[2][0]} characters back "
            f"by {rows[2][1]:.3g}; {last[0]} back by {last[1]:.2g} ({last[2]:.1%} top changes). The state carries "
            f"every earlier character — nothing in h_t = f(x_t, h_(t−1)) has a fixed window, unlike an n-gram "
            f"model — but in this model trained on {s.max_tokens:,} characters its influence fades roughly "
            f"geometrically with distance, and a character {last[0]} back barely counts. The prompts "
            f"'{PROMPTS[0]}' and '{PROMPTS[1]}' end alike; their next-character distributions ({shown[0]}) and "
            f"({shown[1]}) differ by {figures['prompts_tv']:.2f} in total variation, all of it from the earlier text.")
        plot = Plot("how far the next-character distribution moves", "log2 d", "log10 TV distance",
                    [Series("replaced d back", [float(np.log2(r[0])) for r in rows],
                            [float(np.log10(max(r[1], 1e-12))) for r in rows])])
        return Result(["d back", "TV distance", "top changed"], rows, explanation, figures, [plot], runs=[run])


EXERCISE = AllPreviousTokens()
