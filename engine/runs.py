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
raises ``RunError`` with the path and what to do; a write that fails (no
permission, a read-only or full disk) raises ``WriteError`` (a ``RunError``)
whose advice follows the errno, and never leaves a half-written file.

Damaged log lines: ``metrics()`` and ``events()`` skip any line that is not a
UTF-8 JSON object (``engine.runlog``). ``Run.warnings`` then holds one line per
damaged file, e.g. ``".../metrics.jsonl: skipped 2 damaged lines (3, 17): not
UTF-8 JSON records"``, for the caller to show; ``check_logs()`` reads both logs
and returns them. A resume rewrites the logs with the good lines only.

Vocabulary fingerprint: ``vocab_fingerprint`` (the size and the sha256 of the
token list in id order) is recorded in config.json when the run is created and
in model.safetensors' metadata at every checkpoint. ``Run.tokenizer`` (and so
``load_model``, generation and resuming) refuses a tokenizer.json that does not
match, naming both files; runs saved before fingerprints are checked by size.

Temp files: a process killed mid-save leaves ``.<file>.*.tmp`` files; they are
removed when training on the run starts or resumes (``begin_training``, called
by the trainer, the run's one writer) — not when a run is merely opened, since
the TUI opens the run it is training. A run that fails or is interrupted before
its first checkpoint with nothing logged is removed (``discard_if_unused``); an
out-of-memory failure marks the checkpoint "failed" (``mark_failed``).

Live runs: the process training a run holds its ``engine.live.Lease`` (train.lock, live.json
with a heartbeat). ``Run.status()`` says ``running`` while that process lives (before its
first checkpoint too) and ``interrupted`` when it is gone without a final status;
``summary()`` of a running run reads its epoch and perplexities from the log's tail, which is
ahead of the checkpoint. A live run is never deleted or discarded. Left out: comparing runs
and pruning old ones (``delete_run`` removes one folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine import checkpoint, paths, runlog
from engine.config import ModelConfig, TrainConfig
from engine.live import LIVE_FILE, LOCK_FILE, Live, progress_tail, read_live
from engine.errors import ConfigError, RunError, RunNotFoundError, write_error
from engine.events import Event, Progress, Sample
from engine.models import RNNLM, build_model
from engine.training import prepare_ids, resolve_device

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
METRICS_FILE = "metrics.jsonl"
EVENTS_FILE = "events.jsonl"
SAMPLES_FILE = "samples.log"
LOG_FILES = (METRICS_FILE, EVENTS_FILE, SAMPLES_FILE)


def vocab_fingerprint(tokens: Sequence[str]) -> dict[str, Any]:
    """The vocabulary's size and the sha256 of its tokens in id order, JSON-encoded.

    >>> fp = vocab_fingerprint(["<unk>", "a"])  # sha256 of the bytes '["<unk>", "a"]'
    >>> fp["vocab_len"], fp["vocab_sha256"][:12]
    (2, '45c9880e277a')
    """
    return {"vocab_len": len(tokens), "vocab_sha256": hashlib.sha256(json.dumps(list(tokens)).encode()).hexdigest()}


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
    status: str  # new | running | interrupted | completed | stopped | diverged | failed (out of memory) | corrupt
    error: str | None = None  # why the folder is unreadable (status == "corrupt")
    unstable: bool = False  # the saved weights' perplexity is over twice that of uniform guessing
    tags: dict[str, str] = field(default_factory=dict)  # what made the run: {"exercise": "8.6.1"}, {"sweep": …}
    live: str = ""  # the process training it (or that trained it, when interrupted): pid, host, heartbeat


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
        except OSError as exc:
            raise RunError(f"{cfg_path} cannot be read ({exc.strerror or exc}); check the folder's permissions") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunError(f"{cfg_path} is not valid JSON ({exc}); the run is corrupt") from None
        try:
            self.model_config = ModelConfig(**self.config["model"])
            self.train_config = TrainConfig.from_dict(self.config["train"])
        except (KeyError, TypeError, ConfigError) as exc:
            raise RunError(f"{cfg_path} does not describe a model and training config ({exc}); the run is corrupt") from None
        self._tokenizer: Any = None
        self._fingerprint: dict[str, Any] | None = None
        self._damaged: dict[str, list[int]] = {}  # log file -> numbers of the lines skipped at the last read

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def tags(self) -> dict[str, str]:
        """What made the run, e.g. ``{"exercise": "8.6.1"}`` (``create_run``'s ``tags``); {} for a plain run."""
        tags = self.config.get("tags")
        return {str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {}

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def tokenizer(self) -> Any:
        """The fitted tokenizer saved with the run, checked against the vocabulary the weights were trained with."""
        if self._tokenizer is None:
            from engine.tokenizers import load_tokenizer

            path = self.path / TOKENIZER_FILE
            try:
                tok = load_tokenizer(json.loads(path.read_text(encoding="utf-8")))
            except FileNotFoundError:
                raise RunError(f"{path} is missing; the run is corrupt") from None
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise RunError(f"{path} cannot be read ({exc}); the run is corrupt") from None
            fingerprint = vocab_fingerprint(tok.vocab.idx_to_token)
            self._check_vocab(fingerprint)
            self._tokenizer, self._fingerprint = tok, fingerprint
        return self._tokenizer

    def _trained_vocab(self) -> tuple[dict[str, Any] | None, str]:
        """(fingerprint, file it comes from): the weights' metadata, else config.json's; None for older runs."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(self.path / checkpoint.MODEL_FILE), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
            if "vocab_sha256" in meta:
                return {"vocab_len": int(meta["vocab_len"]), "vocab_sha256": meta["vocab_sha256"]}, checkpoint.MODEL_FILE
        except (OSError, SafetensorError, ValueError, KeyError):
            pass  # no weights yet (or unreadable ones: load_model says so)
        tok = self.config.get("tokenizer", {})
        if isinstance(tok, dict) and "vocab_sha256" in tok:
            return {"vocab_len": tok.get("vocab_len"), "vocab_sha256": tok["vocab_sha256"]}, CONFIG_FILE
        return None, ""

    def _check_vocab(self, have: dict[str, Any]) -> None:
        """RunError when tokenizer.json is not the vocabulary the model was made for."""
        want, where = self._trained_vocab()
        advice = "the tokenizer does not belong to this model; restore the run's tokenizer.json or start a new run"
        if want is not None and want != have:
            verb = "was trained with" if where == checkpoint.MODEL_FILE else "was created with"
            raise RunError(f"{self.path}: {TOKENIZER_FILE} has {have['vocab_len']} tokens (sha256 "
                           f"{have['vocab_sha256'][:12]}) but {where} {verb} {want['vocab_len']} tokens (sha256 "
                           f"{str(want['vocab_sha256'])[:12]}): {advice}")
        if have["vocab_len"] != self.model_config.vocab_size:
            raise RunError(f"{self.path}: {TOKENIZER_FILE} has {have['vocab_len']} tokens but the model in "
                           f"{CONFIG_FILE} has vocab_size {self.model_config.vocab_size}: {advice}")

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
        """Save a checkpoint whose weights carry the vocabulary's fingerprint (WriteError when it cannot be written)."""
        self.tokenizer  # loads and checks tokenizer.json once, setting self._fingerprint
        assert self._fingerprint is not None
        meta = {k: str(v) for k, v in self._fingerprint.items()}
        checkpoint.save_checkpoint(self.path, model_state, optimizer_state, trainer_state, rng_state, metadata=meta)

    def mark_failed(self, reason: str) -> bool:
        """Record in checkpoint.json that training failed (status "failed", ``error``), keeping the saved
        weights; False when there is no checkpoint or it cannot be rewritten."""
        try:
            doc = self.trainer_state()
            if doc is None:
                return False
            checkpoint.atomic_write_json(self.path / checkpoint.CHECKPOINT_FILE,
                                         {**doc, "status": "failed", "error": reason})
        except RunError:
            return False
        return True

    def begin_training(self) -> list[str]:
        """Called by the trainer, the run's one writer, before it writes: delete the temp files a killed save
        left (their names are returned), and drop the logs of an attempt that never reached a checkpoint
        (training starts again from step 0)."""
        removed = checkpoint.remove_temp_files(self.path)
        if not self.has_checkpoint() and any(
                (self.path / n).is_file() and (self.path / n).stat().st_size for n in LOG_FILES):
            self.truncate_logs(0, 0)
        return removed

    def discard_if_unused(self) -> bool:
        """Delete the folder if training never got anywhere: no checkpoint, nothing logged, no other file."""
        try:
            names = {p.name for p in self.path.iterdir()
                     if not (p.name.startswith(".") and p.name.endswith(".tmp"))}
            live = self.live()
            if live is not None and live.alive and live.pid != os.getpid():  # another process trains it now
                return False
            if self.has_checkpoint() or names - {CONFIG_FILE, TOKENIZER_FILE, LOCK_FILE, LIVE_FILE, *LOG_FILES}:
                return False
            if any((self.path / n).stat().st_size > 0 for n in LOG_FILES if n in names):
                return False
            shutil.rmtree(self.path)
        except OSError:
            return False
        return True

    def load_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any], torch.Tensor | None]:
        return checkpoint.load_checkpoint(self.path)

    def load_model(self, device: str | torch.device = "cpu") -> RNNLM:
        """The model with its latest weights (saved on any device, loaded via the CPU), in eval mode.

        The run's tokenizer.json is checked against the weights first (RunError when it does not belong)."""
        self.tokenizer
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
        runlog.append_line(self.path / name, line)

    def _read_jsonl(self, name: str) -> list[dict[str, Any]]:
        """The log's records; damaged lines are skipped and noted for ``warnings``."""
        records, self._damaged[name] = runlog.read_jsonl(self.path / name)
        return records

    @property
    def warnings(self) -> list[str]:
        """One line per log file whose last read skipped damaged lines (empty when all were good)."""
        return [runlog.damage_warning(self.path / name, self._damaged[name])
                for name in (METRICS_FILE, EVENTS_FILE) if self._damaged.get(name)]

    def check_logs(self) -> list[str]:
        """Read both logs and return ``warnings`` (what a resume or the Runs screen would skip)."""
        self.metrics()
        self.events()
        return self.warnings

    def metrics(self) -> list[dict[str, Any]]:
        """Every logged Progress event as a dict, oldest first."""
        return self._read_jsonl(METRICS_FILE)

    def events(self) -> list[dict[str, Any]]:
        return self._read_jsonl(EVENTS_FILE)

    def truncate_logs(self, step: int, epoch: int) -> None:
        """Drop what was logged after the checkpoint a resume starts from: metric
        lines past ``step``, events and samples of epochs past ``epoch``."""
        runlog.rewrite_jsonl(self.path / METRICS_FILE, [m for m in self.metrics() if m.get("step", 0) <= step])
        runlog.rewrite_jsonl(self.path / EVENTS_FILE, [e for e in self.events() if e.get("epoch", 0) <= epoch])
        runlog.truncate_samples(self.path / SAMPLES_FILE, epoch)

    # --- data --------------------------------------------------------------
    def corpus_ids(self) -> np.ndarray:
        """The corpus's ids under the saved tokenizer (to resume training): a big corpus's straight from the
        token cache (``engine.token_cache``: a memory map, the text not even read), else the corpus re-read
        and encoded (into the cache when it is big)."""
        from engine import token_cache
        from engine.corpus import corpus_file, load_corpus
        from engine.pipeline import corpus_chunks

        corpus = self.config.get("corpus", {})
        where = corpus.get("path") if corpus.get("path") and Path(corpus["path"]).is_file() else corpus.get("name")
        if not where:
            raise RunError(f"{self.path / CONFIG_FILE} names no corpus; cannot resume")
        mode, tok = self.config.get("mode", "d2l"), self.tokenizer
        cached = token_cache.lookup(corpus_file(where), mode, tok)
        if cached is not None:
            return cached
        loaded = load_corpus(where)
        text = loaded.text

        def chunks() -> Iterator[list[str]]:
            # A chunk of lines at a time, as build_pipeline did: a big corpus's lines never all exist.
            return corpus_chunks(text, mode, tok.kind)

        cache = token_cache.for_file(loaded.path, len(text), mode, tok)
        return cache.encode(chunks)[0] if cache is not None else tok.encode_chunks(chunks(), size_hint=len(text))

    def live(self) -> Live | None:
        """Who trains the run now (``engine.live``): None when nobody does or it ended cleanly."""
        return read_live(self.path)

    def status(self) -> str:
        """The checkpoint's status, corrected by what is known now: ``running`` while a live process trains
        it (before its first checkpoint too), ``interrupted`` when the process that trained it is gone
        without writing a final status (killed, or its machine went down)."""
        live = self.live()
        if live is not None and live.alive:
            return "running"
        st = self.trainer_state() or {}
        status = st.get("status", "new")
        if live is not None or status == "running":  # a heartbeat gone stale, or a mid-run checkpoint left
            return "interrupted"
        return status

    def summary(self) -> RunSummary:
        st = self.trainer_state() or {}
        m = self.model_config
        status, live = self.status(), self.live()
        epochs_done, train_ppl, val_ppl = int(st.get("epoch", 0)), st.get("train_ppl"), st.get("val_ppl")
        if status == "running":  # the log is ahead of the last checkpoint
            last, last_end = progress_tail(self.path, METRICS_FILE)
            if last_end is not None:
                epochs_done, val_ppl = max(epochs_done, int(last_end.get("epoch", 0))), last_end.get("val_ppl")
            if last is not None:
                train_ppl = last.get("train_ppl")
        return RunSummary(
            name=self.name, path=str(self.path.resolve()), corpus=self.config.get("corpus", {}).get("name", "?"),
            model=f"{m.kind} {m.num_hiddens}x{m.num_layers}", epochs_done=epochs_done,
            epochs=self.train_config.epochs, train_ppl=train_ppl, val_ppl=val_ppl,
            # while it trains, where it trains now (a resume may have moved it; before the first checkpoint the
            # config's "auto" is all the checkpoint could say)
            device=(live.device if status == "running" and live is not None and live.device
                    else st.get("device", self.train_config.device)), created=self.config.get("created", ""),
            status=status, unstable=bool(st.get("unstable", False)), tags=self.tags,
            live=live.describe() if live is not None else "",
        )


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")[:40] or "corpus"


def create_run(runs_dir: Path | str | None, model_cfg: ModelConfig, train_cfg: TrainConfig, pipeline: Any,
               *, tokenizer_settings: dict[str, Any] | None = None, tags: dict[str, str] | None = None) -> Run:
    """A new folder ``YYYYmmdd-HHMMSS-<model>-<corpus>`` (``-2``, ``-3`` … if taken) with config and tokenizer.

    ``tags`` (say ``{"exercise": "8.6.1"}`` or ``{"sweep": "…"}``) are kept in config.json and shown
    with the run, so the runs an exercise or a sweep made can be found and overlaid together.

    The configuration is checked against the corpus and the machine first
    (sizes, device), so a run that could not train leaves no folder behind.
    """
    prepare_ids(pipeline, model_cfg, train_cfg)  # sizes, memory
    resolve_device(train_cfg.device)
    root = _root(runs_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, root, "no run was created", action="create") from None
    corpus = pipeline.corpus
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{model_cfg.kind}-{_slug(corpus.name)}"
    for i in range(1, 1000):
        path = root / (base if i == 1 else f"{base}-{i}")
        try:
            path.mkdir()
            break
        except FileExistsError:
            continue
        except OSError as exc:
            raise write_error(exc, path, "no run was created", action="create") from None
    else:  # pragma: no cover
        raise RunError(f"could not find a free run name like {base} in {root}")
    tok = pipeline.tokenizer
    config = {
        "model": asdict(model_cfg),
        "train": train_cfg.to_dict(),
        "corpus": {"name": corpus.name, "path": str(Path(corpus.path).resolve())},
        "mode": pipeline.mode,
        # The fitted tokenizer's own settings win over what a caller believes they were.
        "tokenizer": {**(tokenizer_settings or {}), "kind": tok.kind, "vocab_size": getattr(tok, "vocab_size", None),
                      "min_freq": getattr(tok, "min_freq", None), **vocab_fingerprint(tok.vocab.idx_to_token)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if tags:
        config["tags"] = {str(k): str(v) for k, v in tags.items()}
    try:
        checkpoint.atomic_write_json(path / TOKENIZER_FILE, tok.to_dict())
        checkpoint.atomic_write_json(path / CONFIG_FILE, config)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)  # no half-made run folder
        raise
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
    try:
        paths_ = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True)
    except OSError as exc:
        raise RunError(f"cannot list the runs folder {root} ({exc.strerror or exc}); check its permissions "
                       "or choose another runs folder (--runs-dir or $RNNLAB_HOME)") from None
    out = []
    for path in paths_:
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
    live = read_live(path)
    if live is not None and live.alive:
        raise RunError(f"run {path.name} is being trained by {live.describe()}; stop it first, then delete it "
                       "(nothing deleted)")
    try:
        shutil.rmtree(path)
    except OSError as exc:
        raise write_error(exc, path, "the run may be partly deleted", action="delete") from None
