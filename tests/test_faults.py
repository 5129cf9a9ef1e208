"""Runs under faults: signals, killed saves, unwritable and full disks, damaged
logs, a tokenizer that does not belong to the weights, and running out of
memory. Each ends with a clear message and an exit status, never a traceback,
and keeps the last good checkpoint byte for byte.

Tests run as root, which ignores permission bits, so unwritable folders and
full disks are made by patching the OS call to fail as the OS would.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine import checkpoint
from engine.errors import RunError
from engine.runs import open_run
from tui.cli import main

REPO = Path(__file__).resolve().parent.parent
TINY = ["--tokenizer", "char", "--model", "gru", "--num-hiddens", "16", "--batch-size", "8", "--num-steps", "10",
        "--max-tokens", "1500", "--threads", "1", "--sample-every", "0"]
CKPT_FILES = (checkpoint.MODEL_FILE, checkpoint.OPTIMIZER_FILE, checkpoint.CHECKPOINT_FILE)


def only_run(d: Path) -> Path:
    (path,) = [p for p in d.iterdir() if p.is_dir()]
    return path


def snapshot(run: Path) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in CKPT_FILES}


def temp_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".tmp"))


@pytest.fixture(scope="module")
def _trained(tmp_path_factory) -> Path:
    """One char run of 2 epochs, trained through the CLI (tests get copies)."""
    d = tmp_path_factory.mktemp("runs")
    assert main(["train", "--corpus", "timemachine", *TINY, "--epochs", "2", "--log-every-steps", "4",
                 "--runs-dir", str(d)]) == 0
    assert (only_run(d) / "metrics.jsonl").read_text().count("\n") >= 8  # room for damaged lines in the middle
    return only_run(d)


@pytest.fixture()
def trained(_trained, tmp_path) -> Path:
    copy = tmp_path / "runs" / _trained.name
    shutil.copytree(_trained, copy)
    return copy


# --- 1. SIGHUP and SIGTERM -----------------------------------------------------------------
class Unhandled(Exception):
    pass


@pytest.fixture()
def sigterm_guard():
    """A SIGTERM the code under test does not handle fails the test instead of killing pytest."""
    def unhandled(signum, frame):
        raise Unhandled("SIGTERM reached the test's own handler")

    before = signal.signal(signal.SIGTERM, unhandled)
    yield unhandled
    signal.signal(signal.SIGTERM, before)


@pytest.mark.parametrize("sig, code", [(signal.SIGHUP, 129), (signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_saves_the_weights_reached_and_exits_128_plus_its_number(sig, code, tmp_path):
    """A real signal sent to `python -m tui.cli train` once it has logged progress."""
    runs = tmp_path / "runs"
    env = {**os.environ, "RNNLAB_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "tui.cli", "train", "--corpus", "timemachine", *TINY, "--epochs", "100000",
           "--log-every-steps", "1", "--checkpoint-interval-s", "3600", "--runs-dir", str(runs)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120  # a bound on waiting, not a timing assertion
        while time.monotonic() < deadline and proc.poll() is None:
            metrics = list(runs.glob("*/metrics.jsonl"))
            if metrics and metrics[0].read_text().count("\n") >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err and out.startswith("stopped: ")
    run = open_run(only_run(runs))
    state = run.trainer_state()
    last_logged = run.metrics()[-1]["step"]
    assert state["status"] == "stopped" and state["step"] >= last_logged >= 3
    assert f"step {state['step']}," in out
    model = run.load_model()  # the weights load, and they are the trained ones, not the initial ones
    assert model.cfg.num_hiddens == 16 and temp_files(runs) == []


def test_a_signal_while_preparing_aborts_with_no_run_folder(tmp_path, monkeypatch, capsys, sigterm_guard):
    """SIGTERM while the corpus is read (before any folder exists) aborts at once with 143."""
    import tui.cli.corpus

    load = tui.cli.corpus.load_corpus_arg

    def load_then_signal(*args, **kwargs):
        corpus = load(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return corpus

    monkeypatch.setattr(tui.cli.corpus, "load_corpus_arg", load_then_signal)
    assert main(["train", *TINY, "--epochs", "3", "--runs-dir", str(tmp_path)]) == 143
    assert "interrupted" in capsys.readouterr().err and signal.getsignal(signal.SIGTERM) is sigterm_guard
    assert not any(tmp_path.iterdir())


def test_a_signal_as_training_starts_stops_before_the_first_step_and_saves(tmp_path, monkeypatch, sigterm_guard):
    import engine.trainer

    real_train = engine.trainer.train

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # handled before the first step: stop there
        return real_train(*args, **kwargs)

    monkeypatch.setattr(engine.trainer, "train", signalled)
    assert main(["train", *TINY, "--epochs", "3", "--runs-dir", str(tmp_path)]) == 143
    state = open_run(only_run(tmp_path)).trainer_state()
    assert (state["status"], state["step"]) == ("stopped", 0)


def test_a_second_signal_aborts_at_once_keeping_the_last_checkpoint(tmp_path, monkeypatch, capsys, sigterm_guard):
    from engine.events import Checkpoint
    from engine.runs import Run

    log_event = Run.log_event
    seen: dict[str, bytes] = {}

    def log_and_signal(self, event):
        log_event(self, event)
        if isinstance(event, Checkpoint) and event.epoch == 2:
            seen.update(snapshot(self.path))
            os.kill(os.getpid(), signal.SIGTERM)  # stop at the next step…
            os.kill(os.getpid(), signal.SIGTERM)  # …no: abort now

    monkeypatch.setattr(Run, "log_event", log_and_signal)
    rc = main(["train", *TINY, "--epochs", "100", "--checkpoint-interval-s", "0", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 143 and "interrupted (the last checkpoint is kept)" in err
    run = only_run(tmp_path)
    assert snapshot(run) == seen and temp_files(tmp_path) == []


# --- 2. temp files of a killed save -------------------------------------------------------------
def test_temp_files_of_a_killed_save_are_removed_when_the_run_resumes(trained, capsys):
    stale = [".model.safetensors.k2j4x9.tmp", ".optimizer.safetensors.a8b7c6.tmp", ".checkpoint.json.zz9y1q.tmp",
             ".tmpAb12Cd"]  # ours, and safetensors' own temp file next to them
    for name in stale:
        (trained / name).write_bytes(b"half a file")
    open_run(trained).load_model()  # opening a run (the TUI may be training it) leaves them alone
    assert temp_files(trained) == sorted(stale)
    assert main(["train", "--resume", trained.name, "--epochs", "3", "--runs-dir", str(trained.parent)]) == 0
    assert temp_files(trained) == [] and open_run(trained).trainer_state()["epoch"] == 3
    assert {p.name for p in trained.iterdir()} >= {"config.json", "tokenizer.json", *CKPT_FILES}  # nothing else lost


# --- 3. disks and permissions ---------------------------------------------------------------------
@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.EROFS])
def test_permission_errors_ask_for_another_runs_folder(code):
    from engine.errors import write_error

    msg = str(write_error(PermissionError(code, os.strerror(code)), "/runs/x/config.json"))
    assert msg.startswith(f"could not write /runs/x/config.json: {os.strerror(code)}; ")
    assert "--runs-dir" in msg and "free" not in msg


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"),
                                 OSError(errno.EDQUOT, "Disk quota exceeded"),
                                 # what safetensors raises: not an OSError, the errno only in the text
                                 RuntimeError("Error while serializing: I/O error: No space left on device "
                                              "(os error 28)")])
def test_full_disk_errors_ask_for_space(exc):
    from engine.errors import write_error

    msg = str(write_error(exc, "/runs/x/model.safetensors"))
    assert "free some space" in msg and "permission" not in msg and "/runs/x/model.safetensors" in msg


def test_unwritable_runs_folder_exits_1_with_a_clear_message(tmp_path, monkeypatch, capsys):
    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    assert main(["train", *TINY, "--runs-dir", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert "Permission denied" in err and "--runs-dir" in err and "free" not in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_read_only_disk_while_creating_the_run_leaves_no_folder(tmp_path, monkeypatch, capsys):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", read_only)  # the first file of the new run folder
    assert main(["train", *TINY, "--runs-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Read-only file system" in err and "--runs-dir" in err and "free" not in err
    assert not any(tmp_path.iterdir())


def test_full_disk_at_a_checkpoint_exits_1_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    from safetensors import SafetensorError

    real_save = checkpoint.save_file
    calls: list[str] = []
    before: dict[str, bytes] = {}

    def fill_disk(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 5:  # the weights of the third checkpoint: half written, then the disk is full
            before.update(snapshot(Path(path).parent))
            Path(path).write_bytes(b"\0" * 100)
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", fill_disk)
    rc = main(["train", *TINY, "--epochs", "6", "--checkpoint-interval-s", "0", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert "No space left on device" in err and "previous checkpoint is kept" in err and "free some space" in err
    run = only_run(tmp_path)
    assert before and snapshot(run) == before and temp_files(tmp_path) == []
    assert open_run(run).trainer_state()["epoch"] == 2


def test_full_disk_at_the_first_checkpoint_says_nothing_was_saved_yet(tmp_path, monkeypatch, capsys):
    from safetensors import SafetensorError

    def full(tensors, path, metadata=None):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(checkpoint, "save_file", full)
    rc = main(["train", *TINY, "--epochs", "2", "--runs-dir", str(tmp_path)])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 1 and "nothing was saved yet" in err and "previous checkpoint" not in err
    assert temp_files(tmp_path) == []


def test_a_bad_option_on_resume_never_removes_the_run(tmp_path, pipeline):
    """A run killed before it logged or saved anything, resumed with a batch too big for the corpus:
    the ConfigError says so and the folder stays (it is the user's run, the option was wrong)."""
    import dataclasses

    from engine.config import ModelConfig, TrainConfig
    from engine.errors import ConfigError
    from engine.runs import create_run
    from engine.trainer import train

    mc, tc = ModelConfig(kind="gru", vocab_size=len(pipeline.vocab), num_hiddens=8), TrainConfig(max_tokens=3000)
    run = create_run(tmp_path, mc, tc, pipeline)
    with pytest.raises(ConfigError, match="batch_size"):
        list(train(pipeline, mc, dataclasses.replace(tc, batch_size=999), run=run))
    assert run.path.is_dir() and (run.path / "config.json").is_file()


def test_full_disk_while_logging_exits_1_and_keeps_the_checkpoint(tmp_path, monkeypatch, capsys):
    import builtins

    import engine.runlog
    import engine.runs
    from engine.events import Checkpoint

    real_open = builtins.open
    state = {"checkpoints": 0}
    before: dict[str, bytes] = {}

    def full_after_two_checkpoints(file, mode="r", *args, **kwargs):
        if "a" in mode and state["checkpoints"] >= 2:
            before.update(snapshot(Path(file).parent))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(file, mode, *args, **kwargs)

    log_event = engine.runs.Run.log_event

    def count(self, event):
        log_event(self, event)
        state["checkpoints"] += isinstance(event, Checkpoint)

    monkeypatch.setattr(engine.runlog, "open", full_after_two_checkpoints, raising=False)
    monkeypatch.setattr(engine.runs.Run, "log_event", count)
    rc = main(["train", *TINY, "--epochs", "6", "--checkpoint-interval-s", "0", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert "metrics.jsonl: No space left on device" in err and "free some space" in err
    assert before and snapshot(only_run(tmp_path)) == before


def test_unreadable_runs_folder_and_failed_delete_exit_1(trained, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "iterdir", refuse)
    assert main(["runs", "--runs-dir", str(trained.parent)]) == 1
    err = capsys.readouterr().err
    assert "cannot list the runs folder" in err and "Permission denied" in err and "Traceback" not in err
    monkeypatch.undo()
    monkeypatch.setattr(shutil, "rmtree", refuse)
    assert main(["runs", "--delete", trained.name, "--runs-dir", str(trained.parent)]) == 1
    err = capsys.readouterr().err
    assert f"could not delete {trained}: Permission denied" in err and "free" not in err


# --- 4. damaged logs --------------------------------------------------------------------------------
def _damage(path: Path, at: list[int], lines: list[bytes]) -> list[bytes]:
    """Insert damaged lines so that they end up at line numbers ``at`` (1-based); the good lines, in order."""
    good = path.read_bytes().splitlines(keepends=True)
    out = list(good)
    for number, bad in zip(at, lines):
        out.insert(number - 1, bad + b"\n")
    path.write_bytes(b"".join(out))
    return good


def test_damaged_log_lines_are_skipped_with_one_warning_per_file(trained):
    good = _damage(trained / "metrics.jsonl", [2, 4], [b"\xff\xfe not utf-8", b'{"step": 3, "train_pp'])
    _damage(trained / "events.jsonl", [1], [b"[1, 2]"])  # JSON, but not a record
    run = open_run(trained)
    assert [json.dumps(m) for m in run.metrics()] == [json.dumps(json.loads(g)) for g in good]
    assert len(run.events()) == len((trained / "events.jsonl").read_bytes().splitlines()) - 1
    assert run.warnings == [
        f"{trained / 'metrics.jsonl'}: skipped 2 damaged lines (2, 4): not UTF-8 JSON records",
        f"{trained / 'events.jsonl'}: skipped 1 damaged line (1): not UTF-8 JSON records",
    ]


def test_resume_with_damaged_logs_warns_once_and_keeps_the_good_lines(trained, capsys):
    good = _damage(trained / "metrics.jsonl", [3], [b"\x80\x81\x82"])
    (trained / "samples.log").write_bytes(b"epoch 1: '\xff'\nepoch 2: 'x'\n")
    assert main(["train", "--resume", trained.name, "--epochs", "3", "--runs-dir", str(trained.parent)]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: ") == 1 and "metrics.jsonl: skipped 1 damaged line (3)" in err
    lines = (trained / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    assert lines[: len(good)] == [(json.dumps(json.loads(g)) + "\n").encode() for g in good]
    assert all(json.loads(line.decode("utf-8")) for line in lines)  # the damaged line is gone
    assert (trained / "samples.log").read_bytes().startswith(b"epoch 1: '\xff'\nepoch 2: 'x'\n")
    assert open_run(trained).check_logs() == []


def test_rnnlab_runs_warns_once_about_a_damaged_log(trained, capsys):
    _damage(trained / "metrics.jsonl", [1, 5], [b"\xc3\x28", b"not json"])
    assert main(["runs", "--runs-dir", str(trained.parent)]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"warning: {trained / 'metrics.jsonl'}: skipped 2 damaged lines (1, 5): "
                                "not UTF-8 JSON records"]
    assert trained.name in out and "2/2" in out


def test_a_last_line_without_its_newline_is_skipped_quietly(trained):
    with open(trained / "metrics.jsonl", "ab") as f:
        f.write(b'{"type": "Progress", "step": 99')  # being written right now, or cut by a crash
    run = open_run(trained)
    assert run.metrics()[-1]["step"] < 99 and run.warnings == []


def test_logs_of_an_attempt_without_a_checkpoint_are_dropped_when_training_starts_again(trained):
    for name in CKPT_FILES:
        (trained / name).unlink()
    assert open_run(trained).metrics()  # logged by an attempt whose checkpoint is gone
    open_run(trained).begin_training()
    assert open_run(trained).metrics() == [] and open_run(trained).events() == []


# --- 5. vocabulary fingerprint ----------------------------------------------------------------------------
def _tokenizer_doc(run: Path) -> dict:
    return json.loads((run / "tokenizer.json").read_text())


def test_a_run_records_its_vocabulary_fingerprint(trained):
    import hashlib

    from safetensors import safe_open

    tokens = _tokenizer_doc(trained)["vocab"]["idx_to_token"]
    sha = hashlib.sha256(json.dumps(tokens).encode()).hexdigest()
    cfg = json.loads((trained / "config.json").read_text())["tokenizer"]
    with safe_open(str(trained / checkpoint.MODEL_FILE), framework="pt") as f:
        meta = f.metadata()
    assert (cfg["vocab_len"], cfg["vocab_sha256"]) == (len(tokens), sha) == (int(meta["vocab_len"]), meta["vocab_sha256"])


def test_another_size_tokenizer_is_refused_by_generate_and_resume(trained, corpus_dir, capsys):
    from engine.corpus import load_corpus
    from engine.pipeline import build_pipeline

    word = build_pipeline(load_corpus(str(corpus_dir / "timemachine.txt")), tokenizer="word").tokenizer
    (trained / "tokenizer.json").write_text(json.dumps(word.to_dict()))
    n_char = open_run(trained).model_config.vocab_size
    for args in (["generate", trained.name], ["train", "--resume", trained.name, "--epochs", "3"]):
        rc = main([*args, "--runs-dir", str(trained.parent)])
        err = capsys.readouterr().err
        assert rc == 1 and "Traceback" not in err, err
        assert (f"tokenizer.json has {len(word.vocab)} tokens" in err
                and f"model.safetensors was trained with {n_char} tokens" in err
                and "does not belong to this model" in err)
    assert open_run(trained).trainer_state()["epoch"] == 2  # the refused resume wrote nothing


def test_a_reordered_tokenizer_of_the_same_size_is_refused(trained, capsys):
    doc = _tokenizer_doc(trained)
    tokens = doc["vocab"]["idx_to_token"]
    tokens[1], tokens[2] = tokens[2], tokens[1]
    (trained / "tokenizer.json").write_text(json.dumps(doc))
    rc = main(["generate", trained.name, "-n", "5", "--runs-dir", str(trained.parent)])
    out, err = capsys.readouterr()
    assert rc == 1 and out == "" and f"tokenizer.json has {len(tokens)} tokens" in err
    assert f"model.safetensors was trained with {len(tokens)} tokens" in err
    with pytest.raises(RunError, match="tokenizer.json"):
        open_run(trained).load_model()  # what the TUI's Generate screen loads


def test_runs_saved_before_fingerprints_still_load_and_are_checked_by_size(trained, capsys):
    from safetensors.torch import load_file, save_file

    cfg = json.loads((trained / "config.json").read_text())
    del cfg["tokenizer"]["vocab_sha256"]
    (trained / "config.json").write_text(json.dumps(cfg))
    st = json.loads((trained / "checkpoint.json").read_text())
    save_file(load_file(trained / checkpoint.MODEL_FILE), trained / checkpoint.MODEL_FILE,
              metadata={"epoch": str(st["epoch"]), "step": str(st["step"])})
    assert main(["generate", trained.name, "-n", "5", "--runs-dir", str(trained.parent)]) == 0
    doc = _tokenizer_doc(trained)
    doc["vocab"]["idx_to_token"].append("zz")
    (trained / "tokenizer.json").write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["generate", trained.name, "-n", "5", "--runs-dir", str(trained.parent)]) == 1
    assert "has vocab_size" in capsys.readouterr().err


def test_engine_generate_refuses_a_tokenizer_of_another_size(pipeline):
    from engine.config import ModelConfig
    from engine.errors import ConfigError
    from engine.generate import generate
    from engine.models import build_model

    model = build_model(ModelConfig(kind="rnn", vocab_size=len(pipeline.vocab) + 1, num_hiddens=4))
    with pytest.raises(ConfigError, match=f"tokenizer has {len(pipeline.vocab)} tokens"):
        generate(model, pipeline.tokenizer, "time", 5)


# --- 6. out of memory ------------------------------------------------------------------------------------
def test_memory_estimate_matches_a_hand_computation():
    from engine.config import ModelConfig, TrainConfig
    from engine.training import memory_estimate

    mc = ModelConfig(kind="scratch", vocab_size=28, num_hiddens=4)
    # W_xh 28×4, W_hh 4×4, b_h 4, W_hq 4×28, b_q 28
    params = 28 * 4 + 4 * 4 + 4 + 4 * 28 + 28
    assert params == 272
    # per position: the one-hot input (28), 3 tensors of num_hiddens, logits and softmax (3 × 28)
    per_position = 4 * (28 + 3 * 4 + 3 * 28)
    sgd = memory_estimate(mc, TrainConfig(batch_size=2, num_steps=5), 1000)
    # weight + gradient, and the snapshot of the weights: 3 floats per parameter
    assert (sgd.weights, sgd.activations) == (4 * params * 3, per_position * 2 * 5)
    adam = memory_estimate(mc, TrainConfig(batch_size=2, num_steps=5, optimizer="adam"), 1000)
    # + 2 moments, and their copy in the snapshot
    assert adam.weights == 4 * params * 7 and adam.total == 4 * params * 7 + per_position * 10
    full = memory_estimate(mc, TrainConfig(sampler="sequential", truncation="none"), 1000)
    assert full.activations == per_position * 1000  # the whole epoch's graph


def test_a_config_too_big_for_free_memory_is_refused_before_any_folder(tmp_path, monkeypatch, capsys):
    import engine.training

    monkeypatch.setattr(engine.training, "free_memory", lambda device: 50_000)
    assert main(["train", *TINY, "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "training needs about" in err and "only 0.05 MiB is free" in err
    assert all(opt in err for opt in ("batch_size", "num_steps", "num_hiddens", "num_layers", "min_freq"))
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_resume_refuses_a_config_too_big_for_free_memory(trained, monkeypatch, capsys):
    import engine.training

    config = (trained / "config.json").read_bytes()
    monkeypatch.setattr(engine.training, "free_memory", lambda device: 50_000)
    rc = main(["train", "--resume", trained.name, "--epochs", "3", "--runs-dir", str(trained.parent)])
    assert rc == 2 and "training needs about" in capsys.readouterr().err
    assert (trained / "config.json").read_bytes() == config


def _oom_at(monkeypatch, call: int, seen: dict[str, bytes]) -> None:
    """Models whose ``call``-th training forward raises CUDA's out-of-memory error."""
    import engine.trainer

    real_build = engine.trainer.build_model

    def build(cfg):
        model = real_build(cfg)
        forward, calls = model.forward, [0]

        def failing(X, state):
            if model.training:
                calls[0] += 1
                if calls[0] == call:
                    run = next(Path(os.environ["RNNLAB_TEST_RUNS"]).iterdir())
                    if (run / checkpoint.CHECKPOINT_FILE).exists():
                        seen.update(snapshot(run))
                    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            return forward(X, state)

        model.forward = failing
        return model

    monkeypatch.setattr(engine.trainer, "build_model", build)


def test_out_of_memory_while_training_keeps_the_checkpoint_and_marks_the_run_failed(tmp_path, monkeypatch, capsys):
    seen: dict[str, bytes] = {}
    monkeypatch.setenv("RNNLAB_TEST_RUNS", str(tmp_path))
    _oom_at(monkeypatch, 40, seen)  # 16 minibatches an epoch: the 40th is in the third epoch
    rc = main(["train", *TINY, "--epochs", "6", "--checkpoint-interval-s", "0", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    before = json.loads(seen[checkpoint.CHECKPOINT_FILE])
    assert before["epoch"] == 2 and before["step"] < 39
    assert "out of memory at epoch 3, step 39 on cpu (CUDA out of memory" in err and "lower batch_size" in err
    assert f"the last checkpoint (epoch 2, step {before['step']}) is kept" in err
    run = only_run(tmp_path)
    after = snapshot(run)
    assert after[checkpoint.MODEL_FILE] == seen[checkpoint.MODEL_FILE]
    assert after[checkpoint.OPTIMIZER_FILE] == seen[checkpoint.OPTIMIZER_FILE]
    state = open_run(run).trainer_state()
    assert before["status"] == "running" and {**state, "status": "running", "error": None} == {**before, "error": None}
    assert state["status"] == "failed" and state["error"].startswith("out of memory at epoch 3, step 39")
    open_run(run).load_model()  # still loads
    from engine.runs import list_runs

    assert [r.status for r in list_runs(tmp_path)] == ["failed"]


def test_out_of_memory_at_the_first_step_leaves_no_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RNNLAB_TEST_RUNS", str(tmp_path))
    _oom_at(monkeypatch, 1, {})
    assert main(["train", *TINY, "--epochs", "2", "--runs-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "out of memory at epoch 1, step 0" in err and "nothing was saved" in err
    assert not any(tmp_path.iterdir())


def test_cuda_free_memory_counts_what_this_process_has_cached_as_free(monkeypatch):
    """After a big first run the caching allocator keeps its blocks: mem_get_info reports them used,
    yet the next run of this process reuses them. (No GPU here: torch.cuda's figures are given.)"""
    import torch

    from engine.training import free_memory

    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 5 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 2 * gib)
    assert free_memory(torch.device("cuda", 0)) == 1 * gib + (5 - 2) * gib


def test_run_files_are_as_readable_as_other_files_the_user_writes(trained):
    """Temp files are created 0600; renamed into place they kept it, so on a shared server a
    colleague (or a viewer running as another user) could not read a run. The umask decides."""
    import stat

    mask = os.umask(0o022)
    os.umask(mask)
    expected = 0o666 & ~mask
    run = Path(open_run(trained).path)
    for name in ("config.json", "tokenizer.json", "checkpoint.json", "model.safetensors", "optimizer.safetensors"):
        assert stat.S_IMODE((run / name).stat().st_mode) == expected, name
