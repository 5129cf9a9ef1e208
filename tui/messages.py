"""Messages that cross screens: a new corpus pipeline, a saved run, a run to open,
a run offered to Generate.

Each is a small dataclass posted to the app, which keeps the shared
``Session`` (``tui.session``) up to date; screens read the session when they
are shown. A screen's own messages (training events, generated pieces) are
nested in that screen's class instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.message import Message


@dataclass
class PipelineChanged(Message):
    """The Corpus screen built a new text pipeline (corpus + tokenizer + ids)."""

    pipeline: Any  # engine.pipeline.TextPipeline
    choice: Any = None  # tui.session.CorpusChoice it was built from (None: keep the session's)


@dataclass
class RunSaved(Message):
    """A training run finished or was stopped; its folder holds a usable model."""

    path: Path
    stopped_early: bool = False


@dataclass
class OpenRun(Message):
    """Open a saved run in the Generate screen."""

    path: Path


@dataclass
class RunOffered(Message):
    """A run finished while Generate uses another one: sent to the current screen, which may offer it."""

    path: Path


@dataclass
class FollowRun(Message):
    """Show a run live on the Train screen (``resume``: start a training process on it first)."""

    path: Path
    resume: bool = False
