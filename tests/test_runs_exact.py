"""Run folders pinned exactly (issue 9, mutation score of engine/runs.py): the config.json a new run gets,
its folder name, the summary row and list order, every user-facing error message word for word, the
vocabulary checks, the logs a resume keeps, and when a run folder is discarded.

Expected values are written out by hand here (or read with json/hashlib/safetensors themselves), never
taken from engine.runs. Runs are made from a 1,080-character corpus and a 4-unit GRU; nothing trains.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.config import ModelConfig, TrainConfig
from engine.corpus import Corpus, load_corpus
from engine.errors import RunError, RunNotFoundError, WriteError
from engine.events import Checkpoint, Progress, Sample
from engine.models import build_model
from engine.pipeline import build_pipeline
from engine.runs import Run, RunSummary, create_run, delete_run, list_runs, open_run, vocab_fingerprint

TEXT = "the time traveller was here\n" * 40  # 13 distinct tokens once preprocessed (12 characters and <unk>)
ADVICE = "the tokenizer does not belong to this model; restore the run's tokenizer.json or start a new run"


def _sha(tokens: list[str]) -> str:
    return hashlib.sha256(json.dumps(tokens).encode()).hexdigest()


def _pipe(folder: Path, name: str = "tiny", text: str = TEXT, mode: str = "d2l"):
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / f"{name}.txt"
    f.write_text(text, encoding="utf-8")
    return build_pipeline(load_corpus(str(f)), mode=mode, tokenizer="char", vocab_size=500, min_freq=0)


def _configs(pipe) -> tuple[ModelConfig, TrainConfig]:
    return (ModelConfig(kind="gru", vocab_size=len(pipe.vocab), num_hiddens=4),
            TrainConfig(epochs=3, batch_size=2, num_steps=5, max_tokens=0, device="cpu"))


def _run(tmp_path: Path, **kw) -> Run:
    pipe = _pipe(tmp_path)
    mc, tc = _configs(pipe)
    return create_run(tmp_path / "runs", mc, tc, pipe, **kw)


def _save(run: Run, **state) -> None:
    """A checkpoint of fresh weights; ``state`` is checkpoint.json's trainer state."""
    torch.manual_seed(0)
    model = build_model(run.model_config)
    run.save_checkpoint(model.state_dict(), {"state": {}, "param_groups": []}, {"epoch": 1, "step": 3, **state})


def _edit_config(run: Run, change) -> None:
    cfg = json.loads((run.path / "config.json").read_text())
    change(cfg)
    (run.path / "config.json").write_text(json.dumps(cfg))


def _stamp(s: str, fmt: str) -> float:
    return datetime.strptime(s, fmt).timestamp()


def test_vocab_fingerprint_is_the_size_and_the_sha256_of_the_json_token_list():
    """vocab_fingerprint: len and sha256 of json.dumps(tokens) (bytes written out by hand)."""
    assert vocab_fingerprint(["<unk>", "a"]) == {
        "vocab_len": 2, "vocab_sha256": hashlib.sha256(b'["<unk>", "a"]').hexdigest()}
    assert vocab_fingerprint(("x",))["vocab_sha256"] == hashlib.sha256(b'["x"]').hexdigest()


def test_create_run_writes_this_config_and_name(tmp_path):
    """create_run: config.json exactly (the fitted tokenizer's settings win, extra settings stay, the
    fingerprint, the resolved corpus path, a creation time of now), tokenizer.json as indented JSON, the
    folder name YYYYmmdd-HHMMSS-<kind>-<slug> of that time, runs_dir made with its parents, and nothing else."""
    pipe = _pipe(tmp_path)
    mc, tc = _configs(pipe)
    before = time.time()
    run = create_run(tmp_path / "a" / "b", mc, tc, pipe,
                     tokenizer_settings={"vocab_size": 7, "min_freq": 3, "note": "kept"})
    after = time.time()
    cfg = json.loads((run.path / "config.json").read_text(encoding="utf-8"))
    created = cfg.pop("created")
    tokens = pipe.vocab.idx_to_token
    assert cfg == {
        "model": asdict(mc), "train": tc.to_dict(),
        "corpus": {"name": "tiny", "path": str((tmp_path / "tiny.txt").resolve())}, "mode": "d2l",
        "tokenizer": {"vocab_size": 500, "min_freq": 0, "note": "kept", "kind": "char",
                      "vocab_len": 13, "vocab_sha256": _sha(tokens)},
    }
    assert len(tokens) == 13
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", created)
    assert int(before) <= _stamp(created, "%Y-%m-%dT%H:%M:%S") <= after
    m = re.fullmatch(r"(\d{8}-\d{6})-gru-tiny", run.name)
    assert m and int(before) <= _stamp(m.group(1), "%Y%m%d-%H%M%S") <= after
    assert run.path.parent == tmp_path / "a" / "b"
    assert sorted(p.name for p in run.path.iterdir()) == ["config.json", "tokenizer.json"]
    assert (run.path / "tokenizer.json").read_text() == json.dumps(pipe.tokenizer.to_dict(), indent=2) + "\n"
    assert repr(run) == "Run('" + str(run.path) + "')"
    # a second run in the existing folder
    second = create_run(tmp_path / "a" / "b", mc, tc, pipe)
    assert second.path.parent == run.path.parent and second.path != run.path
    assert json.loads((second.path / "config.json").read_text())["tokenizer"] == {
        "kind": "char", "vocab_size": 500, "min_freq": 0, "vocab_len": 13, "vocab_sha256": _sha(tokens)}


