"""``rnnlab lab bptt power|gradients|steps``: tables and JSON equal the engine's figures; bad options exit 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from engine.config import ModelConfig, TrainConfig
from engine.labs.bptt import FlowConfig, PowerConfig, power_iteration
from engine.labs.bptt_grads import corpus_windows, gradient_flow, run_gradient_flow, step_norms
from engine.runs import open_run
from tui.cli import main
from tui.cli.lab_bptt import flow_distances, power_rows


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # the commands set one thread (gradients) or as told


def out_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def table_rows(text: str, header_start: str) -> list[list[str]]:
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.split()[:1] == [header_start])
    return [line.split() for line in lines[i + 1:]]


def test_power_table_and_json(capsys):
    r = power_iteration(PowerConfig(gap=0.5, lambda1=0.9, steps=40))
    assert main(["lab", "bptt", "power", "--gap", "0.5", "--lambda1", "0.9", "--steps", "40"]) == 0
    text = capsys.readouterr().out
    assert f"alignment > 0.99 first at k = {r.steps_to_aligned} (certain from k = {r.bound_to_aligned}" in text
    assert "gap |λ2/λ1| = 0.5;" in text and "log10 |λ1| = -0.0458" in text
    rows = table_rows(text, "k")
    assert [int(row[0]) for row in rows] == power_rows(40) == [0, 1, 2, 3, 5, 8, 12, 18, 27, 40]
    for row in rows:
        k = int(row[0])
        assert row[1:] == [f"{r.alignment[k]:.6f}", f"{r.predicted[k]:.6f}", f"{r.tangent[k]:.3e}",
                           f"{0.5**k * r.tangent[0]:.3e}", f"{r.log10_norm[k]:.2f}"]
    doc = out_json(capsys, ["lab", "bptt", "power", "--gap", "0.5", "--lambda1", "0.9", "--steps", "40", "--json"])
    assert doc["alignment"] == r.alignment and doc["log10_norm"] == r.log10_norm and doc["k"] == list(range(41))
    assert doc["eigenvalues"][0] == [pytest.approx(0.9), 0.0] and doc["x"] == r.x.tolist()
    assert doc["config"] == {"n": 10, "lambda1": 0.9, "gap": 0.5, "steps": 40, "matrix": "symmetric", "seed": 0}


def test_power_gaussian_says_when_lambda1_is_complex(capsys):
    assert main(["lab", "bptt", "power", "--matrix", "gaussian"]) == 0
    text = capsys.readouterr().out
    assert "λ1 is one of a complex pair" in text and "closed form" not in text


def test_gradients_table_and_json(capsys):
    cfg = FlowConfig(models=("rnn:relu", "mingru"), scales=(0.5, 4.0), num_steps=60, batch_size=4)
    curves = gradient_flow(cfg)
    argv = ["lab", "bptt", "gradients", "--model", "rnn:relu,mingru", "--scale", "0.5,4", "--num-steps", "60",
            "--batch-size", "4"]
    assert main(argv) == 0
    rows = table_rows(capsys.readouterr().out, "model")
    assert flow_distances(60) == [1, 10, 50, 60]
    assert [row[:2] for row in rows] == [["rnn:relu", "0.5"], ["rnn:relu", "4"], ["mingru", "-"]]
    for row, c in zip(rows, curves):
        assert row[-4:] == [f"{c.at_distance(d):.2f}" for d in (1, 10, 50, 60)]
        assert row[-5] == f"{c.per_step():.3g}"
    assert float(rows[0][2]) == pytest.approx(curves[0].radius[0][0], rel=1e-2)
    assert rows[2][2:4] == ["no", "W_hh"]
    doc = out_json(capsys, [*argv, "--json"])
    assert [c["log10_norm"] for c in doc["curves"]] == [c.log10_norm for c in curves]
    assert [c["scale"] for c in doc["curves"]] == [0.5, 4.0, None]
    assert doc["config"]["models"] == ["rnn:relu", "mingru"]


def test_gradients_json_writes_an_exact_zero_gradient_as_null(capsys):
    doc = out_json(capsys, ["lab", "bptt", "gradients", "--model", "rnn", "--scale", "0", "--num-steps", "5",
                            "--json"])
    assert doc["curves"][0]["log10_norm"][:5] == [None] * 5 and doc["curves"][0]["log10_norm"][5] == pytest.approx(0)


def test_steps_table_and_json(capsys, corpus_dir, pipeline):
    argv = ["lab", "bptt", "steps", "--corpus", str(corpus_dir / "timemachine.txt"), "--num-hiddens", "16",
            "--batch-size", "4", "--num-steps", "5", "--max-tokens", "1500", "--steps", "12", "--window", "5",
            "--lr", "2", "--clip-theta", "0.3", "--threads", "1"]
    model_cfg = ModelConfig(kind="rnn", activation="relu", num_hiddens=16, vocab_size=len(pipeline.vocab))
    train_cfg = TrainConfig(batch_size=4, num_steps=5, max_tokens=1500, lr=2.0, clip_theta=0.3, device="cpu")
    records = list(step_norms(pipeline.ids, model_cfg, train_cfg, 12))
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert text.startswith("12 steps of rnn 16x1 on ")
    clipped = sum(r.clipped for r in records)
    assert f"clipping changed the gradient at {clipped} of 12 steps" in text
    rows = table_rows(text, "steps")
    assert [row[0] for row in rows] == ["1-5", "6-10", "11-12"]
    for row, (a, b) in zip(rows, [(0, 5), (5, 10), (10, 12)]):
        w = records[a:b]
        top = max(w, key=lambda r: r.grad_norm)
        assert row[1:] == [f"{sum(r.grad_norm for r in w) / len(w):.4g}", f"{top.grad_norm:.4g}", str(top.step),
                           f"{sum(r.clipped for r in w)}/{len(w)}", f"{sum(r.loss for r in w) / len(w):.4f}"]
    doc = out_json(capsys, [*argv, "--json"])
    assert [s["grad_norm"] for s in doc["steps"]] == [r.grad_norm for r in records]
    assert [s["clipped"] for s in doc["steps"]] == [r.clipped for r in records]
    assert [w["step"] for w in doc["windows"]] == [5, 10, 12]
    assert doc["summary"]["clipped"] == clipped and doc["train"]["clip_theta"] == 0.3


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, corpus_dir) -> tuple[Path, str]:
    d = tmp_path_factory.mktemp("runs")
    assert main(["train", "--corpus", str(corpus_dir / "timemachine.txt"), "--model", "gru", "--num-hiddens", "8",
                 "--epochs", "1", "--batch-size", "4", "--num-steps", "5", "--max-tokens", "600", "--threads", "1",
                 "--sample-every", "0", "--runs-dir", str(d)]) == 0
    (name,) = [p.name for p in d.iterdir() if p.is_dir()]
    return d, name


def test_gradients_and_steps_of_a_saved_run(saved_run, capsys):
    d, name = saved_run
    doc = out_json(capsys, ["lab", "bptt", "gradients", "--run", name, "--runs-dir", str(d), "--num-steps", "20",
                            "--batch-size", "3", "--scale", "1,2", "--json"])
    run = open_run(name, d)
    expected = run_gradient_flow(run.load_model(), corpus_windows(run.corpus_ids(), 20, 3, 0), [1.0, 2.0], name)
    assert [c["log10_norm"] for c in doc["curves"]] == [c.log10_norm for c in expected]
    assert doc["curves"][0]["model"] == name and len(doc["curves"][0]["radius"][0]) == 3  # GRU: r, z, n blocks
    doc = out_json(capsys, ["lab", "bptt", "steps", "--run", name, "--runs-dir", str(d), "--steps", "3", "--json"])
    assert [s["step"] for s in doc["steps"]] == [1, 2, 3]
    assert doc["model"]["kind"] == "gru" and doc["train"]["batch_size"] == 4  # the run's own options
    assert all(math.isfinite(s["grad_norm"]) for s in doc["steps"])


@pytest.mark.parametrize("argv, message", [
    (["lab"], "name a lab: bptt"),
    (["lab", "bptt"], "name an experiment: power, gradients, steps or truncation"),
    (["lab", "bptt", "power", "--gap", "1.5"], "gap must be in [0, 1) (got 1.5)"),
    (["lab", "bptt", "power", "--n", "1"], "n must be in 2..500 (got 1)"),
    (["lab", "bptt", "gradients", "--scale", "1,x"], "--scale must be numbers separated by commas"),
    (["lab", "bptt", "gradients", "--model", "transformer"], "model must be one of"),
    (["lab", "bptt", "gradients", "--threads", "-1"], "--threads must be 0"),
    (["lab", "bptt", "gradients", "--run", "nope", "--runs-dir", "."], "no run named 'nope'"),
    (["lab", "bptt", "steps", "--steps", "0"], "steps must be in 1..100000 (got 0)"),
    (["lab", "bptt", "steps", "--lr", "-1"], "lr must be a positive number"),
    (["lab", "bptt", "steps", "--window", "0"], "window must be a positive number of steps"),
])
def test_bad_options_exit_2_with_a_message(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
