"""``rnnlab corpus``: printed figures, JSON output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tui.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(["corpus", *argv])
    except SystemExit as exc:  # argparse errors
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def test_default_is_timemachine_char(capsys):
    rc, out, err = run_cli(capsys, "--top", "2")
    assert rc == 0 and err == ""
    assert out.startswith("The Time Machine (H. G. Wells)")
    assert "lines        3221\n" in out
    assert "tokens       170580\n" in out
    assert "vocab size   28   (at min_freq 0: 28, 10: 28)\n" in out
    assert "   1  ␣    29927\n" in out  # the space, made visible
    assert "e␣" in out and "6037" in out


def test_word_figures_from_the_book(capsys):
    rc, out, _ = run_cli(capsys, "timemachine", "--tokenizer", "word", "--top", "1")
    assert rc == 0
    assert "tokens       32775\n" in out
    assert "vocab size   4580   (at min_freq 0: 4580, 10: 400)\n" in out
    assert "   1  the     2261\n" in out
    assert "   1  of the      309\n" in out
    assert "   1  the time traveller       59\n" in out
    assert "  1       4579      32775  1.044\n" in out  # n, distinct, total, Zipf exponent


def test_min_freq_reports_unk_rate(capsys):
    rc, out, _ = run_cli(capsys, "--tokenizer", "word", "--min-freq", "10", "--max-n", "1")
    assert rc == 0
    assert "vocab size   400 " in out and "<unk> rate   26.42%   (8659 tokens)" in out


def test_json_output(capsys):
    rc, out, _ = run_cli(capsys, "--tokenizer", "word", "--json", "--top", "3", "--max-n", "3",
                         "--zipf-ranks", "1-100")
    assert rc == 0
    s = json.loads(out)
    assert (s["lines"], s["tokens"], s["vocab_size"], s["tokenizer"]) == (3221, 32775, 4580, "word")
    assert s["top_tokens"][0] == ["the", 2261]
    assert [g["n"] for g in s["ngrams"]] == [1, 2, 3]
    assert s["ngrams"][2]["top"][0] == [["the", "time", "traveller"], 59]
    assert s["zipf_rank_range"] == [1, 100]


def test_local_file_raw_mode(capsys, tmp_path):
    f = tmp_path / "tiny.txt"
    f.write_bytes(b"\xef\xbb\xbfHello hello\r\nWorld!\r\n")
    rc, out, _ = run_cli(capsys, str(f), "--mode", "raw", "--tokenizer", "word", "--json")
    s = json.loads(out)
    assert rc == 0 and s["corpus"]["name"] == "tiny"
    assert (s["lines"], s["tokens"], s["vocab_size"]) == (2, 3, 4)
    assert s["top_tokens"] == [["Hello", 1], ["hello", 1], ["World!", 1]]


def test_subword_tokenizer(capsys):
    rc, out, _ = run_cli(capsys, "--tokenizer", "bpe", "--vocab-size", "300", "--max-n", "1", "--json")
    s = json.loads(out)
    assert rc == 0 and s["tokenizer"] == "bpe"
    assert s["vocab_size"] <= 300 and s["vocab_size_at_min_freq"] is None
    assert s["tokens"] < 170580  # fewer pieces than characters


@pytest.mark.parametrize(
    "argv, message",
    [
        (["missing.txt"], "missing.txt: no such file"),
        (["moby_dick"], "built-in corpora are: timemachine, war_of_the_worlds"),
        (["--top", "0"], "argument --top: must be >= 1 (got 0)"),
        (["--min-freq", "-1"], "argument --min-freq: must be >= 0"),
        (["--tokenizer", "sentencepiece"], "invalid choice"),
        (["--mode", "lower"], "invalid choice"),
        (["--zipf-ranks", "100-10"], "need 1 <= LO <= HI"),
    ],
)
def test_bad_arguments_exit_2(capsys, argv, message):
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2 and out == "" and message in err


def test_directory_and_binary_files_exit_2(capsys, tmp_path):
    rc, _, err = run_cli(capsys, str(tmp_path))
    assert rc == 2 and "is a directory" in err
    (tmp_path / "img.txt").write_bytes(b"\x89PNG\r\n")
    rc, _, err = run_cli(capsys, str(tmp_path / "img.txt"))
    assert rc == 2 and "not UTF-8 text (byte 0x89 at offset 0)" in err


def test_catalog_corpus_unavailable_exits_1(capsys, offline_home):
    rc, out, err = run_cli(capsys, "timemachine", "--offline")
    assert rc == 1 and out == ""
    assert "rnnlab corpus path/to/timemachine.txt" in err and "RNNLAB_CORPUS_DIR" in err


def test_checksum_warning_and_error(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("RNNLAB_CORPUS_DIR", str(tmp_path))
    (tmp_path / "war_of_the_worlds.txt").write_text("No one would have believed.\n")
    rc, out, err = run_cli(capsys, "war_of_the_worlds", "--tokenizer", "word", "--max-n", "1")
    assert rc == 0 and "rnnlab corpus: warning:" in err and "expected sha256" in err
    assert "tokens       5\n" in out
    (tmp_path / "timemachine.txt").write_text("tampered\n")
    rc, _, err = run_cli(capsys, "timemachine")
    assert rc == 1 and "expected sha256 8424dbd9" in err


def test_console_entry_point_subprocess(tmp_path):
    missing = tmp_path / "nope.txt"
    proc = subprocess.run([sys.executable, "-m", "tui.cli", "corpus", str(missing)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == f"rnnlab corpus: error: {missing}: no such file; pass the path of a plain-text (.txt) file"


@pytest.mark.parametrize("argv, message", [
    (["corpus", "--tokenizer", "unigram", "--vocab-size", "5"], "vocab_size 5 is too small for unigram"),
    (["train", "--corpus", "nosuch"], "unknown corpus 'nosuch'"),
    (["generate", "nosuch"], "no run named 'nosuch'"),
    (["train", "--resume", "nosuch"], "no run named 'nosuch'"),
    (["runs", "--delete", "nosuch"], "no run named 'nosuch'"),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    from tui.cli import main

    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_output_into_a_closed_pipe_ends_quietly():
    import subprocess
    import sys

    proc = subprocess.run(f"{sys.executable} -m tui.cli corpus --max-n 4 --json | head -c 10",
                          shell=True, capture_output=True, text=True)
    assert proc.stdout == "{\n  \"corpu" and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_d2l_mode_on_chinese_text_warns_and_suggests_raw(capsys, tmp_path):
    f = tmp_path / "zh.txt"
    f.write_text("北京欢迎你。这是一个中文句子。\n", encoding="utf-8")
    rc, out, err = run_cli(capsys, str(f), "--max-n", "1")
    assert rc == 0 and "tokens       0\n" in out
    assert "rnnlab corpus: warning: d2l preprocessing keeps only the letters a-z" in err
    assert "(--mode raw)" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(capsys, str(f), "--max-n", "1", "--mode", "raw")
    assert rc == 0 and err == ""
