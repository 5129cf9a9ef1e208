"""``rnnlab runs --csv``, ``--show`` and the folded table (issue 13): the CSV reads back equal to the
runs' metrics logs, the command ``--show`` prints parses back (with the real ``rnnlab train``
parser) to the run's configs, and the terminal table shows only the option that differs.

Planted bugs each test was run against (and failed on) are named in its docstring.
"""

from __future__ import annotations

from dataclasses import replace

import ast
import csv
import io
import shlex
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from engine.config import ModelConfig, TrainConfig
from engine.corpus import load_corpus
from engine.export import read_curves_csv
from engine.pipeline import build_pipeline
from engine.runs import create_run, open_run
from engine.trainer import train
from tui.cli import build_parser, main
from tui.cli.runs import list_table
from tui.train_command import command_line, train_argv

TINY = dict(epochs=2, max_tokens=2000, batch_size=8, num_steps=8, sample_len=5, threads=1, device="cpu",
            sample_every=1, log_every_steps=10)
TEXT = "the time traveller was here. he said so!\n" * 40


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, pipeline) -> Path:
    """Two trained runs differing only in lr (1, then 3)."""
    d = tmp_path_factory.mktemp("runs")
    for lr in (1.0, 3.0):
        mc = ModelConfig(kind="rnn", num_hiddens=16, vocab_size=len(pipeline.vocab))
        tc = TrainConfig(**TINY, lr=lr)
        run = create_run(d, mc, tc, pipeline)
        for _ in train(pipeline, mc, tc, run=run):
            pass
    return d


def _names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.is_dir())  # oldest first: lr 1, lr 3


