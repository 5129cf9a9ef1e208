"""Live runs (issue 13): the trainer's lease on a run folder (lock, live.json, heartbeat), the status a
reader derives from it (running / interrupted), a second trainer refused, and the log's tail read for a
running run's epoch. The real process tests start `python -m tui.cli train` and SIGKILL it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import live as live_mod
from engine.errors import RunError
from engine.live import LIVE_FILE, Lease, RunBusy, progress_tail, read_live
from engine.runs import delete_run, list_runs, open_run
from tui.cli import main

REPO = Path(__file__).resolve().parent.parent
TINY = ["--tokenizer", "char", "--model", "gru", "--num-hiddens", "16", "--batch-size", "8", "--num-steps", "10",
        "--max-tokens", "1500", "--threads", "1", "--sample-every", "0"]


def _write_live(folder: Path, **changes) -> None:
    now = time.time()
    doc = {"pid": os.getpid(), "host": socket.gethostname(), "started": now - 5, "heartbeat": now, "argv": ["x"],
           **changes}
    (folder / LIVE_FILE).write_text(json.dumps(doc))


def test_a_lease_writes_who_trains_and_refuses_a_second_one(tmp_path) -> None:
    lease = Lease(tmp_path)
    lease.acquire()
    try:
        doc = json.loads((tmp_path / LIVE_FILE).read_text())
        assert doc["pid"] == os.getpid() and doc["host"] == socket.gethostname()
        assert read_live(tmp_path).alive
        with pytest.raises(RunBusy, match=f"being trained by process {os.getpid()} on {socket.gethostname()}"):
            Lease(tmp_path).acquire()  # the same process, a second open: flock refuses it too
    finally:
        lease.release()
    assert not (tmp_path / LIVE_FILE).exists() and read_live(tmp_path) is None
    with Lease(tmp_path):  # free again
        pass


def test_the_heartbeat_advances_while_the_lease_is_held(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(live_mod, "HEARTBEAT_S", 0.05)
    with Lease(tmp_path):
        first = json.loads((tmp_path / LIVE_FILE).read_text())["heartbeat"]
        deadline = time.monotonic() + 30  # a bound on waiting, not a timing assertion
        while json.loads((tmp_path / LIVE_FILE).read_text())["heartbeat"] == first and time.monotonic() < deadline:
            time.sleep(0.02)
        assert json.loads((tmp_path / LIVE_FILE).read_text())["heartbeat"] > first


@pytest.mark.parametrize("changes, alive", [
    ({}, True),  # this process, a fresh heartbeat
    ({"heartbeat": time.time() - 2 * live_mod.STALE_S}, False),  # a stale heartbeat
    ({"pid": 2**22 + 12345}, False),  # this host, a process that does not exist
    ({"host": "elsewhere", "pid": 2**22 + 12345}, True),  # another host: the heartbeat alone decides
    ({"host": "elsewhere", "heartbeat": time.time() - 2 * live_mod.STALE_S}, False),
])
def test_read_live_judges_by_host_process_and_heartbeat(tmp_path, changes, alive) -> None:
    _write_live(tmp_path, **changes)
    assert read_live(tmp_path).alive is alive


def test_progress_tail_finds_the_last_progress_and_the_last_epoch_end(tmp_path, monkeypatch) -> None:
    lines = [json.dumps({"type": "Progress", "epoch": 1, "step": 3, "epoch_end": True, "val_ppl": 9.5}),
             json.dumps({"type": "Progress", "epoch": 2, "step": 5, "epoch_end": False, "train_ppl": 8.0}),
             "{not json", json.dumps({"type": "Progress", "epoch": 2, "step": 6, "epoch_end": True, "val_ppl": 7.5}),
             json.dumps({"type": "Progress", "epoch": 3, "step": 7, "epoch_end": False, "train_ppl": 7.0}),
             '{"type": "Progress", "epo']  # a line being written
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    last, end = progress_tail(tmp_path)
    assert (last["step"], end["step"], end["val_ppl"]) == (7, 6, 7.5)
    monkeypatch.setattr(live_mod, "TAIL_BYTES", len(lines[-1]) + len(lines[-2]) + 2)  # the tail holds no epoch end
    last, end = progress_tail(tmp_path)
    assert last["step"] == 7 and end is None
    assert progress_tail(tmp_path / "nowhere") == (None, None)


def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    runs = tmp_path / "runs"
    env = {**os.environ, "RNNLAB_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "tui.cli", "train", "--corpus", "timemachine", *TINY, "--epochs", "100000",
           "--log-every-steps", "1", "--checkpoint-interval-s", "3600", "--runs-dir", str(runs), *extra]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120  # a bound on waiting, not a timing assertion
    while time.monotonic() < deadline and proc.poll() is None:
        ends = [p for p in runs.glob("*/metrics.jsonl") if '"epoch_end": true' in p.read_text()]
        if ends and ends[0].read_text().count('"epoch_end": true') >= 2:
            return proc, ends[0].parent
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(proc.communicate())


def test_a_running_run_shows_running_refuses_a_second_trainer_and_shows_interrupted_once_killed(
        tmp_path, capsys) -> None:
    proc, folder = _start(tmp_path)
    try:
        run = open_run(folder)
        assert run.status() == "running" and run.trainer_state() is None  # no checkpoint yet: still running
        (summary,) = list_runs(tmp_path / "runs")
        logged = [m["epoch"] for m in run.metrics() if m["epoch_end"]]
        assert summary.status == "running" and summary.epochs_done >= logged[-1] >= 2  # from the log's tail
        assert f"process {proc.pid} on {socket.gethostname()}" in summary.live
        # the config says "auto" and no checkpoint says more yet: the trainer's live.json names the device
        assert run.train_config.device == "auto" and read_live(folder).device == "cpu" == summary.device
        rc = main(["train", "--resume", str(folder), "--epochs", "100001"])
        err = capsys.readouterr().err
        assert rc == 1 and f"is being trained by process {proc.pid}" in err and "Traceback" not in err
        with pytest.raises(RunError, match="being trained by"):
            delete_run(folder)
        assert not run.discard_if_unused() and folder.is_dir()
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert run.status() == "interrupted" and list_runs(tmp_path / "runs")[0].status == "interrupted"
    assert not read_live(folder).alive


def test_a_cleanly_stopped_run_leaves_no_live_file_and_a_mid_run_checkpoint_alone_reads_interrupted(
        tmp_path) -> None:
    proc, folder = _start(tmp_path)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130 and not (folder / LIVE_FILE).exists()
    run = open_run(folder)
    assert run.status() == "stopped" and run.trainer_state()["status"] == "stopped"
    # A checkpoint saved mid-run ("running") by a process gone without a trace (an old run, a crashed host).
    doc = json.loads((folder / "checkpoint.json").read_text())
    (folder / "checkpoint.json").write_text(json.dumps({**doc, "status": "running"}))
    assert run.status() == "interrupted"


def test_watch_follows_a_run_trained_by_another_process_to_its_end(tmp_path) -> None:
    """`rnnlab watch` (a process of its own) started on a running run prints its samples as they come and
    ends with the trainer's own last line when the trainer is stopped from elsewhere (SIGINT to it)."""
    proc, folder = _start(tmp_path, "--sample-every", "1", "--sample-len", "5")
    env = {**os.environ, "RNNLAB_HOME": str(tmp_path / "home")}
    watch = subprocess.Popen([sys.executable, "-m", "tui.cli", "watch", str(folder), "--interval", "0.1"], cwd=REPO,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # let the watcher read the history and wait for more (not a timing assertion)
        assert watch.poll() is None  # still following: the run goes on
        proc.send_signal(signal.SIGINT)
        train_out, _ = proc.communicate(timeout=120)
        out, err = watch.communicate(timeout=120)
    finally:
        for p in (proc, watch):
            if p.poll() is None:
                p.kill()
    assert watch.returncode == 0 and "Traceback" not in err
    assert out.strip() == train_out.strip() and out.startswith("stopped: epoch ")  # the trainer's own last line
    samples = (folder / "samples.log").read_text().splitlines()
    assert samples and all(line in err for line in samples)  # every logged sample was shown


def test_watch_says_interrupted_when_the_trainer_was_killed(tmp_path, capsys) -> None:
    proc, folder = _start(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    rc = main(["watch", str(folder)])
    out, err = capsys.readouterr()
    assert rc == 1 and out.startswith("interrupted: epoch 0, step 0 saved") and "Traceback" not in err
    assert main(["watch", str(folder), "--interval", "0"]) == 2


def test_runs_follow_is_watch(tmp_path, capsys) -> None:
    """`rnnlab runs --follow RUN` is `rnnlab watch RUN`: on a killed run both print the same last line."""
    proc, folder = _start(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert main(["watch", str(folder)]) == 1
    watched = capsys.readouterr().out
    assert main(["runs", "--follow", str(folder)]) == 1
    assert capsys.readouterr().out == watched and watched.startswith("interrupted: ")


def test_read_samples_reads_samples_log_alone(tmp_path) -> None:
    from engine.events import Sample
    from engine.follow import read_samples

    (tmp_path / "samples.log").write_text("epoch 1: 'ab'\nepoch 2: broken\nepoch 3: 'abc\\n'\nepoch 4: 'par")
    assert read_samples(tmp_path, "a") == [Sample(1, "a", "ab"), Sample(3, "a", "abc\n")]
    assert read_samples(tmp_path / "none") == []
