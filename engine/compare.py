"""Comparing runs: the Runs table's columns, which of them differ, the config diff of marked runs,
and legend names built from what differs.

``RunFacts`` is what a comparison knows of one run: its summary (``engine.runs.RunSummary``), its
options flattened to one name each (``options``: ``model``, ``num_hiddens``, ``lr``, ``clip``,
``corpus``, ``tokenizer`` …) and three results read from its metrics log: the best validation
perplexity, the epoch it came at, and the tokens/s of the last epoch. ``FactsCache`` rereads a
run's log only when it has grown.

``COLUMNS`` are the table's columns after the run's number and before its name, shared by the Runs
screen and ``rnnlab runs``. ``fold(columns, facts)`` splits them into those that differ and those
equal for every listed run ("same for all: optimizer sgd, lr 1, …")::

    lr 1 and lr 3, all else equal  ->  shown: lr, best val, tok/s; folded: model rnn, size 16×1, …

``config_diff(facts)`` lists the options whose values differ (``[("lr", ["1", "3"])]``), and
``legend_names(facts)`` names each run by them: ``["#1 clip off", "#2 clip norm θ=1"]``, not
"gru 128×1" twice. Left out: reading the runs (``engine.runs``) and drawing anything.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import RunError
from engine.runs import METRICS_FILE, Run, RunSummary


def num(x: float) -> str:
    """A number as a person would type it: ``1.0 -> "1"``, ``0.001 -> "0.001"``, ``inf -> "inf"``."""
    return f"{x:g}"


def flat_options(run: Run) -> dict[str, Any]:
    """Every option of a run under one name: the model's fields (its kind as ``model``), the training
    config's, the corpus (its name, and ``mode``) and the tokenizer's (``tokenizer``,
    ``tokenizer_vocab_size``, ``min_freq``). The vocabulary's fingerprint is left out: two runs on the
    same corpus and tokenizer have the same one."""
    model = asdict(run.model_config)
    out: dict[str, Any] = {"model": model.pop("kind"), **model}
    out.update(run.train_config.to_dict())
    tok = run.config.get("tokenizer", {}) if isinstance(run.config.get("tokenizer"), dict) else {}
    out["corpus"] = run.config.get("corpus", {}).get("name", "?")
    out["mode"] = run.config.get("mode", "d2l")
    out["tokenizer"] = tok.get("kind", "?")
    out["tokenizer_vocab_size"] = tok.get("vocab_size")
    out["min_freq"] = tok.get("min_freq")
    return out


@dataclass(frozen=True)
class RunFacts:
    """One run as the comparison sees it; ``options`` is empty for a corrupt folder."""

    summary: RunSummary
    options: dict[str, Any] = field(default_factory=dict)
    best_val_ppl: float | None = None  # lowest validation perplexity at an epoch end (None: none logged)
    best_epoch: int | None = None  # the epoch of best_val_ppl
    tokens_per_s: float | None = None  # the last epoch's average throughput

    @property
    def ok(self) -> bool:
        return bool(self.options)


def log_results(records: Sequence[dict[str, Any]]) -> tuple[float | None, int | None, float | None]:
    """(best validation perplexity, its epoch, last tokens/s) from a metrics log's records; the first
    epoch wins a tie. Non-finite perplexities (a diverged epoch) are never the best."""
    best, best_epoch, speed = None, None, None
    for m in records:
        if not m.get("epoch_end"):
            continue
        v = m.get("val_ppl")
        if isinstance(v, (int, float)) and math.isfinite(v) and (best is None or v < best):
            best, best_epoch = float(v), int(m.get("epoch", 0))
        s = m.get("tokens_per_s")
        if isinstance(s, (int, float)) and math.isfinite(s):
            speed = float(s)
    return best, best_epoch, speed


def run_facts(summary: RunSummary) -> RunFacts:
    """The facts of a listed run (a corrupt or unreadable one gets its summary only)."""
    if summary.error:
        return RunFacts(summary)
    try:
        run = Run(Path(summary.path))
        return RunFacts(summary, flat_options(run), *log_results(run.metrics()))
    except RunError:
        return RunFacts(summary)


class FactsCache:
    """``run_facts`` that rereads a run's config and log only when they changed (a refreshing Runs
    screen would otherwise parse every run's whole log each time)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Any, RunFacts]] = {}

    @staticmethod
    def _stamp(path: str) -> Any:
        stamps = []
        for name in ("config.json", METRICS_FILE):
            try:
                st = os.stat(Path(path) / name)
                stamps.append((st.st_size, st.st_mtime_ns, st.st_ino))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def facts(self, summary: RunSummary) -> RunFacts:
        key = (self._stamp(summary.path), summary)
        hit = self._seen.get(summary.path)
        if hit is not None and hit[0] == key:
            return hit[1]
        facts = run_facts(summary)
        self._seen[summary.path] = (key, facts)
        return facts


# --- columns ---------------------------------------------------------------------------------------------

