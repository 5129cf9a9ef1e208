"""Training tokens/s with 1 and 2 data-parallel ranks (``engine.distributed``) on this machine's CPU.

Usage: ``python bench/bench_ddp.py [--kind gru] [--num-hiddens 256] [--batch-size 32] [--epochs 3]
[--max-tokens 40000] [--rounds 3]``. Each round trains the same seeded config (The Time Machine in
characters, validation off so only training is timed) three ways, each in fresh processes started with
``torch.multiprocessing.spawn``, in a rotating order:

* ``1 rank, 1 thread``: one process, ``threads 1`` (the baseline of the ratios);
* ``1 rank, 2 threads``: one process using two cores its own way (intra-op threads);
* ``2 ranks``: two processes of one thread each, Gloo, each ``batch_size`` rows of its own shard per step
  (effective batch 2 × batch_size), gradients averaged by DDP.

The figure is the trainer's own: tokens/s of the last epoch (``Progress.tokens_per_s`` at its end, all
ranks' tokens over rank 0's training time), so start-up and the first epoch's warm-up are left out. Printed:
the median over rounds of each and its ratio to the baseline of the same round. On a machine of two shared
cores two ranks may not speed anything up; on a GPU node each rank would have its own device.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch.multiprocessing as mp  # noqa: E402

BOOK = Path(__file__).resolve().parent.parent / "corpora" / "timemachine.txt"
WAYS = {"1 rank, 1 thread": (1, 1), "1 rank, 2 threads": (1, 2), "2 ranks": (2, 1)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(rank: int, size: int, threads: int, port: int, opts: dict, out: str) -> None:
    import torch

    from engine import distributed
    from engine.config import ModelConfig, TrainConfig
    from engine.corpus import load_corpus
    from engine.events import Progress
    from engine.pipeline import build_pipeline
    from engine.trainer import train

    torch.set_num_threads(threads)
    world = None
    if size > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        world = distributed.World(rank=rank, size=size, local_rank=rank, local_size=size)
        distributed.setup(world)
    p = build_pipeline(load_corpus(str(BOOK)), mode="d2l", tokenizer="char")
    mc = ModelConfig(kind=opts["kind"], vocab_size=len(p.vocab), num_hiddens=opts["num_hiddens"])
    tc = TrainConfig(epochs=opts["epochs"], max_tokens=opts["max_tokens"], batch_size=opts["batch_size"],
                     val_fraction=0.0, sample_every=0, threads=threads, device="cpu")
    ends = [ev for ev in train(p, mc, tc, world=world) if isinstance(ev, Progress) and ev.epoch_end]
    if rank == 0:
        Path(out).write_text(json.dumps({"tokens_per_s": ends[-1].tokens_per_s, "train_ppl": ends[-1].train_ppl}))
    distributed.cleanup()


def measure(size: int, threads: int, opts: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "result.json")
        mp.spawn(_child, args=(size, threads, _free_port(), opts, out), nprocs=size)
        return json.loads(Path(out).read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="gru")
    ap.add_argument("--num-hiddens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=40000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    opts = {k: getattr(args, k) for k in ("kind", "num_hiddens", "batch_size", "epochs", "max_tokens")}
    print(f"{args.kind} {args.num_hiddens}, batch {args.batch_size} per rank × num_steps 35, {args.max_tokens} "
          f"characters, tokens/s of epoch {args.epochs}; {os.cpu_count()} CPUs")
    rates: dict[str, list[float]] = {w: [] for w in WAYS}
    ratios: dict[str, list[float]] = {w: [] for w in WAYS}
    names = list(WAYS)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]  # rotate, so no way always runs first
        got = {w: measure(*WAYS[w], opts)["tokens_per_s"] for w in order}
        for w in names:
            rates[w].append(got[w])
            ratios[w].append(got[w] / got[names[0]])
        print(f"round {r + 1}: " + ", ".join(f"{w} {got[w]:,.0f}" for w in names), flush=True)
    print(f"\n{'':20} {'tokens/s (median)':>18} {'ratio to 1 rank, 1 thread':>26}")
    for w in names:
        print(f"{w:20} {statistics.median(rates[w]):>18,.0f} {statistics.median(ratios[w]):>26.2f}")


if __name__ == "__main__":
    main()
