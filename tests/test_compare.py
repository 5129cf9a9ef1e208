"""Comparing and exporting runs (issue 13): the EMA and log ticks against hand computations, the
plot drawing log10 of the smoothed values, column folding, config diffs and legend names, and the
CSV of a run's curves read back equal to its metrics log.

Runs are made with engine.runs.create_run + engine.trainer.train on a 16-unit RNN, 2,000 tokens.
Planted bugs each test was run against (and failed on) are named in its docstring.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from textual.app import App, ComposeResult

from engine.compare import COLUMNS, config_diff, fold, legend_names, non_defaults, run_facts
from engine.config import ModelConfig, TrainConfig
from engine.export import curves_csv, read_curves_csv
from engine.runs import create_run, list_runs, open_run
from engine.trainer import train
from tui.widgets.axes import ema, int_ticks, log_ticks, tick_label
from tui.widgets.plot import CachedPlot, SeriesPlot

TINY = dict(epochs=2, max_tokens=2000, batch_size=8, num_steps=8, sample_len=5, threads=1, device="cpu")


def make_run(runs: Path, pipeline, train_: bool = True, **train_kw):
    mc = ModelConfig(kind="rnn", num_hiddens=16, vocab_size=len(pipeline.vocab))
    tc = TrainConfig(**{**TINY, **train_kw})
    run = create_run(runs, mc, tc, pipeline)
    if train_:
        for _ in train(pipeline, mc, tc, run=run):
            pass
    return run


# --- EMA and ticks ------------------------------------------------------------------------------------

def test_ema_is_bias_corrected_from_the_first_point():
    """Hand computation: m_t = β m_{t-1} + (1-β) y_t from 0, shown as m_t / (1 - β^t).
    Planted: without the correction the first point is (1-β) y_1 = 0.4, pulled toward zero."""
    assert ema([10, 20, 30], 0.5) == pytest.approx([10, 12.5 / 0.75, 21.25 / 0.875])  # 5/0.5, 12.5/0.75, ...
    assert ema([4, 2], 0.9) == pytest.approx([4, (0.9 * 0.4 + 0.1 * 2) / (1 - 0.81)])  # 0.56 / 0.19
    assert ema([3, 1, 2], 0) == [3, 1, 2]
    with pytest.raises(ValueError, match="beta"):
        ema([1], 1.0)


def test_log_ticks_are_1_2_5_values_and_labels_read_as_numbers():
    """Planted: the 1-2-5 set without 2 gives [5, 10, 50, 100]; a decade loop ending one short of the
    top decade loses 100; labels with :.3g give '2e+04'."""
    assert log_ticks(4.2, 130) == [5, 10, 20, 50, 100]
    assert log_ticks(11.6, 19, max_ticks=4) == [12, 14, 16, 18]  # a narrow range: 1.0..9.9 × 10, every other
    assert log_ticks(1, 1e6, max_ticks=4) == [1, 100, 1e4, 1e6]  # seven powers of ten: every other one
    assert log_ticks(5.2, 5.25) == [5.2, 5.25]  # no readable value inside: the ends
    assert [tick_label(v) for v in (5, 0.5, 20, 20000, 3e6)] == ["5", "0.5", "20", "20k", "3M"]
    assert int_ticks(1, 50, 6) == [10, 20, 30, 40, 50]
    assert int_ticks(1, 3) == [1, 2, 3]
    assert int_ticks(0.5, 0.9) == []


class PlotApp(App):
    def compose(self) -> ComposeResult:
        yield SeriesPlot("p", xlabel="epoch", log_y=True, integer_x=True, id="p")


def _y_labels(text: str) -> list[str]:
    """The labels left of the plot's frame, top to bottom (``200┤``)."""
    return [line.split("┤")[0].strip() for line in text.splitlines() if "┤" in line]


def test_plot_draws_log10_of_the_smoothed_values_with_readable_ticks():
    """ys 10, 100, 1000 are drawn at log10 = 1, 2, 3; smoothed (β 0.5) at 1, 1.25/0.75, 2.125/0.875; the
    zoom keeps the smoothing of the whole series. Ticks: raw values span 10..1000, so 1000, 100, 10.
    Planted: no bias correction; smoothing after the crop starts the zoomed curve at 2 (not 1.667);
    labels written with :.3g read 1e+03."""

    async def main():
        app = PlotApp()
        async with app.run_test(size=(60, 24)) as pilot:
            plot = app.query_one(SeriesPlot)
            plot.set_series("a", [1, 2, 3], [10, 100, 1000])
            plain = plot.drawn_points("a")
            plot.smoothing = 0.5
            smooth = plot.drawn_points("a")
            plot.replot()
            await pilot.pause()
            labels = _y_labels(plot.query_one(CachedPlot).render().plain)
            plot.x_from = 2
            zoomed = plot.drawn_points("a")
            plot.replot()
            await pilot.pause()
            x_axis = plot.query_one(CachedPlot).render().plain.splitlines()[-2]
            return plain, smooth, labels, zoomed, x_axis, plot.series["a"].points()

    plain, smooth, labels, zoomed, x_axis, kept = asyncio.run(main())
    assert plain == ([1, 2, 3], pytest.approx([1, 2, 3]))
    assert smooth == ([1, 2, 3], pytest.approx([1, 1.25 / 0.75, 2.125 / 0.875]))
    assert labels == ["1000", "100", "10"]
    assert zoomed == ([2, 3], pytest.approx([1.25 / 0.75, 2.125 / 0.875]))
    assert x_axis.split() == ["2", "3"]  # whole epochs only
    assert kept == ([1, 2, 3], [10, 100, 1000])  # the series keeps its values; only the drawing changes


