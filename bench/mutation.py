"""Mutation score of the engine's core modules (issue 9): run mutmut per group, then tabulate.

    python bench/mutation.py                 # every group (tens of minutes on two cores)
    python bench/mutation.py data vocab      # some groups
    python bench/mutation.py --sample 300 runs   # a uniform random sample of a group's mutants (seed 0)
    python bench/mutation.py --report        # only the table and the survivors of the last runs

Each group is some engine modules and the test files that own them (GROUPS).
For a group, the tree (engine/, tui/, corpora/, tests/, pyproject.toml) is
copied to ``.mutation/<group>/``, pyproject's [tool.mutmut] there is pointed at
the group's modules and tests, and ``mutmut run`` mutates every line it can
and, for each mutant, runs those of the group's tests that reach the mutated
function. Scoring a module by its own test files, not the whole suite, is the
stricter measure (a mutant killed only by some far-away test counts as alive)
and the affordable one: every survivor runs all the tests that reach it, and in
the whole suite that is hundreds of tests for a function like ``Vocab.__init__``.
A second run of a group resumes where the first stopped (mutmut's cache).
``--sample N`` runs N mutants drawn uniformly from those of the group not run
yet: the score of a sample estimates the group's (its standard error is shown).

Score: killed / (mutants − those listed as equivalent or cuda-only in
tests/MUTATION.md). A mutant no test reaches counts as alive, a timeout as
killed (the mutant made the tests hang). Needs ``pip install -e '.[mutation]'``
(mutmut 3.x). Runs by hand, not in CI. Left out: tui/ (its tests drive the app
and take minutes), engine/models/ (checked against torch.nn and D2L's loop in
tests/test_cells.py), tokenizers and corpus statistics.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
COPIED = ("engine", "tui", "corpora", "tests", "pyproject.toml")

GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "data": (["data", "samplers", "sentences"], ["test_data", "test_data_exact", "test_iterators"]),
    "vocab": (["vocab"], ["test_vocab", "test_vocab_exact"]),
    "generate": (["generate", "stepper"],
                 ["test_generate", "test_generate_exact", "test_stepper", "test_stepper_exact"]),
    "trainer": (["trainer", "training", "truncation", "throughput", "train_state", "spikes", "jsonfloat"],
                ["test_trainer", "test_trainer_exact", "test_training_exact", "test_truncation", "test_oracles",
                 "test_throughput", "test_train_state", "test_spikes", "test_jsonfloat"]),
    "runs": (["runs", "runlog", "checkpoint"],
             ["test_runs", "test_runs_exact", "test_checkpoint_exact", "test_faults"]),
}
# mutmut's exit codes: 1, 3 killed; 36, 24, -24, 152, 255 timeout; 37 caught by type check.
KILLED = {1, 3, 36, 37, -24, 24, 152, 255}
STATUS = {0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", None: "not run"}
LISTED = re.compile(r"^\| `(engine\.[\w.ǁ]+__mutmut_\d+)` \| (equivalent|cuda-only) \|", re.M)
# The signal tests start a training subprocess each (seconds apiece): they stay in CI.
SLOW = "not test_a_signal_stops and not test_pipeline_and_summary_stay_within"


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def prepare(group: str) -> Path:
    """The group's copy of the tree, its pyproject aimed at the group (a previous run's mutants/ kept)."""
    modules, tests = GROUPS[group]
    where = WORK / group
    where.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        src, dst = ROOT / name, where / name
        if dst.is_dir():
            shutil.rmtree(dst)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    pyproject = where / "pyproject.toml"
    text = re.sub(r"\n\[tool\.mutmut\].*", "\n", pyproject.read_text(), flags=re.S)
    text += "\n".join([
        "[tool.mutmut]",
        'source_paths = ["engine"]',
        f"only_mutate = {toml_list([f'engine/{m}.py' for m in modules])}",
        'also_copy = ["tui/", "corpora/"]',
        'process_isolation = "forkserver"',
        f'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-k", "{SLOW}"]',
        f"pytest_add_cli_args_test_selection = {toml_list([f'tests/{t}.py' for t in tests])}",
        "",
    ])
    pyproject.write_text(text)
    return where


def load(group: str) -> dict[str, dict[str, int | None]]:
    """Exit code of every mutant of the group's last run, by module."""
    out = {}
    for module in GROUPS[group][0]:
        meta = WORK / group / "mutants" / "engine" / f"{module}.py.meta"
        if meta.exists():
            out[module] = json.loads(meta.read_text())["exit_code_by_key"]
    return out


