"""Peak memory and wall time of ``rnnlab corpus`` and ``rnnlab train`` on big text files.

Usage: ``python bench/bench_memory.py [--sizes 20 200] [--dir DIR] [--steps corpus-char ...]``

Generates seeded, English-like text files of the given sizes (MB = 10^6 bytes)
into a temp dir (or ``--dir``, where they are kept and reused): words drawn
from a Zipf-Mandelbrot law (exponent 1.25) over a synthetic vocabulary of
500,000 pronounceable words, so the number of distinct words keeps growing with
the text as in real English (Heaps' law); sentences of 4-23 words with
capitals, commas and full stops, lines of 9-13 words, blank lines between
paragraphs, ASCII only. Then runs each step in a fresh subprocess and records
its peak RSS (``ru_maxrss`` from ``os.wait4``) and wall time:

- ``rnnlab corpus FILE`` with the char tokenizer (d2l and raw mode) and the word
  tokenizer (d2l and raw mode), on every size;
- bpe (raw mode, vocab_size 1000) on files up to 20 MB;
- ``rnnlab train`` with the char tokenizer, a GRU of 64 hidden units, one epoch on
  the first 200,000 tokens: it reads, fits and encodes the whole file first.

The same steps run first on The Time Machine (179 KB, from ``corpora/`` or
``$RNNLAB_CORPUS_DIR``): the floor every run pays whatever the corpus (Python,
numpy, torch and its first training step). Prints a Markdown table: peak RSS in
MB, its ratio to the file size, wall seconds and the exit status. Targets
(issue 8): peak RSS <= 300 MB for the 20 MB file and <= 1 GB for the 200 MB
file, training included. A step past ``--timeout`` seconds is killed (exit -9).
Each step runs under a small wrapper process that reports the step's
``ru_maxrss``: measured from here, a child's peak would include this process's
own memory (the image it was forked from).

Left out: GPU memory, and texts beyond Latin-1 (CPython then stores the text
with 2 or 4 bytes per character, which doubles or quadruples its share).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MB = 1_000_000
VOCAB_WORDS = 500_000
ZIPF_EXPONENT = 1.25
ZIPF_SHIFT = 2.7  # Mandelbrot's offset: flattens the very top ranks as in real text

_ONSETS = ("", "", "", "b", "d", "h", "l", "m", "n", "s", "t", "w", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w",
           "y", "z", "bl", "br", "ch", "cl", "cr", "dr", "fl", "fr", "gl", "gr", "pl", "pr", "sc",
           "sh", "sk", "sl", "sm", "sn", "sp", "st", "str", "sw", "th", "tr", "tw", "wh", "wr")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "ai", "ea", "ee", "ie", "oo", "ou", "ay")
_CODAS = ("", "", "", "", "", "n", "r", "s", "t", "l", "d", "ng", "st", "nd", "rd", "ck", "m", "th", "sh")


def synthetic_vocab(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct lower-case words of 1-4 syllables, the frequent (low) ranks shortest."""
    words: dict[str, None] = {}
    while len(words) < n:
        m = n - len(words) + 1000
        rank = len(words) + np.arange(m)
        syllables = (1 + (rank >= 300) + ((rank >= 20000) & (rng.random(m) < 0.7))
                     + ((rank >= 100000) & (rng.random(m) < 0.3)))
        parts = [(rng.integers(len(_ONSETS), size=m), rng.integers(len(_VOWELS), size=m),
                  rng.integers(len(_CODAS), size=m)) for _ in range(4)]
        for i in range(m):
            w = "".join(_ONSETS[o[i]] + _VOWELS[v[i]] + _CODAS[c[i]] for o, v, c in parts[: syllables[i]])
            words.setdefault(w, None)
    return np.array(list(words)[:n], dtype=object)


