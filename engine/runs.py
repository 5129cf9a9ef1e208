"""Run folders: one per training run, under ``engine.paths.runs_dir()``.

A run folder holds everything needed to resume training or generate text::

    20261126-153012-gru-timemachine/
      config.json          model and train configs, corpus name/path, mode, tokenizer settings
      tokenizer.json       the fitted tokenizer (engine.tokenizers.load_tokenizer)
      metrics.jsonl        one line per Progress event
      events.jsonl         Spike / Diverged / Checkpoint / Finished events
      samples.log          one line per Sample event
      model.safetensors, optimizer.safetensors, checkpoint.json   (engine.checkpoint)

Whole files are written atomically; the logs are appended line by line (a
resumed run first drops lines past its checkpoint). A missing or corrupt folder
raises ``RunError`` with the path and what to do. Left out: comparing runs and
pruning old ones (``delete_run`` removes one folder).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine import checkpoint, paths
from engine.errors import ConfigError, RunError, RunNotFoundError
from engine.events import Event, Progress, Sample
from engine.models import ModelConfig, RNNLM, build_model
from engine.training import TrainConfig, prepare_ids, resolve_device

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
METRICS_FILE = "metrics.jsonl"
EVENTS_FILE = "events.jsonl"
SAMPLES_FILE = "samples.log"


@dataclass(frozen=True)
class RunSummary:
    """One row of ``rnnlab runs``."""

    name: str  # folder name
    path: str  # absolute folder path
    corpus: str  # corpus name
    model: str  # e.g. "gru 256x1"
    epochs_done: int  # epochs in the latest checkpoint (0: none yet)
    epochs: int  # epochs configured
    train_ppl: float | None  # training perplexity at the checkpoint
    val_ppl: float | None  # validation perplexity at the checkpoint
    device: str  # device it trained on
    created: str  # creation time, ISO 8601
    status: str  # new | running | completed | stopped | diverged | corrupt
    error: str | None = None  # why the folder is unreadable (status == "corrupt")
    unstable: bool = False  # the saved weights' perplexity is worse than guessing uniformly (> vocab size)


class Run:
    """A run folder; ``open_run`` checks it, ``create_run`` makes one."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        cfg_path = self.path / CONFIG_FILE
        if not self.path.is_dir():
            raise RunNotFoundError(f"run folder {self.path} does not exist; `rnnlab runs` lists the runs")
        try:
            self.config: dict[str, Any] = json.loads(cfg_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"{cfg_path} is missing: {self.path} is not a run folder (or is corrupt)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunError(f"{cfg_path} is not valid JSON ({exc}); the run is corrupt") from None
        try:
            self.model_config = ModelConfig(**self.config["model"])
            self.train_config = TrainConfig.from_dict(self.config["train"])
        except (KeyError, TypeError, ConfigError) as exc:
            raise RunError(f"{cfg_path} does not describe a model and training config ({exc}); the run is corrupt") from None
        self._tokenizer: Any = None

    @property
    def name(self) -> str:
        return self.path.name

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def tokenizer(self) -> Any:
        """The fitted tokenizer saved with the run."""
        if self._tokenizer is None:
            from engine.tokenizers import load_tokenizer

            path = self.path / TOKENIZER_FILE
            try:
                self._tokenizer = load_tokenizer(json.loads(path.read_text(encoding="utf-8")))
            except FileNotFoundError:
                raise RunError(f"{path} is missing; the run is corrupt") from None
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise RunError(f"{path} cannot be read ({exc}); the run is corrupt") from None
        return self._tokenizer

    def save_train_config(self, cfg: TrainConfig) -> None:
        """Record changed training options (a resume with more epochs or another lr)."""
        self.config["train"] = cfg.to_dict()
        checkpoint.atomic_write_json(self.path / CONFIG_FILE, self.config)
        self.train_config = cfg

    # --- checkpoints -------------------------------------------------------
    def has_checkpoint(self) -> bool:
        return checkpoint.has_checkpoint(self.path)

    def trainer_state(self) -> dict[str, Any] | None:
        """checkpoint.json (epoch, step, perplexities, status, ...) or None before the first checkpoint."""
        return checkpoint.load_trainer_state(self.path) if self.has_checkpoint() else None

    def save_checkpoint(self, model_state: Any, optimizer_state: Any, trainer_state: dict[str, Any],
                        rng_state: torch.Tensor | None = None) -> None:
        checkpoint.save_checkpoint(self.path, model_state, optimizer_state, trainer_state, rng_state)

    def load_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any], torch.Tensor | None]:
        return checkpoint.load_checkpoint(self.path)

    def load_model(self, device: str | torch.device = "cpu") -> RNNLM:
        """The model with its latest weights (saved on any device, loaded via the CPU), in eval mode."""
        model = build_model(self.model_config)
        state = checkpoint.load_model_state(self.path)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise RunError(f"{self.path / checkpoint.MODEL_FILE} does not match config.json's model ({exc})") from None
        return model.to(device).eval()

    # --- logs --------------------------------------------------------------
    def log_event(self, event: Event) -> None:
        """Append a Progress to metrics.jsonl, a Sample to samples.log, anything else to events.jsonl."""
        if isinstance(event, Sample):
            line = f"epoch {event.epoch}: {event.text!r}\n"
            name = SAMPLES_FILE
        else:
            line = json.dumps(event.to_dict()) + "\n"
            name = METRICS_FILE if isinstance(event, Progress) else EVENTS_FILE
        with open(self.path / name, "a", encoding="utf-8") as f:
            f.write(line)

    def _read_jsonl(self, name: str) -> list[dict[str, Any]]:
        path = self.path / name
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line torn by a crash: skip it
        return out

    def metrics(self) -> list[dict[str, Any]]:
        """Every logged Progress event as a dict, oldest first."""
        return self._read_jsonl(METRICS_FILE)

    def events(self) -> list[dict[str, Any]]:
        return self._read_jsonl(EVENTS_FILE)

    def truncate_logs(self, step: int, epoch: int) -> None:
        """Drop what was logged after the checkpoint a resume starts from: metric
        lines past ``step``, events and samples of epochs past ``epoch``."""
        kept = [m for m in self.metrics() if m.get("step", 0) <= step]
        checkpoint.atomic_write_bytes(self.path / METRICS_FILE, "".join(json.dumps(m) + "\n" for m in kept).encode())
        kept = [e for e in self.events() if e.get("epoch", 0) <= epoch]
        checkpoint.atomic_write_bytes(self.path / EVENTS_FILE, "".join(json.dumps(e) + "\n" for e in kept).encode())
        samples = self.path / SAMPLES_FILE
        if samples.exists():
            lines = samples.read_text(encoding="utf-8").splitlines(keepends=True)
            keep = [ln for ln in lines if (m := re.match(r"epoch (\d+):", ln)) is None or int(m.group(1)) <= epoch]
            checkpoint.atomic_write_bytes(samples, "".join(keep).encode("utf-8"))

    # --- data --------------------------------------------------------------
    def corpus_ids(self) -> np.ndarray:
        """Re-read the corpus and encode it with the saved tokenizer (to resume training)."""
        from engine.corpus import load_corpus
        from engine.tokenizers import corpus_lines

        corpus = self.config.get("corpus", {})
        where = corpus.get("path") if corpus.get("path") and Path(corpus["path"]).is_file() else corpus.get("name")
        if not where:
            raise RunError(f"{self.path / CONFIG_FILE} names no corpus; cannot resume")
        text = load_corpus(where).text
        lines = corpus_lines(text, self.config.get("mode", "d2l"), self.tokenizer.kind)
        return np.asarray(self.tokenizer.encode_corpus(lines))

    def summary(self) -> RunSummary:
        st = self.trainer_state() or {}
        m = self.model_config
        return RunSummary(
            name=self.name, path=str(self.path.resolve()), corpus=self.config.get("corpus", {}).get("name", "?"),
            model=f"{m.kind} {m.num_hiddens}x{m.num_layers}", epochs_done=int(st.get("epoch", 0)),
            epochs=self.train_config.epochs, train_ppl=st.get("train_ppl"), val_ppl=st.get("val_ppl"),
            device=st.get("device", self.train_config.device), created=self.config.get("created", ""),
            status=st.get("status", "new"), unstable=bool(st.get("unstable", False)),
        )


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")[:40] or "corpus"