# --- columns, diffs, legends ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lr_runs(tmp_path_factory, pipeline):
    """Three trained runs, listed newest first: lr 1 (seed 3), lr 1, lr 3."""
    runs = tmp_path_factory.mktemp("runs")
    for kw in ({"lr": 3.0}, {}, {"seed": 3}):
        make_run(runs, pipeline, log_every_steps=10, **kw)  # progress lines within epochs too
    return runs


def test_runs_differing_only_in_lr_show_only_lr_among_option_columns(lr_runs):
    """The first two runs share lr 1 and the third has lr 3: lr is the one option column shown; the rest
    are folded with their one value. Planted: folding when the first two runs agree folds lr away."""
    facts = [run_facts(s) for s in list_runs(lr_runs)]
    folded = fold(COLUMNS, facts)
    assert [c.key for c in folded.shown if c.option] == ["lr"]
    assert [c.text(f) for c in folded.shown if c.key == "lr" for f in facts] == ["1", "1", "3"]
    same = dict((c.key, v) for c, v in folded.same)
    assert same["model"] == "rnn" and same["size"] == "16×1" and same["clip"] == "norm θ=1"
    assert same["tokens"] == "2,000" and same["epochs"] == "2/2" and same["status"] == "completed"
    assert "best" not in same  # the result a comparison is for never folds
    assert folded.same_line().startswith("same for all: rnn, 16×1, onehot, timemachine, char, sgd, clip norm θ=1")
    # The seed is no column: the diff and the legends name it.
    assert config_diff(facts[:2]) == [("seed", ["3", "0"])]
    assert legend_names(facts[:2], [1, 2]) == ["#1 seed 3", "#2 seed 0"]
    assert legend_names(facts[1:], [2, 3]) == ["#2 lr 1", "#3 lr 3"]
    assert legend_names(facts, [1, 2, 3]) == ["#1 lr 1 · seed 3", "#2 lr 1 · seed 0", "#3 lr 3 · seed 0"]


def test_best_validation_perplexity_and_its_epoch_come_from_the_log(tmp_path, pipeline):
    """The best column is the lowest epoch-end val_ppl and its epoch: 12 at epoch 2 of 20, 12, 15, inf (a
    diverged epoch), not the mid-epoch 5; tokens/s is the last epoch end's. Planted: the last epoch's
    value (inf, then 15), or any line's (5), fail it."""
    run = make_run(tmp_path / "runs", pipeline, train_=False)
    lines = [(1, 20.0, True, 100.0), (2, 5.0, False, 150.0), (2, 12.0, True, 200.0), (3, 15.0, True, 300.0),
             (4, "inf", True, 400.0)]
    (run.path / "metrics.jsonl").write_text("".join(
        json.dumps({"type": "Progress", "epoch": e, "step": e, "train_ppl": 1.0, "val_ppl": v, "tokens_per_s": s,
                    "grad_norm": 0.0, "lr": 1.0, "elapsed_s": 0.0, "eta_s": None, "epochs": 4, "epoch_end": end,
                    "clip_fraction": 0.0}) + "\n" for e, v, end, s in lines))
    (summary,) = list_runs(tmp_path / "runs")
    facts = run_facts(summary)
    assert (facts.best_val_ppl, facts.best_epoch, facts.tokens_per_s) == (12.0, 2, 400.0)
    assert [c.text(facts) for c in COLUMNS if c.key in ("best", "speed")] == ["12 @2", "400"]


def _progress_line(tokens_per_s: float, epoch_end: bool = True) -> str:
    return json.dumps({"type": "Progress", "epoch": 1, "step": 8, "train_ppl": 9.0, "val_ppl": 9.5,
                       "tokens_per_s": tokens_per_s, "grad_norm": 0.5, "lr": 1.0, "elapsed_s": 3.0, "eta_s": 1.0,
                       "epochs": 2, "epoch_end": epoch_end, "clip_fraction": 0.25}) + "\n"


