"""Checkpoint files pinned exactly (issue 9, mutation score of engine/checkpoint.py and engine/runlog.py):
what each of the three files holds, byte for byte where it is JSON; the file mode; what a failed or
killed save leaves behind and what ``remove_temp_files`` then deletes; every loading error word for word.

Expected values are written out by hand or read back with json and safetensors themselves; a kill is a
real SIGKILL of a child process in the middle of a save.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import engine
from engine import checkpoint, runlog
from engine.errors import RunError, WriteError

FILES = ["checkpoint.json", "model.safetensors", "optimizer.safetensors"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _opt_state() -> dict:
    """An optimizer state_dict by hand: tensors and plain values, an index past 9, a name with a dot."""
    return {"state": {0: {"momentum_buffer": torch.arange(6.0).reshape(2, 3).t(), "count": 3},
                      11: {"exp.avg": torch.tensor([1.5]), "flag": None}},
            "param_groups": [{"lr": 0.25, "params": [0, 11]}]}


def test_save_checkpoint_writes_exactly_these_files(tmp_path):
    """save_checkpoint: model.safetensors holds the weights (made contiguous), optimizer.safetensors every
    optimizer tensor as state.<index>.<name> and the RNG state, both headed by the metadata plus epoch and
    step; checkpoint.json is the trainer state plus the optimizer's param_groups and non-tensor state,
    indented by 2 with a final newline; files get the mode of any new file (0666 less the umask)."""
    weights = {"w": torch.arange(6.0).reshape(2, 3).t(), "b": torch.zeros(2)}  # w is a transposed view
    rng = torch.tensor([1, 2, 3], dtype=torch.uint8)
    state = {"epoch": 2, "step": 7, "train_ppl": 3.5, "status": "completed"}
    checkpoint.save_checkpoint(tmp_path, weights, _opt_state(), state, rng, metadata={"vocab_len": "5"})
    assert sorted(p.name for p in tmp_path.iterdir()) == FILES
    doc = {"epoch": 2, "step": 7, "train_ppl": 3.5, "status": "completed",
           "optimizer": {"param_groups": [{"lr": 0.25, "params": [0, 11]}],
                         "state": {"0": {"count": 3}, "11": {"flag": None}}}}
    assert (tmp_path / "checkpoint.json").read_text() == json.dumps(doc, indent=2) + "\n"
    model = load_file(str(tmp_path / "model.safetensors"))
    assert model.keys() == {"w", "b"} and torch.equal(model["w"], torch.tensor([[0.0, 3], [1, 4], [2, 5]]))
    opt = load_file(str(tmp_path / "optimizer.safetensors"))
    assert opt.keys() == {"state.0.momentum_buffer", "state.11.exp.avg", "rng.torch"}
    assert torch.equal(opt["state.0.momentum_buffer"], torch.tensor([[0.0, 3], [1, 4], [2, 5]]))
    assert torch.equal(opt["state.11.exp.avg"], torch.tensor([1.5])) and torch.equal(opt["rng.torch"], rng)
    for name in ("model.safetensors", "optimizer.safetensors"):
        with safe_open(str(tmp_path / name), framework="pt") as f:
            assert f.metadata() == {"vocab_len": "5", "epoch": "2", "step": "7"}
    mode = 0o666 & ~_umask()
    assert {n: (tmp_path / n).stat().st_mode & 0o777 for n in FILES} == {n: mode for n in FILES}
    assert checkpoint.has_checkpoint(tmp_path) and not checkpoint.has_checkpoint(tmp_path / "none")


def test_load_checkpoint_gives_back_what_was_saved(tmp_path):
    """load_checkpoint: the weights, the optimizer state keyed by int index (tensors and plain values
    merged; a dotted name kept whole), the trainer state as saved, the RNG state; None without one; an
    optimizer state from the tensors alone when checkpoint.json has no optimizer entry."""
    weights = {"w": torch.ones(2, 2)}
    rng = torch.tensor([9, 8], dtype=torch.uint8)
    checkpoint.save_checkpoint(tmp_path, weights, _opt_state(), {"epoch": 1, "step": 4}, rng)
    model, opt, doc, got_rng = checkpoint.load_checkpoint(tmp_path)
    assert model.keys() == {"w"} and torch.equal(model["w"], torch.ones(2, 2)) and torch.equal(got_rng, rng)
    assert doc == {"epoch": 1, "step": 4, "optimizer": {"param_groups": [{"lr": 0.25, "params": [0, 11]}],
                                                        "state": {"0": {"count": 3}, "11": {"flag": None}}}}
    assert opt["param_groups"] == [{"lr": 0.25, "params": [0, 11]}]
    assert sorted(opt["state"]) == [0, 11]
    assert opt["state"][0]["count"] == 3 and opt["state"][11]["flag"] is None
    assert torch.equal(opt["state"][0]["momentum_buffer"], torch.tensor([[0.0, 3], [1, 4], [2, 5]]))
    assert opt["state"].keys() == {0, 11} and set(opt["state"][11]) == {"exp.avg", "flag"}
    assert torch.equal(opt["state"][11]["exp.avg"], torch.tensor([1.5]))
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        assert f.metadata() == {"epoch": "1", "step": "4"}
    checkpoint.save_checkpoint(tmp_path, weights, {"state": {}, "param_groups": []}, {"epoch": 2, "step": 5})
    assert checkpoint.load_checkpoint(tmp_path)[1:] == ({"state": {}, "param_groups": []},
                                                        {"epoch": 2, "step": 5,
                                                         "optimizer": {"param_groups": [], "state": {}}}, None)
    checkpoint.save_checkpoint(tmp_path, weights, {"state": {3: {"m": torch.zeros(1)}}}, {"epoch": 2, "step": 5})
    doc = json.loads((tmp_path / "checkpoint.json").read_text())
    assert doc["optimizer"] == {"param_groups": [], "state": {}}
    del doc["optimizer"]
    (tmp_path / "checkpoint.json").write_text(json.dumps(doc))
    _, opt, _, _ = checkpoint.load_checkpoint(tmp_path)
    assert opt["param_groups"] == [] and opt["state"].keys() == {3}
    assert torch.equal(opt["state"][3]["m"], torch.zeros(1))


def test_weights_without_metadata_still_load(tmp_path):
    """Weights whose file carries no metadata (written by safetensors alone) load: no step to compare."""
    checkpoint.save_checkpoint(tmp_path, {"w": torch.ones(1)}, {}, {"epoch": 1, "step": 2})
    save_file({"w": torch.full((1,), 2.0)}, str(tmp_path / "model.safetensors"))
    assert torch.equal(checkpoint.load_model_state(tmp_path)["w"], torch.full((1,), 2.0))


def test_a_torn_checkpoint_is_named(tmp_path):
    """Weights of another step than checkpoint.json's: RunError with both steps and what to do."""
    checkpoint.save_checkpoint(tmp_path, {"w": torch.ones(1)}, {}, {"epoch": 1, "step": 7})
    (tmp_path / "checkpoint.json").write_text(json.dumps({"epoch": 1, "step": 8}))
    with pytest.raises(RunError) as e:
        checkpoint.load_model_state(tmp_path)
    assert str(e.value) == (f"{tmp_path}: weights are from step 7 but checkpoint.json says step 8; the checkpoint "
                            "was torn by a crash — delete the run or train it afresh")


