"""The sweep runner (``engine.sweep``) and ``rnnlab sweep``: grids parsed and refused with the option named,
one tagged run folder per grid point with that point's options, rows ranked by the best validation perplexity
read back from each run's own metrics.jsonl, diverged runs last, a stop keeping the runs finished so far."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.sweep import Point, SweepRow, grid_points, parse_grid, rank_rows, run_sweep
from tui.cli import main

TINY_MODEL = {"kind": "gru", "num_hiddens": 8}
TINY_TRAIN = {"epochs": 2, "batch_size": 4, "num_steps": 8, "max_tokens": 1500, "sample_every": 0, "threads": 1,
              "device": "cpu"}
TINY_FLAGS = ["--model", "gru", "--num-hiddens", "8", "--epochs", "2", "--batch-size", "4", "--num-steps", "8",
              "--max-tokens", "1500", "--sample-every", "0", "--threads", "1", "--device", "cpu"]


def _configs(pipeline, **train):
    from engine.config import ModelConfig, TrainConfig

    return (ModelConfig(vocab_size=len(pipeline.vocab), **TINY_MODEL), TrainConfig(**{**TINY_TRAIN, **train}))


def _epoch_ends(run_dir: Path) -> list[dict]:
    """metrics.jsonl's epoch-end records, read here without engine.runs."""
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r.get("epoch_end")]


