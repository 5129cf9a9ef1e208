"""The playground's shared state: the current corpus pipeline and model run.

The app owns one ``Session``; screens read it when they are shown (each keeps
the version it last saw, so it only rebuilds what changed). Cross-screen
messages (``tui.messages``) are the only writers, through the app.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class CorpusChoice:
    """What the Corpus screen's form asks for (the pipeline's recipe)."""

    source: str = "timemachine"  # catalog name or file path
    mode: str = "d2l"  # preprocessing: d2l | raw
    tokenizer: str = "char"  # char | word | bpe | wordpiece | unigram
    vocab_size: int = 1000  # target size for subword tokenizers
    min_freq: int = 0  # tokens rarer than this map to <unk>


@dataclass
class Session:
    """Shared, mutable state of one playground session."""

    choice: CorpusChoice = field(default_factory=CorpusChoice)
    pipeline: Any = None  # engine.pipeline.TextPipeline | None
    pipeline_version: int = 0  # bumped on every new pipeline
    run_path: Path | None = None  # the run Generate uses (picked by the user, or the first one trained)
    run_version: int = 0  # bumped whenever run_path changes
    offered_run: Path | None = None  # a run that finished since: Generate offers it, never switches by itself
    runs_version: int = 0  # bumped when runs are saved or deleted
    training_path: Path | None = None  # the run the Train screen is training now (not to be deleted)
    child: Any = None  # tui.trainproc.Child: the training process this playground started, while it runs

    def is_training(self, path: Path | str) -> bool:
        """Whether ``path`` is the run being trained right now."""
        return self.training_path is not None and Path(path).resolve() == self.training_path.resolve()

    def set_pipeline(self, pipeline: Any, choice: CorpusChoice | None = None) -> None:
        self.pipeline = pipeline
        if choice is not None:
            self.choice = choice
        self.pipeline_version += 1

    def set_run(self, path: Path | None) -> None:
        self.run_path = path
        self.run_version += 1
        if path is not None and self.offered_run is not None and same_run(path, self.offered_run):
            self.offered_run = None

    def run_finished(self, path: Path) -> bool:
        """A run was saved: Generate uses it if it had no model, else it is offered. True if used."""
        self.runs_version += 1
        if self.run_path is None:
            self.set_run(path)
            return True
        self.offered_run = None if same_run(path, self.run_path) else path
        return False

    def run_deleted(self, path: Path | str) -> None:
        if self.run_path is not None and same_run(path, self.run_path):
            self.set_run(None)
        if self.offered_run is not None and same_run(path, self.offered_run):
            self.offered_run = None
        self.runs_version += 1


def same_run(a: Path | str, b: Path | str) -> bool:
    return Path(a).resolve() == Path(b).resolve()
