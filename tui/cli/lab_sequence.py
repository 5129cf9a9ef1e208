"""``rnnlab lab sequence``: the sequence lab (D2L 8.1, and 8.6's RNN for the 8.1 model) headless.

    rnnlab lab sequence                                   # every experiment, D2L's data
    rnnlab lab sequence --experiments models,exact --sigma 0
    rnnlab lab sequence --tau 8 --model lstm --json

It runs ``engine.labs.sequence.run_lab`` with a progress bar on stderr (once it has
run a second) and prints, per experiment, a line or two on what was run and a table
of test MSE: by model and k (``models``), by τ (``tau``), the exact σ = 0 case
(``exact``), block features against plain τ (``blocks``), before and after a regime
change (``regime``) and the switching series (``switching``). ``--json`` prints the
same figures as one JSON object (NaN as null). Bad options exit 2 naming the option.
Left out: the plots (the Labs screen's sequence view draws them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any

from engine.errors import ConfigError


def register(subparsers: Any) -> None:
    from engine.labs.sequence_config import EXPERIMENTS, SequenceConfig

    d = SequenceConfig()
    p = subparsers.add_parser("sequence", help="sequence models on a noisy sine (D2L 8.1)",
                              description="Linear, MLP and recurrent models predicting x_t = sin(ω t) + ε one, k "
                              "and many steps ahead; where windows of the past suffice and where they fail. Defaults are "
                              "D2L 8.1's where the book has them.")
    p.add_argument("--experiments", default=",".join(EXPERIMENTS),
                   help=f"comma-separated, some of {','.join(EXPERIMENTS)} (default: all)")
    for f in dataclasses.fields(SequenceConfig):  # one flag per option, its help from the field's metadata
        default, choices = getattr(d, f.name), f.metadata.get("choices")
        kind = str if choices else type(default)
        p.add_argument(f.metadata.get("flag", "--" + f.name.replace("_", "-")), dest=f.name, type=kind,
                       choices=choices, default=default, help=f"{f.metadata['help']} (default {default:g})"
                       if kind is not str else f"{f.metadata['help']} (default {default})")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (default 1: the models are tiny, and more threads only wait: "
                        "3× slower with 2; 0 = torch's default)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=run)


def config_from(args: argparse.Namespace) -> tuple[Any, tuple[str, ...]]:
    from engine.labs.sequence_config import SequenceConfig

    cfg = SequenceConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SequenceConfig)})
    return cfg, tuple(e.strip() for e in args.experiments.split(",") if e.strip())


def run(args: argparse.Namespace) -> int:
    from engine.labs.sequence import run_lab
    from tui.cli.corpus import StepBar

    cfg, experiments = config_from(args)
    if args.threads < 0:
        raise ConfigError(f"--threads must be 0 (torch's default) or a positive number (got {args.threads})")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    bar, lab = StepBar(), None
    try:
        steps = run_lab(cfg, experiments)
        while True:
            event = next(steps)
            bar(f"sequence lab: {event.experiment}", event.fits_done, event.fits_total)
    except StopIteration as done:
        lab = done.value
    finally:
        bar.close()
    doc = lab.to_dict()
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print(report(doc))
    return 0


# --- the tables ------------------------------------------------------------------------------------------------
def num(x: float | None) -> str:
    """An MSE in 4 significant digits; a missing one (no prediction) as —."""
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """Columns two spaces apart, each as wide as its widest cell: the first ``left`` (names) left-aligned,
    the numbers right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    return "\n".join("  ".join(str(c).ljust(w) if i < left else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))).rstrip() for row in (headers, *rows))


K_HEADERS = ["k=1", "k=4", "k=16", "k=64", "multi"]
COLS = ["1", "4", "16", "64", "multi"]


def report(doc: dict[str, Any]) -> str:
    """The text ``rnnlab lab sequence`` prints for ``SequenceLab.to_dict()``."""
    c, split = doc["config"], doc["split"]
    out = [f"x_t = sin({c['omega']:g} t) + N(0, {c['sigma']:g}²), t = 1..{c['T']}, seed {c['seed']}; "
           f"training targets t <= {split} ({c['n_train']} examples of τ = {c['tau']}), "
           f"test MSE over t = {split + 1}..{c['T']}.",
           "k=K: x̂_t from x up to t-K, the model's own outputs fed back in between; "
           f"multi: own outputs only, from t = {split + 1} on."]
    for name, fmt in SECTIONS.items():
        if name in doc:
            out += ["", *fmt(doc[name], doc)]
    return "\n".join(out)


