"""``rnnlab train / generate / runs``: exit codes 0, 1, 2 and 130, never a traceback."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from tui.cli import main

TINY = ["--tokenizer", "char", "--model", "gru", "--num-hiddens", "16", "--epochs", "2", "--batch-size", "8",
        "--num-steps", "10", "--max-tokens", "1500", "--threads", "1", "--sample-every", "1", "--sample-len", "10"]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, corpus_dir) -> Path:
    """One tiny run trained through the CLI, shared by the read-only tests."""
    d = tmp_path_factory.mktemp("runs")
    assert main(["train", "--corpus", "timemachine", *TINY, "--runs-dir", str(d)]) == 0
    return d


def only_run(d: Path) -> str:
    (name,) = [p.name for p in d.iterdir() if p.is_dir()]
    return name


def test_train_writes_a_run(runs_dir, capsys):
    name = only_run(runs_dir)
    assert (runs_dir / name / "model.safetensors").is_file()
    assert main(["runs", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "gru 16x1" in out and "2/2" in out and "completed" in out


def test_generate_streams_and_reports_temperature(runs_dir, capsys):
    name = only_run(runs_dir)
    args = ["generate", name, "--prefix", "time traveller", "--alpha", "2", "-n", "20", "--seed", "1",
            "--runs-dir", str(runs_dir)]
    assert main(args) == 0
    first = capsys.readouterr()
    assert first.out.startswith("time traveller") and len(first.out.rstrip("\n")) >= len("time traveller") + 20
    assert "temperature 0.5" in first.err
    assert main(args) == 0 and capsys.readouterr().out == first.out  # seeded
    assert main(["generate", name, "--prefix", "Time!", "--alpha", "inf", "-n", "5", "--top-k", "3",
                 "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr()  # a d2l-mode run: the prompt is lower-cased and '!' becomes a space
    assert out.out.startswith("time ") and "<unk>" not in out.err + out.out


def test_resume_continues_the_run(runs_dir, tmp_path, capsys):
    import shutil

    name = only_run(runs_dir)
    shutil.copytree(runs_dir / name, tmp_path / name)
    assert main(["train", "--resume", name, "--epochs", "3", "--runs-dir", str(tmp_path)]) == 0
    assert "epoch 3" in capsys.readouterr().out
    from engine.runs import open_run

    assert open_run(name, tmp_path).trainer_state()["epoch"] == 3
    assert open_run(name, tmp_path).summary().epochs == 3  # config.json records the new target


@pytest.mark.parametrize("args,needle", [
    (["--lr", "-1"], "lr"),
    (["--batch-size", "0"], "batch_size"),
    (["--num-steps", "100000"], "num_steps"),
    (["--model", "transformer"], "--model"),
    (["--optimizer", "rmsprop"], "--optimizer"),
    (["--weight-decay", "-0.5"], "weight_decay must be zero or a positive number"),
    (["--init", "identity"], "init identity needs a plain RNN cell (scratch or rnn), not gru"),  # TINY's gru
])
def test_bad_options_exit_2_naming_the_option(args, needle, tmp_path, capsys, corpus_dir):
    try:
        rc = main(["train", *TINY, *args, "--runs-dir", str(tmp_path)])
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    assert rc == 2
    assert needle in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # no half-made run folder left behind


def _train_parser():
    import argparse

    from tui.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def test_every_config_field_has_a_flag_and_the_parser_skips_torch():
    import dataclasses
    import subprocess

    from engine.config import ACTIVATIONS, ENCODINGS, MODEL_KINDS, ModelConfig, TrainConfig

    groups = {g.title: {a.dest: a for a in g._group_actions} for g in _train_parser()._action_groups}
    flags = groups["model"]
    assert set(flags) == {f.name for f in dataclasses.fields(ModelConfig)} - {"vocab_size"}
    assert set(groups["training"]) == {f.name for f in dataclasses.fields(TrainConfig)} - {"sentence_end_ids",
                                                                                          "world_size"}
    assert (tuple(flags["kind"].choices), tuple(flags["encoding"].choices), tuple(flags["activation"].choices)) == (
        MODEL_KINDS, ENCODINGS, ACTIVATIONS)
    assert flags["kind"].option_strings == ["--model"]
    code = "import sys; from tui.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # `rnnlab --help` and `rnnlab corpus` stay quick


def test_missing_run_is_a_bad_argument_exit_2(tmp_path, capsys):
    assert main(["generate", "no-such-run", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no run named 'no-such-run'" in err and "Traceback" not in err
    assert main(["train", "--resume", "no-such-run", "--runs-dir", str(tmp_path)]) == 2


def test_ctrl_c_stops_saves_and_exits_130(tmp_path, monkeypatch, capsys):
    """A real SIGINT, sent to this process once training has logged progress."""
    from engine.events import Progress
    from engine.runs import Run

    log_event = Run.log_event

    def log_and_interrupt(self, event):
        log_event(self, event)
        if isinstance(event, Progress) and event.step >= 3:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Run, "log_event", log_and_interrupt)
    before = signal.getsignal(signal.SIGINT)
    rc = main(["train", *TINY, "--epochs", "100000", "--log-every-steps", "1", "--runs-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 130, err
    assert "Traceback" not in err and out.startswith("stopped")
    assert signal.getsignal(signal.SIGINT) is before  # the handler is restored
    from engine.runs import open_run

    state = open_run(only_run(tmp_path), tmp_path).trainer_state()
    assert state["status"] == "stopped" and state["step"] >= 3


def test_keyboard_interrupt_exits_130(tmp_path, monkeypatch, capsys):
    import engine.trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(engine.trainer, "train", interrupted)
    assert main(["train", *TINY, "--runs-dir", str(tmp_path)]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_resume_refuses_a_changed_model_option(tmp_path, capsys):
    from tui.cli import main

    base = ["train", "--runs-dir", str(tmp_path), "--model", "rnn", "--num-hiddens", "8", "--epochs", "1",
            "--max-tokens", "1000", "--batch-size", "4", "--num-steps", "5", "--sample-every", "0"]
    assert main(base) == 0
    run = next(tmp_path.iterdir()).name
    capsys.readouterr()
    rc = main(["train", "--runs-dir", str(tmp_path), "--resume", run, "--num-hiddens", "64", "--epochs", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "--num-hiddens cannot change when resuming" in err and "num_hiddens 8" in err
    assert main(["train", "--runs-dir", str(tmp_path), "--resume", run, "--model", "rnn", "--epochs", "2"]) == 0
    capsys.readouterr()
    assert main(["train", "--runs-dir", str(tmp_path), "--resume", run]) == 2  # finished: say how to go on
    assert "has already trained 2 epochs; pass --epochs N with N > 2" in capsys.readouterr().err


def test_help_shows_the_config_defaults(capsys):
    import dataclasses
    import re

    from engine.config import ModelConfig, TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for name, value in [("epochs", 50), ("num-steps", 35), ("val-fraction", 0.1), ("sampler", "random")]:
        assert re.search(rf"--{name}\b(?:(?!--).)*\(default {value}\)", text), name
        assert str(getattr(TrainConfig(), name.replace("-", "_"))) == str(value)
    assert "--truncation {regular,random,none} BPTT between sequential minibatches: regular (cut at every one, D2L)" in text
    assert re.search(r"--truncation \{regular,random,none\}(?:(?!--).)*\(default regular\)", text)
    assert "(default 'time traveller')" in text
    defaults = ModelConfig()  # the model flags' help shows the dataclass's defaults
    for name in [f.name for f in dataclasses.fields(ModelConfig) if f.name != "vocab_size"]:
        flag = "--model" if name == "kind" else "--" + name.replace("_", "-")
        shown = re.search(rf"{flag}\b(?:(?!--).)*\(default (\S+)\)", text)
        value = getattr(defaults, name)
        assert shown and (shown.group(1) == value if isinstance(value, str) else float(shown.group(1)) == value), name


def test_help_says_adamws_weight_decay_and_when_samples_come(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "adamw (torch's default weight decay 0.01)" in text
    assert ("epochs between samples, and the last epoch samples too; 0 = no samples, not even at the last epoch "
            "(default 10)") in text


def test_runs_piped_is_tab_separated_with_a_header(runs_dir, tmp_path, capsys):
    import shutil

    from engine.runs import list_runs

    d = tmp_path / "runs"
    shutil.copytree(runs_dir, d)
    (d / "not-a-run").mkdir()  # listed as corrupt, still one line of nine fields
    assert main(["runs", "--runs-dir", str(d)]) == 0  # capsys: stdout is not a terminal
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    # The nine columns scripts have always cut come first; the Runs screen's other columns follow them.
    assert lines[0][:9] == ["name", "corpus", "model", "epochs", "train ppl", "val ppl", "device", "status", "date"]
    assert lines[0][9:] == ["hidden×layers", "encoding", "tokenizer", "optimizer", "lr", "clip", "sampler",
                            "truncation", "tokens", "ranks", "best val", "tok/s", "tags"]
    assert len(lines) == 3 and all(len(row) == 22 for row in lines)
    rows = {row[0]: row for row in lines[1:]}
    good = next(r for r in list_runs(d) if not r.error)
    assert rows[good.name][2:6] == ["gru 16x1", "2/2", f"{good.train_ppl:.3f}", f"{good.val_ppl:.3f}"]
    assert rows["not-a-run"][7].startswith("corrupt: ")


def test_d2l_mode_on_chinese_text_says_why_nothing_is_left(tmp_path, capsys):
    zh = tmp_path / "zh.txt"
    zh.write_text("时间机器是一部小说。他说：我们去未来吧。\n" * 200, encoding="utf-8")
    rc = main(["train", "--corpus", str(zh), *TINY, "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert rc == 2 and "drops 100% of this text's letters" in err and "--mode raw" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no run folder left


def test_the_training_bar_fits_80_columns_with_its_time_left() -> None:
    """The bar's figures at 80 columns end with the time left, uncut (they used to push the clocks out as
    '0:00:… -:--:…'); a 2-process run adds each process's tokens/s."""
    import re

    from rich.console import Console

    from engine.config import TrainConfig
    from engine.events import Progress
    from tui.cli.train import EventPrinter

    p = Progress(epoch=3, step=45, train_ppl=15.771, val_ppl=14.648, tokens_per_s=102775, grad_norm=0.272, lr=1,
                 elapsed_s=1, eta_s=0, epochs=500, epoch_end=False, clip_fraction=0.12)
    lines = {}
    for ranks in (1, 2):
        console = Console(width=80 if ranks == 1 else 100, force_terminal=True, color_system=None, record=True)
        with EventPrinter(console, TrainConfig(epochs=500), ranks=ranks) as printer:
            printer.show(p)
        text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", console.export_text())
        lines[ranks] = "epoch" + text.split("epoch")[-1].splitlines()[0].rstrip()  # the last refresh
    assert len(lines[1]) <= 80 and "…" not in lines[1] and lines[1].endswith("-:--:--")
    assert "ppl 15.77 val 14.65 ‖g‖ 0.27 clip 12% 103k tok/s" in lines[1]
    assert "103k tok/s (2×51.4k)" in lines[2] and "…" not in lines[2]
