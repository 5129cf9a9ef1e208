"""``rnnlab lab sequence``: exit codes, the printed tables and --json, against figures computed here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tui.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["lab", "sequence", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def linear_test_mse(tau: int, blocks: tuple[int, ...] | None = None) -> float:
    """One-step test MSE of least squares on D2L's data (seed 0), by hand: features, lstsq, residuals."""
    T, split = 1000, 604
    t = np.arange(1, T + 1)
    x = np.sin(0.01 * t) + 0.2 * np.random.default_rng(0).standard_normal(T)
    blocks = blocks or (1,) * tau
    span = sum(blocks)

    def features(end: int) -> list[float]:  # the window ending before index `end`, oldest block first
        out, stop = [], end
        for size in blocks:
            out.append(x[stop - size:stop].mean())
            stop -= size
        return out[::-1]

    A = np.array([features(i) + [1.0] for i in range(span, split)])
    coef = np.linalg.lstsq(A, x[span:split], rcond=None)[0]
    pred = np.array([features(i) + [1.0] for i in range(split, T)]) @ coef
    return float(np.mean((pred - x[split:]) ** 2))


def test_json_exact_case(capsys) -> None:
    code, out, _ = run(capsys, "--experiments", "exact", "--sigma", "0", "--json")
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == {"config", "split", "exact"}
    assert doc["split"] == 604 and doc["config"]["sigma"] == 0
    exact = doc["exact"]
    w = exact["facts"]["coefficients"]
    assert math.isclose(w[0], -1, abs_tol=1e-8) and math.isclose(w[1], 2 * math.cos(0.01), abs_tol=1e-8)
    assert max(exact["table"][0]["mse"].values()) < 1e-6


def test_text_tables_show_the_figures(capsys) -> None:
    code, out, _ = run(capsys, "--experiments", "exact,blocks", "--epochs", "1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == ("x_t = sin(0.01 t) + N(0, 0.2²), t = 1..1000, seed 0; training targets t <= 604 "
                        "(600 examples of τ = 4), test MSE over t = 605..1000.")
    assert "largest test MSE" in out and "below 1e-6 for every k" in out
    row = {line.split()[0]: line.split() for line in lines if line.startswith(("τ=4 ", "2+2+2+2", "1+1+2+4"))}
    # window, span, linear k=1 …: the one-step MSE of least squares, computed here from scratch
    assert row["τ=4"][1] == "4" and row["τ=4"][2] == f"{linear_test_mse(4):.4g}"
    assert row["2+2+2+2"][2] == f"{linear_test_mse(4, (2, 2, 2, 2)):.4g}"
    assert row["1+1+2+4"][1] == "8" and row["1+1+2+4"][2] == f"{linear_test_mse(4, (1, 1, 2, 4)):.4g}"


@pytest.mark.parametrize("argv, message", [
    (["--tau", "0"], "tau must be in 1..16"),
    (["--experiments", "models,nope"], "experiments must be some of models, tau"),
    (["--sigma", "-1"], "sigma must be in [0, 10]"),
    (["--threads", "-1"], "--threads must be 0"),
    (["--num-steps", "1000"], "num_steps must be in 2..n_train/2 = 300"),
])
def test_bad_options_exit_2_with_a_message(capsys, argv, message) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("rnnlab lab: error: ") and message in err
    assert "Traceback" not in err


def test_parser_does_not_import_torch() -> None:
    """The options live in engine.labs.sequence_config, so `rnnlab --help` stays quick."""
    import subprocess
    import sys

    code = "import sys\nfrom tui.cli import build_parser\nbuild_parser()\nprint('torch' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
