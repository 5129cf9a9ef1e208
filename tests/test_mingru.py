"""minGRU, the cell added as one module and one registry line (issue 10): the log-space scan stays accurate
over long float32 sequences, and the kind trains on The Time Machine from the CLI and from the TUI's form and
generates the continuation a plain forward pass gives. (Its maths against Feng et al.'s sequential
definition, its step and its gradients: tests/test_cells.py, which covers every registered cell.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.models.mingru import CHUNK, min_gru_scan
from engine.runs import open_run
from tui.cli import main
from tui_helpers import open_train, run_app, wait_training
from tui_oracles import hand_continuation, hand_val_ppl

TINY = ["--tokenizer", "char", "--num-hiddens", "32", "--epochs", "3", "--batch-size", "8", "--num-steps", "10",
        "--max-tokens", "3000", "--threads", "1", "--sample-every", "0", "--optimizer", "adam", "--lr", "0.01"]


def _loop(A: torch.Tensor, H0: torch.Tensor) -> torch.Tensor:
    """H_t = (1 − z) H_{t-1} + z h̃, one step at a time (float64)."""
    h, Hh, out = A.shape[-1] // 2, H0, []
    for a in A:
        z, pre = torch.sigmoid(a[:, :h]), a[:, h:]
        Hh = (1 - z) * Hh + z * torch.where(pre >= 0, pre + 0.5, torch.sigmoid(pre))
        out.append(Hh)
    return torch.stack(out)


def test_long_float32_scans_stay_as_accurate_as_short_ones() -> None:
    """Scanning in chunks of CHUNK steps keeps float32's error at a chunk's: a single scan over 2000 steps
    cancels numbers of size |Σ log(1 − z)| ~ 10³ and loses about 1e-3 relative."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(2000, 4, 32, dtype=torch.float64, generator=g) * 5
    H0 = torch.randn(4, 16, dtype=torch.float64, generator=g)
    assert A.shape[0] > 10 * CHUNK
    ref = _loop(A, H0)
    got = min_gru_scan(A.float(), H0.float()).double()
    assert float(((got - ref).abs() / ref.abs().clamp_min(1e-3)).max()) < 1e-4
    torch.testing.assert_close(min_gru_scan(A, H0), ref, atol=1e-10, rtol=1e-10)


def test_mingru_trains_and_generates_from_the_cli(tmp_path: Path, capsys) -> None:
    assert main(["train", "--model", "mingru", *TINY, "--runs-dir", str(tmp_path)]) == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["kind"] == "mingru"
    ppl = [m["train_ppl"] for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
           if m.get("type") == "Progress" and m["epoch_end"]]
    assert len(ppl) == 3 and ppl[-1] < 0.8 * ppl[0]  # it learns
    capsys.readouterr()
    assert main(["generate", run.name, "--prefix", "time traveller", "--alpha", "inf", "-n", "20",
                 "--runs-dir", str(tmp_path)]) == 0
    # Generation (the Stepper's one-token steps) gives the greedy continuation of plain forward passes.
    assert capsys.readouterr().out.rstrip("\n") == "time traveller" + hand_continuation(run, "time traveller", 20)


def test_the_form_offers_every_cell_and_trains_mingru(corpus_dir) -> None:
    from textual.widgets import Select

    from engine.config import MODEL_KINDS

    async def body(app, pilot):
        await open_train(app, pilot, {("model", "kind"): "mingru", ("model", "num_layers"): 2})
        select = app.screen.query_one("#f-model-kind", Select)
        offered = [value for _, value in select._options]
        await pilot.press("ctrl+s")
        await wait_training(app, pilot)
        return offered, app.session.run_path

    offered, run_path = run_app(body)
    assert tuple(offered) == MODEL_KINDS and "mingru" in offered
    config = json.loads((Path(run_path) / "config.json").read_text())
    assert (config["model"]["kind"], config["model"]["num_layers"]) == ("mingru", 2)
    summary = open_run(Path(run_path)).summary()
    assert summary.status == "completed" and summary.epochs_done == 2
    assert summary.val_ppl == pytest.approx(hand_val_ppl(Path(run_path)), rel=1e-5)  # the saved weights' own
