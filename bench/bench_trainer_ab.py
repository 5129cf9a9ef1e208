"""The real ``engine.trainer.train`` of two checkouts, timed in alternation.

Usage: ``python bench/bench_trainer_ab.py OLD_CHECKOUT [NEW_CHECKOUT] [--kind gru] [--threads 0]
[--rounds 4]`` — e.g. after ``git worktree add /tmp/old 20b59f4``. Each round runs one fresh
process per checkout (its ``engine`` imported from that folder: asserted), trains the same seeded
config (256 hidden units, 6 epochs on the first 20,000 characters of The Time Machine, batch 32 ×
35, one warm-up run first) and prints the seconds — wall clock, and the CPU time the process used,
which a busy shared machine disturbs far less (with --threads 1) — and the final validation
perplexity, which must agree to the last digit. A check that a change to the trainer costs no speed; the bench_speed
script measures rnnlab against D2L's loop instead.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import sys, time
root, kind, threads, book = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sys.path.insert(0, root)
import engine
assert engine.__file__.startswith(root), engine.__file__
from engine.corpus import load_corpus
try:
    from engine.pipeline import build_pipeline
except ImportError:  # a checkout from before engine/pipeline.py
    from engine.tokenizers import build_pipeline
try:
    from engine.config import ModelConfig, TrainConfig
except ImportError:  # a checkout from before engine/config.py
    from engine.models import ModelConfig
    from engine.trainer import TrainConfig
from engine.trainer import train
p = build_pipeline(load_corpus(book), mode='d2l', tokenizer='char')
mc = ModelConfig(kind=kind, vocab_size=len(p.vocab), num_hiddens=256)
tc = TrainConfig(epochs=6, max_tokens=20000, sample_every=0, threads=threads)
list(train(p, mc, tc))
t, c = time.perf_counter(), time.process_time()
fin = list(train(p, mc, tc))[-1]
print(time.perf_counter() - t, time.process_time() - c, repr(fin.val_ppl))
"""


BOOK = Path(__file__).resolve().parent.parent / "corpora" / "timemachine.txt"  # an old checkout may ship none
sys.path.insert(0, str(BOOK.parent.parent))
from engine.config import MODEL_KINDS  # noqa: E402  (this checkout's kinds; an old one may lack the newest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new", nargs="?", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--kind", default="gru", choices=MODEL_KINDS)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, what users get)")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    times: dict[str, list[float]] = {args.old: [], args.new: []}
    cpu: dict[str, list[float]] = {args.old: [], args.new: []}
    ppl: dict[str, set[str]] = {args.old: set(), args.new: set()}
    for r in range(args.rounds):
        for root in (args.old, args.new) if r % 2 == 0 else (args.new, args.old):  # who goes first alternates
            out = subprocess.run([sys.executable, "-c", CHILD, str(Path(root).resolve()), args.kind, str(args.threads),
                                  str(BOOK)],
                                 capture_output=True, text=True, check=True).stdout.split()
            times[root].append(float(out[0]))
            cpu[root].append(float(out[1]))
            ppl[root].add(out[2])
    for root in (args.old, args.new):
        print(f"{root}: median {statistics.median(times[root]):.3f} s  ({', '.join(f'{t:.3f}' for t in times[root])})"
              f"  CPU median {statistics.median(cpu[root]):.3f} s  ({', '.join(f'{t:.3f}' for t in cpu[root])})"
              f"  val ppl {', '.join(sorted(ppl[root]))}")
    for name, d in (("time", times), ("CPU time", cpu)):
        print(f"new / old {name}: {statistics.median(d[args.new]) / statistics.median(d[args.old]):.3f}")


if __name__ == "__main__":
    main()