def si(x: float) -> str:
    """12345.6 -> '12.3k'; 950 -> '950'."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g}{suffix}"
    return f"{x:.3g}"


def _clip(o: dict[str, Any]) -> str:
    return "off" if o["clip"] == "off" else f"{o['clip']} θ={num(o['clip_theta'])}"


def _encoding(o: dict[str, Any]) -> str:
    return "onehot" if o["encoding"] == "onehot" else f"{o['encoding']} {o['embed_size']}"


def _optimizer(o: dict[str, Any]) -> str:
    return o["optimizer"] + (f" λ={num(o['weight_decay'])}" if o.get("weight_decay") else "")


def _sampler(o: dict[str, Any]) -> str:
    return o["sampler"] + (f" stride {o['stride']}" if o["sampler"] == "sliding" and o.get("stride") else "")


def _truncation(o: dict[str, Any]) -> str:
    return o["truncation"] + (f" p={num(o['truncation_p'])}" if o["truncation"] == "random" else "")


def _tokenizer(o: dict[str, Any]) -> str:
    kind = o["tokenizer"]
    subword = kind not in ("char", "word") and o.get("tokenizer_vocab_size")
    return kind + (f" {o['tokenizer_vocab_size']}" if subword else "") + (
        f" min_freq {o['min_freq']}" if o.get("min_freq") else "")


def _model(o: dict[str, Any]) -> str:
    """The cell's kind, with its activation and init when they are not the defaults: "rnn relu identity"."""
    return o["model"] + (f" {o['activation']}" if o.get("activation", "tanh") != "tanh" else "") + (
        f" {o['init']}" if o.get("init", "default") != "default" else "")


def _corpus(o: dict[str, Any]) -> str:
    return o["corpus"] + ("" if o.get("mode", "d2l") == "d2l" else f" {o['mode']}")


def _best(f: RunFacts) -> str:
    return "–" if f.best_val_ppl is None else f"{f.best_val_ppl:.3g} @{f.best_epoch}"


def _status(f: RunFacts) -> str:
    s = f.summary
    if s.error:
        return "corrupt"
    return f"{s.status} unstable" if s.unstable else s.status


@dataclass(frozen=True)
class Column:
    """One column of the Runs table."""

    key: str
    header: str
    cell: Callable[[RunFacts], str]  # the cell's text (a corrupt run gets "?" for an option column)
    option: bool  # made of the run's options: legends name runs by these
    covers: tuple[str, ...] = ()  # the options (``flat_options`` names) the cell shows
    foldable: bool = True  # may fold away when equal for all
    name: Callable[[str], str] | None = None  # the cell as a legend names it (default "header cell")

    def text(self, facts: RunFacts) -> str:
        if self.option and not facts.ok:
            return "?"
        return self.cell(facts)

    def legend(self, facts: RunFacts) -> str:
        cell = self.text(facts)
        return self.name(cell) if self.name else f"{self.header} {cell}"


def _opt(fn: Callable[[dict[str, Any]], str]) -> Callable[[RunFacts], str]:
    return lambda f: fn(f.options)


def _speed(f: RunFacts) -> str:
    """The last epoch's tokens/s over all processes; trained by several, each one's too: "1.2M (2×612k)"."""
    if f.tokens_per_s is None:
        return "–"
    n = f.options.get("world_size", 1) if f.ok else 1
    return si(f.tokens_per_s) + (f" ({n}×{si(f.tokens_per_s / n)})" if n > 1 else "")


def _as_is(cell: str) -> str:
    return cell


COLUMNS: tuple[Column, ...] = (
    Column("model", "model", _opt(_model), True, ("model", "activation", "init"), name=_as_is),
    Column("size", "hidden×layers", _opt(lambda o: f"{o['num_hiddens']}×{o['num_layers']}"), True,
           ("num_hiddens", "num_layers"), name=_as_is),
    Column("encoding", "encoding", _opt(_encoding), True, ("encoding", "embed_size"), name=_as_is),
    Column("corpus", "corpus", _opt(_corpus), True, ("corpus", "mode"), name=_as_is),
    Column("tokenizer", "tokenizer", _opt(_tokenizer), True,
           ("tokenizer", "tokenizer_vocab_size", "min_freq", "vocab_size"), name=_as_is),
    Column("optimizer", "optimizer", _opt(_optimizer), True, ("optimizer", "weight_decay"), name=_as_is),
    Column("lr", "lr", _opt(lambda o: num(o["lr"])), True, ("lr",)),
    Column("clip", "clip", _opt(_clip), True, ("clip", "clip_theta")),
    Column("sampler", "sampler", _opt(_sampler), True, ("sampler", "stride")),
    Column("truncation", "truncation", _opt(_truncation), True, ("truncation", "truncation_p")),
    Column("tokens", "tokens", _opt(lambda o: f"{o['max_tokens']:,}" if o["max_tokens"] else "all"), True,
           ("max_tokens",)),
    Column("ranks", "ranks", _opt(lambda o: str(o.get("world_size", 1))), True, ("world_size",)),
    Column("epochs", "epochs", lambda f: f"{f.summary.epochs_done}/{f.summary.epochs}", False),
    Column("best", "best val", _best, False, foldable=False),
    Column("status", "status", _status, False),
    Column("device", "device", lambda f: f.summary.device, False),
    Column("speed", "tok/s", _speed, False),
    Column("tags", "tags", lambda f: " ".join(f"{k}={v}" for k, v in sorted(f.summary.tags.items())), True,
           name=_as_is),
)
COVERED = frozenset(k for c in COLUMNS for k in c.covers)
# Options a legend never names: they change how a run is logged or run, not what it learns.
QUIET = frozenset({"device", "threads", "log_interval_s", "log_every_steps", "checkpoint_interval_s",
                   "sample_every", "sample_prefix", "sample_len", "sample_alpha", "spike_factor", "bptt_limit_mb",
                   "sentence_end_ids"})


