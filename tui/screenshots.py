"""Screenshots of every screen, taken from the real app driven by the Pilot.

``python -m tui.screenshots [--out screenshots] [--size 120x36]`` loads The
Time Machine, shows the Corpus screen (char and BPE), trains a small GRU for a
few seconds on the Train screen, generates on the Generate screen and lists
the runs, opens the keys panel and the Labs screen with its BPTT (power iteration,
gradient flow, truncation strategies) and sequence labs, then runs exercise 8.7.1 on the Exercises
screen — pressing the keys a person would — and writes one SVG per screen.
Runs go to a temporary ``RNNLAB_HOME`` unless one is set. ``runs-overlay.svg`` (``--only
runs-overlay`` takes it alone) trains two runs headless that differ only in lr, in a runs folder
of their own, and shows them overlaid on the Runs screen, smoothed, with their config diff.
``runs-live.svg`` and ``train-live.svg`` (``--only live``) start ``rnnlab train`` as another terminal
would, show it running on Runs, open it live on Train with ``l``, and stop it there with ctrl+g.

Left out: PNG conversion (``rsvg-convert -o shot.png shot.svg``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from tui.app import RnnlabApp
from tui.widgets.form import ConfigForm

# A short real run: a few seconds on a laptop CPU (a GRU learns words within ~30 epochs).
TRAIN = {("model", "num_hiddens"): 128, ("train", "epochs"): 30, ("train", "lr"): 2.0}
# The overlay: a 64-unit tanh RNN clipped at θ = 1 with lr 1 and lr 4 (about 20 s of CPU for both). At lr 4
# the validation perplexity jumps between about 30 and 35,000 from epoch to epoch: the log axis and the
# smoothing show its trend beside lr 1's steady fall.
OVERLAY_MODEL = {"kind": "rnn", "num_hiddens": 64}
OVERLAY_TRAIN = {"epochs": 40, "sample_every": 10, "device": "cpu", "seed": 0}
OVERLAY_RUNS = ({"lr": 1.0}, {"lr": 4.0})


async def capture(out: Path, size: tuple[int, int]) -> list[Path]:
    """Drive the app through all screens; return the SVGs written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    app = RnnlabApp()

    def shot(name: str) -> None:
        written.append(Path(app.save_screenshot(f"{name}.svg", path=str(out))))

    async with app.run_test(size=size) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        shot("corpus")
        await pilot.press("ctrl+t", "ctrl+t")  # char -> word -> bpe
        await app.workers.wait_for_complete()
        await pilot.pause()
        shot("corpus_bpe")
        await pilot.press("ctrl+t", "ctrl+t", "ctrl+t")  # -> wordpiece -> unigram -> char
        await app.workers.wait_for_complete()
        await pilot.pause()

        await pilot.press("f2")
        await pilot.pause()
        form = app.screen.query_one(ConfigForm)
        for (group, name), value in TRAIN.items():
            form.set_value(group, name, value)
        await pilot.pause()
        await pilot.press("ctrl+s")
        train = app.screen
        while train.training:  # its own process trains it: wait for the run's end in its folder
            await pilot.pause(0.1)
        await pilot.pause(0.6)  # let the last throttled replot happen
        shot("train")

        await pilot.press("f3")
        await pilot.pause()
        await pilot.press(*"time traveller")
        await app.workers.wait_for_complete()
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.press("up", "up")  # α 1 -> 2
        await app.workers.wait_for_complete()
        await pilot.pause()
        shot("generate")

        await pilot.press("f4")
        await pilot.pause()
        await pilot.press("space")
        await pilot.pause()
        shot("runs")
        await pilot.press("question_mark")
        await pilot.pause()
        shot("keys")
        await pilot.press("question_mark")  # close the keys panel

        await pilot.press("f5")
        await app.workers.wait_for_complete()
        await pilot.pause()
        shot("labs")
        await pilot.press("ctrl+l")  # the BPTT lab: power iteration, then the gradient through time
        await app.workers.wait_for_complete()
        await pilot.pause()
        shot("lab_bptt_power")
        await pilot.press("ctrl+t")
        await app.workers.wait_for_complete()
        await pilot.pause()
        shot("lab_bptt_gradients")
        await pilot.press("ctrl+t", "ctrl+t")  # per-step norms, then the truncation strategies (trains ~10 s)
        await app.workers.wait_for_complete()
        await pilot.pause(0.6)
        shot("lab_bptt_truncation")
        await pilot.press("ctrl+t")  # back to power iteration
        await pilot.press("ctrl+l")  # the sequence lab: it runs with D2L's settings when it appears
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("ctrl+t")  # the data -> one-step predictions
        await pilot.pause()
        shot("lab_sequence")
        for _ in range(8):  # … -> the switching series
            await pilot.press("ctrl+t")
        await pilot.pause()
        shot("lab_sequence_switching")
        await pilot.press("ctrl+l")  # the minibatches: 0..34 and the corpus as X/Y, random sampling
        await pilot.pause()
        shot("lab_iterators")
        await exercises(app, pilot, shot)
    return written


