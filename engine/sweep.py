"""A sweep: one ordinary run per point of a grid over model and training options, trained one after
another and ranked by the best validation perplexity each reached.

A grid names options of ``ModelConfig`` and ``TrainConfig`` with the values to try, as text
(``parse_grid(["num_hiddens=64,128", "lr=0.5,1"])``, each value typed after the option's default as
the ``rnnlab train`` flags are) or as a dict. ``grid_points`` expands it into its product, the last
option varying fastest::

    {"num_hiddens": (64, 128), "lr": (0.5, 1.0)}
    -> num_hiddens=64 lr=0.5, num_hiddens=64 lr=1, num_hiddens=128 lr=0.5, num_hiddens=128 lr=1

``run_sweep`` checks every point's configs first (a bad combination fails before any folder is
made), then makes each point a run folder (``engine.runs.create_run``, tagged ``{"sweep": id,
"point": label}`` so the Runs screen can find and overlay them) and trains it with the trainer's own
loop (``engine.trainer.train``). A ``threading.Event`` stop ends the run in progress as the trainer
does (saved, status "stopped") and starts no other; the runs made so far are kept and ranked.

Each ``SweepRow`` is read back from its run folder (metrics.jsonl's epoch ends, checkpoint.json's
status): the best validation perplexity and its epoch, the training perplexity of that epoch and of
the last one. ``rank_rows`` puts completed runs first (lowest best validation perplexity first), then
stopped ones, then those that diverged or failed, whatever their numbers.

Left out: training points in parallel, resuming a sweep, and printing (``tui.cli.sweep``).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from engine.config import ModelConfig, TrainConfig, user_options
from engine.errors import ConfigError
from engine.exercises.base import format_value, parse_value

ALIASES = {"model": "kind"}  # the CLI's flag names where they differ from the field's
STATUS_ORDER = {"completed": 0, "stopped": 1}  # anything else (diverged, failed, new) ranks after these


def sweepable() -> dict[str, Any]:
    """Every option a grid may name: the user options of ModelConfig and TrainConfig (name -> Field)."""
    return {f.name: f for cls in (ModelConfig, TrainConfig) for f in user_options(cls)}


def _option(name: str) -> str:
    """The field a grid's option name means (``num-hiddens`` and ``model`` are accepted too)."""
    key = name.strip().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in sweepable():
        fixed = {f.name for cls in (ModelConfig, TrainConfig) for f in fields(cls)} - set(sweepable())
        why = (f"{key} is set by the corpus, not swept" if key in fixed else
               f"there is no option {name.strip()!r}")
        raise ConfigError(f"--grid {name.strip()}: {why}; the options are those of 'rnnlab train' "
                          f"({', '.join(sorted(sweepable()))})")
    return key