@pytest.mark.parametrize("name, slug", [
    ("The Time-Machine (1895)!", "the-time-machine-1895"),
    ("!!!", "corpus"),
    ("A" * 30 + " " + "b" * 30, "a" * 30 + "-" + "b" * 9),  # cut to 40 characters
])
def test_run_name_slugs_the_corpus_name(tmp_path, name, slug):
    """The folder name ends in the corpus name lower-cased, runs of other characters turned into one '-',
    trimmed of '-', cut to 40 characters; 'corpus' when nothing is left."""
    f = tmp_path / "book.txt"
    f.write_text(TEXT)
    pipe = build_pipeline(Corpus(name=name, path=f, text=TEXT), tokenizer="char")
    mc, tc = _configs(pipe)
    run = create_run(tmp_path / "runs", mc, tc, pipe)
    assert re.fullmatch(r"\d{8}-\d{6}-gru-" + re.escape(slug), run.name)


NOW = (2026, 1, 2, 3, 4, 5, 4, 2, 0)  # a fixed clock: 2026-01-02 03:04:05
BASE = "20260102-030405-gru-tiny"


@pytest.fixture()
def fixed_clock(monkeypatch):
    """time.strftime reads NOW instead of the clock, so the run's name is known in advance."""
    real = time.strftime
    monkeypatch.setattr(time, "strftime", lambda fmt, t=None: real(fmt, NOW if t is None else t))


def test_create_run_takes_the_first_free_suffix(tmp_path, fixed_clock):
    """The first run of a second is <base>; a name already taken gets -2, -3 ... : with <base> and <base>-2
    taken, the run is <base>-3. The creation time is the same clock's."""
    pipe = _pipe(tmp_path)
    mc, tc = _configs(pipe)
    root = tmp_path / "runs"
    first = create_run(root, mc, tc, pipe)
    assert first.name == BASE and first.config["created"] == "2026-01-02T03:04:05"
    (root / f"{BASE}-2").mkdir()
    run = create_run(root, mc, tc, pipe)
    assert run.name == f"{BASE}-3"
    assert sorted(p.name for p in run.path.iterdir()) == ["config.json", "tokenizer.json"]
    assert sorted(p.name for p in root.iterdir()) == [BASE, f"{BASE}-2", f"{BASE}-3"]


def test_create_run_gives_up_after_999_names(tmp_path, fixed_clock):
    """With <base> and <base>-2 ... <base>-999 all taken: RunError naming the base and the folder, no new run."""
    pipe = _pipe(tmp_path)
    mc, tc = _configs(pipe)
    root = tmp_path / "runs"
    for name in [BASE] + [f"{BASE}-{i}" for i in range(2, 1000)]:
        (root / name).mkdir(parents=True)
    with pytest.raises(RunError) as e:
        create_run(root, mc, tc, pipe)
    assert str(e.value) == f"could not find a free run name like {BASE} in {root}"
    assert len(list(root.iterdir())) == 999


def test_create_run_errors_leave_no_folder(tmp_path, monkeypatch):
    """runs_dir is a file: 'could not create <dir>: File exists; no run was created; ...'. A config that
    cannot be written as JSON: the error propagates and the half-made folder is removed. A run folder
    that cannot be made (no permission): 'could not create <folder>: Permission denied; no run was created'."""
    pipe = _pipe(tmp_path)
    mc, tc = _configs(pipe)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(WriteError) as e:
        create_run(blocker, mc, tc, pipe)
    assert str(e.value) == f"could not create {blocker}: File exists; no run was created; check the disk and the folder"
    root = tmp_path / "runs"
    with pytest.raises(TypeError):
        create_run(root, mc, tc, pipe, tokenizer_settings={"not json": {1, 2}})
    assert list(root.iterdir()) == []
    real_mkdir = Path.mkdir

    def refuse(self, *a, **kw):  # the OS refusing the run folder itself (as for a read-only runs folder)
        if self.parent == root:
            raise PermissionError(13, "Permission denied")
        return real_mkdir(self, *a, **kw)

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(WriteError) as e:
        create_run(root, mc, tc, pipe)
    assert re.fullmatch(re.escape(f"could not create {root}/") + r"\d{8}-\d{6}-gru-tiny" + re.escape(
        ": Permission denied; no run was created; the folder is read-only or not writable by you: choose another "
        "runs folder (--runs-dir or $RNNLAB_HOME) or fix its permissions"), str(e.value))


