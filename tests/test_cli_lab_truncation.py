"""``rnnlab lab bptt truncation``: the table and --json equal engine.labs.truncation's figures; bad options exit 2."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from engine.labs.truncation import TruncationConfig, compare_all, explain, refusals
from tui.cli import main


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # the command sets one thread


SMALL = dict(kind="rnn", num_hiddens=8, epochs=3, batch_size=4, num_steps=5, max_tokens=600, truncation_p=0.4)


def argv(corpus_dir, *more: str) -> list[str]:
    return ["lab", "bptt", "truncation", "--corpus", str(corpus_dir / "timemachine.txt"), "--model", "rnn",
            "--num-hiddens", "8", "--epochs", "3", "--batch-size", "4", "--num-steps", "5", "--max-tokens", "600",
            "--truncation-p", "0.4", *more]


@pytest.fixture(scope="module")
def expected(pipeline):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    c = compare_all(pipeline.ids, len(pipeline.vocab), TruncationConfig(**SMALL))
    torch.set_num_threads(before)
    return c


def test_json_equals_the_engines_figures(capsys, corpus_dir, expected):
    assert main(argv(corpus_dir, "--json")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [s["strategy"] for s in doc["strategies"]] == ["regular", "random", "none"]
    assert doc["train_tokens"] == expected.train_tokens == 540 and doc["config"]["truncation_p"] == 0.4
    for got, want in zip(doc["strategies"], expected.results):
        assert [e["train_ppl"] for e in got["epochs"]] == [e.train_ppl for e in want.epochs]
        assert [e["val_ppl"] for e in got["epochs"]] == [e.val_ppl for e in want.epochs]
        assert [e["steps"] for e in got["epochs"]] == [e.steps for e in want.epochs]
        assert (got["peak_positions"], got["bound_positions"], got["minibatches"]) == (
            want.peak_positions, want.bound_positions, want.minibatches)
    # 540 training tokens: rows of (539 - offset) // 4 ∈ 133..134 tokens hold 26 minibatches of 5 steps
    assert doc["strategies"][0]["minibatches"] == [26, 26, 26]
    assert [e["steps"] for e in doc["strategies"][0]["epochs"]] == [26, 26, 26]
    assert [e["steps"] for e in doc["strategies"][2]["epochs"]] == [1, 1, 1]
    assert doc["explanation"][:3] == explain(expected)[:3]  # the lines without timings
    assert doc["refusals"] == [{"variant": r.variant, "error": r.error, "why": r.why} for r in refusals(0)]


def test_table_shows_the_engines_figures(capsys, corpus_dir, expected):
    assert main(argv(corpus_dir)) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:1] == ["strategy"])
    summary = [line.split() for line in lines[head + 1: head + 4]]
    for row, r in zip(summary, expected.results):
        assert row[0] == r.strategy and row[1] == f"{statistics.median(e.steps for e in r.epochs):g}"
        assert row[4] == f"{r.best_val[0]:.3f}" and row[5] == str(r.best_val[1])
        assert row[6:8] == [f"{r.epochs[-1].train_ppl:.3f}", f"{r.epochs[-1].val_ppl:.3f}"]
        assert row[8:] == [f"{r.peak_positions:,}", f"{r.bound_positions:,}"]
    epochs = next(i for i, line in enumerate(lines) if line.split()[:2] == ["strategy", "epoch"])
    rows = [line.split() for line in lines[epochs + 1: epochs + 10]]
    assert [(row[0], row[1], row[2], row[3], row[5]) for row in rows] == [
        (r.strategy, str(e.epoch), f"{e.train_ppl:.3f}", f"{e.val_ppl:.3f}", str(e.steps))
        for r in expected.results for e in r.epochs]
    assert explain(expected)[0] in text
    assert "loss.backward() on minibatch 2: RuntimeError: Trying to backward through the graph a second time" in text
    assert "loss.backward(retain_graph=True) on minibatch 2: RuntimeError: one of the variables needed" in text


@pytest.mark.parametrize("more, message", [
    (["--epochs", "0"], "epochs must be in 1..1000 (got 0)"),
    (["--strategies", "regular,full"], "strategies must be some of regular, random, none (got ('regular', 'full'))"),
    (["--truncation-p", "0"], "truncation_p must be in (0, 1] (got 0.0)"),
    (["--num-hiddens", "0"], "num_hiddens must be in 1..16384 (got 0)"),
    (["--threads", "-1"], "--threads must be 0"),
    (["--max-tokens", "20"], "batch_size must be at most 2 for num_steps=5 and 18 training tokens (got 4)"),
])
def test_bad_options_exit_2_with_a_message(more, message, capsys, corpus_dir):
    assert main(argv(corpus_dir, *more)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_an_unknown_model_is_refused_by_the_parser(capsys, corpus_dir):
    with pytest.raises(SystemExit) as exc:
        main(argv(corpus_dir, "--model", "transformer"))
    assert exc.value.code == 2 and "invalid choice: 'transformer'" in capsys.readouterr().err


def test_a_missing_corpus_exits_2(capsys, tmp_path):
    assert main(["lab", "bptt", "truncation", "--corpus", str(tmp_path / "nope.txt")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err
