"""The README's two commands are the contract with a new user; CI must run
exactly the README's test command, so the two can't drift apart."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_readme_has_install_launch_and_test_commands():
    launch, test = _readme_commands()[:2]
    assert "torch==2.13.0" in launch and launch.rstrip().endswith("rnnlab")
    assert "pytest" in test and ".[test]" in test


def test_ci_runs_the_readme_test_command_verbatim():
    test_cmd = _readme_commands()[1].strip()
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert test_cmd in ci.splitlines(), f"{test_cmd!r} not a line of .ci/run"
    assert "torch==2.13.0" in ci
    # pytest's 'no tests collected' (exit 5) must fail CI
    assert '"$rc" -eq 5' in ci


def test_ci_reads_the_shipped_corpora_not_a_folder_beside_the_checkout():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "unset RNNLAB_CORPUS_DIR" in ci and "shared" not in ci
    shipped = sorted(p.name for p in (REPO / "corpora").glob("*.txt"))
    assert shipped == ["timemachine.txt", "war_of_the_worlds.txt"]