def parse_values(name: str, text: str) -> tuple[Any, ...]:
    """``"64,128"`` for option ``name``: its values typed after the option's default (``lr=1`` is 1.0),
    checked against its choices; ConfigError naming the option for an empty list, a bad value or a repeat."""
    key = _option(name)
    f = sweepable()[key]
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise ConfigError(f"--grid {key}: give a comma-separated list of values, e.g. {key}="
                          f"{format_value(f.default)},…  (got {text!r})")
    try:
        values = tuple(parse_value(key, f.default, p) for p in parts)
    except ConfigError as exc:
        raise ConfigError(f"--grid {key}: {exc}") from None
    choices = f.metadata.get("choices")
    for v in values:
        if choices and v not in choices:
            raise ConfigError(f"--grid {key}: {v!r} is not one of {', '.join(choices)}")
    repeated = sorted({format_value(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigError(f"--grid {key} lists {', '.join(repeated)} more than once; each value is one run")
    return values


def parse_grid(specs: Iterable[str]) -> dict[str, tuple[Any, ...]]:
    """``["num_hiddens=64,128", "lr=0.5,1"]`` -> ``{"num_hiddens": (64, 128), "lr": (0.5, 1.0)}``."""
    grid: dict[str, tuple[Any, ...]] = {}
    for spec in specs:
        name, eq, text = spec.partition("=")
        if not eq or not name.strip():
            raise ConfigError(f"--grid takes NAME=V1,V2,… (got {spec!r}), e.g. --grid num_hiddens=64,128")
        key = _option(name)
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list all its values once: {key}=V1,V2,…")
        grid[key] = parse_values(key, text)
    if not grid:
        raise ConfigError("a sweep needs at least one --grid NAME=V1,V2,…")
    return grid


@dataclass(frozen=True)
class Point:
    """One run of a sweep: the options it changes from the base configs."""

    values: dict[str, Any]  # option -> value, e.g. {"num_hiddens": 64, "lr": 0.5}
    label: str = ""  # how the run is shown; default "num_hiddens=64 lr=0.5"
    # changes the freshly built (seeded) model before training, e.g. 8.5.2's embedding scaled down
    prepare: Callable[[Any], None] | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return self.label or " ".join(f"{k}={_shown(v)}" for k, v in self.values.items()) or "base"


def _shown(value: Any) -> str:
    """``0.5 -> '0.5'``, ``2.0 -> '2'``, ``'gru' -> 'gru'``."""
    return f"{value:g}" if isinstance(value, float) else format_value(value)


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[Point]:
    """The grid's product as points, the last option varying fastest."""
    names = list(grid)
    return [Point(dict(zip(names, combo))) for combo in itertools.product(*(grid[n] for n in names))]


def point_configs(model_cfg: ModelConfig, train_cfg: TrainConfig, point: Point) -> tuple[ModelConfig, TrainConfig]:
    """The base configs with the point's values; a ConfigError names the point when they do not fit together."""
    model_names = {f.name for f in fields(ModelConfig)}
    m = {k: v for k, v in point.values.items() if k in model_names}
    t = {k: v for k, v in point.values.items() if k not in model_names}
    unknown = sorted(set(t) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"sweep point {point.name}: there is no option {', '.join(unknown)}")
    try:
        return replace(model_cfg, **m), replace(train_cfg, **t)
    except ConfigError as exc:
        raise ConfigError(f"sweep point {point.name}: {exc}") from None


@dataclass(frozen=True)
class SweepRow:
    """One run of a sweep as its folder records it."""

    rank: int  # 1 = lowest best validation perplexity among the completed runs
    label: str  # the point, e.g. "num_hiddens=64 lr=0.5"
    values: dict[str, Any]  # the options the point set
    run: str  # the run folder's name
    status: str  # checkpoint.json's: completed | stopped | diverged | failed | new
    best_val_ppl: float | None  # lowest validation perplexity at an epoch end (None: no epoch finished)
    best_epoch: int | None  # the epoch it was reached
    train_ppl: float | None  # training perplexity of that epoch
    last_train_ppl: float | None  # of the last epoch finished
    last_val_ppl: float | None
    epochs_done: int  # epoch ends logged
    seconds: float | None = None  # training time up to the last epoch end (the trainer's elapsed_s)
    unstable: bool = False  # the saved weights are worse than twice uniform guessing

    def to_dict(self) -> dict[str, Any]:
        from engine.jsonfloat import finite_or_none

        return {k: finite_or_none(v) if isinstance(v, float) else v
                for k, v in ((f.name, getattr(self, f.name)) for f in fields(self))}


def row_of(run: Any, point: Point) -> SweepRow:
    """The row of ``point``'s run, read from its folder (unranked: rank 0)."""
    ends = [m for m in run.metrics() if m.get("epoch_end")]
    state = run.trainer_state() or {}
    scored = [(float(m["val_ppl"]), int(m["epoch"]), m) for m in ends
              if isinstance(m.get("val_ppl"), (int, float)) and math.isfinite(m["val_ppl"])]
    best = min(scored, key=lambda s: (s[0], s[1]), default=None)
    last = ends[-1] if ends else {}

    def num(x: Any) -> float | None:
        return float(x) if isinstance(x, (int, float)) else None

    return SweepRow(rank=0, label=point.name, values=dict(point.values), run=run.name,
                    status=str(state.get("status", "new")),
                    best_val_ppl=best[0] if best else None, best_epoch=best[1] if best else None,
                    train_ppl=num(best[2]["train_ppl"]) if best else None,
                    last_train_ppl=num(last.get("train_ppl")), last_val_ppl=num(last.get("val_ppl")),
                    epochs_done=len(ends), seconds=num(last.get("elapsed_s")), unstable=bool(state.get("unstable", False)))


def rank_key(row: SweepRow) -> tuple[int, float]:
    """Completed runs first, then stopped, then diverged or failed; within each, best validation perplexity."""
    ppl = row.best_val_ppl if row.best_val_ppl is not None else math.inf
    return STATUS_ORDER.get(row.status, len(STATUS_ORDER)), ppl


def rank_rows(rows: Iterable[SweepRow]) -> list[SweepRow]:
    """``rows`` sorted by ``rank_key`` (ties keep their order) and numbered from 1."""
    return [replace(r, rank=i) for i, r in enumerate(sorted(rows, key=rank_key), start=1)]


@dataclass(frozen=True)
class SweepProgress:
    """What the sweep is doing: run ``index`` (0-based) of ``total``, and the trainer's event (None: the
    run's folder was just made and training starts)."""

    index: int
    total: int
    point: Point
    run: str
    event: Any = None


@dataclass
class Sweep:
    """A sweep's outcome: its id (the runs' ``sweep`` tag), its rows ranked, and whether it was stopped."""

    id: str
    rows: list[SweepRow]
    planned: int  # points in the grid
    stopped: bool = False  # stop was set: the runs not started are missing, the one in progress is "stopped"


def new_sweep_id(prefix: str = "sweep") -> str:
    """``sweep-20261126-153012``: the tag shared by a sweep's runs."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_sweep(pipeline: Any, model_cfg: ModelConfig, train_cfg: TrainConfig, points: Sequence[Point], *,
              runs_dir: Any = None, sweep_id: str | None = None, tags: Mapping[str, str] | None = None,
              stop: threading.Event | None = None, progress: Callable[[SweepProgress], None] | None = None,
              tokenizer_settings: dict[str, Any] | None = None) -> Sweep:
    """Train one run per point (a corpus ``pipeline``, the base configs changed by each point) and rank them.

    Every point's configs are checked before the first folder is made. ``tags`` are added to each run's
    (say ``{"exercise": "8.6.2"}``). The base ``train_cfg`` must hold out validation text (``val_fraction``
    above 0): the ranking is by validation perplexity.
    """
    import torch

    from engine.events import Finished
    from engine.models.lm import build_model
    from engine.runs import create_run, open_run
    from engine.sentences import with_sentence_ends
    from engine.training import prepare_ids
    from engine.trainer import train

    if not points:
        raise ConfigError("a sweep needs at least one point")
    configs = []
    for point in points:
        m, t = point_configs(model_cfg, train_cfg, point)
        if t.val_fraction <= 0:
            raise ConfigError(f"sweep point {point.name}: val_fraction must be above 0: a sweep ranks runs by "
                              "validation perplexity, which needs held-out text")
        t = with_sentence_ends(t, pipeline.tokenizer)
        try:
            prepare_ids(pipeline, m, t)  # sizes and memory, before any folder exists
        except ConfigError as exc:
            raise ConfigError(f"sweep point {point.name}: {exc}") from None
        configs.append((m, t))
    sweep_id = sweep_id or new_sweep_id()
    rows: list[SweepRow] = []
    stopped = False
    for i, (point, (m, t)) in enumerate(zip(points, configs)):
        if stop is not None and stop.is_set():
            stopped = True
            break
        run = create_run(runs_dir, m, t, pipeline, tokenizer_settings=tokenizer_settings,
                         tags={**(tags or {}), "sweep": sweep_id, "point": point.name})
        if progress is not None:
            progress(SweepProgress(i, len(points), point, run.name))
        model = None
        if point.prepare is not None:
            torch.manual_seed(t.seed)  # the trainer's own seeding, so only the change differs
            model = build_model(m)
            point.prepare(model)
        finished: Finished | None = None
        events = train(pipeline, m, t, run=run, stop=stop, model=model)
        try:
            for event in events:
                if isinstance(event, Finished):
                    finished = event
                if progress is not None:
                    progress(SweepProgress(i, len(points), point, run.name, event))
        finally:
            events.close()  # an abort (a second Ctrl-C) lets the trainer clean up now, not at garbage collection
        rows.append(row_of(open_run(run.path), point))
        if finished is not None and finished.reason == "stopped":
            stopped = True
            break
    return Sweep(sweep_id, rank_rows(rows), len(points), stopped)