def create_run(runs_dir: Path | str | None, model_cfg: ModelConfig, train_cfg: TrainConfig, pipeline: Any,
               *, tokenizer_settings: dict[str, Any] | None = None) -> Run:
    """A new folder ``YYYYmmdd-HHMMSS-<model>-<corpus>`` (``-2``, ``-3`` … if taken) with config and tokenizer.

    The configuration is checked against the corpus and the machine first
    (sizes, device), so a run that could not train leaves no folder behind.
    """
    prepare_ids(pipeline, model_cfg, train_cfg)
    resolve_device(train_cfg.device)
    root = _root(runs_dir)
    root.mkdir(parents=True, exist_ok=True)
    corpus = pipeline.corpus
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{model_cfg.kind}-{_slug(corpus.name)}"
    for i in range(1, 1000):
        path = root / (base if i == 1 else f"{base}-{i}")
        try:
            path.mkdir()
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover
        raise RunError(f"could not find a free run name like {base} in {root}")
    tok = pipeline.tokenizer
    config = {
        "model": asdict(model_cfg),
        "train": train_cfg.to_dict(),
        "corpus": {"name": corpus.name, "path": str(Path(corpus.path).resolve())},
        "mode": pipeline.mode,
        # The fitted tokenizer's own settings win over what a caller believes they were.
        "tokenizer": {**(tokenizer_settings or {}), "kind": tok.kind, "vocab_len": len(tok.vocab),
                      "vocab_size": getattr(tok, "vocab_size", None), "min_freq": getattr(tok, "min_freq", None)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    checkpoint.atomic_write_json(path / TOKENIZER_FILE, tok.to_dict())
    checkpoint.atomic_write_json(path / CONFIG_FILE, config)
    return Run(path)


def _root(runs_dir: Path | str | None) -> Path:
    return Path(runs_dir) if runs_dir is not None else paths.runs_dir()


def _find(path_or_name: Path | str, runs_dir: Path | str | None) -> Path:
    """A run folder given as a path or as a name under ``runs_dir``; RunNotFoundError if neither."""
    p = Path(path_or_name)
    path = p if p.is_dir() else _root(runs_dir) / str(path_or_name)
    if not path.is_dir():
        raise RunNotFoundError(f"no run named {str(path_or_name)!r} in {_root(runs_dir)}; `rnnlab runs` lists the runs")
    return path


def open_run(path_or_name: Path | str, runs_dir: Path | str | None = None) -> Run:
    """A run by folder path or by name under ``runs_dir`` (default: ``engine.paths.runs_dir()``)."""
    return Run(_find(path_or_name, runs_dir))


def list_runs(runs_dir: Path | str | None = None) -> list[RunSummary]:
    """Summaries of every run folder, newest first; unreadable folders are listed as corrupt."""
    root = _root(runs_dir)
    if not root.is_dir():
        return []
    out = []
    for path in sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True):
        try:
            out.append(Run(path).summary())
        except RunError as exc:
            out.append(RunSummary(path.name, str(path.resolve()), "?", "?", 0, 0, None, None, "?", "", "corrupt", str(exc)))
    return out


def delete_run(path_or_name: Path | str, runs_dir: Path | str | None = None) -> None:
    """Remove a run folder; refuses folders without a config.json (not a run)."""
    path = _find(path_or_name, runs_dir)
    if not (path / CONFIG_FILE).is_file():
        raise RunError(f"{path} is not a run folder (no {CONFIG_FILE}); nothing deleted")
    shutil.rmtree(path)