def test_missing_or_unreadable_weights_are_named(tmp_path):
    """A missing weights or optimizer file, or one that is not safetensors: RunError naming it."""
    checkpoint.save_checkpoint(tmp_path, {"w": torch.ones(1)}, {}, {"epoch": 1, "step": 2})
    (tmp_path / "optimizer.safetensors").unlink()
    with pytest.raises(RunError) as e:
        checkpoint.load_checkpoint(tmp_path)
    assert str(e.value) == f"{tmp_path / 'optimizer.safetensors'} is missing: the run's checkpoint is incomplete"
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(RunError) as e:
        checkpoint.load_model_state(tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'model.safetensors'} is not a readable safetensors file (")
    assert msg.endswith("); the run is corrupt")


@pytest.mark.parametrize("doc, message", [
    (None, "{p} is missing: the run has no checkpoint yet"),
    ("dir", "{p} cannot be read (Is a directory); check the folder's permissions"),
    ("{oops", "{p} is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1)); "
              "the run is corrupt"),
    ([], "{p} lacks epoch/step; the run is corrupt"),
    ({"epoch": 1}, "{p} lacks epoch/step; the run is corrupt"),
    ({"step": 1}, "{p} lacks epoch/step; the run is corrupt"),
    ({"epoch": 1.5, "step": 1}, "{p}: epoch is 1.5, not a int; the run is corrupt"),
    ({"epoch": True, "step": 1}, "{p}: epoch is True, not a int; the run is corrupt"),
    ({"epoch": 1, "step": 1, "train_ppl": "x"}, "{p}: train_ppl is 'x', not a float; the run is corrupt"),
    ({"epoch": 1, "step": 1, "status": 3}, "{p}: status is 3, not a str; the run is corrupt"),
    ({"epoch": 1, "step": 1, "spiking": 1}, "{p}: spiking is 1, not a bool; the run is corrupt"),
    ({"epoch": None, "step": 1}, "{p}: epoch and step must be whole numbers; the run is corrupt"),
    ({"epoch": 1, "step": None}, "{p}: epoch and step must be whole numbers; the run is corrupt"),
])
def test_checkpoint_json_errors_word_for_word(tmp_path, doc, message):
    """load_trainer_state refuses a missing, unreadable, non-JSON checkpoint.json, one without epoch and
    step, and fields of the wrong type (a bool is not a number), each with these words."""
    p = tmp_path / "checkpoint.json"
    if doc == "dir":
        p.mkdir()
    elif isinstance(doc, str):
        p.write_text(doc)
    elif doc is not None:
        p.write_text(json.dumps(doc))
    with pytest.raises(RunError) as e:
        checkpoint.load_trainer_state(tmp_path)
    assert str(e.value) == message.format(p=p)


def test_checkpoint_json_with_good_fields_loads_as_written(tmp_path):
    """Fields of the right types, ints for floats, a bool where one is meant, None where allowed: the dict as
    written."""
    doc = {"epoch": 3, "step": 0, "epochs": 5, "train_ppl": 2, "val_ppl": None, "best_ppl": 1.5, "elapsed_s": 0.5,
           "status": "stopped", "device": "cpu", "error": None, "spiking": True, "other": [1]}
    (tmp_path / "checkpoint.json").write_text(json.dumps(doc))
    assert checkpoint.load_trainer_state(tmp_path) == doc


def test_a_failed_save_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch):
    """A full disk while writing the optimizer file: WriteError naming that file, saying what is kept (the
    previous checkpoint, or nothing yet), no temp file left; any other error propagates as it is, also
    leaving no temp file."""
    real = checkpoint.save_file
    calls = []

    def full_on_second(tensors, path, metadata=None):  # the disk fills up after the weights' file
        calls.append(path)
        if len(calls) % 2 == 0:
            raise OSError(28, "No space left on device")
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", full_on_second)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with pytest.raises(WriteError) as e:
        checkpoint.save_checkpoint(fresh, {"w": torch.ones(1)}, {}, {"epoch": 1, "step": 1})
    assert str(e.value) == (f"could not write {fresh / 'optimizer.safetensors'}: No space left on device; nothing was "
                            "saved yet, so a resume starts the run again once this is fixed; the disk is full: free "
                            "some space")
    assert list(fresh.iterdir()) == []
    monkeypatch.setattr(checkpoint, "save_file", real)
    checkpoint.save_checkpoint(tmp_path, {"w": torch.ones(1)}, {}, {"epoch": 1, "step": 1})
    monkeypatch.setattr(checkpoint, "save_file", full_on_second)
    with pytest.raises(WriteError) as e:
        checkpoint.save_checkpoint(tmp_path, {"w": torch.zeros(1)}, {}, {"epoch": 2, "step": 2})
    assert str(e.value) == (f"could not write {tmp_path / 'optimizer.safetensors'}: No space left on device; the "
                            "previous checkpoint is kept; resume the run once this is fixed; the disk is full: free "
                            "some space")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES + ["fresh"])
    assert torch.equal(checkpoint.load_model_state(tmp_path)["w"], torch.ones(1))

    def interrupted(tensors, path, metadata=None):
        real(tensors, path, metadata=metadata)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(tmp_path, {"w": torch.zeros(1)}, {}, {"epoch": 2, "step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES + ["fresh"])


_KILLED_SAVE = """
import os, signal, sys, torch
from engine import checkpoint
real = checkpoint.save_file
def killed_on_second(tensors, path, metadata=None):
    real(tensors, path, metadata=metadata)
    if path.endswith(".tmp") and ".optimizer.safetensors." in path:
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.save_file = killed_on_second
checkpoint.save_checkpoint(sys.argv[1], {"w": torch.zeros(1)}, {}, {"epoch": 2, "step": 2})
"""


def test_a_killed_save_leaves_named_temp_files_that_remove_temp_files_deletes(tmp_path):
    """A process killed in the middle of a save (SIGKILL, after both weight files are written, before any
    rename) leaves the previous checkpoint whole and two temp files .<file>.<random>.tmp in the folder;
    remove_temp_files deletes exactly those and safetensors' .tmpXXXXXX, and no other file."""
    checkpoint.save_checkpoint(tmp_path, {"w": torch.ones(1)}, {}, {"epoch": 1, "step": 1})
    env = {**os.environ, "PYTHONPATH": str(Path(engine.__file__).resolve().parent.parent)}
    proc = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(tmp_path)], env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    left = sorted(p.name for p in tmp_path.iterdir() if p.name not in FILES)
    assert len(left) == 2
    assert re.fullmatch(r"\.model\.safetensors\.\w+\.tmp", left[0])
    assert re.fullmatch(r"\.optimizer\.safetensors\.\w+\.tmp", left[1])
    assert torch.equal(checkpoint.load_model_state(tmp_path)["w"], torch.ones(1))
    keep = {".keep": "f", ".tmpab12C": "f", ".tmpab12CDE": "f", "x.tmp": "f", ".dir.tmp": "d", "tmpab12CD": "f"}
    for name, kind in keep.items():
        (tmp_path / name).mkdir() if kind == "d" else (tmp_path / name).write_bytes(b"")
    (tmp_path / ".tmpab12CD").write_bytes(b"")  # safetensors' own temp file: .tmp and six word characters
    assert checkpoint.remove_temp_files(tmp_path) == sorted(left + [".tmpab12CD"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES + list(keep))


def test_remove_temp_files_goes_on_past_one_it_cannot_delete(tmp_path, monkeypatch):
    """A temp file that cannot be deleted is skipped; the others are still removed and returned."""
    for n in (".a.tmp", ".b.tmp", ".c.tmp"):
        (tmp_path / n).write_bytes(b"")
    real = Path.unlink
    refused = []

    def first_refused(self, *a, **kw):
        if not refused:
            refused.append(self.name)
            raise PermissionError(13, "Permission denied")
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "unlink", first_refused)
    removed = checkpoint.remove_temp_files(tmp_path)
    assert removed == sorted({".a.tmp", ".b.tmp", ".c.tmp"} - set(refused))
    assert [p.name for p in tmp_path.iterdir()] == refused


def test_atomic_writes(tmp_path):
    """atomic_write_bytes/_json: the bytes (JSON indented by 2, newline-terminated) replace the file, with
    the ordinary file mode and no temp file; a folder that does not exist: WriteError that the file is
    unchanged."""
    p = tmp_path / "x.json"
    p.write_text("old")
    checkpoint.atomic_write_json(p, {"a": [1, "é"], "b": None})
    assert p.read_bytes() == b'{\n  "a": [\n    1,\n    "\\u00e9"\n  ],\n  "b": null\n}\n'
    checkpoint.atomic_write_bytes(p, b"\x00raw")
    assert p.read_bytes() == b"\x00raw" and [q.name for q in tmp_path.iterdir()] == ["x.json"]
    assert p.stat().st_mode & 0o777 == 0o666 & ~_umask()
    missing = tmp_path / "no" / "x.json"
    with pytest.raises(WriteError) as e:
        checkpoint.atomic_write_json(missing, {})
    assert str(e.value) == (f"could not write {missing}: No such file or directory; x.json is unchanged; check the "
                            "disk and the folder")


@pytest.mark.parametrize("bad, text", [
    ([3], "(3)"), ([3, 17], "(3, 17)"), (list(range(1, 11)), "(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)"),
    (list(range(1, 13)), "(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, …)"),
])
def test_damage_warning(bad, text):
    """damage_warning: the file, the count ('line' for one), at most ten numbers then '…'."""
    word = "line" if len(bad) == 1 else "lines"
    assert runlog.damage_warning(Path("run/metrics.jsonl"), bad) == (
        f"run/metrics.jsonl: skipped {len(bad)} damaged {word} {text}: not UTF-8 JSON records")


def test_a_failed_rename_leaves_no_temp_file(tmp_path):
    """atomic_write_bytes onto a path that is a folder: os.replace fails after the temp file was written;
    the WriteError must leave the folder as it was (the temp file used to stay behind)."""
    from engine.checkpoint import atomic_write_bytes

    (tmp_path / "target.json").mkdir()
    with pytest.raises(WriteError):
        atomic_write_bytes(tmp_path / "target.json", b"{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target.json"]
