"""``rnnlab exercise`` (issue 12): the list of the 27, a run printing its table, references and explanation,
--json equal to the engine's own result, --set, and clear errors (exit 2 for an unknown id or a bad
setting, 1 for an exercise not built yet) with no traceback."""

from __future__ import annotations

import json

import pytest

import engine.exercises as registry
from tui.cli import main
from tui.cli.exercise import format_cell


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["exercise", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_list_shows_every_exercise_with_its_status(capsys) -> None:
    rc, out, _ = _run(capsys, "list")
    lines = out.splitlines()
    assert rc == 0 and len(lines) == 27
    for line, (ex_id, title) in zip(lines, registry.TITLES.items()):
        status = "built" if registry.is_built(ex_id) else "not built yet"
        assert line.split()[0] == ex_id and f" {status} " in line and line.endswith(title)
    rc, out, _ = _run(capsys, "list", "--json")
    assert [d["id"] for d in json.loads(out)] == list(registry.TITLES)


def test_json_equals_the_engines_result(capsys) -> None:
    rc, out, _ = _run(capsys, "8.4.1", "--json", "--set", "num_hiddens=4,9", "--set", "embed_sizes=3")
    ex = registry.get("8.4.1")
    expected = ex.run(ex.settings(num_hiddens=(4, 9), embed_sizes=(3,))).to_dict()
    assert rc == 0 and json.loads(out) == json.loads(json.dumps(expected))
    assert json.loads(out)["settings"]["num_hiddens"] == [4, 9] and json.loads(out)["budget"] is None


def test_a_run_prints_table_references_and_explanation(capsys) -> None:
    rc, out, _ = _run(capsys, "8.7.1")
    ex = registry.get("8.7.1")
    r = ex.run()
    assert rc == 0 and out.startswith(f"8.7.1  {registry.TITLES['8.7.1']}")
    assert "settings (default): n=10, lambda1=1.1, gaps=0.5,0.8,0.9,0.95, steps=60, seed=0" in out
    assert "measurement" in out and "reference figures:" in out
    agrees = [line for line in out.splitlines() if line.startswith("steps_to_0.99_gap_0.8")]
    assert agrees and agrees[0].split()[1] == format_cell(r.figures["steps_to_0.99_gap_0.8"]) and " yes " in agrees[0]
    assert r.explanation.split()[0] in out and "matrices" not in out  # the explanation, not the docstring


def test_changed_settings_say_the_references_do_not_apply(capsys) -> None:
    rc, out, _ = _run(capsys, "8.7.1", "--set", "steps=30")
    assert rc == 0 and "settings (changed)" in out and "references are for the default and --long" in out


@pytest.mark.parametrize("argv, rc, message", [
    (("9.9.9",), 2, "there is no exercise '9.9.9' in chapter 8"),
    (("8.4.1", "--set", "num_hiddens=x"), 2, "num_hiddens must be an integer (got 'x')"),
    (("8.4.1", "--set", "bogus=1"), 2, "exercise 8.4.1 has no setting 'bogus'"),
    (("8.4.1", "--set", "num_hiddens"), 2, "--set takes NAME=VALUE"),
    (("8.4.1", "--set", "num_hiddens=0"), 2, "num_hiddens must be a list of integers in 1..4096"),
])
def test_bad_input_exits_with_a_clear_message(capsys, argv, rc, message) -> None:
    got, out, err = _run(capsys, *argv)
    assert got == rc and message in err and "Traceback" not in err and out == ""


def test_an_exercise_not_built_yet_says_so(capsys, monkeypatch) -> None:
    monkeypatch.setitem(registry.EXERCISES, "8.1.3", registry.NOT_BUILT)
    rc, out, err = _run(capsys, "8.1.3")
    assert rc == 1 and "8.1.3" in err and "not built yet" in err and out == ""


def test_format_cell() -> None:
    assert [format_cell(v) for v in (12345, 8532.0, 0.000123, 3.14159, 1.7e-11, None, "x", 0.0)] == [
        "12,345", "8,532", "0.000123", "3.142", "1.7e-11", "–", "x", "0"]


def test_a_signal_stops_an_exercise_and_keeps_its_run_saved_as_stopped(tmp_path) -> None:
    """SIGTERM sent to a real `python -m tui.cli exercise 8.6.1` once its run has logged an epoch: exit 143,
    one line saying it stopped (no traceback), and the run tagged with the exercise is saved as stopped."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from engine.runs import open_run

    home = tmp_path / "home"
    env = {**os.environ, "RNNLAB_HOME": str(home)}
    cmd = [sys.executable, "-m", "tui.cli", "exercise", "8.6.1", "--set", "epochs=100000", "--set", "num_hiddens=8",
           "--set", "max_tokens=600", "--set", "batch_size=4"]
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parent.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120  # a bound on waiting, not a timing assertion
        while time.monotonic() < deadline and proc.poll() is None:
            metrics = list((home / "runs").glob("*/metrics.jsonl"))
            if metrics and '"epoch_end": true' in metrics[0].read_text():
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143 and "Traceback" not in err and out == ""
    (folder,) = (home / "runs").iterdir()
    assert f"stopped before the exercise finished: no result (run {folder.name} saved as stopped)" in err
    run = open_run(folder)
    assert run.tags == {"exercise": "8.6.1"} and run.trainer_state()["status"] == "stopped"
    assert run.trainer_state()["epoch"] >= 1