def test_csv_prints_every_progress_line_of_the_runs(runs_dir, tmp_path, capsys):
    """The printed CSV, read with the csv module, holds each run's metrics.jsonl lines in order; -o writes
    the same text. Planted: floats written with :.6g fail it (the read-back differs)."""
    names = _names(runs_dir)
    assert main(["runs", "--csv", *names, "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(out)))
    runs = [open_run(n, runs_dir) for n in names]
    expected = [(r.name, m["epoch"], m["step"], m["train_ppl"], m["val_ppl"]) for r in runs for m in r.metrics()]
    assert [(row["run"], int(row["epoch"]), int(row["step"]), float(row["train_ppl"]),
             float(row["val_ppl"]) if row["val_ppl"] else None) for row in rows] == expected
    assert any(not m["epoch_end"] for r in runs for m in r.metrics())  # lines within epochs are in it too
    back = read_curves_csv(out)
    assert back == {r.name: [{k: v for k, v in m.items() if k != "type"} for m in r.metrics()] for r in runs}
    target = tmp_path / "out" / "curves.csv"
    target.parent.mkdir()
    assert main(["runs", "--csv", *names, "-o", str(target), "--runs-dir", str(runs_dir)]) == 0
    assert target.read_text() == out
    assert f"to {target}" in capsys.readouterr().err


def test_csv_of_a_missing_run_writes_nothing(runs_dir, tmp_path, capsys):
    target = tmp_path / "curves.csv"
    assert main(["runs", "--csv", _names(runs_dir)[0], "nosuch", "-o", str(target), "--runs-dir", str(runs_dir)]) == 2
    assert "no run named 'nosuch'" in capsys.readouterr().err and not target.exists()
    assert main(["runs", "-o", str(target), "--runs-dir", str(runs_dir)]) == 2
    assert "-o/--output goes with --csv" in capsys.readouterr().err


def _parse_back(argv: list[str], run) -> tuple[Any, ModelConfig, TrainConfig]:
    """The command parsed by rnnlab's own parser, configs made as ``rnnlab train`` makes them."""
    assert argv[:2] == ["rnnlab", "train"]
    args = build_parser().parse_args(argv[1:])
    given = lambda names: {n: getattr(args, n) for n in names if getattr(args, n) is not None}  # noqa: E731
    model = ModelConfig(**given(args._model_fields), vocab_size=run.model_config.vocab_size)
    return args, model, TrainConfig(**given(args._train_fields))


def test_the_command_parses_back_to_the_runs_configs(tmp_path):
    """Every option away from its default, a corpus file (not in the catalog) in raw mode with a BPE
    tokenizer: the parsed command makes equal configs and the same corpus and tokenizer options.
    Planted: floats written with :g (lr 0.0031234567 becomes 0.00312346), the tokenizer options left
    out, and the corpus's name instead of its path each fail it."""
    corpus = tmp_path / "my corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    pipe = build_pipeline(load_corpus(str(corpus)), mode="raw", tokenizer="bpe", vocab_size=40, min_freq=2)
    mc = ModelConfig(kind="lstm", vocab_size=len(pipe.vocab), num_hiddens=12, num_layers=2, dropout=0.1,
                     encoding="embedding", embed_size=8)
    tc = TrainConfig(optimizer="adam", lr=0.0031234567, weight_decay=0.01, epochs=3, batch_size=2, num_steps=5,
                     clip="value", clip_theta=0.5, sampler="sequential", truncation="random", truncation_p=0.25,
                     val_fraction=0.2, max_tokens=0, seed=7, device="cpu", sample_prefix="the time",
                     sample_alpha=2.0, sample_every=1)
    run = create_run(tmp_path / "runs", mc, tc, pipe)
    argv = train_argv(run)
    args, model, train_cfg = _parse_back(argv, run)
    assert model == run.model_config == mc
    assert train_cfg == run.train_config == tc
    assert (args.corpus, args.mode, args.tokenizer, args.vocab_size, args.min_freq) == (
        str(corpus.resolve()), "raw", "bpe", 40, 2)
    assert shlex.split(command_line(run)) == argv  # quoted for a shell: the path and prompt hold spaces
    assert "'the time'" in command_line(run)


def test_a_run_of_two_processes_is_copied_with_nproc(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    pipe = build_pipeline(load_corpus(str(corpus)), tokenizer="char")
    mc = ModelConfig(kind="rnn", vocab_size=len(pipe.vocab), num_hiddens=8)
    one = create_run(tmp_path / "runs", mc, TrainConfig(batch_size=2, num_steps=5, device="cpu"), pipe)
    two = create_run(tmp_path / "runs", mc, TrainConfig(batch_size=2, num_steps=5, device="cpu", world_size=2), pipe)
    assert "--nproc" not in train_argv(one)
    argv = train_argv(two)
    assert argv[-2:] == ["--nproc", "2"] and argv[:-2] == train_argv(one)
    args, _, train_cfg = _parse_back(argv, two)
    assert args.nproc == 2 and train_cfg == replace(two.train_config, world_size=1)  # the launcher sets it


def test_show_prints_results_samples_and_the_command(runs_dir, capsys):
    """--show's lines: the best validation perplexity and epoch from metrics.jsonl, every sample of
    samples.log, and last the command, which parses back to the run's configs with the catalog
    corpus's name. Planted: printing only the last sample, and skipping model options, fail it."""
    name = _names(runs_dir)[1]  # lr 3
    assert main(["runs", "--show", name, "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    run = open_run(name, runs_dir)
    ends = [(m["val_ppl"], m["epoch"]) for m in run.metrics() if m["epoch_end"]]
    best, epoch = min(ends)
    assert out[0] == f"run {name}  ({run.path})"
    assert f"best validation perplexity {best:.3f} at epoch {epoch}" in out[1]
    logged = [line.split(": ", 1) for line in (run.path / "samples.log").read_text().splitlines()]
    assert len(logged) == 2
    assert [line for line in out if line.startswith("  epoch ")] == [
        f"  {epoch_}: {ast.literal_eval(text)!r}" for epoch_, text in logged]
    assert "lr 3" in out[out.index(next(line for line in out if line.startswith("options not at")))]
    assert out[-2] == "command:"
    argv = shlex.split(out[-1])
    args, model, train_cfg = _parse_back(argv, run)
    assert (model, train_cfg) == (run.model_config, run.train_config)
    assert args.corpus == "timemachine" and args.tokenizer == "char"


def test_terminal_table_shows_only_the_option_that_differs(runs_dir):
    """Runs differing only in lr: lr is the one option column; the others are in the "same for all" line.
    Planted: no folding (every column shown) fails it."""
    out = io.StringIO()
    assert list_table(str(runs_dir), Console(file=out, force_terminal=True, width=220, color_system=None)) == 0
    lines = out.getvalue().splitlines()
    header = next(line for line in lines if line.startswith("┃"))
    cols = [c.strip() for c in header.strip("┃ ").split("┃")]
    assert cols == ["name", "lr", "best val", "tok/s", "date"]
    same = next(line for line in lines if line.startswith("same for all:"))
    assert "clip norm θ=1" in same and "sgd" in same and "status completed" in same and "lr" not in same