def generate(path: Path, size: int, seed: int = 0) -> None:
    """Write ``size`` bytes of English-like text to ``path`` (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    vocab = synthetic_vocab(VOCAB_WORDS, rng)
    p = 1.0 / (np.arange(VOCAB_WORDS) + ZIPF_SHIFT) ** ZIPF_EXPONENT
    cdf = np.cumsum(p / p.sum())
    tmp = path.with_suffix(".part")
    written = 0
    with open(tmp, "w", encoding="ascii", newline="\n") as f:
        while written < size:
            n = 200_000
            words = vocab[np.minimum(np.searchsorted(cdf, rng.random(n)), VOCAB_WORDS - 1)]
            ends = np.zeros(n, dtype=bool)
            ends[np.cumsum(rng.integers(4, 24, size=n // 4))[: n // 4]
                 .clip(max=n - 1)] = True  # sentence lengths 4..23
            commas = (rng.random(n) < 0.08) & ~ends
            words = np.where(ends, words + ".", np.where(commas, words + ",", words))
            starts = np.flatnonzero(ends[:-1]) + 1
            words[starts] = [w.capitalize() for w in words[starts]]
            words[0] = words[0].capitalize()
            out, i = [], 0
            while i < n:
                para = int(rng.integers(40, 240))
                j = min(n, i + para)
                k = i
                while k < j:
                    step = int(rng.integers(9, 14))
                    out.append(" ".join(words[k : min(j, k + step)]))
                    k += step
                out.append("")
                i = j
            block = "\n".join(out) + "\n"
            if written + len(block) > size:  # end on a whole line, exactly at or under size
                block = block[: size - written]
                block = block[: block.rfind("\n") + 1] or block
            f.write(block)
            written += len(block)
    os.replace(tmp, path)


@dataclass
class Step:
    name: str
    argv: list[str]
    max_mb: int | None = None  # run only on files up to this size


def steps(file: Path, runs: Path) -> list[Step]:
    cli = [sys.executable, "-m", "tui.cli"]
    corpus = [*cli, "corpus", str(file)]
    return [
        Step("corpus-char-d2l", [*corpus, "--tokenizer", "char", "--mode", "d2l"]),
        Step("corpus-char-raw", [*corpus, "--tokenizer", "char", "--mode", "raw"]),
        Step("corpus-word-d2l", [*corpus, "--tokenizer", "word", "--mode", "d2l"]),
        Step("corpus-word-raw", [*corpus, "--tokenizer", "word", "--mode", "raw"]),
        Step("corpus-bpe-raw", [*corpus, "--tokenizer", "bpe", "--mode", "raw", "--vocab-size", "1000"],
             max_mb=20),
        Step("train-char", [*cli, "train", "--corpus", str(file), "--tokenizer", "char", "--model", "gru",
                            "--num-hiddens", "64", "--epochs", "1", "--max-tokens", "200000",
                            "--sample-every", "0", "--device", "cpu", "--threads", "1",
                            "--runs-dir", str(runs)]),
    ]


# A small Python process runs each step and reports the step's own peak. Measuring
# from here would not do: a child's ru_maxrss counts the image it was forked from
# (this process, which holds the generated text), not only what it used after exec.
_WRAPPER = """
import os, resource, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=open(sys.argv[1], "wb"))
try:
    rc = proc.wait()
except KeyboardInterrupt:
    proc.kill()
    rc = proc.wait()
wall = time.perf_counter() - t0
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, wall, rc)
"""


def measure(argv: list[str], timeout: float, env: dict[str, str]) -> tuple[float, float, int, str]:
    """(peak RSS MB, wall s, exit status, last stderr line) of one fresh subprocess."""
    with tempfile.NamedTemporaryFile(suffix=".err") as err:
        wrapper = subprocess.Popen([sys.executable, "-c", _WRAPPER, err.name, *argv], cwd=REPO, env=env,
                                   stdout=subprocess.PIPE, text=True)
        try:
            out, _ = wrapper.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            wrapper.send_signal(2)  # the wrapper kills the step and still reports it
            out, _ = wrapper.communicate()
        maxrss_kib, wall, rc = out.split()
        lines = Path(err.name).read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return int(maxrss_kib) * 1024 / MB, float(wall), int(rc), (lines[-1:] or [""])[0][:120]


def reference_book() -> Path | None:
    """The Time Machine (shipped in corpora/, or in $RNNLAB_CORPUS_DIR), if found."""
    for folder in (REPO / "corpora", Path(os.environ.get("RNNLAB_CORPUS_DIR", "/nonexistent"))):
        if (folder / "timemachine.txt").is_file():
            return folder / "timemachine.txt"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 200], help="file sizes in MB")
    ap.add_argument("--dir", type=Path, default=None, help="keep the generated files here (reused)")
    ap.add_argument("--steps", nargs="+", default=None, help="run only these steps")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per step")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-reference", action="store_true", help="skip the runs on The Time Machine")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-memory-") as tmp:
        folder = args.dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "RNNLAB_HOME": str(Path(tmp) / "home"), "PYTHONPATH": str(REPO)}
        rows = []
        files: list[tuple[str, Path, int]] = []
        book = reference_book()
        if book is not None and not args.no_reference:  # the floor: what a small book costs
            files.append(("The Time Machine", book, 0))
        for size in args.sizes:
            file = folder / f"zipf-{size}mb-seed{args.seed}.txt"
            if not file.exists():
                t0 = time.perf_counter()
                generate(file, size * MB, args.seed)
                print(f"generated {file} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            files.append((f"{size} MB", file, size))
        for label, file, size in files:
            file_mb = file.stat().st_size / MB
            for step in steps(file, Path(tmp) / "runs"):
                if args.steps and step.name not in args.steps:
                    continue
                if step.max_mb is not None and size > step.max_mb:
                    continue
                rss, wall, rc, tail = measure(step.argv, args.timeout, env)
                row = (f"| {label} | {step.name} | {rss:,.0f} | {rss / file_mb:.1f}× "
                       f"| {wall:.1f} | {rc}{' (' + tail + ')' if rc else ''} |")
                rows.append(row)
                print(row, file=sys.stderr, flush=True)
    print("| file | step | peak RSS MB | RSS / file | wall s | exit |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