async def exercises(app: RnnlabApp, pilot: object, shot: Callable[[str], None]) -> None:
    """F6: run exercise 8.7.1 (power iteration, under a second) and shoot the screen with its result."""
    await pilot.press("f6")  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]
    await pilot.press("ctrl+home", *["down"] * 25, "ctrl+r")  # type: ignore[attr-defined]  # 8.7.1 is the 26th
    await app.workers.wait_for_complete()
    await pilot.pause()  # type: ignore[attr-defined]
    shot("exercises")


@contextlib.contextmanager
def own_home(prefix: str) -> Iterator[None]:
    """A fresh RNNLAB_HOME (so its runs folder holds only the shot's runs) for the block, then the old one."""
    home = os.environ.get("RNNLAB_HOME")
    os.environ["RNNLAB_HOME"] = tempfile.mkdtemp(prefix=prefix)
    try:
        yield
    finally:
        if home is None:
            os.environ.pop("RNNLAB_HOME", None)
        else:
            os.environ["RNNLAB_HOME"] = home


def train_overlay_runs() -> None:
    """Train the overlay's runs headless into the current runs folder (engine only, no app)."""
    from engine.config import ModelConfig, TrainConfig
    from engine.corpus import load_corpus
    from engine.pipeline import build_pipeline
    from engine.runs import create_run
    from engine.trainer import train

    pipeline = build_pipeline(load_corpus("timemachine"))
    model = ModelConfig(**OVERLAY_MODEL, vocab_size=len(pipeline.vocab))
    for options in OVERLAY_RUNS:
        cfg = TrainConfig(**OVERLAY_TRAIN, **options)
        run = create_run(None, model, cfg, pipeline)
        for _ in train(pipeline, model, cfg, run=run):
            pass


async def runs_overlay(out: Path, size: tuple[int, int]) -> Path:
    """The Runs screen with the overlay's two runs marked, validation perplexity smoothed (s: EMA β 0.6)
    over the faint raw curves, and the config diff beside the plot. Uses a runs folder of its own."""
    with own_home("rnnlab-overlay-"):
        train_overlay_runs()
        app = RnnlabApp()
        async with app.run_test(size=size) as pilot:
            await app.workers.wait_for_complete()
            await pilot.pause()
            await pilot.press("f4")
            await pilot.pause()
            await pilot.press("space", "down", "space", "s")
            await pilot.pause(0.3)
            return Path(app.save_screenshot("runs-overlay.svg", path=str(out)))


async def live(out: Path, size: tuple[int, int]) -> list[Path]:
    """A run trained by a process of its own (a finished one beside it for the table), seen running on
    Runs and followed on Train; stopped from there. Uses a runs folder of its own."""
    import subprocess
    import sys
    import time

    cli = [sys.executable, "-m", "tui.cli", "train", "--model", "gru", "--num-hiddens", "64", "--threads", "1"]
    with own_home("rnnlab-live-"):
        subprocess.run([*cli, "--epochs", "8", "--lr", "2"], capture_output=True, check=True)
        proc = subprocess.Popen([*cli, "--epochs", "3000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        app = RnnlabApp()
        async with app.run_test(size=size) as pilot:
            await app.workers.wait_for_complete()
            await pilot.pause()
            await pilot.press("f4")
            await pilot.pause()
            deadline = time.monotonic() + 120  # until the run is a few dozen epochs in (bounded)
            while time.monotonic() < deadline and not (
                    app.screen.runs and app.screen.runs[0].status == "running" and app.screen.runs[0].epochs_done >= 40):
                await pilot.pause(0.2)
            await pilot.pause(2.5)  # one more refresh of the table and plot
            shots = [Path(app.save_screenshot("runs-live.svg", path=str(out)))]
            await pilot.press("l")
            await pilot.pause(4)
            shots.append(Path(app.save_screenshot("train-live.svg", path=str(out))))
            await pilot.press("ctrl+g")
            while app.screen.training:
                await pilot.pause(0.2)
        proc.wait(timeout=60)
        return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    parser.add_argument("--size", default="120x36", help="COLSxROWS (default 120x36)")
    parser.add_argument("--only", choices=("all", "runs-overlay", "live"), default="all",
                        help="which screenshots to take")
    args = parser.parse_args(argv)
    cols, rows = (int(v) for v in args.size.lower().split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("RNNLAB_HOME"):
        os.environ["RNNLAB_HOME"] = tempfile.mkdtemp(prefix="rnnlab-shots-")
    written = asyncio.run(capture(args.out, (cols, rows))) if args.only == "all" else []
    if args.only in ("all", "runs-overlay"):
        written.append(asyncio.run(runs_overlay(args.out, (cols, rows))))
    if args.only in ("all", "live"):
        written += asyncio.run(live(args.out, (cols, rows)))
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