def _run_dirs(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


# -- parsing ---------------------------------------------------------------------------------------------
def test_a_grid_is_typed_after_each_options_default() -> None:
    grid = parse_grid(["num-hiddens=64,128", "lr=0.5,1", "model=gru,lstm", "clip=off", "sample_alpha=inf"])
    assert grid == {"num_hiddens": (64, 128), "lr": (0.5, 1.0), "kind": ("gru", "lstm"), "clip": ("off",),
                    "sample_alpha": (math.inf,)}
    assert all(type(v) is int for v in grid["num_hiddens"]) and all(type(v) is float for v in grid["lr"])


@pytest.mark.parametrize("specs,needle", [
    (["bogus=1,2"], "there is no option 'bogus'"),
    (["num_hiddens=64,1.5"], "--grid num_hiddens: num_hiddens must be an integer (got '1.5')"),
    (["lr="], "--grid lr: give a comma-separated list"),
    (["lr=1,,2"], "--grid lr: give a comma-separated list"),
    (["model=gru,tfm"], "--grid kind: 'tfm' is not one of"),
    (["lr=1,1.0"], "--grid lr lists 1.0 more than once"),
    (["lr=1", "lr=2"], "--grid lr is given twice"),
    (["vocab_size=30"], "vocab_size is set by the corpus"),
    (["lr"], "--grid takes NAME=V1,V2"),
    ([], "at least one --grid"),
])
def test_a_bad_grid_names_the_option(specs, needle) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_grid(specs)
    assert needle in str(exc.value)


def test_points_are_the_grids_product_last_option_fastest() -> None:
    grid = {"num_layers": (1, 2, 3), "lr": (0.5, 1.0), "kind": ("gru", "lstm")}
    expected = []
    for n in (1, 2, 3):
        for lr in (0.5, 1.0):
            for kind in ("gru", "lstm"):
                expected.append({"num_layers": n, "lr": lr, "kind": kind})
    points = grid_points(grid)
    assert [p.values for p in points] == expected and len(points) == 3 * 2 * 2
    assert points[1].name == "num_layers=1 lr=0.5 kind=lstm" and points[2].name == "num_layers=1 lr=1 kind=gru"


def test_rank_puts_completed_first_then_stopped_then_diverged() -> None:
    def row(label: str, status: str, ppl: float | None) -> SweepRow:
        return SweepRow(0, label, {}, label, status, ppl, 1, ppl, ppl, ppl, 1)

    rows = [row("a", "diverged", 1.5), row("b", "completed", 12.0), row("c", "stopped", 2.0),
            row("d", "completed", 9.0), row("e", "completed", None), row("f", "failed", 1.0)]
    ranked = rank_rows(rows)
    assert [r.label for r in ranked] == ["d", "b", "e", "c", "f", "a"]  # within a group by perplexity
    assert [r.rank for r in ranked] == [1, 2, 3, 4, 5, 6]


# -- running ---------------------------------------------------------------------------------------------
def test_one_tagged_run_per_point_ranked_by_its_own_metrics(pipeline, tmp_path) -> None:
    from engine.runs import list_runs

    model_cfg, train_cfg = _configs(pipeline)
    grid = parse_grid(["num_hiddens=6,10", "lr=0.5,3"])
    events = []
    sweep = run_sweep(pipeline, model_cfg, train_cfg, grid_points(grid), runs_dir=tmp_path, tags={"who": "test"},
                      progress=lambda p: events.append((p.index, p.run, p.event)))
    dirs = _run_dirs(tmp_path)
    assert len(dirs) == 4 == sweep.planned and not sweep.stopped
    configs = {d.name: json.loads((d / "config.json").read_text(encoding="utf-8")) for d in dirs}
    # the folders hold the grid's product, each once
    assert sorted((c["model"]["num_hiddens"], c["train"]["lr"]) for c in configs.values()) == [
        (h, lr) for h in (6, 10) for lr in (0.5, 3.0)]
    for c in configs.values():  # the base's other options are kept
        assert c["train"]["epochs"] == 2 and c["train"]["num_steps"] == 8 and c["model"]["kind"] == "gru"
        assert c["tags"] == {"who": "test", "sweep": sweep.id,
                             "point": f"num_hiddens={c['model']['num_hiddens']} lr={c['train']['lr']:g}"}
    assert {s.tags["sweep"] for s in list_runs(tmp_path)} == {sweep.id}
    # the ranking, checked against each run's metrics.jsonl
    best = {}
    for d in dirs:
        ends = _epoch_ends(d)
        assert [e["epoch"] for e in ends] == [1, 2]
        top = min(ends, key=lambda e: e["val_ppl"])
        best[d.name] = (top["val_ppl"], top["epoch"], top["train_ppl"], ends[-1]["train_ppl"])
    assert [r.run for r in sweep.rows] == sorted(best, key=lambda name: best[name][0])
    for r in sweep.rows:
        assert (r.best_val_ppl, r.best_epoch, r.train_ppl, r.last_train_ppl) == best[r.run]
        assert r.status == "completed" and r.epochs_done == 2 and r.values == {
            "num_hiddens": configs[r.run]["model"]["num_hiddens"], "lr": configs[r.run]["train"]["lr"]}
    assert [r.rank for r in sweep.rows] == [1, 2, 3, 4]
    # progress: each run announced (event None) before its events, in grid order
    starts = [(i, run) for i, run, ev in events if ev is None]
    assert [i for i, _ in starts] == [0, 1, 2, 3] and {run for _, run in starts} == set(best)


def test_a_diverged_run_is_a_row_ranked_last_not_an_error(pipeline, tmp_path) -> None:
    model_cfg, train_cfg = _configs(pipeline, clip="off")
    sweep = run_sweep(pipeline, model_cfg, train_cfg, grid_points({"lr": (1000.0, 1.0)}), runs_dir=tmp_path)
    assert [r.values["lr"] for r in sweep.rows] == [1.0, 1000.0]
    assert [r.status for r in sweep.rows] == ["completed", "diverged"]
    state = json.loads((tmp_path / sweep.rows[1].run / "checkpoint.json").read_text(encoding="utf-8"))
    assert state["status"] == "diverged"


def test_a_stop_keeps_the_runs_finished_so_far(pipeline, tmp_path) -> None:
    from engine.events import Progress

    model_cfg, train_cfg = _configs(pipeline)
    stop = threading.Event()

    def stop_in_the_second_run(p) -> None:  # after its first epoch
        if p.index == 1 and isinstance(p.event, Progress) and p.event.epoch_end:
            stop.set()

    sweep = run_sweep(pipeline, model_cfg, train_cfg, grid_points({"num_hiddens": (6, 8, 10)}), runs_dir=tmp_path,
                      stop=stop, progress=stop_in_the_second_run)
    assert sweep.stopped and sweep.planned == 3
    dirs = _run_dirs(tmp_path)
    assert len(dirs) == 2  # the third point never started
    status = {d.name: json.loads((d / "checkpoint.json").read_text(encoding="utf-8"))["status"] for d in dirs}
    assert sorted(status.values()) == ["completed", "stopped"]
    assert [(r.values["num_hiddens"], r.status) for r in sweep.rows] == [(6, "completed"), (8, "stopped")]
    assert sweep.rows[1].epochs_done == len(_epoch_ends(tmp_path / sweep.rows[1].run)) >= 1


@pytest.mark.parametrize("when", ["in the last run", "between runs"])
def test_a_stop_in_the_last_run_or_between_runs_marks_the_sweep_stopped(pipeline, tmp_path, when) -> None:
    from engine.events import Finished, Progress

    model_cfg, train_cfg = _configs(pipeline)
    stop = threading.Event()

    def stop_now(p) -> None:
        if when == "in the last run" and p.index == 1 and isinstance(p.event, Progress):
            stop.set()
        if when == "between runs" and p.index == 0 and isinstance(p.event, Finished):
            stop.set()

    sweep = run_sweep(pipeline, model_cfg, train_cfg, grid_points({"seed": (0, 1)}), runs_dir=tmp_path, stop=stop,
                      progress=stop_now)
    assert sweep.stopped
    expected = ["completed", "stopped"] if when == "in the last run" else ["completed"]
    assert [r.status for r in sweep.rows] == expected and len(_run_dirs(tmp_path)) == len(expected)


def test_a_row_is_read_from_the_runs_metrics(pipeline, tmp_path) -> None:
    """Best validation epoch, its training perplexity and the last epoch's, from a metrics.jsonl written here."""
    from engine.runs import create_run, open_run
    from engine.sweep import row_of

    model_cfg, train_cfg = _configs(pipeline)
    run = create_run(tmp_path, model_cfg, train_cfg, pipeline)
    records = [{"epoch": 1, "epoch_end": True, "train_ppl": 20.0, "val_ppl": 18.0},
               {"epoch": 2, "epoch_end": False, "train_ppl": 3.0, "val_ppl": 1.0},  # within an epoch: not counted
               {"epoch": 2, "epoch_end": True, "train_ppl": 15.0, "val_ppl": 14.5},
               {"epoch": 3, "epoch_end": True, "train_ppl": 12.0, "val_ppl": 16.0},
               {"epoch": 4, "epoch_end": True, "train_ppl": 11.0, "val_ppl": "inf"}]
    (run.path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    row = row_of(open_run(run.path), Point({"lr": 0.5}))
    assert (row.best_val_ppl, row.best_epoch, row.train_ppl) == (14.5, 2, 15.0)
    assert (row.last_train_ppl, row.last_val_ppl, row.epochs_done, row.status) == (11.0, None, 4, "new")
    assert row.label == "lr=0.5" and row.run == run.name


def test_a_bad_point_fails_before_any_folder_is_made(pipeline, tmp_path) -> None:
    model_cfg, train_cfg = _configs(pipeline)
    with pytest.raises(ConfigError, match="sweep point num_layers=1 dropout=0.1: dropout must be 0"):
        run_sweep(pipeline, model_cfg, train_cfg, grid_points({"num_layers": (2, 1), "dropout": (0.1,)}),
                  runs_dir=tmp_path)
    with pytest.raises(ConfigError, match="val_fraction must be above 0"):
        run_sweep(pipeline, model_cfg, train_cfg, grid_points({"val_fraction": (0.1, 0.0)}), runs_dir=tmp_path)
    assert _run_dirs(tmp_path) == []


def test_prepare_changes_the_model_before_training(pipeline, tmp_path) -> None:
    """A point's ``prepare`` acts on the seeded model the trainer trains (8.5.2 scales its embedding)."""
    import torch

    model_cfg, train_cfg = _configs(pipeline, epochs=1)
    seen = []

    def zero_output_layer(model) -> None:
        with torch.no_grad():
            model.linear.weight.zero_()
            model.linear.bias.zero_()
        seen.append(model)

    points = [Point({"seed": 0}), Point({"seed": 0}, label="zeroed", prepare=zero_output_layer)]
    sweep = run_sweep(pipeline, model_cfg, train_cfg, points, runs_dir=tmp_path)
    by = {r.label: r for r in sweep.rows}
    assert len(seen) == 1 and by["zeroed"].best_val_ppl != by["seed=0"].best_val_ppl


# -- rnnlab sweep ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("grid,needle", [
    (["--grid", "bogus=1"], "no option 'bogus'"),
    (["--grid", "num_hiddens=8,x"], "num_hiddens"),
    (["--grid", "lr="], "--grid lr"),
    (["--grid", "epochs=1,3"], "epochs is both fixed (--epochs) and swept"),
    ([], "at least one --grid"),
    (["--grid", "num_layers=2,1", "--dropout", "0.5"], "sweep point num_layers=1: dropout must be 0"),
    (["--grid", "num_layers=1,2", "--dropout", "0.5"], "sweep point num_layers=1: dropout must be 0"),
])
def test_cli_bad_grid_exits_2_naming_the_option(grid, needle, tmp_path, capsys) -> None:
    rc = main(["sweep", *grid, *TINY_FLAGS, "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "Traceback" not in err
    assert _run_dirs(tmp_path / "runs") == []


def test_cli_prints_the_ranked_table_and_json(tmp_path, capsys) -> None:
    runs = tmp_path / "runs"
    assert main(["sweep", "--grid", "seed=0,1", *TINY_FLAGS, "--runs-dir", str(runs)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["rank", "seed", "best", "val", "ppl", "epoch", "train", "ppl", "last",
                                "train", "ppl", "status", "run"]
    body = [line.split() for line in lines[2:4]]
    best = {d.name: min(e["val_ppl"] for e in _epoch_ends(d)) for d in _run_dirs(runs)}
    assert [row[-1] for row in body] == sorted(best, key=best.get)  # ranked by the runs' own metrics
    assert [row[0] for row in body] == ["1", "2"] and all(row[-2] == "completed" for row in body)
    assert [float(row[2]) for row in body] == [pytest.approx(best[row[-1]], rel=6e-4) for row in body]
    assert "2 of 2 runs completed" in lines[4] and "[2/2] seed=1" in err
    assert main(["sweep", "--grid", "lr=0.5,2", *TINY_FLAGS, "--runs-dir", str(runs), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["grid"] == {"lr": [0.5, 2.0]} and doc["planned"] == 2 and doc["stopped"] is False
    assert [r["rank"] for r in doc["rows"]] == [1, 2]
    assert [r["best_val_ppl"] for r in doc["rows"]] == sorted(
        min(e["val_ppl"] for e in _epoch_ends(runs / r["run"])) for r in doc["rows"])
    assert len(_run_dirs(runs)) == 4


def test_cli_ctrl_c_stops_keeps_the_runs_so_far_and_exits_130(tmp_path, monkeypatch, capsys) -> None:
    """A real SIGINT, sent during the second run's first epoch."""
    from engine.events import Progress
    from engine.runs import Run

    log_event = Run.log_event
    seen: set[str] = set()

    def log_and_interrupt(self, event):
        log_event(self, event)
        seen.add(self.name)
        if len(seen) == 2 and isinstance(event, Progress):
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Run, "log_event", log_and_interrupt)
    before = signal.getsignal(signal.SIGINT)
    runs = tmp_path / "runs"
    rc = main(["sweep", "--grid", "seed=0,1,2", *TINY_FLAGS, "--log-every-steps", "1",
               "--runs-dir", str(runs)])
    out, err = capsys.readouterr()
    assert rc == 130, err
    assert "Traceback" not in err and "1 of 3 runs completed (stopped" in out
    assert signal.getsignal(signal.SIGINT) is before
    status = sorted(json.loads((d / "checkpoint.json").read_text(encoding="utf-8"))["status"] for d in _run_dirs(runs))
    assert status == ["completed", "stopped"]
