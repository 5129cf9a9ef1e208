"""A run's append-only logs: ``metrics.jsonl`` and ``events.jsonl`` (one JSON
object per line) and ``samples.log`` (one ``epoch N: '...'`` line per sample).

Lines are appended one ``write`` at a time, so a reader (another terminal, the
TUI's Runs screen) can follow a run while it trains. Reading is by bytes, line
by line: a line that is not a UTF-8 JSON object — a disk error, an editor, a
crash mid-line — is skipped and its number returned, so the caller can warn
once (``damage_warning``) instead of failing. A last line without its newline
is being written, or was cut by a crash, and is skipped silently. Rewriting
(a resume dropping what came after its checkpoint) is atomic and keeps the good
lines only. Left out: rotation and compression (a run's logs stay small).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from engine import checkpoint
from engine.errors import RunError, write_error

MAX_LINES_SHOWN = 10  # line numbers a damage warning lists


def append_line(path: Path, line: str) -> None:
    """Append one line (WriteError when the disk is full or the folder is not writable)."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line)
    except OSError as exc:
        raise write_error(exc, path, "training stopped; the last checkpoint is kept") from None


def is_record(obj: Any) -> bool:
    """A log record: a JSON object whose epoch and step, when present, are whole numbers."""
    return isinstance(obj, dict) and all(
        isinstance(obj[k], int) and not isinstance(obj[k], bool) for k in ("epoch", "step") if k in obj)


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """(records, numbers of the damaged lines skipped); ([], []) when the file does not exist."""
    out: list[dict[str, Any]] = []
    bad: list[int] = []
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return out, bad
    except OSError as exc:
        raise RunError(f"{path} cannot be read ({exc.strerror or exc}); check the folder's permissions") from None
    with f:
        for number, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                break  # the last line, still being written or cut short by a crash
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                record = None
            if is_record(record):
                out.append(record)
            else:
                bad.append(number)
    return out, bad


def damage_warning(path: Path, bad: list[int]) -> str:
    """One line naming the file and the damaged lines.

    >>> damage_warning(Path("run/metrics.jsonl"), [3, 17])
    'run/metrics.jsonl: skipped 2 damaged lines (3, 17): not UTF-8 JSON records'
    """
    shown = ", ".join(map(str, bad[:MAX_LINES_SHOWN])) + (", …" if len(bad) > MAX_LINES_SHOWN else "")
    return f"{path}: skipped {len(bad)} damaged {'line' if len(bad) == 1 else 'lines'} ({shown}): not UTF-8 JSON records"


def rewrite_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace the log with these records, atomically."""
    checkpoint.atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in records).encode())


def truncate_samples(path: Path, epoch: int) -> None:
    """Drop the sample lines of epochs past ``epoch``; other lines, even undecodable ones, stay as they are."""
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise RunError(f"{path} cannot be read ({exc.strerror or exc}); check the folder's permissions") from None
    keep = [ln + b"\n" for ln in lines if (m := re.match(rb"epoch (\d+):", ln)) is None or int(m.group(1)) <= epoch]
    checkpoint.atomic_write_bytes(path, b"".join(keep))