def test_a_run_of_several_processes_shows_its_ranks_and_each_ones_speed(tmp_path, pipeline):
    """A run trained by 2 processes logs the total tokens/s; the table shows 2 ranks and 1.2M = 2 × 600k, and a
    one-process run beside it 1 rank and its speed alone. Planted: the total divided by 1 fails it."""
    one = make_run(tmp_path / "runs", pipeline, train_=False)
    two = make_run(tmp_path / "runs", pipeline, train_=False, world_size=2)
    for run in (one, two):
        (run.path / "metrics.jsonl").write_text(_progress_line(1.2e6))
    facts = {f.summary.name: f for f in map(run_facts, list_runs(tmp_path / "runs"))}
    cell = {c.key: c for c in COLUMNS}
    assert [cell["ranks"].text(facts[r.name]) for r in (one, two)] == ["1", "2"]
    assert [cell["speed"].text(facts[r.name]) for r in (one, two)] == ["1.2M", "1.2M (2×600k)"]
    assert "ranks" in [c.key for c in fold(COLUMNS, list(facts.values())).shown]  # the runs differ in it
    three = make_run(tmp_path / "runs", pipeline, train_=False)  # two one-process runs: one value, folded away
    assert "ranks" not in [c.key for c in fold(COLUMNS, [facts[one.name], run_facts(three.summary())]).shown]


def test_the_live_stats_give_the_total_and_each_ranks_tokens_per_s():
    from engine.events import Progress
    from tui.train_view import progress_text

    p = Progress(**{k: v for k, v in json.loads(_progress_line(1234567.0, False)).items() if k != "type"})
    assert "tok/s 1,234,567" in str(progress_text(p))
    two = str(progress_text(p, 2)).splitlines()
    assert two[1] == "‖g‖ 0.5  clipped 25%  tok/s 1.23M=2×617k" and len(two[1]) <= 43  # 80×24's stats width


def test_legends_name_the_differing_options_not_the_model(tmp_path, pipeline):
    """clip off vs clip norm θ=1 (no training needed: the names come from the configs).
    Planted: naming runs by model and size gives '#1 rnn 16×1' twice."""
    runs = tmp_path / "runs"
    make_run(runs, pipeline, train_=False, clip="norm")
    make_run(runs, pipeline, train_=False, clip="off")
    make_run(runs, pipeline, train_=False, clip="value", clip_theta=0.5)
    facts = [run_facts(s) for s in list_runs(runs)]  # newest first: value, off, norm
    assert legend_names(facts, [1, 2, 3]) == ["#1 clip value θ=0.5", "#2 clip off", "#3 clip norm θ=1"]
    assert config_diff(facts[1:]) == [("clip", ["off", "norm"])]  # θ is 1 in both
    assert config_diff(facts) == [("clip", ["value", "off", "norm"]), ("clip_theta", ["0.5", "1", "1"])]
    assert legend_names(facts[:1], [7]) == ["#7 rnn 16×1"]  # alone: nothing differs
    assert non_defaults(facts[0]) == [("model", "rnn"), ("num_hiddens", "16"), ("epochs", "2"), ("batch_size", "8"),
                                      ("num_steps", "8"), ("clip", "value"), ("clip_theta", "0.5"),
                                      ("max_tokens", "2000"), ("device", "cpu"), ("threads", "1"),
                                      ("sample_len", "5")]


# --- CSV -----------------------------------------------------------------------------------------------

def test_curves_csv_reads_back_equal_to_the_metrics(lr_runs):
    """Every Progress line of both runs, read back (by engine.export and by the csv module) equal to
    Run.metrics(). Planted: floats written with :.6g, or only the epoch-end lines, fail it."""
    a, b = (open_run(s.path) for s in list_runs(lr_runs)[:2])
    text = curves_csv([a, b])
    back = read_curves_csv(text)
    for run in (a, b):
        assert back[run.name] == [{k: v for k, v in m.items() if k != "type"} for m in run.metrics()]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0])[:5] == ["run", "epoch", "step", "train_ppl", "val_ppl"]
    assert [(r["run"], int(r["step"]), float(r["train_ppl"])) for r in rows] == [
        (run.name, m["step"], m["train_ppl"]) for run in (a, b) for m in run.metrics()]


def test_curves_csv_keeps_inf_and_missing_values(tmp_path, pipeline):
    """A diverged line's "inf" and a line without validation come back as the log has them."""
    run = make_run(tmp_path / "runs", pipeline, train_=False)
    lines = [{"type": "Progress", "epoch": 1, "step": 3, "train_ppl": "inf", "val_ppl": None, "tokens_per_s": 10.5,
              "grad_norm": 1e300, "lr": 1.0, "elapsed_s": 0.0, "eta_s": None, "epochs": 2, "epoch_end": False,
              "clip_fraction": 1.0}]
    (run.path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    back = read_curves_csv(curves_csv([run]))[run.name]
    assert back == [{k: v for k, v in lines[0].items() if k != "type"}]
    assert math.isinf(float(back[0]["train_ppl"]))


def test_config_diff_marks_an_option_an_older_run_lacks(lr_runs):
    facts = [run_facts(s) for s in list_runs(lr_runs)[:2]]
    older = replace(facts[1], options={k: v for k, v in facts[1].options.items() if k != "weight_decay"})
    assert ("weight_decay", ["0", "–"]) in config_diff([facts[0], older])
