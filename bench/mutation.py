"""Mutation score of the engine's core modules (issue 9): run mutmut, then tabulate.

    python bench/mutation.py            # mutmut run (resumes where a previous run stopped), then the table
    python bench/mutation.py --report   # only the table and the survivors, from mutants/*.meta

The modules and the test files are configured in pyproject.toml's [tool.mutmut]
(mutmut copies engine/, tui/, corpora/ and tests/ into mutants/ and, for each
mutant, runs the tests that reach the mutated function). Slow — tens of minutes
on two cores — so it runs by hand, not in CI; its figures and the survivors,
each with the reason it lives, go in tests/MUTATION.md.

Score: killed / (mutants run − those listed as equivalent in tests/MUTATION.md).
A mutant with no test reaching it counts as not killed. Timeouts count as
killed (the mutant made the tests hang: an infinite loop is a caught bug).
Needs ``pip install mutmut`` (3.x); left out: mutating tui/ (its tests are in
tests/test_tui_*.py and take minutes each run).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KILLED = {1, 3, 36, 37, -24, 24, 152, 255}  # mutmut's exit codes for killed, timeout, type-check
STATUS = {0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", None: "not checked"}
EQUIVALENT = re.compile(r"^\| `(engine\.[\w.]+__mutmut_\d+)` \| equivalent", re.M)


def run_mutmut() -> int:
    return subprocess.call([sys.executable, "-m", "mutmut", "run"], cwd=ROOT)


def load() -> dict[str, dict[str, int | None]]:
    """Exit code of every mutant, by module."""
    out = {}
    for meta in sorted((ROOT / "mutants" / "engine").glob("*.py.meta")):
        out[meta.name.removesuffix(".py.meta")] = json.loads(meta.read_text())["exit_code_by_key"]
    return out


def equivalent_mutants() -> set[str]:
    doc = ROOT / "tests" / "MUTATION.md"
    return set(EQUIVALENT.findall(doc.read_text())) if doc.exists() else set()


def report() -> float:
    equivalent = equivalent_mutants()
    rows, survivors, totals = [], [], Counter()
    for module, codes in load().items():
        c = Counter()
        for name, code in codes.items():
            if name in equivalent:
                c["equivalent"] += 1
            elif code in KILLED:
                c["killed"] += 1
            elif code is None:
                c["unchecked"] += 1
            else:
                c["alive"] += 1
                survivors.append(f"{name}: {STATUS.get(code, f'exit {code}')}")
        c["total"] = len(codes)
        totals.update(c)
        rows.append((module, c))
    print("| module | mutants | killed | equivalent | alive | not run yet | score |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for module, c in rows + [("**all**", totals)]:
        scored = c["total"] - c["equivalent"] - c["unchecked"]
        score = c["killed"] / scored if scored else 1.0
        print(f"| {module} | {c['total']} | {c['killed']} | {c['equivalent']} | {c['alive']} | {c['unchecked']} "
              f"| {score:.1%} |")
    print("\nalive:" if survivors else "\nno mutant alive")
    for s in survivors:
        print("  ", s)
    scored = totals["total"] - totals["equivalent"] - totals["unchecked"]
    return totals["killed"] / scored if scored else 1.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--report", action="store_true", help="only tabulate the last run (mutants/*.meta)")
    args = ap.parse_args()
    if not args.report:
        try:
            import mutmut  # noqa: F401
        except ImportError:
            print("mutation.py needs mutmut: pip install 'mutmut>=3.8'", file=sys.stderr)
            return 2
        rc = run_mutmut()
        if rc not in (0, 1):  # mutmut exits 0 (or 1 with survivors); anything else is a failed run
            print(f"mutmut run failed with exit status {rc}", file=sys.stderr)
            return rc
    if not (ROOT / "mutants").exists():
        print("no mutants/ folder: run python bench/mutation.py first", file=sys.stderr)
        return 2
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