def _models(e: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    rows = [[r["model"], r["window"], num(r["loss"]), *(num(r["mse"][k]) for k in COLS)] for r in e["table"]]
    return ["models: test MSE by model and k (train: MSE on the training targets at the end)",
            table(["model", "window", "train", *K_HEADERS], rows, left=2)]


def _by_window(rows_in: list[dict[str, Any]], key: str) -> tuple[list[str], list[list[str]]]:
    """One row per window, linear's columns then the MLP's."""
    models = list(dict.fromkeys(r["model"] for r in rows_in))
    windows = list(dict.fromkeys(r[key] for r in rows_in))
    cell = {(r["model"], r[key]): r for r in rows_in}
    headers = [key, *(f"{m} {h}" if i == 0 else h for m in models for i, h in enumerate(K_HEADERS))]
    rows = [[str(w), *(num(cell[m, w]["mse"][k]) for m in models for k in COLS)] for w in windows]
    return headers, rows


def _tau(e: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    headers, rows = _by_window(e["table"], "tau")
    return ["tau: test MSE by τ, linear then MLP", table(headers, rows)]


def _exact(e: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    f, r = e["facts"], e["table"][0]
    w, want = f["coefficients"], f["expected"]
    return [f"exact: σ = 0, linear on τ = 2 fits x̂_t = {w[0]:.9f} x_(t-2) {w[1]:+.9f} x_(t-1) {f['bias']:+.2g}; "
            f"the sine obeys x_t = {want[0]:g} x_(t-2) + 2cos(ω) x_(t-1), 2cos(ω) = {want[1]:.9f}",
            table(["model", "window", *K_HEADERS], [[r["model"], r["window"], *(num(r["mse"][k]) for k in COLS)]], 2),
            f"largest test MSE {num(f['max_mse'])}: " + ("below 1e-6 for every k" if f["max_mse"] < 1e-6
                                                            else "not below 1e-6")]


def _blocks(e: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    headers, rows = _by_window(e["table"], "window")
    spans = {r["window"]: r["span"] for r in e["table"]}
    headers.insert(1, "span")
    for row in rows:
        row.insert(1, str(spans[row[0]]))
    return [f"blocks: {e['facts']['features']} features each, older observations merged into block means "
            "(newest block first; span: observations read)", table(headers, rows)]


def _regime(e: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    at = e["facts"]["change_at"]
    rows = []
    for r in e["table"]:
        for when in ("before", "after"):
            first = when == "before"
            rows.append([r["series"] if first else "", r["model"] if first else "", when,
                         *(num(r[when][k]) for k in COLS)])
    return [f"regime: the series changes at t = {at + 1}; test MSE before it and from it on",
            table(["series", "model", "", *K_HEADERS], rows, left=3)]


def _switching(e: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    f = e["facts"]
    rows = [[r["model"], r["window"], num(r["mse"]), num(r["mse_signal"])] for r in e["table"]]
    best, hist = f["best_window"], f["history"]
    verdict = "beats" if hist["mse"] < best["mse"] else "does not beat"
    return [f"switching: a level ±1 that flips after {f['dwell'][0]}-{f['dwell'][1]} steps, noise σ = {f['sigma']:g}, "
            f"T = {f['T']}, training targets t <= {f['split']}; one-step test MSE (signal: against the level "
            "without noise)",
            table(["model", "window", "test MSE", "signal MSE"], rows, left=2),
            f"{hist['model']} {verdict} every window: {num(hist['mse'])} against the best window's "
            f"{num(best['mse'])} ({best['model']} {best['window']}); against the level no function of the "
            f"last 16 values can get below {num(f['window_bound'])}, and {hist['model']} gets "
            f"{num(hist['mse_signal'])}"]


SECTIONS = {"models": _models, "tau": _tau, "exact": _exact, "blocks": _blocks, "regime": _regime,
            "switching": _switching}
