"""Training from the playground vs headless: is the UI cheap enough?

Runs the same config (The Time Machine, char, D2L's first 10000 tokens) with
``engine.trainer.train`` directly (in this process, logging to a run folder) and
from the app (Train screen, started with ctrl+s through the Pilot: the app makes
the run folder and trains it in a process of its own, ``rnnlab train --resume``,
while the screen follows the folder with plots and stats updating live),
interleaved round by round. Speed is training tokens over the trainer's own
``elapsed_s`` (so start-up is not counted); the ratio app/headless is printed per
round and as the median, with the CPU time the app's process used during the run
(the UI's whole cost: training is in the other process). Target (issue 13): ≥ 0.97.

    python bench/bench_tui.py [--rounds 3] [--epochs 10] [--model gru] [--num-hiddens 256] [--threads 0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RNNLAB_HOME", tempfile.mkdtemp(prefix="rnnlab-bench-tui-"))

from engine.config import ModelConfig, TrainConfig  # noqa: E402
from engine.corpus import load_corpus  # noqa: E402
from engine.events import Progress  # noqa: E402
from engine.runs import create_run  # noqa: E402
from engine.pipeline import build_pipeline  # noqa: E402
from engine.trainer import train  # noqa: E402


def headless(pipeline, model_cfg: ModelConfig, train_cfg: TrainConfig) -> tuple[float, int]:
    """(trainer seconds, epochs) of one run driven by a plain loop, logging to a run folder."""
    run = create_run(None, model_cfg, train_cfg, pipeline)
    last = None
    for event in train(pipeline, model_cfg, train_cfg, run=run):
        if isinstance(event, Progress):
            last = event
    assert last is not None
    return last.elapsed_s, last.epoch


async def in_app(args: argparse.Namespace) -> tuple[float, int, float]:
    """(trainer seconds, epochs, the app process's CPU seconds) of one run started with ctrl+s."""
    from tui.app import RnnlabApp
    from tui.widgets.form import ConfigForm

    app = RnnlabApp()
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()  # the corpus
        await pilot.press("f2")
        await pilot.pause()
        screen = app.screen
        form = screen.query_one(ConfigForm)
        for group, name, value in (("model", "kind", args.model), ("model", "num_hiddens", args.num_hiddens),
                                   ("train", "epochs", args.epochs), ("train", "threads", args.threads),
                                   ("train", "device", "cpu")):
            form.set_value(group, name, value)
        await pilot.pause(0.5)  # let the form settle, as a person would before pressing a key
        cpu0 = time.process_time()  # the app's process: its event loop, the follower, the plots
        await pilot.press("ctrl+s")
        while screen.training:  # a plain sleep: Pilot.pause would make every widget process its queue
            await asyncio.sleep(0.2)
        await pilot.pause()
        ui_cpu = time.process_time() - cpu0
        last = screen.last_progress
        points = screen.query_one("#train-ppl").point_count()
    assert last is not None and points > 0
    return last.elapsed_s, last.epoch, ui_cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--model", default="gru")
    parser.add_argument("--num-hiddens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    pipeline = build_pipeline(load_corpus("timemachine"))
    model_cfg = ModelConfig(kind=args.model, num_hiddens=args.num_hiddens, vocab_size=len(pipeline.tokenizer.vocab))
    train_cfg = TrainConfig(epochs=args.epochs, threads=args.threads, device="cpu")
    tokens = min(len(pipeline.ids), train_cfg.max_tokens) * (1 - train_cfg.val_fraction)
    print(f"{args.model} {args.num_hiddens}, {args.epochs} epochs of ~{tokens:,.0f} tokens, "
          f"threads={args.threads or 'default'}, {args.rounds} interleaved rounds")
    ratios = []
    for r in range(1, args.rounds + 1):
        t0 = time.perf_counter()
        h_s, h_ep = headless(pipeline, model_cfg, train_cfg)
        a_s, a_ep, ui_cpu = asyncio.run(in_app(args))
        assert h_ep == a_ep == args.epochs, (h_ep, a_ep)
        h_tps, a_tps = tokens * h_ep / h_s, tokens * a_ep / a_s
        ratios.append(a_tps / h_tps)
        print(f"round {r}: headless {h_tps:,.0f} tok/s  tui {a_tps:,.0f} tok/s  "
              f"ratio {a_tps / h_tps:.3f}  app process {ui_cpu:.2f} s CPU ({ui_cpu / a_s:.1%} of the run)  "
              f"({time.perf_counter() - t0:.0f} s)")
    print(f"median ratio tui/headless: {statistics.median(ratios):.3f} (target >= 0.97); "
          f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
