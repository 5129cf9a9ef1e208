"""Shared bits of the TUI tests: a tiny config, a headless tiny run, an app runner,
a loopback file server for first-run downloads.

The tests are plain functions that drive the app with ``asyncio.run`` (no
pytest-asyncio needed) and press the keys a person would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from engine.config import ModelConfig, TrainConfig
from engine.corpus import load_corpus
from engine.runs import create_run
from engine.pipeline import build_pipeline
from engine.trainer import train
from tui.app import RnnlabApp
from tui.widgets.form import ConfigForm
from loopback import closed_port, serve_files  # noqa: F401 - re-exported for the TUI tests

SIZE = (100, 30)
# A run that takes about a second even on a busy 2-core machine.
TINY = {
    ("model", "kind"): "rnn",
    ("model", "num_hiddens"): 16,
    ("train", "epochs"): 2,
    ("train", "max_tokens"): 2000,
    ("train", "batch_size"): 8,
    ("train", "num_steps"): 8,
    ("train", "sample_len"): 5,
    ("train", "threads"): 1,
    ("train", "device"): "cpu",
}


async def open_file(app: RnnlabApp, pilot: Pilot, path: Path) -> None:
    """ctrl+o, type the path, enter, as a person would; return once the corpus is loaded."""
    await pilot.press("ctrl+o", *str(path), "enter")
    await app.workers.wait_for_complete()
    await pilot.pause()


def run_app(body: Callable[[RnnlabApp, Pilot], Awaitable[Any]], size: tuple[int, int] = SIZE) -> Any:
    """Start the app, wait for the default corpus, run ``body(app, pilot)``."""

    async def main() -> Any:
        app = RnnlabApp()
        async with app.run_test(size=size) as pilot:
            await app.workers.wait_for_complete()
            await pilot.pause()
            return await body(app, pilot)

    return asyncio.run(main())


async def open_train(app: RnnlabApp, pilot: Pilot, overrides: dict | None = None) -> None:
    """Switch to the Train screen (F2) and fill the form with TINY, then ``overrides``."""
    await pilot.press("f2")
    await pilot.pause()
    form = app.screen.query_one(ConfigForm)
    for (group, name), value in {**TINY, **(overrides or {})}.items():
        form.set_value(group, name, value)
    await pilot.pause()


def train_screen(app: RnnlabApp) -> Any:
    """The Train screen (its mode's), wherever the app is."""
    from tui.screens.train import TrainScreen

    return next(s for s in app.get_screen_stack("train") if isinstance(s, TrainScreen))


async def wait_training(app: RnnlabApp, pilot: Pilot, timeout_s: float = 240) -> None:
    """Until the Train screen's run has ended: its own process trains it, so there is no worker to wait
    for. A bound on waiting, not a timing check: a run that never ends fails the test here."""
    screen = train_screen(app)
    deadline = time.monotonic() + timeout_s
    while screen.training and time.monotonic() < deadline:
        await pilot.pause(0.05)
    assert not screen.training, f"the run {screen.run_path} did not end within {timeout_s} s"
    await pilot.pause()


async def wait_events(app: RnnlabApp, pilot: Pilot, epochs: int = 0, timeout_s: float = 240) -> None:
    """Until the Train screen has shown a first event (and, with ``epochs``, that many epoch ends)."""
    screen = train_screen(app)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and screen.training and (
            not screen.events_seen or (epochs and (screen.last_progress is None
                                                   or screen.last_progress.epoch < epochs))):
        await pilot.pause(0.05)
    assert screen.events_seen, f"no event from {screen.run_path} within {timeout_s} s"


def tiny_run(**train_overrides: Any) -> Path:
    """Train a tiny model headless (engine only) and return its run folder."""
    pipeline = build_pipeline(load_corpus("timemachine"))
    model = {name: value for (group, name), value in TINY.items() if group == "model"}
    settings = {name: value for (group, name), value in TINY.items() if group == "train"}
    model_cfg = ModelConfig(**model, vocab_size=len(pipeline.tokenizer.vocab))
    train_cfg = TrainConfig(**{**settings, **train_overrides})
    run = create_run(None, model_cfg, train_cfg, pipeline)
    for _ in train(pipeline, model_cfg, train_cfg, run=run):
        pass
    return run.path