def listed_mutants() -> set[str]:
    doc = ROOT / "tests" / "MUTATION.md"
    return set(m for m, _ in LISTED.findall(doc.read_text())) if doc.exists() else set()


def report(groups: list[str]) -> float:
    listed = listed_mutants()
    rows, alive, totals = [], [], Counter()
    for group in groups:
        for module, codes in load(group).items():
            c = Counter(total=len(codes))
            for name, code in codes.items():
                if name in listed:
                    c["listed"] += 1
                elif code in KILLED:
                    c["killed"] += 1
                elif code is None:
                    c["not run"] += 1
                else:
                    c["alive"] += 1
                    alive.append(f"{name}: {STATUS.get(code, f'exit {code}')}")
            totals.update(c)
            rows.append((module, c))
    print("| module | mutants | killed | equivalent or cuda-only | alive | not run | score |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for module, c in rows + [("**all**", totals)]:
        scored = c["total"] - c["listed"] - c["not run"]
        p = c["killed"] / scored if scored else 0.0
        score = f"{p:.1%}" if scored else "—"
        if scored and c["not run"]:  # a sample: its standard error
            score += f" ± {(p * (1 - p) / scored) ** 0.5:.1%}"
        print(f"| {module} | {c['total']} | {c['killed']} | {c['listed']} | {c['alive']} | {c['not run']} | {score} |")
    print("\nalive:" if alive else "\nno mutant alive")
    for line in alive:
        print("  ", line)
    scored = totals["total"] - totals["listed"] - totals["not run"]
    return totals["killed"] / scored if scored else 1.0


def sample(group: str, n: int) -> list[str]:
    """``n`` mutants of the group not run yet, drawn uniformly (seed 0); mutmut generates them first."""
    import random

    where = prepare(group)
    # A filter that matches nothing: mutmut generates the mutants and collects its test stats, then stops.
    subprocess.call([sys.executable, "-m", "mutmut", "run", "engine.__generate_only__"], cwd=where,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    todo = sorted(name for codes in load(group).values() for name, code in codes.items() if code is None)
    return random.Random(0).sample(todo, min(n, len(todo)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("groups", nargs="*", help=f"groups to run (default all: {', '.join(GROUPS)})")
    ap.add_argument("--report", action="store_true", help="only tabulate the last runs")
    ap.add_argument("--sample", type=int, default=0, metavar="N", help="run N random mutants per group, not all")
    args = ap.parse_args()
    groups = args.groups or list(GROUPS)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        print(f"no group {', '.join(unknown)}; the groups are {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    if not args.report:
        try:
            import mutmut  # noqa: F401
        except ImportError:
            print("mutation.py needs mutmut: pip install -e '.[mutation]'", file=sys.stderr)
            return 2
        for group in groups:
            print(f"== {group}: {', '.join(GROUPS[group][0])}", flush=True)
            names = sample(group, args.sample) if args.sample else []
            if args.sample and not names:
                continue  # every mutant of the group has been run
            rc = subprocess.call([sys.executable, "-m", "mutmut", "run", *names], cwd=prepare(group))
            if rc not in (0, 1):  # 1: some mutants survived; anything else is a failed run
                print(f"mutmut run failed for {group} with exit status {rc}", file=sys.stderr)
                return rc
    report(groups)
    return 0


if __name__ == "__main__":
    sys.exit(main())
