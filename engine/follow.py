"""Following a run as it trains, from its folder alone: the events another process logs, read back.

A run folder is the interface between a trainer and any number of viewers (the TUI that started it,
another terminal's ``rnnlab watch``, a TUI opened later elsewhere). ``RunFollower(path).poll()``
returns the events logged since the last poll, rebuilt with ``engine.events.event_from_dict``:

* ``metrics.jsonl`` → ``Progress``; ``events.jsonl`` → ``Spike``, ``Diverged``, ``Checkpoint``,
  ``Finished``; ``samples.log`` → ``Sample`` (its lines are ``epoch N: 'text'``, the repr read back).
* Only whole lines are read: a line still being written waits for the next poll. Damaged lines
  are skipped, as ``engine.runlog`` skips them.
* A file that shrank or was replaced (another inode) was rewritten (a resume drops what was logged past its checkpoint): the
  follower starts that file again and ``poll`` reports ``reset`` so a viewer clears its curves.

Within one poll, the files are read in the order metrics, samples, events, so a ``Finished`` comes
after the last ``Progress`` it follows. The first poll returns the whole history. Each poll reads
only the bytes appended since the last one. ``read_samples(path, prefix)`` reads samples.log alone
(the Runs screen's history of samples). Left out: following a run folder that is deleted while
followed (the files vanish: polls return nothing; ``engine.live`` says the run is gone).
"""

from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.events import Event, Sample, event_from_dict

METRICS, SAMPLES, EVENTS = "metrics.jsonl", "samples.log", "events.jsonl"
SAMPLE_LINE = re.compile(r"^epoch (\d+): (.*)$")


@dataclass
class Poll:
    """What one poll found: the new events, oldest first per file, and whether a log was rewritten."""

    events: list[Event] = field(default_factory=list)
    reset: bool = False


class _Tail:
    """New whole lines of one growing file."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.partial, self.inode = path, 0, b"", None

    def read(self) -> tuple[list[bytes], bool]:
        """(new complete lines, whether the file was rewritten shorter and read again from its start)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return [], False
        size = st.st_size
        # Shorter, or another file put in its place (a rewrite is a rename): read it from its start.
        reset = size < self.offset or (self.inode is not None and st.st_ino != self.inode)
        self.inode = st.st_ino
        if reset:
            self.offset, self.partial = 0, b""
        if size == self.offset:
            return [], reset
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(size - self.offset)
        except OSError:
            return [], reset
        self.offset += len(data)
        data = self.partial + data
        *lines, self.partial = data.split(b"\n")
        return lines, reset


def _sample(line: str, prefix: str) -> Sample | None:
    m = SAMPLE_LINE.match(line)
    if m is None:
        return None
    try:
        text = ast.literal_eval(m.group(2))
    except (ValueError, SyntaxError):
        return None
    return Sample(int(m.group(1)), prefix, text) if isinstance(text, str) else None


class RunFollower:
    """Events of the run at ``path`` as they are logged; ``prefix`` is the samples' prompt (the run's
    ``sample_prefix``), which samples.log does not repeat."""

    def __init__(self, path: Path | str, prefix: str = "") -> None:
        self.path, self.prefix = Path(path), prefix
        self._tails = {name: _Tail(self.path / name) for name in (METRICS, SAMPLES, EVENTS)}

    def poll(self) -> Poll:
        out = Poll()
        for name, tail in self._tails.items():
            lines, reset = tail.read()
            out.reset |= reset
            for raw in lines:
                event = self._parse(name, raw)
                if event is not None:
                    out.events.append(event)
        return out

    def _parse(self, name: str, raw: bytes) -> Event | None:
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            return None
        if not line.strip():
            return None
        if name == SAMPLES:
            return _sample(line, self.prefix)
        try:
            doc: Any = json.loads(line)
            return event_from_dict(doc) if isinstance(doc, dict) else None
        except (ValueError, KeyError, TypeError):
            return None


def read_samples(path: Path | str, prefix: str = "") -> list[Sample]:
    """Every sample a run logged, oldest first (samples.log only; unreadable lines skipped)."""
    lines, _ = _Tail(Path(path) / SAMPLES).read()
    return [s for s in (_sample(raw.decode("utf-8", "replace").rstrip("\r"), prefix) for raw in lines) if s]
