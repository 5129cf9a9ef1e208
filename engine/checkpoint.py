"""Checkpoint files: weights and optimizer state as safetensors, the rest as JSON.

A checkpoint is three files in a run folder, each written atomically (temp file
in the same folder, then ``os.replace``):

- ``model.safetensors``: the model's ``state_dict`` on the CPU (so a checkpoint
  saved on a GPU loads anywhere); its metadata records epoch and step.
- ``optimizer.safetensors``: every tensor of the optimizer's ``state_dict``
  (``state.<param index>.<name>``, e.g. Adam's ``exp_avg``) and the torch RNG
  state (``rng.torch``, for dropout continuity on resume).
- ``checkpoint.json``: epoch, step, the trainer's counters, the optimizer's
  ``param_groups`` and its non-tensor state, written last. Loading checks that
  its epoch/step agree with the weights' metadata, which catches a checkpoint
  torn by a crash between the files.

Nothing is ever unpickled: no ``torch.load``. Deliberately absent: keeping
several checkpoints (a run keeps its latest).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from engine.errors import RunError

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
CHECKPOINT_FILE = "checkpoint.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode("utf-8"))


def _atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous().clone()


def save_checkpoint(
    folder: Path,
    model_state: Mapping[str, torch.Tensor],
    optimizer_state: Mapping[str, Any],
    trainer_state: dict[str, Any],
    rng_state: torch.Tensor | None = None,
) -> None:
    """Write a checkpoint; ``trainer_state`` must be JSON-safe and hold ``epoch`` and ``step``."""
    folder = Path(folder)
    tag = {"epoch": str(trainer_state["epoch"]), "step": str(trainer_state["step"])}
    _atomic_save_tensors(folder / MODEL_FILE, {k: _cpu(v) for k, v in model_state.items()}, tag)
    tensors: dict[str, torch.Tensor] = {}
    plain_state: dict[str, dict[str, Any]] = {}
    for idx, per_param in optimizer_state.get("state", {}).items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{name}"] = _cpu(value)
            else:
                plain_state.setdefault(str(idx), {})[name] = value
    if rng_state is not None:
        tensors["rng.torch"] = _cpu(rng_state)
    _atomic_save_tensors(folder / OPTIMIZER_FILE, tensors, tag)
    doc = dict(trainer_state)
    doc["optimizer"] = {"param_groups": optimizer_state.get("param_groups", []), "state": plain_state}
    atomic_write_json(folder / CHECKPOINT_FILE, doc)


def has_checkpoint(folder: Path) -> bool:
    return (Path(folder) / CHECKPOINT_FILE).is_file()


def _load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
        return load_file(str(path), device="cpu"), meta
    except FileNotFoundError:
        raise RunError(f"{path} is missing: the run's checkpoint is incomplete") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise RunError(f"{path} is not a readable safetensors file ({exc}); the run is corrupt") from None


def load_trainer_state(folder: Path) -> dict[str, Any]:
    """``checkpoint.json`` as a dict (RunError when unreadable)."""
    path = Path(folder) / CHECKPOINT_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} is missing: the run has no checkpoint yet") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{path} is not valid JSON ({exc}); the run is corrupt") from None
    if not isinstance(doc, dict) or "epoch" not in doc or "step" not in doc:
        raise RunError(f"{path} lacks epoch/step; the run is corrupt")
    return doc


def load_model_state(folder: Path) -> dict[str, torch.Tensor]:
    """The saved weights (on the CPU), checked against ``checkpoint.json``."""
    doc = load_trainer_state(folder)
    tensors, meta = _load_tensors(Path(folder) / MODEL_FILE)
    if meta.get("step") not in (None, str(doc["step"])):
        raise RunError(
            f"{folder}: weights are from step {meta.get('step')} but checkpoint.json says step {doc['step']}; "
            "the checkpoint was torn by a crash — delete the run or train it afresh"
        )
    return tensors


def load_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any], torch.Tensor | None]:
    """(model state, optimizer state_dict, trainer state, torch RNG state or None)."""
    model_state = load_model_state(folder)
    doc = load_trainer_state(folder)
    tensors, _ = _load_tensors(Path(folder) / OPTIMIZER_FILE)
    opt = doc.get("optimizer", {})
    state: dict[int, dict[str, Any]] = {}
    for idx, plain in opt.get("state", {}).items():
        state.setdefault(int(idx), {}).update(plain)
    rng = tensors.pop("rng.torch", None)
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    optimizer_state = {"state": state, "param_groups": opt.get("param_groups", [])}
    return model_state, optimizer_state, doc, rng
