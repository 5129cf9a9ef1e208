"""``rnnlab lab LAB …``: the chapter's labs, headless; each prints its tables, or the same figures as JSON.

    rnnlab lab bptt power --gap 0.9
    rnnlab lab bptt gradients --model rnn:relu --scale 0.5,1,2 --json

``LABS`` is the registry: a lab's name and the module holding its command,
whose ``register(subparsers)`` adds the lab's parser (and its own
sub-commands) and sets ``func(args) -> int``, as the top-level subcommands do
(``tui.cli``). Adding a lab is one module and one line here. Left out: the
plots (the TUI's Labs screen draws them).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

LABS: dict[str, str] = {  # lab name -> the module with its register(subparsers)
    "bptt": "tui.cli.lab_bptt",
    "sequence": "tui.cli.lab_sequence",
    "coverage": "tui.cli.lab_coverage",
}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("lab", help="run one of the chapter's labs headless",
                              description="Run a lab and print its tables (--json: the same figures as JSON).")
    sub = p.add_subparsers(dest="lab", metavar="LAB")
    for module in LABS.values():
        importlib.import_module(module).register(sub)
    p.set_defaults(func=lambda args: _no_lab(p, args))


def _no_lab(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``rnnlab lab`` alone: say which labs there are (exit 2, as argparse does for a missing argument)."""
    parser.print_usage(sys.stderr)
    print(f"rnnlab lab: error: name a lab: {', '.join(LABS)}", file=sys.stderr)
    return 2
