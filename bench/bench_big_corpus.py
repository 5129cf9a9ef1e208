"""Big corpora (issue 14): a corpus of 1 GB or more built from the shipped books, its ids encoded once into
the token cache (``engine.token_cache``), then trained on from the memory map by one and two processes.

Usage: ``python bench/bench_big_corpus.py [--gb 1.0] [--dir DIR] [--train-s 60] [--keep]``

Every step is a child process whose memory is read from ``/proc`` twice a second while it runs (peak
``VmHWM``, and the peaks of its anonymous and file-backed resident pages: a memory-mapped file's pages
count as resident once touched but are the page cache's, shared between processes and dropped under
pressure; anonymous pages are the process's own):

1. write ``DIR/shelf.txt``: The Time Machine and The War of the Worlds, repeated until ``--gb``, each copy
   with its paragraphs in a seeded random order, every fifth copy upper-cased and quotes and dashes made
   ASCII (so a character is one byte on disk and in Python's str);
2. ``encode``: ``build_pipeline`` (d2l, char: the book's setup), timed per pass; the cache file's size;
3. ``again``: the same pipeline once more: its counting pass runs, the encoding is found in the cache;
4. ``train``: ``rnnlab train`` on the file, a new run (it reads and counts the text, finds the ids cached),
   stopped with SIGINT ``--train-s`` seconds after its first progress line;
5. ``resume, 1 process``: ``rnnlab train --resume`` of that run: the ids come from the cache, the text is
   never read; ``--train-s`` seconds;
6. ``resume, 2 processes``: the same with ``--nproc 2`` (torchrun): both ranks map the one file.

Training: GRU 256, batch 32 × 35, random sampling (the defaults), all the tokens (``--max-tokens 0``), no
validation tail, one thread per process. tokens/s is the median of the run's progress lines in that
step (all ranks together). ``DIR`` (by default a fresh temp folder, also ``RNNLAB_HOME`` for the runs and
the cache) is removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ASCII = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2014": "--", "\u2013": "-",
                       "\u00e6": "ae", "\u00e9": "e", "\u00ea": "e", "\u00e8": "e", "\u00ef": "i", "\u00e0": "a"})


def build_shelf(path: Path, gb: float) -> int:
    """Write the books, varied, until ``gb`` GB; returns the bytes written."""
    import numpy as np

    from engine.corpus import load_corpus

    books = [load_corpus(name).text.translate(ASCII) for name in ("timemachine", "war_of_the_worlds")]
    books = [b.encode("ascii", "ignore").decode("ascii") for b in books]
    paragraphs = [b.split("\n\n") for b in books]
    rng = np.random.default_rng(0)
    target, written, copy = int(gb * 1e9), 0, 0
    with open(path, "w", encoding="ascii") as f:
        while written < target:
            paras = paragraphs[copy % 2]
            text = "\n\n".join(paras[i] for i in rng.permutation(len(paras))) + "\n\n"
            if copy % 5 == 4:
                text = text.upper()
            f.write(text)
            written += len(text)
            copy += 1
    return written


class Watch:
    """A child process and its descendants, their memory polled from /proc until it exits."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.t0 = time.perf_counter()
        self.peaks: dict[int, dict[str, float]] = {}  # pid -> {hwm, anon, file} in MiB, and its label

    def _descendants(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(d.name))
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo += children.get(pid, [])
        return out

    def poll(self) -> None:
        for pid in self._descendants():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            kb = {k: int(v) for k, v in re.findall(r"^(VmHWM|RssAnon|RssFile):\s+(\d+) kB", status, re.M)}
            if "VmHWM" not in kb:
                continue
            rank = next((e.decode()[5:] for e in env if e.startswith(b"RANK=")), None)
            peak = self.peaks.setdefault(pid, {"hwm": 0.0, "anon": 0.0, "file": 0.0})
            peak["label"] = f"rank {rank}" if rank is not None else ("main" if pid == self.proc.pid else "child")
            for key, name in (("hwm", "VmHWM"), ("anon", "RssAnon"), ("file", "RssFile")):
                peak[key] = max(peak[key], kb.get(name, 0) / 1024)
            peak["anon_now"] = kb.get("RssAnon", 0) / 1024  # the last reading: after the preparation

    def wait(self, until: float | None = None, stop_when=None) -> tuple[int, str, float]:  # type: ignore[no-untyped-def]
        """Poll until the child exits; SIGINT it once ``stop_when()`` has held for ``until`` seconds."""
        started = None
        while self.proc.poll() is None:
            self.poll()
            if stop_when is not None and started is None and stop_when():
                started = time.perf_counter()
            if started is not None and until is not None and time.perf_counter() - started >= until:
                self.proc.send_signal(signal.SIGINT)
                until = None
            time.sleep(0.5)
        out = self.proc.stdout.read() if self.proc.stdout else ""
        return self.proc.returncode, out, time.perf_counter() - self.t0

    def rows(self) -> list[tuple[str, float, float, float, float]]:
        """(label, peak VmHWM, peak anonymous, anonymous at the last reading, peak file-backed) MiB of the
        processes that ran Python; the main process is the launcher when ranks ran under it."""
        keep = [p for p in self.peaks.values() if p["hwm"] > 50]
        ranks = any(str(p["label"]).startswith("rank") for p in keep)
        return [("launcher" if ranks and p["label"] == "main" else str(p["label"]), p["hwm"], p["anon"],
                 p["anon_now"], p["file"]) for p in sorted(keep, key=lambda p: str(p["label"]))]


