"""Issue 14 on a GPU: tokens/s of the trainer's fast paths (CUDA graphs, bf16, fp16) against D2L's loop and
rnnlab's eager fp32 path, at the book's sizes and at a cuDNN-bound size; and generation with graphs.

Usage: ``python bench/bench_gpu_issue14.py [--device cuda] [--epochs 6] [--big-epochs 3]``
(``--device cpu``: a dry run of the script itself; graphs and fp16 are refused there and say so.)
Run by ``bench/gpu_issue14.sh`` with its other checks; prepared without a GPU (issue 14's session had
none), so no figure here has been measured yet.

1. **The book's four models** (scratch 512, rnn/gru/lstm 256; The Time Machine's first 10,000 characters,
   batch 32 × 35, sequential partitioning, SGD lr 1, clipping θ = 1; no validation tail): D2L's own loop
   (``bench_speed.d2l_epoch``: one-hot per batch, D2L's clipping and a ``float()`` of the loss per batch)
   against ``engine.trainer.train`` with each variant of ``TrainConfig``: eager fp32 (the reference),
   ``cuda_graphs``, ``precision bf16``, both, ``precision fp16``. tokens/s is the trainer's own epoch
   figure (median of the epochs after the first, which holds the capture); D2L's, epochs timed the same
   way. The final training perplexity of each variant shows what it changes: graphs should match eager
   fp32 to ~1e-6 (the same kernels), bf16/fp16 within a few parts in a thousand. (D2L's loop draws its
   epochs' offsets with Python's ``random``, the trainer with numpy's, so its perplexity differs a little.)
2. **cuDNN-bound**: a 2-layer LSTM of 1024 units, batch 256 × 35, both shipped books (~500k characters):
   D2L's loop around the same ``nn.LSTM`` against the same variants.
3. **Generation**: greedy ``engine.generate`` of 300 characters per model, eager ``Stepper`` against
   ``graphs=True`` (one replayed graph per token), tokens/s and whether the texts are equal.

Prints markdown tables to paste into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import D2LRNNModel, D2LScratch, d2l_epoch, seq_data_iter_sequential  # noqa: E402
from engine.config import ModelConfig, TrainConfig  # noqa: E402
from engine.corpus import load_corpus  # noqa: E402
from engine.errors import ConfigError  # noqa: E402
from engine.events import Finished, Progress  # noqa: E402
from engine.generate import generate  # noqa: E402
from engine.models import build_model  # noqa: E402
from engine.pipeline import build_pipeline  # noqa: E402
from engine.trainer import train  # noqa: E402

BOOK = [("scratch", 512), ("rnn", 256), ("gru", 256), ("lstm", 256)]
VARIANTS = [("eager fp32", {}), ("graphs fp32", {"cuda_graphs": True}), ("eager bf16", {"precision": "bf16"}),
            ("graphs bf16", {"precision": "bf16", "cuda_graphs": True}), ("eager fp16", {"precision": "fp16"})]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def d2l_speed(kind: str, hiddens: int, layers: int, ids: list[int], vocab: int, batch: int, epochs: int,
              device: torch.device) -> tuple[float, float]:
    """D2L's loop: (median tokens/s of the epochs after the first, last epoch's perplexity)."""
    torch.manual_seed(0)
    ours = build_model(ModelConfig(kind=kind, vocab_size=vocab, num_hiddens=hiddens, num_layers=layers)).to(device)
    if ours.cell.d2l_scratch:
        net = D2LScratch([p.detach().clone().requires_grad_(True) for p in ours.parameters()], vocab)
        updater = None
    else:
        net = D2LRNNModel(ours.cell.nn_module(vocab, hiddens, num_layers=layers), vocab).to(device)
        net.load_state_dict(ours.state_dict())
        updater = torch.optim.SGD(net.parameters(), lr=1.0)
    tokens = sum(X.numel() for X, _ in seq_data_iter_sequential(ids, batch, 35, random.Random(0)))
    speeds, ppl = [], math.nan
    for e in range(epochs):
        sync(device)
        t = time.perf_counter()
        ppl = d2l_epoch(net, seq_data_iter_sequential(ids, batch, 35, random.Random(e)), updater, device)
        sync(device)
        speeds.append(tokens / (time.perf_counter() - t))
    return statistics.median(speeds[1:]), ppl


def ours_speed(kind: str, hiddens: int, layers: int, data: object, vocab: int, batch: int, epochs: int,
               max_tokens: int, device: str, **variant: object) -> tuple[float, float] | str:
    """engine.trainer with ``variant``: (median epoch tokens/s after the first, final train perplexity), or
    why the variant was refused."""
    cfg_kw = dict(epochs=epochs, batch_size=batch, num_steps=35, sampler="sequential", lr=1.0, val_fraction=0.0,
                  max_tokens=max_tokens, device=device, sample_every=0, log_interval_s=1e9,
                  checkpoint_interval_s=1e9, **variant)
    try:
        cfg = TrainConfig(**cfg_kw)
        model_cfg = ModelConfig(kind=kind, vocab_size=vocab, num_hiddens=hiddens, num_layers=layers)
        events = list(train(data, model_cfg, cfg))
    except ConfigError as exc:
        print(f"    {variant}: refused: {exc}", flush=True)
        return "refused"
    except Exception as exc:  # noqa: BLE001 - never run on a GPU before: report a failure, measure the rest
        print(f"    {variant}: FAILED: {type(exc).__name__}: {str(exc)[:400]}", flush=True)
        return "FAILED"
    speeds = [e.tokens_per_s for e in events if isinstance(e, Progress) and e.epoch_end]
    final = events[-1]
    assert isinstance(final, Finished)
    return statistics.median(speeds[1:]), final.train_ppl


def cell(v: tuple[float, float] | str, base: float) -> str:
    return v if isinstance(v, str) else f"{v[0]:,.0f} ({v[0] / base:.2f}×)"


def ppl_cell(v: tuple[float, float] | str) -> str:
    return "—" if isinstance(v, str) else f"{v[1]:.6g}"


def table(title: str, rows: list[tuple[str, tuple[float, float], list]]) -> None:
    names = [n for n, _ in VARIANTS]
    print(f"\n{title}\n")
    print("| model | D2L tok/s | " + " | ".join(f"{n} tok/s (× D2L)" for n in names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for label, (d2l, _), results in rows:
        print(f"| {label} | {d2l:,.0f} | " + " | ".join(cell(r, d2l) for r in results) + " |")
    print("\nfinal training perplexity (D2L's loop, then each variant):\n")
    print("| model | D2L | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for label, (_, d2l_ppl), results in rows:
        print(f"| {label} | {d2l_ppl:.6g} | " + " | ".join(ppl_cell(r) for r in results) + " |")
    print("\nspeed-up over rnnlab's eager fp32:", "; ".join(
        f"{label}: " + ", ".join(f"{n} {r[0] / results[0][0]:.2f}×" for (n, _), r in zip(VARIANTS[1:], results[1:])
                                 if not isinstance(r, str) and not isinstance(results[0], str))
        for label, _, results in rows), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--epochs", type=int, default=6, help="epochs per book-size run (the first is not timed)")
    ap.add_argument("--big-epochs", type=int, default=3, help="epochs per LSTM 1024 × 2 run")
    ap.add_argument("--gen-tokens", type=int, default=300)
    ap.add_argument("--only", nargs="*", default=None, help="parts to run: book big gen")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here (torch.cuda.is_available() is False); --device cpu for a dry run")
        return 2
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    print(f"torch {torch.__version__} on {name}; cuDNN {torch.backends.cudnn.version()}", flush=True)
    parts = set(args.only or ["book", "big", "gen"])
    book = build_pipeline(load_corpus("timemachine"))  # d2l, characters: vocab 28
    V = len(book.vocab)
    if "book" in parts:
        ids = [int(i) for i in book.ids[:10000]]
        rows = []
        for kind, h in BOOK:
            d2l = d2l_speed(kind, h, 1, ids, V, 32, args.epochs, device)
            results = [ours_speed(kind, h, 1, book, V, 32, args.epochs, 10000, args.device, **kw) for _, kw in VARIANTS]
            rows.append((f"{kind} {h}", d2l, results))
            print(f"  {kind} {h}: D2L {d2l[0]:,.0f} tok/s; " + ", ".join(
                f"{n} {cell(r, d2l[0])}" for (n, _), r in zip(VARIANTS, results)), flush=True)
        table("The book's models (batch 32 × 35, 10,000 characters, sequential, SGD lr 1, θ = 1)", rows)
    if "big" in parts:
        both = [load_corpus(n) for n in ("timemachine", "war_of_the_worlds")]

        class Both:  # the two books as one corpus object for build_pipeline
            text, path, name, warnings = both[0].text + "\n" + both[1].text, None, "two-books", ()

        big = build_pipeline(Both())
        Vb = len(big.vocab)
        ids = [int(i) for i in big.ids]
        d2l = d2l_speed("lstm", 1024, 2, ids, Vb, 256, args.big_epochs, device)
        results = [ours_speed("lstm", 1024, 2, big, Vb, 256, args.big_epochs, 0, args.device, **kw)
                   for _, kw in VARIANTS]
        table(f"cuDNN-bound: LSTM 1024 × 2 layers, batch 256 × 35, both books ({len(ids):,} characters)",
              [("lstm 1024×2", d2l, results)])
    if "gen" in parts:
        print(f"\nGreedy generation, {args.gen_tokens} characters (tokens/s)\n")
        print("| model | eager Stepper | graphs | × | same text |")
        print("|---|---:|---:|---:|---|")
        for kind, h in BOOK:
            torch.manual_seed(0)
            model = build_model(ModelConfig(kind=kind, vocab_size=V, num_hiddens=h)).to(device)
            out = {}
            for graphs in (False, True):
                try:
                    times, text = [], ""
                    for _ in range(3):
                        sync(device)
                        t = time.perf_counter()
                        text = "".join(generate(model, book.tokenizer, "time traveller ", args.gen_tokens,
                                                alpha=math.inf, graphs=graphs))
                        sync(device)
                        times.append(time.perf_counter() - t)
                    out[graphs] = (args.gen_tokens / min(times), text)
                except ConfigError as exc:
                    out[graphs] = (math.nan, f"refused: {exc}")
                except Exception as exc:  # noqa: BLE001 - as in ours_speed
                    print(f"    {kind} graphs={graphs}: FAILED: {type(exc).__name__}: {str(exc)[:400]}", flush=True)
                    out[graphs] = (math.nan, "FAILED")
            (e, te), (g, tg) = out[False], out[True]
            same = tg if tg in ("FAILED",) else "refused" if math.isnan(g) else "yes" if te == tg else "NO"
            print(f"| {kind} {h} | {e:,.0f} | {g:,.0f} | {g / e:.2f} | {same} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
