"""Exporting runs' curves: every logged ``Progress`` of one or more runs as CSV, and where exports go.

``curves_csv(runs)`` writes one row per line of each run's metrics.jsonl, with the run's name
first, then the ``Progress`` fields in their order (``run, epoch, step, train_ppl, val_ppl,
tokens_per_s, grad_norm, lr, …``; a field only some lines have comes after them, empty where
missing). Cells are written so that ``read_curves_csv`` gives back exactly the records
``Run.metrics()`` read (less their ``type``): ``None`` as an empty cell, booleans as
``true``/``false``, floats by ``repr`` (shortest exact), and the log's ``"inf"``/``"nan"`` as is —
which is also what pandas and spreadsheets read as numbers.

``export_paths`` says where an export goes by default: one run's into its own folder
(``curves.csv``, ``plot-val_ppl.svg``), an overlay's into the runs folder, named by the time.
Files are written atomically (``engine.checkpoint``). Left out: drawing the plot (the TUI exports
its own widget as SVG) and reading other people's CSV dialects.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from engine import checkpoint
from engine.events import Progress
from engine.runs import Run

FIELDS = ("run", *(f.name for f in fields(Progress)))  # run, epoch, step, train_ppl, val_ppl, …
_INT = re.compile(r"-?\d+")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _value(cell: str) -> Any:
    """The inverse of ``_cell`` for the values a metrics log holds (numbers, booleans, None, "inf")."""
    if cell == "":
        return None
    if cell in ("true", "false"):
        return cell == "true"
    if _INT.fullmatch(cell):
        return int(cell)
    try:
        x = float(cell)
    except ValueError:
        return cell
    return x if x == x and abs(x) != float("inf") else cell  # the log keeps inf and nan as strings


def curves_csv(runs: Sequence[Run]) -> str:
    """The runs' metrics logs as one CSV text (damaged log lines are skipped, as ``Run.metrics`` does)."""
    records = [(run.name, [{k: v for k, v in m.items() if k != "type"} for m in run.metrics()]) for run in runs]
    header = list(FIELDS)
    for _, rows in records:
        for m in rows:
            header += [k for k in m if k not in header]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for name, rows in records:
        for m in rows:
            writer.writerow([name, *(_cell(m.get(k)) for k in header[1:])])
    return out.getvalue()


def read_curves_csv(text: str) -> dict[str, list[dict[str, Any]]]:
    """Run name -> its records, from ``curves_csv``'s text. A record has every ``Progress`` field (None
    where the cell is empty) and the other columns only where its cell is not empty."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    known = set(FIELDS)
    out: dict[str, list[dict[str, Any]]] = {}
    for row in reader:
        record = {k: _value(c) for k, c in zip(header[1:], row[1:]) if k in known or c != ""}
        out.setdefault(row[0], []).append(record)
    return out


def write_curves_csv(runs: Sequence[Run], path: Path) -> Path:
    """Write ``curves_csv(runs)`` to ``path`` atomically (WriteError naming it when it cannot be written)."""
    checkpoint.atomic_write_bytes(Path(path), curves_csv(runs).encode("utf-8"))
    return Path(path)


def export_paths(runs: Sequence[Run], metric: str, folder: Path | None = None) -> tuple[Path, Path]:
    """(CSV path, SVG path) for an export of these runs' curves: one run's go into its folder, an
    overlay's into the runs folder (the first run's parent), named by the time; ``folder`` overrides
    where."""
    if len(runs) == 1:
        where, stem = runs[0].path, "curves"
        svg = f"plot-{metric}.svg"
    else:
        where, stem = runs[0].path.parent, f"overlay-{time.strftime('%Y%m%d-%H%M%S')}"
        svg = f"{stem}-{metric}.svg"
    where = Path(folder) if folder is not None else where
    return where / f"{stem}.csv", where / svg