def metrics_count(run: Path) -> int:
    f = run / "metrics.jsonl"
    return len(f.read_text().splitlines()) if f.is_file() else 0


def speeds(run: Path, after: int) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()[after:]
    return [json.loads(x)["tokens_per_s"] for x in lines if '"epoch_end": false' in x]


ENCODE = """
import json, resource, sys, time
from engine.corpus import load_corpus
from engine.pipeline import build_pipeline
t0 = time.perf_counter(); marks = {}
corpus = load_corpus(sys.argv[1]); marks["read"] = time.perf_counter() - t0
def progress(step, done, total):
    marks.setdefault(step, time.perf_counter() - t0)
p = build_pipeline(corpus, mode="d2l", tokenizer="char", progress=progress)
marks["end"] = time.perf_counter() - t0
print(json.dumps({"marks": marks, "tokens": len(p.ids), "dtype": str(p.ids.dtype),
                  "cache": str(getattr(p.ids, "filename", "")), "warnings": list(p.warnings)}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gb", type=float, default=1.0, help="corpus size in GB (1e9 bytes)")
    ap.add_argument("--dir", default=None, help="work folder (default: a new temp folder)")
    ap.add_argument("--train-s", type=float, default=60.0, help="seconds of training per training step")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="rnnlab-big-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RNNLAB_HOME": str(work / "home"), "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    py = sys.executable
    rows: list[str] = []

    def report(step: str, watch: Watch, wall: float, tok_s: str = "") -> None:
        for label, hwm, anon, anon_end, file in watch.rows():
            rows.append(f"| {step} | {label} | {wall:,.0f} | {tok_s} | {hwm:,.0f} | {anon:,.0f} | {anon_end:,.0f} | "
                        f"{file:,.0f} |")
        print(rows[-1] if rows else step, flush=True)

    try:
        shelf = work / "shelf.txt"
        t = time.perf_counter()
        size = build_shelf(shelf, args.gb)
        print(f"wrote {shelf}: {size / 1e9:.2f} GB in {time.perf_counter() - t:.0f} s", flush=True)
        for step in ("encode", "again"):
            w = Watch([py, "-c", ENCODE, str(shelf)], env)
            rc, out, wall = w.wait()
            if rc:
                print(out)
                return 1
            info = json.loads(out.strip().splitlines()[-1])
            m = info["marks"]
            passes = ", ".join(f"{k} at {v:.0f} s" for k, v in m.items())
            cache = Path(info["cache"]) if info["cache"] else None
            print(f"{step}: {info['tokens']:,} tokens, {info['dtype']}, {passes}; cache file "
                  f"{cache.stat().st_size / 1e9:.2f} GB" if cache else "not cached", flush=True)
            report(step, w, wall)
        runs = work / "home" / "runs"
        train = [py, "-m", "tui.cli", "train", "--corpus", str(shelf), "--max-tokens", "0", "--val-fraction", "0",
                 "--epochs", "1", "--sample-every", "0", "--threads", "1", "--checkpoint-interval-s", "1e9"]
        first = lambda: runs.is_dir() and any(metrics_count(r) > 0 for r in runs.iterdir())  # noqa: E731
        w = Watch(train, env)
        rc, out, wall = w.wait(args.train_s, first)
        (run,) = runs.iterdir()
        s = speeds(run, 0)
        report("train (new run)", w, wall, f"{statistics.median(s[2:]):,.0f}")
        print(out.strip().splitlines()[-1] if out.strip() else f"exit {rc}", flush=True)
        for n in (1, 2):
            before = metrics_count(run)
            resume = [py, "-m", "tui.cli", "train", "--resume", run.name, "--runs-dir", str(runs), "--threads", "1"]
            resume += ["--nproc", str(n)] if n > 1 else []
            w = Watch(resume, env)
            rc, out, wall = w.wait(args.train_s, lambda: metrics_count(run) > before)
            s = speeds(run, before)
            report(f"resume, {n} process{'es' if n > 1 else ''}", w, wall, f"{statistics.median(s[2:]):,.0f}")
            print(out.strip().splitlines()[-1] if out.strip() else f"exit {rc}", flush=True)
        print("\n| step | process | wall s | tokens/s | peak RSS MiB | peak anonymous MiB | anonymous at the end MiB "
              "| peak file-backed MiB |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        print("\n".join(rows))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
