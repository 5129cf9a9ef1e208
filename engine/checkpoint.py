"""Checkpoint files: weights and optimizer state as safetensors, the rest as JSON.

A checkpoint is three files in a run folder, each written atomically (temp file
in the same folder, then ``os.replace``):

- ``model.safetensors``: the model's ``state_dict`` on the CPU (so a checkpoint
  saved on a GPU loads anywhere); its metadata records epoch and step.
- ``optimizer.safetensors``: every tensor of the optimizer's ``state_dict``
  (``state.<param index>.<name>``, e.g. Adam's ``exp_avg``) and the torch RNG
  state (``rng.torch``, for dropout continuity on resume).
- ``checkpoint.json``: epoch, step, the trainer's counters, the optimizer's
  ``param_groups`` and its non-tensor state.

All three are written to fsync'd temp files before any is renamed into place
(``checkpoint.json`` last), so a failed save leaves the previous checkpoint
whole. Loading checks that the json's epoch/step agree with the weights'
metadata, which catches a crash in the instant between the renames. A failed
write raises ``WriteError`` whose advice follows the errno (permissions vs. a
full disk). A process killed mid-save leaves its temp files (``.model.safetensors.*.tmp``,
and safetensors' own ``.tmp*``); ``remove_temp_files`` deletes them, and must
only run while no one is writing the folder (the trainer calls it when training
on a run starts).

Nothing is ever unpickled: no ``torch.load``. Deliberately absent: keeping
several checkpoints (a run keeps its latest).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from engine.errors import RunError, write_error
from engine.train_state import TrainState

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
CHECKPOINT_FILE = "checkpoint.json"


def _file_mode() -> int:
    """The mode an ordinary new file gets here (0o666 less the umask): temp files are made 0600,
    and a run's files should be as readable as any other file the user writes (a shared server)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()  # read once, at import: os.umask is process-wide, not thread-safe to probe later


def _write_temp(path: Path, write: Any) -> str:
    """Write a sibling temp file of ``path`` with ``write(tmp_path)``, fsync it, return its name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)  # safetensors renames its own 0600 temp file onto tmp: set it after
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not every platform opens folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _commit(pairs: list[tuple[str, Path]]) -> None:
    """Rename each temp file onto its target, in order, then make the renames durable.

    A rename that fails (the target is a folder, the disk went read-only) removes the temp files not
    renamed yet before the error goes on."""
    for i, (tmp, path) in enumerate(pairs):
        try:
            os.replace(tmp, path)
        except OSError:
            for left, _ in pairs[i:]:
                with contextlib.suppress(OSError):
                    os.unlink(left)
            raise
    if pairs:
        _fsync_dir(pairs[-1][1].parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half.

    A failed write (no permission, a full disk) raises ``WriteError`` and leaves the old file and no temp file.
    """
    path = Path(path)
    try:
        _commit([(_write_temp(path, lambda tmp: Path(tmp).write_bytes(data)), path)])
    except OSError as exc:
        raise write_error(exc, path, f"{path.name} is unchanged") from None


def remove_temp_files(folder: Path) -> list[str]:
    """Delete the temp files a killed save left in ``folder``; the names removed.

    Ours are ``.<file>.<random>.tmp``; safetensors writes its own ``.tmp<random>``
    next to them before renaming. Only call this when nothing is writing the
    folder: a live writer's temp file would vanish under it.
    """
    removed = []
    for p in Path(folder).glob(".*"):
        if p.is_file() and (p.name.endswith(".tmp") or re.fullmatch(r"\.tmp\w{6}", p.name)):
            try:
                p.unlink()
            except OSError:  # a read-only folder: the temp files are harmless, the next write will say
                continue
            removed.append(p.name)
    return sorted(removed)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode("utf-8"))


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous().clone()


def save_checkpoint(
    folder: Path,
    model_state: Mapping[str, torch.Tensor],
    optimizer_state: Mapping[str, Any],
    trainer_state: dict[str, Any],
    rng_state: torch.Tensor | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write a checkpoint; ``trainer_state`` must be JSON-safe and hold ``epoch`` and ``step``.

    ``metadata`` goes into both safetensors headers next to epoch and step (the
    run's vocabulary fingerprint). All three files are written to temp files
    first; only when every one is on disk are they renamed into place
    (``checkpoint.json`` last). A failure while writing — a full disk, no
    permission, a kill — leaves the previous checkpoint untouched (and no temp
    file) and raises ``WriteError``.
    """
    folder = Path(folder)
    tag = {**(metadata or {}), "epoch": str(trainer_state["epoch"]), "step": str(trainer_state["step"])}
    model_tensors = {k: _cpu(v) for k, v in model_state.items()}
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
    doc = dict(trainer_state)
    doc["optimizer"] = {"param_groups": optimizer_state.get("param_groups", []), "state": plain_state}
    body = (json.dumps(doc, indent=2) + "\n").encode("utf-8")
    temps: list[tuple[str, Path]] = []
    path = folder / MODEL_FILE  # the file being written, for the message
    try:
        for path, write in (
            (folder / MODEL_FILE, lambda tmp: save_file(model_tensors, tmp, metadata=tag)),
            (folder / OPTIMIZER_FILE, lambda tmp: save_file(tensors, tmp, metadata=tag)),
            (folder / CHECKPOINT_FILE, lambda tmp: Path(tmp).write_bytes(body)),
        ):
            temps.append((_write_temp(path, write), path))
        _commit(temps)
    except BaseException as exc:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
        # safetensors reports a failed write as SafetensorError ("... (os error 28)"), not OSError
        if isinstance(exc, (OSError, SafetensorError)):
            kept = ("the previous checkpoint is kept; resume the run once this is fixed" if has_checkpoint(folder)
                    else "nothing was saved yet, so a resume starts the run again once this is fixed")
            raise write_error(exc, path, kept) from None
        raise


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
    except OSError as exc:
        raise RunError(f"{path} cannot be read ({exc.strerror or exc}); check the folder's permissions") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{path} is not valid JSON ({exc}); the run is corrupt") from None
    if not isinstance(doc, dict) or "epoch" not in doc or "step" not in doc:
        raise RunError(f"{path} lacks epoch/step; the run is corrupt")
    for key, kinds in _FIELD_TYPES.items():
        value = doc.get(key)
        if value is not None and not (isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))):
            raise RunError(f"{path}: {key} is {value!r}, not a {kinds[0].__name__}; the run is corrupt")
    if not isinstance(doc["epoch"], int) or not isinstance(doc["step"], int):
        raise RunError(f"{path}: epoch and step must be whole numbers; the run is corrupt")
    return doc


# checkpoint.json fields readers rely on, and the types they must have (or null): the trainer's counters
# (TrainState) and what the trainer and ``Run.mark_failed`` write next to them
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    **TrainState.JSON_TYPES, "epochs": (int,), "status": (str,), "device": (str,), "error": (str,),
}


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
