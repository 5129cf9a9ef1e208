"""``rnnlab lab coverage``: --json figures against coverage counted here, the printed table, the X/Y
example of 0..34 written out by hand, and bad options exiting 2 with a message and no traceback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.corpus import load_corpus
from engine.data import coverage
from engine.pipeline import build_pipeline
from tui.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["lab", "coverage", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def summary(counts: np.ndarray) -> dict:
    return {"min": int(counts.min()), "max": int(counts.max()), "mean": float(np.mean(counts)),
            "std": float(np.sqrt(np.mean((counts - np.mean(counts)) ** 2))),
            "unseen": int((counts == 0).sum()), "unseen_share": float((counts == 0).sum() / len(counts))}


def test_json_figures_equal_the_engines_coverage(capsys) -> None:
    """Every sampler but sentences (d2l mode has no punctuation, so it is left out with the reason)."""
    code, out, err = run(capsys, "--tokens", "3000", "--epochs", "4", "--seed", "5", "--batch-size", "8",
                         "--num-steps", "10", "--stride", "3", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert [r["sampler"] for r in doc["rows"]] == ["random", "sequential", "sliding", "uniform", "fixed"]
    assert "mode raw" in doc["left_out"]["sentences"]
    assert (doc["n_tokens"], doc["stride"]) == (3000, 3)
    for row in doc["rows"]:
        counts = coverage(3000, 8, 10, row["sampler"], 4, seed=5, stride=3)
        want = summary(counts)
        assert {k: row[k] for k in want} == pytest.approx(want), row["sampler"]


def test_sentences_join_in_raw_mode_with_their_padding(capsys) -> None:
    """Raw text keeps '. ! ?': the sentences row counts every token but each sentence's last, and reports
    the share of padded positions of one epoch, counted here from data_iter's minibatches."""
    from engine.data import data_iter
    from engine.sentences import sentence_end_ids

    code, out, err = run(capsys, "--mode", "raw", "--tokens", "4000", "--epochs", "2", "--samplers",
                         "uniform,sentences", "--json")
    assert code == 0, err
    doc = json.loads(out)
    pipe = build_pipeline(load_corpus("timemachine"), mode="raw", tokenizer="char")
    ids, ends = pipe.ids[:4000], sentence_end_ids(pipe.tokenizer)
    row = {r["sampler"]: r for r in doc["rows"]}["sentences"]
    counts = coverage(4000, 32, 35, "sentences", 2, ids=ids, sentence_end_ids=ends)
    assert {k: row[k] for k in summary(counts)} == pytest.approx(summary(counts))
    pad = total = 0
    for _, Y in data_iter(ids, 32, 35, "sentences", rng=np.random.default_rng(0), sentence_end_ids=ends):
        pad, total = pad + int((Y == -100).sum()), total + Y.numel()
    assert row["padding_share"] == pytest.approx(pad / total) and 0 < pad


def test_text_table_shows_each_sampler_with_why(capsys) -> None:
    code, out, _ = run(capsys, "--tokens", "2000", "--epochs", "3", "--samplers", "random,fixed")
    counts = coverage(2000, 32, 35, "fixed", 3, seed=0)
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("fixed"))
    assert line.split()[1:5] == ["0", "3", f"{counts.mean():.3f}", f"{counts.std():.3f}"]
    assert "never read" in line and "2,000 positions" in out


def test_example_prints_the_books_minibatches(capsys) -> None:
    """Seed 0 draws offset 4 for 0..34 in 2 × 5 (checked below): sequential rows of (35 - 4 - 1) // 2 = 15
    tokens start at 4 and 19; three minibatches walk along them."""
    assert int(np.random.default_rng(0).integers(5)) == 4
    code, out, err = run(capsys, "--example", "--tokens", "2000", "--samplers", "sequential,sliding", "--json")
    assert code == 0, err
    doc = json.loads(out)
    seq = doc["book"]["sequential"]
    assert [(b["X"], b["Y"]) for b in seq["batches"]] == [
        ([[4, 5, 6, 7, 8], [19, 20, 21, 22, 23]], [[5, 6, 7, 8, 9], [20, 21, 22, 23, 24]]),
        ([[9, 10, 11, 12, 13], [24, 25, 26, 27, 28]], [[10, 11, 12, 13, 14], [25, 26, 27, 28, 29]]),
        ([[14, 15, 16, 17, 18], [29, 30, 31, 32, 33]], [[15, 16, 17, 18, 19], [30, 31, 32, 33, 34]]),
    ]
    sliding = doc["book"]["sliding"]  # stride 5 // 2 = 2: windows at 0, 2, …, 28 (start + 6 <= 35)
    assert sliding["stride"] == 2 and sliding["num_batches"] == 8
    assert sorted(r[0] for b in sliding["batches"] for r in b["X"]) == list(range(0, 30, 2))
    corpus = doc["corpus"]["sequential"]["batches"][0]
    assert all(len(x) == 35 and x[1:] == y[:-1] for x, y in zip(corpus["x_text"], corpus["y_text"]))
    code, out, _ = run(capsys, "--example", "--tokens", "2000", "--samplers", "sequential")
    assert "X [4, 5, 6, 7, 8]  Y [5, 6, 7, 8, 9]" in out and "corpus, sequential" in out


@pytest.mark.parametrize("argv, message", [
    (["--num-steps", "0"], "--num-steps must be a positive integer (got 0)"),
    (["--samplers", "random,shuffled"], "samplers must be some of random, sequential, sliding, uniform, fixed, "
                                        "sentences (got shuffled)"),
    (["--epochs", "0"], "--epochs must be a positive integer (got 0)"),
    (["--tokens", "100"], "num_steps must be at most 3 for a corpus of 100 tokens with batch_size 32 (got 35)"),
])
def test_bad_options_exit_2_with_a_message(capsys, argv, message) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.strip() == f"rnnlab lab: error: {message}" and "Traceback" not in err