def test_summary_of_a_new_run_and_of_checkpoints(tmp_path):
    """summary(): a run without checkpoint is epoch 0, no perplexities, the configured device, status 'new',
    stable; a checkpoint's epoch, perplexities, device, status and unstable flag are shown as saved; a
    checkpoint without them falls back to the config's device, 'new' and stable; a config without corpus
    name or creation time shows '?' and ''."""
    run = _run(tmp_path)
    path, created = str(run.path.resolve()), run.config["created"]
    assert run.summary() == RunSummary(run.name, path, "tiny", "gru 4x1", 0, 3, None, None, "cpu", created, "new")
    assert run.summary().error is None and run.summary().unstable is False
    _save(run, epoch=2, step=7, train_ppl=5.5, val_ppl=6.25, device="cuda:0", status="stopped", unstable=True)
    assert open_run(run.path).summary() == RunSummary(run.name, path, "tiny", "gru 4x1", 2, 3, 5.5, 6.25, "cuda:0",
                                                      created, "stopped", None, True)
    _save(run, epoch=1, step=3)
    assert open_run(run.path).summary() == RunSummary(run.name, path, "tiny", "gru 4x1", 1, 3, None, None, "cpu",
                                                      created, "new", None, False)

    def strip(cfg):
        del cfg["corpus"], cfg["created"]

    _edit_config(run, strip)
    s = open_run(run.path).summary()
    assert (s.corpus, s.created) == ("?", "")


def test_list_runs_newest_first_with_corrupt_rows(tmp_path, monkeypatch):
    """list_runs: run folders by name, newest first; hidden folders and plain files left out; a folder
    without config.json listed as a 'corrupt' row with placeholders and the reason."""
    run = _run(tmp_path)
    root = tmp_path / "listed"
    root.mkdir()
    names = ["20260102-000000-gru-b", "20260101-000000-gru-a", "20260103-000000-gru-c", ".20270101-hidden"]
    for n in names:
        shutil.copytree(run.path, root / n)
    (root / "notes.txt").write_text("not a run")
    (root / "20250101-junk").mkdir()
    rows = list_runs(root)
    assert [r.name for r in rows] == ["20260103-000000-gru-c", "20260102-000000-gru-b", "20260101-000000-gru-a",
                                      "20250101-junk"]
    junk = root / "20250101-junk"
    assert rows[-1] == RunSummary("20250101-junk", str(junk.resolve()), "?", "?", 0, 0, None, None, "?", "", "corrupt",
                                  f"{junk / 'config.json'} is missing: {junk} is not a run folder (or is corrupt)")
    assert rows[0].path == str((root / "20260103-000000-gru-c").resolve()) and rows[0].status == "new"
    assert list_runs(tmp_path / "nowhere") == []
    monkeypatch.setenv("RNNLAB_HOME", str(tmp_path / "home"))
    shutil.copytree(run.path, tmp_path / "home" / "runs" / "20260104-000000-gru-d")
    assert [r.name for r in list_runs()] == ["20260104-000000-gru-d"]  # default: $RNNLAB_HOME/runs


def test_list_runs_unreadable_folder_says_what_to_do(tmp_path, monkeypatch):
    """A runs folder that cannot be listed: RunError with the OS's reason (not the raw exception) and
    what to do."""
    root = tmp_path / "runs"
    root.mkdir()
    real = Path.iterdir

    def refuse(self):
        if self == root:
            raise PermissionError(13, "Permission denied", str(root))
        return real(self)

    monkeypatch.setattr(Path, "iterdir", refuse)
    with pytest.raises(RunError) as e:
        list_runs(root)
    assert str(e.value) == (f"cannot list the runs folder {root} (Permission denied); check its permissions or "
                            "choose another runs folder (--runs-dir or $RNNLAB_HOME)")


