"""What the Train screen shows besides its plots: the form's sections and the stats lines.

``form_specs`` lays out every option of ``ModelConfig`` (not ``vocab_size``,
which the corpus sets) and ``TrainConfig`` in titled sections (the rows, their
choices and tooltips come from the configs' field metadata); a field not
placed in ``SECTIONS`` goes to the end of the last one, so a new engine option
still shows. ``progress_text`` turns a ``Progress`` event into three fixed lines
(perplexities; gradient norm, the share of steps clipping changed, and speed;
epoch and time) that fit the 43 columns left at 80×24.
Left out: the plots (``tui.widgets.plot``) and the screen's wiring.
"""

from __future__ import annotations

import math

from rich.text import Text

from engine.config import ModelConfig, TrainConfig
from engine.events import Progress
from tui.widgets.form import specs_for

# The form's sections, in order: (heading, [(config group, field), ...]). Every field of
# ModelConfig (but vocab_size, set by the corpus) and TrainConfig appears once; a field
# missing here goes to the end of the last section, so a new engine option still shows.
SECTIONS = (
    ("model", [("model", n) for n in ("kind", "num_hiddens", "num_layers", "dropout", "encoding",
                                      "embed_size", "activation", "init")]),
    ("optimisation", [("train", n) for n in ("optimizer", "lr", "weight_decay", "epochs", "clip", "clip_theta",
                                             "truncation", "truncation_p", "bptt_limit_mb")]),
    ("data", [("train", n) for n in ("batch_size", "num_steps", "sampler", "stride", "val_fraction", "max_tokens",
                                     "seed")]),
    ("device", [("train", n) for n in ("device", "threads", "precision", "cuda_graphs")]),
    ("sampling & logging", [("train", n) for n in ("sample_every", "sample_prefix", "sample_len",
                                                   "sample_alpha", "log_interval_s", "log_every_steps",
                                                   "checkpoint_interval_s", "spike_factor")]),
)


def form_specs() -> tuple[list, dict[str, str]]:
    """Rows for every model and trainer option in SECTIONS order, and the section headings."""
    model, trainer = specs_for(ModelConfig, "model"), specs_for(TrainConfig, "train")
    by_key = {spec.key: spec for spec in model + trainer}
    ordered, headings = [], {}
    for heading, fields in SECTIONS:
        present = [by_key.pop(f"{group}-{name}") for group, name in fields if f"{group}-{name}" in by_key]
        if present:
            headings[present[0].key] = heading
            ordered += present
    return ordered + list(by_key.values()), headings


def clock(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def progress_text(p: Progress, ranks: int = 1) -> Text:
    """Three lines: train and validation perplexity; gradient norm, the share of steps clipping
    changed, tokens/s (smoothed; the epoch's average at its end; trained by ``ranks`` processes, the
    total and each one's: "1.2M=2×612k"); epoch, time and ETA. Each fits the 43 columns left at 80×24
    (e.g. "epoch 9999/10000  time 1:23:45  ETA 1:23:45"); a longer one is cut, never wrapped."""
    from engine.compare import si

    stats = Text(no_wrap=True, overflow="ellipsis")
    speed = f"{p.tokens_per_s:,.0f}" if ranks <= 1 else f"{si(p.tokens_per_s)}={ranks}×{si(p.tokens_per_s / ranks)}"
    lines = ((("train ppl", f"{p.train_ppl:.4g}"), ("val ppl", "–" if p.val_ppl is None else f"{p.val_ppl:.4g}")),
             (("‖g‖", f"{p.grad_norm:.3g}"), ("clipped", f"{p.clip_fraction:.0%}"), ("tok/s", speed)),
             (("epoch", f"{p.epoch}/{p.epochs}"), ("time", clock(p.elapsed_s)), ("ETA", clock(p.eta_s))))
    for i, line in enumerate(lines):
        if i:
            stats.append("\n")
        for j, (label, value) in enumerate(line):
            stats.append(f"{'  ' if j else ''}{label} ", style="dim")
            stats.append(value, style="bold")
    return stats