@dataclass(frozen=True)
class Folded:
    """``fold``'s answer: the columns to show, and (column, the one value) for those folded away."""

    shown: list[Column]
    same: list[tuple[Column, str]]

    def same_line(self) -> str:
        """``"same for all: rnn, 16×1, sgd, lr 1, clip norm θ=1, …"``, each value as a legend names it
        (empty when nothing folded; an empty value, such as no tags, is left out)."""
        parts = [c.name(v) if c.name else f"{c.header} {v}" for c, v in self.same if v]
        return "same for all: " + ", ".join(parts) if parts else ""


def fold(columns: Sequence[Column], facts: Sequence[RunFacts]) -> Folded:
    """Fold away each foldable column whose cell is the same for every readable run (corrupt folders
    have no options to compare). With fewer than two readable runs nothing folds: there is nothing
    to compare."""
    readable = [f for f in facts if f.ok]
    shown, same = [], []
    for col in columns:
        cells = {col.text(f) for f in readable}
        if col.foldable and len(readable) >= 2 and len(cells) == 1:
            same.append((col, cells.pop()))
        else:
            shown.append(col)
    return Folded(shown, same)


def fmt_value(v: Any) -> str:
    """An option's value in a diff: numbers as typed, lists joined, None as a dash."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return num(v)
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v)) or "[]"
    return str(v)


def config_diff(facts: Sequence[RunFacts]) -> list[tuple[str, list[str]]]:
    """The options whose values are not the same in every run, in the config's order, with each run's
    value: ``[("lr", ["1", "3"]), ("clip", ["norm", "off"])]``. An option a run lacks (saved by an
    older rnnlab) shows as "–"."""
    keys: list[str] = []
    for f in facts:
        keys += [k for k in f.options if k not in keys]
    out = []
    for k in keys:
        values = [fmt_value(f.options.get(k)) for f in facts]
        if len(set(values)) > 1:
            out.append((k, values))
    return out


def legend_names(facts: Sequence[RunFacts], numbers: Sequence[int], max_parts: int = 3) -> list[str]:
    """Each run's legend name: its number and the options in which the runs differ, as the table
    shows them (``"#1 clip off"``, ``"#2 clip norm θ=1"``), then differing options no column shows
    (``"seed 3"``), at most ``max_parts``. When nothing differs (a single run), the model and size:
    ``"#1 gru 128×1"``."""
    readable = [f for f in facts if f.ok]
    differing = [c for c in COLUMNS if c.option and len({c.text(f) for f in readable}) > 1] if len(readable) > 1 else []
    extra = [k for k, _ in config_diff(readable) if k not in COVERED and k not in QUIET] if len(readable) > 1 else []
    names = []
    for f, n in zip(facts, numbers):
        if not f.ok:
            names.append(f"#{n} {f.summary.name}")
            continue
        parts = [c.legend(f) for c in differing] + [f"{k} {fmt_value(f.options.get(k))}" for k in extra]
        parts = [p for p in parts if p]  # a run without tags, beside a tagged one
        if not parts:
            parts = [f"{f.options['model']} {f.options['num_hiddens']}×{f.options['num_layers']}"]
        names.append(f"#{n} " + " · ".join(parts[:max_parts]))
    return names


def default_options() -> dict[str, Any]:
    """``flat_options`` of a run made with every default (the corpus and tokenizer as ``rnnlab train``'s)."""
    from engine.config import ModelConfig, TrainConfig

    model = asdict(ModelConfig())
    out: dict[str, Any] = {"model": model.pop("kind"), **model, **TrainConfig().to_dict()}
    out.update(corpus="timemachine", mode="d2l", tokenizer="char", tokenizer_vocab_size=None, min_freq=0)
    return out


def non_defaults(facts: RunFacts) -> list[tuple[str, str]]:
    """The run's options that are not their defaults, as (name, value): ``[("lr", "3"), ("clip", "off")]``.
    The vocabulary size (the corpus sets it) and a char or word tokenizer's unused target size are left out."""
    defaults = default_options()
    skip = {"vocab_size", "sentence_end_ids"} | (
        {"tokenizer_vocab_size"} if facts.options.get("tokenizer") in ("char", "word") else set())
    return [(k, fmt_value(v)) for k, v in facts.options.items()
            if k not in skip and fmt_value(v) != fmt_value(defaults.get(k))]