def test_open_and_delete_by_name_or_path(tmp_path, monkeypatch):
    """open_run/delete_run find a run by folder path or by name under runs_dir (default $RNNLAB_HOME/runs);
    unknown names and folders without config.json get exact messages; a failed delete says the run may be
    partly deleted."""
    monkeypatch.setenv("RNNLAB_HOME", str(tmp_path / "home"))
    root = tmp_path / "home" / "runs"
    run = _run(tmp_path)
    shutil.copytree(run.path, root / "r1")
    assert open_run("r1").path == root / "r1"
    assert open_run("r1", root).path == root / "r1"
    assert open_run(run.path, root).path == run.path  # a path outside runs_dir
    monkeypatch.chdir(tmp_path)
    rel = run.path.relative_to(tmp_path)
    assert open_run(rel, root).path == rel  # a path relative to the working folder
    other = tmp_path / "other"
    shutil.copytree(run.path, other / "r2")
    assert open_run("r2", other).path == other / "r2"  # a name under another runs_dir
    with pytest.raises(RunNotFoundError) as e:
        open_run("nope", tmp_path / "elsewhere")
    assert str(e.value) == f"no run named 'nope' in {tmp_path / 'elsewhere'}; `rnnlab runs` lists the runs"
    with pytest.raises(RunNotFoundError) as e:
        open_run("nope")
    assert str(e.value) == f"no run named 'nope' in {root}; `rnnlab runs` lists the runs"
    (root / "plain").mkdir()
    with pytest.raises(RunError) as e:
        delete_run("plain")
    assert str(e.value) == f"{root / 'plain'} is not a run folder (no config.json); nothing deleted"
    assert (root / "plain").is_dir()

    def refuse(path, *a, **kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(shutil, "rmtree", refuse)
    with pytest.raises(WriteError) as e:
        delete_run("r1")
    assert str(e.value) == (f"could not delete {root / 'r1'}: Permission denied; the run may be partly deleted; the "
                            "folder is read-only or not writable by you: choose another runs folder (--runs-dir or "
                            "$RNNLAB_HOME) or fix its permissions")
    monkeypatch.undo()
    monkeypatch.setenv("RNNLAB_HOME", str(tmp_path / "home"))
    delete_run("r1")
    delete_run(run.path)
    delete_run("r2", other)
    assert not (root / "r1").exists() and not run.path.exists() and list(other.iterdir()) == []


def test_run_folder_errors_word_for_word(tmp_path):
    """Run(path): a missing folder, a missing, unreadable, non-JSON or non-UTF-8 config.json and one without
    a model each raise RunError with these exact words."""
    missing = tmp_path / "gone"
    with pytest.raises(RunNotFoundError) as e:
        Run(missing)
    assert str(e.value) == f"run folder {missing} does not exist; `rnnlab runs` lists the runs"
    folder = tmp_path / "r"
    folder.mkdir()
    cfg = folder / "config.json"
    with pytest.raises(RunError) as e:
        Run(folder)
    assert str(e.value) == f"{cfg} is missing: {folder} is not a run folder (or is corrupt)"
    cfg.mkdir()
    with pytest.raises(RunError) as e:
        Run(folder)
    assert str(e.value) == f"{cfg} cannot be read (Is a directory); check the folder's permissions"
    cfg.rmdir()
    cfg.write_text("{not json")
    with pytest.raises(RunError) as e:
        Run(folder)
    assert str(e.value) == (f"{cfg} is not valid JSON (Expecting property name enclosed in double quotes: line 1 "
                            "column 2 (char 1)); the run is corrupt")
    cfg.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(RunError) as e:
        Run(folder)
    assert str(e.value) == (f"{cfg} is not valid JSON ('utf-8' codec can't decode byte 0xff in position 7: invalid "
                            "start byte); the run is corrupt")
    cfg.write_text('{"train": {}}')
    with pytest.raises(RunError) as e:
        Run(folder)
    assert str(e.value) == f"{cfg} does not describe a model and training config ('model'); the run is corrupt"
    cfg.write_text(json.dumps({"model": {"kind": "gru", "vocab_size": 5, "num_hiddens": 3}, "train": {"epochs": 4}}))
    r = Run(folder)
    assert (r.model_config.num_hiddens, r.train_config.epochs, r.name) == (3, 4, "r")


def test_tokenizer_is_checked_against_the_weights_and_the_config(tmp_path):
    """Run.tokenizer: a missing or unreadable tokenizer.json; one whose tokens differ from those the weights
    were trained with (model.safetensors' fingerprint wins over config.json's), or, before any weights,
    from those config.json was created with; one whose size differs from the model's vocab_size; an old
    run without fingerprints checked by size only. Each message is exact."""
    from safetensors import safe_open

    run = _run(tmp_path)
    tok_path = run.path / "tokenizer.json"
    good = json.loads(tok_path.read_text())
    tokens = good["vocab"]["idx_to_token"]
    swapped = [tokens[0], tokens[2], tokens[1], *tokens[3:]]  # another vocabulary of the same size
    bad = {**good, "vocab": {**good["vocab"], "idx_to_token": swapped}}
    have, want = _sha(swapped), _sha(tokens)
    tok_path.write_text(json.dumps(bad))
    with pytest.raises(RunError) as e:
        open_run(run.path).tokenizer
    assert str(e.value) == (f"{run.path}: tokenizer.json has 13 tokens (sha256 {have[:12]}) but config.json was "
                            f"created with 13 tokens (sha256 {want[:12]}): {ADVICE}")
    tok_path.write_text(json.dumps(good))
    _save(run)
    with safe_open(str(run.path / "model.safetensors"), framework="pt") as f:
        assert f.metadata() == {"vocab_len": "13", "vocab_sha256": want, "epoch": "1", "step": "3"}
    # config.json now names the swapped vocabulary; the weights still name the good one, and win
    _edit_config(run, lambda c: c["tokenizer"].update(vocab_sha256=have))
    assert open_run(run.path).tokenizer.vocab.idx_to_token == tokens
    tok_path.write_text(json.dumps(bad))
    with pytest.raises(RunError) as e:
        open_run(run.path).load_model()
    assert str(e.value) == (f"{run.path}: tokenizer.json has 13 tokens (sha256 {have[:12]}) but model.safetensors was "
                            f"trained with 13 tokens (sha256 {want[:12]}): {ADVICE}")
    tok_path.write_text(json.dumps(good))
    (run.path / "model.safetensors").unlink()
    (run.path / "checkpoint.json").unlink()

    def grown(c):
        c["model"]["vocab_size"] = 14
        c["tokenizer"]["vocab_sha256"] = want

    _edit_config(run, grown)
    with pytest.raises(RunError) as e:
        open_run(run.path).tokenizer
    assert str(e.value) == (f"{run.path}: tokenizer.json has 13 tokens but the model in config.json has vocab_size 14: "
                            f"{ADVICE}")

    def old(c):
        c["model"]["vocab_size"] = 13
        del c["tokenizer"]["vocab_sha256"]

    _edit_config(run, old)
    tok_path.write_text(json.dumps(bad))
    assert open_run(run.path).tokenizer.vocab.idx_to_token == swapped  # no fingerprint: the size is all we know
    tok_path.unlink()
    with pytest.raises(RunError) as e:
        open_run(run.path).tokenizer
    assert str(e.value) == f"{tok_path} is missing; the run is corrupt"
    tok_path.write_text("{not json")
    with pytest.raises(RunError) as e:
        open_run(run.path).tokenizer
    assert str(e.value) == (f"{tok_path} cannot be read (Expecting property name enclosed in double quotes: line 1 "
                            "column 2 (char 1)); the run is corrupt")


def test_save_train_config_and_mark_failed(tmp_path):
    """save_train_config rewrites config.json's train options only; mark_failed records status 'failed' and
    the reason in checkpoint.json (True), and is False, changing nothing, without a checkpoint or with an
    unreadable one."""
    run = _run(tmp_path)
    before = json.loads((run.path / "config.json").read_text())
    new = TrainConfig(epochs=9, lr=0.5, device="cpu")
    run.save_train_config(new)
    assert json.loads((run.path / "config.json").read_text()) == {**before, "train": new.to_dict()}
    assert run.train_config == new and open_run(run.path).train_config == new
    assert run.mark_failed("out of memory") is False
    assert sorted(p.name for p in run.path.iterdir()) == ["config.json", "tokenizer.json"]
    _save(run, status="running", val_ppl=4.0)
    doc = json.loads((run.path / "checkpoint.json").read_text())
    assert run.mark_failed("out of memory") is True
    assert json.loads((run.path / "checkpoint.json").read_text()) == {**doc, "status": "failed",
                                                                       "error": "out of memory"}
    (run.path / "checkpoint.json").write_text("[]")
    assert run.mark_failed("again") is False
    assert (run.path / "checkpoint.json").read_text() == "[]"


def _logs(run: Run, metrics: bytes, events: bytes, samples: bytes) -> None:
    for name, data in (("metrics.jsonl", metrics), ("events.jsonl", events), ("samples.log", samples)):
        (run.path / name).write_bytes(data)


def test_begin_training_removes_temp_files_and_drops_logs_without_checkpoint(tmp_path):
    """begin_training returns the temp files a killed save left (sorted) and deletes them; without a
    checkpoint it empties the logs of the attempt (its epoch-1, step-1 lines); with one it keeps them; with
    no log files at all it only removes temp files."""
    run = _run(tmp_path)
    logs = (b'{"epoch": 1, "step": 1}\n', b'{"type": "Spike", "epoch": 1}\n', b"epoch 1: 'x'\n")
    _logs(run, *logs)
    for n in (".model.safetensors.ab12.tmp", ".tmpXy3_9Q"):
        (run.path / n).write_bytes(b"partial")
    assert run.begin_training() == [".model.safetensors.ab12.tmp", ".tmpXy3_9Q"]
    assert [(run.path / n).read_bytes() for n in ("metrics.jsonl", "events.jsonl", "samples.log")] == [b""] * 3
    assert sorted(p.name for p in run.path.iterdir()) == ["config.json", "events.jsonl", "metrics.jsonl",
                                                           "samples.log", "tokenizer.json"]
    _logs(run, *logs)
    _save(run)
    (run.path / ".checkpoint.json.x.tmp").write_bytes(b"")
    assert run.begin_training() == [".checkpoint.json.x.tmp"]
    assert [(run.path / n).read_bytes() for n in ("metrics.jsonl", "events.jsonl", "samples.log")] == list(logs)
    bare = _run(tmp_path / "bare")
    (bare.path / ".tokenizer.json.q.tmp").write_bytes(b"")
    assert bare.begin_training() == [".tokenizer.json.q.tmp"]
    assert sorted(p.name for p in bare.path.iterdir()) == ["config.json", "tokenizer.json"]


@pytest.mark.parametrize("extra, discarded", [
    ({}, True),
    ({".config.json.a1.tmp": b"x"}, True),  # a killed save's temp file does not count
    ({"metrics.jsonl": b"", "events.jsonl": b"", "samples.log": b""}, True),  # empty logs do not count
    ({"metrics.jsonl": b"\n"}, False),  # one byte logged
    ({"samples.log": b"epoch 1: 'x'\n"}, False),
    ({"notes.txt": b""}, False),  # the user's own file
    ({".notes": b""}, False),  # a hidden file that is not a temp file
])
def test_discard_if_unused(tmp_path, extra, discarded):
    """discard_if_unused deletes the folder only when it holds config.json, tokenizer.json, empty logs and
    temp files, and says whether it did."""
    run = _run(tmp_path)
    for name, data in extra.items():
        (run.path / name).write_bytes(data)
    assert run.discard_if_unused() is discarded
    assert run.path.exists() is not discarded


def test_discard_if_unused_keeps_a_checkpointed_or_vanished_run(tmp_path):
    """A run with a checkpoint is kept (False); a folder that vanished meanwhile is not an error (False)."""
    run = _run(tmp_path)
    _save(run)
    assert run.discard_if_unused() is False and run.path.is_dir()
    shutil.rmtree(run.path)
    assert run.discard_if_unused() is False


def test_load_model_puts_the_weights_on_the_device_in_eval_mode(tmp_path):
    """load_model: the saved weights, on the requested device (meta here, the CPU's stand-in for another
    device), in eval mode; weights of another shape get the file and 'does not match config.json's model'."""
    run = _run(tmp_path)
    _save(run)
    torch.manual_seed(0)
    want = build_model(run.model_config).state_dict()
    model = open_run(run.path).load_model()
    assert model.training is False
    assert all(torch.equal(model.state_dict()[k], v) for k, v in want.items())
    meta = open_run(run.path).load_model("meta")
    assert {p.device.type for p in meta.parameters()} == {"meta"} and meta.training is False
    _edit_config(run, lambda c: c["model"].update(num_hiddens=5))
    with pytest.raises(RunError) as e:
        open_run(run.path).load_model()
    msg = str(e.value)
    assert msg.startswith(f"{run.path / 'model.safetensors'} does not match config.json's model (") and "size" in msg


def test_log_event_appends_each_kind_to_its_file(tmp_path):
    """log_event: Progress as a JSON line to metrics.jsonl, Sample as "epoch N: 'text'" to samples.log (UTF-8),
    anything else as a JSON line to events.jsonl; a vanished folder is a WriteError naming the file."""
    run = _run(tmp_path)
    p = Progress(epoch=1, step=5, train_ppl=9.5, val_ppl=None, tokens_per_s=10.0, grad_norm=0.5, lr=1.0,
                 elapsed_s=2.0, eta_s=4.0, epochs=3)
    run.log_event(p)
    run.log_event(Sample(epoch=1, prefix="time", text="time café"))
    run.log_event(Checkpoint(epoch=1, step=5, path="x"))
    run.log_event(Sample(epoch=2, prefix="t", text="it's"))
    assert (run.path / "metrics.jsonl").read_text() == (
        '{"type": "Progress", "epoch": 1, "step": 5, "train_ppl": 9.5, "val_ppl": null, "tokens_per_s": 10.0, '
        '"grad_norm": 0.5, "lr": 1.0, "elapsed_s": 2.0, "eta_s": 4.0, "epochs": 3, "epoch_end": false, '
        '"clip_fraction": 0.0}\n')
    assert (run.path / "samples.log").read_bytes() == "epoch 1: 'time café'\nepoch 2: \"it's\"\n".encode("utf-8")
    assert (run.path / "events.jsonl").read_text() == '{"type": "Checkpoint", "epoch": 1, "step": 5, "path": "x"}\n'
    assert run.metrics() == [json.loads((run.path / "metrics.jsonl").read_text())]
    shutil.rmtree(run.path)
    with pytest.raises(WriteError) as e:
        run.log_event(Checkpoint(epoch=1, step=5, path="x"))
    assert str(e.value) == (f"could not write {run.path / 'events.jsonl'}: No such file or directory; training "
                            "stopped; the last checkpoint is kept; check the disk and the folder")


def test_damaged_log_lines_are_skipped_and_reported(tmp_path):
    """metrics()/events() keep the JSON objects whose epoch and step are whole numbers, skip blank lines and
    an unfinished last line silently, and note the other lines by number; warnings says so per file, once
    read ('line' for one); check_logs reads both. A log that is a folder cannot be read: RunError."""
    run = _run(tmp_path)
    metrics = (b'{"epoch": 1, "step": 2}\n'  # 1 good
               b'{not json\n'  # 2
               b'\xff\xfe{}\n'  # 3 not UTF-8
               b'\n'  # 4 blank: skipped, not damage
               b'[1, 2]\n'  # 5 not an object
               b'{"epoch": 1.5}\n'  # 6
               b'{"step": true}\n'  # 7
               b'{"step": "3"}\n'  # 8
               b'{"x": "no epoch or step"}\n'  # 9 good
               b'{"epoch": 2, "step": 4}\n'  # 10 good
               b'{"epoch": 3, "st')  # cut short: skipped silently
    _logs(run, metrics, b'{"epoch": 1}\n"text"\n', b"")
    assert run.metrics() == [{"epoch": 1, "step": 2}, {"x": "no epoch or step"}, {"epoch": 2, "step": 4}]
    mpath, epath = run.path / "metrics.jsonl", run.path / "events.jsonl"
    assert run.warnings == [f"{mpath}: skipped 6 damaged lines (2, 3, 5, 6, 7, 8): not UTF-8 JSON records"]
    assert run.check_logs() == [f"{mpath}: skipped 6 damaged lines (2, 3, 5, 6, 7, 8): not UTF-8 JSON records",
                                f"{epath}: skipped 1 damaged line (2): not UTF-8 JSON records"]
    assert run.events() == [{"epoch": 1}]
    mpath.write_bytes(b"\n" * 3 + b'{"epoch": 1}\n')
    epath.unlink()
    assert run.metrics() == [{"epoch": 1}] and run.events() == [] and run.check_logs() == []
    epath.mkdir()
    with pytest.raises(RunError) as e:
        run.events()
    assert str(e.value) == f"{epath} cannot be read (Is a directory); check the folder's permissions"


@pytest.mark.parametrize("count, shown", [
    (10, "1, 2, 3, 4, 5, 6, 7, 8, 9, 10"),
    (11, "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, …"),
])
def test_warning_lists_ten_line_numbers_at_most(tmp_path, count, shown):
    """The damage warning names at most ten line numbers, then '…'."""
    run = _run(tmp_path)
    _logs(run, b"x\n" * count, b"", b"")
    run.metrics()
    assert run.warnings == [f"{run.path / 'metrics.jsonl'}: skipped {count} damaged lines ({shown}): not UTF-8 JSON "
                            "records"]


def test_truncate_logs_keeps_what_the_checkpoint_covers(tmp_path):
    """truncate_logs(step, epoch): metric lines up to that step and events up to that epoch stay (lines
    without one count as 0), written back one compact JSON object a line, damaged lines dropped; sample
    lines of later epochs go, other lines of samples.log stay byte for byte."""
    run = _run(tmp_path)
    metrics = b'{"step": 3}\n{"step": 4}\n{"step": 5}\n{"note": 1}\nbroken\n'
    events = b'{"epoch": 1, "type": "Spike"}\n{"epoch": 2}\n{"epoch": 3}\n{"type": "Finished"}\n'
    samples = b"epoch 1: 'a'\nepoch 2: 'b'\nepoch 3: 'c'\nepoch 10: 'd'\nfree text\n\xff\xfe\nepoch x: 'e'\n"
    _logs(run, metrics, events, samples)
    run.truncate_logs(4, 2)
    assert (run.path / "metrics.jsonl").read_bytes() == b'{"step": 3}\n{"step": 4}\n{"note": 1}\n'
    assert (run.path / "events.jsonl").read_bytes() == b'{"epoch": 1, "type": "Spike"}\n{"epoch": 2}\n{"type": ' \
                                                       b'"Finished"}\n'
    assert (run.path / "samples.log").read_bytes() == b"epoch 1: 'a'\nepoch 2: 'b'\nfree text\n\xff\xfe\nepoch x: 'e'\n"
    run.truncate_logs(0, 0)
    assert (run.path / "metrics.jsonl").read_bytes() == b'{"note": 1}\n'
    assert (run.path / "events.jsonl").read_bytes() == b'{"type": "Finished"}\n'
    assert (run.path / "samples.log").read_bytes() == b"free text\n\xff\xfe\nepoch x: 'e'\n"
    (run.path / "samples.log").unlink()
    run.truncate_logs(0, 0)
    assert not (run.path / "samples.log").exists()
    (run.path / "samples.log").mkdir()
    with pytest.raises(RunError) as e:
        run.truncate_logs(0, 0)
    assert str(e.value) == f"{run.path / 'samples.log'} cannot be read (Is a directory); check the folder's permissions"


def test_corpus_ids_reread_the_corpus_by_path_then_by_name(tmp_path):
    """corpus_ids: the saved path when that file exists (even if the name says otherwise), else the name
    (here a path too); the saved mode, 'd2l' when none is saved; no corpus at all is a RunError."""
    run = _run(tmp_path)
    other = tmp_path / "other.txt"
    other.write_text("here was the time traveller\n" * 40)  # the same characters in another order
    idx = {t: i for i, t in enumerate(json.loads((run.path / "tokenizer.json").read_text())["vocab"]["idx_to_token"])}
    ids_a = np.array([idx[c] for c in "the time traveller was here" * 40])  # d2l: a line's characters, no newline
    ids_b = np.array([idx[c] for c in "here was the time traveller" * 40])
    assert np.array_equal(run.corpus_ids(), ids_a)
    _edit_config(run, lambda c: c["corpus"].update(name=str(other)))
    assert np.array_equal(open_run(run.path).corpus_ids(), ids_a)  # the path wins
    _edit_config(run, lambda c: c["corpus"].update(path=str(tmp_path / "moved.txt")))
    assert np.array_equal(open_run(run.path).corpus_ids(), ids_b)  # gone: the name is used
    _edit_config(run, lambda c: c["corpus"].pop("path"))
    assert np.array_equal(open_run(run.path).corpus_ids(), ids_b)
    _edit_config(run, lambda c: c.pop("mode"))
    assert np.array_equal(open_run(run.path).corpus_ids(), ids_b)
    raw_text = "The Time, Traveller!\n" * 30
    raw = build_pipeline(Corpus(name="raw", path=other, text=raw_text), mode="raw", tokenizer="char")
    other.write_text(raw_text)
    raw_run = create_run(tmp_path / "runs", *_configs(raw), raw)
    assert np.array_equal(raw_run.corpus_ids(), raw.ids)
    _edit_config(run, lambda c: c.update(corpus={}))
    with pytest.raises(RunError) as e:
        open_run(run.path).corpus_ids()
    assert str(e.value) == f"{run.path / 'config.json'} names no corpus; cannot resume"
    _edit_config(run, lambda c: c.pop("corpus"))
    with pytest.raises(RunError) as e:
        open_run(run.path).corpus_ids()
    assert str(e.value) == f"{run.path / 'config.json'} names no corpus; cannot resume"


def test_save_checkpoint_keeps_the_rng_state(tmp_path):
    """Run.save_checkpoint passes the torch RNG state on: load_checkpoint gives it back (None when not given)."""
    run = _run(tmp_path)
    torch.manual_seed(0)
    model = build_model(run.model_config)
    rng = torch.tensor([5, 6, 7], dtype=torch.uint8)
    run.save_checkpoint(model.state_dict(), {"state": {}, "param_groups": []}, {"epoch": 1, "step": 2}, rng)
    assert torch.equal(open_run(run.path).load_checkpoint()[3], rng)
    run.save_checkpoint(model.state_dict(), {"state": {}, "param_groups": []}, {"epoch": 1, "step": 2})
    assert open_run(run.path).load_checkpoint()[3] is None


_ASCII_CHILD = """
import locale
locale.setlocale(locale.LC_CTYPE, "C")  # ASCII from here on; argv and the environment were read as UTF-8
import json, sys
from engine.events import Sample
from engine.runs import open_run
run = open_run(sys.argv[1])
run.log_event(Sample(epoch=1, prefix="x", text="caf\\u00e9"))  # café
print(json.dumps([run.config["corpus"]["name"], run.trainer_state()["status"]]))
"""


def test_run_files_are_utf8_under_an_ascii_locale(tmp_path):
    """A process whose locale encoding is ASCII (the C locale without Python's UTF-8 mode) still reads config.json
    and checkpoint.json holding non-ASCII UTF-8 (as an editor writes them) and appends samples.log in UTF-8, as a
    UTF-8 process does."""
    import subprocess
    import sys

    import engine

    f = tmp_path / "book.txt"
    f.write_text(TEXT)
    pipe = build_pipeline(Corpus(name="café", path=f, text=TEXT), tokenizer="char")
    run = create_run(tmp_path / "runs", *_configs(pipe), pipe)
    _save(run, status="épuisé")
    for name in ("config.json", "checkpoint.json"):  # as an editor saves them: UTF-8, not \u escapes
        doc = json.loads((run.path / name).read_text(encoding="utf-8"))
        (run.path / name).write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    assert "café".encode() in (run.path / "config.json").read_bytes()
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONUTF8": "0",
           "PYTHONPATH": str(Path(engine.__file__).resolve().parent.parent)}
    proc = subprocess.run([sys.executable, "-c", _ASCII_CHILD, str(run.path)], env=env, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert json.loads(proc.stdout) == ["café", "épuisé"]
    # this (UTF-8) process reads and appends to the same files alike
    assert open_run(run.path).trainer_state()["status"] == "épuisé"
    run.log_event(Sample(epoch=2, prefix="x", text="naïve"))
    assert (run.path / "samples.log").read_bytes() == "epoch 1: 'café'\nepoch 2: 'naïve'\n".encode("utf-8")


def test_tags_are_kept_in_config_and_summary(tmp_path):
    """A run made by an exercise carries its tag into config.json, Run.tags and the summary; a plain run has none."""
    import json as _json

    from engine.runs import list_runs, open_run

    pipe = _pipe(tmp_path)
    mc, tc = _configs(pipe)
    tagged = create_run(tmp_path / "runs", mc, tc, pipe, tags={"exercise": "8.6.1", "seed": 3})
    plain = create_run(tmp_path / "runs", mc, tc, pipe)
    assert _json.loads((tagged.path / "config.json").read_text())["tags"] == {"exercise": "8.6.1", "seed": "3"}
    assert open_run(tagged.path).tags == {"exercise": "8.6.1", "seed": "3"}
    assert "tags" not in _json.loads((plain.path / "config.json").read_text()) and open_run(plain.path).tags == {}
    by_name = {s.name: s.tags for s in list_runs(tmp_path / "runs")}
    assert by_name == {tagged.name: {"exercise": "8.6.1", "seed": "3"}, plain.name: {}}
