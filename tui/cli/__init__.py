"""The ``rnnlab`` command: no arguments opens the playground; subcommands run
headless (``corpus``, ``train``, ``sweep``, ``watch``, ``generate``, ``runs``, ``lab``, ``exercise``).

Each subcommand lives in its own module with ``register(subparsers)`` which adds
its parser and sets ``func(args) -> int``. Textual is imported only when the
playground is launched. Errors from the engine (``RnnlabError``) are printed as
one clear line on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from engine.errors import ConfigError, RnnlabError

SUBCOMMANDS = ("corpus", "train", "sweep", "watch", "generate", "runs", "lab", "exercise")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnlab",
        description="A terminal playground for recurrent neural networks (D2L ch. 8). "
        "Run with no arguments to open the playground.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import importlib

    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"tui.cli.{name}")
        except ModuleNotFoundError as exc:  # pragma: no cover - during development
            if exc.name != f"tui.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv  # the command line as given (rnnlab train --nproc hands it to the processes it starts)
    if args.command is None:
        from tui.app import run_app

        return run_app()
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"rnnlab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RnnlabError as exc:
        print(f"rnnlab {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `rnnlab corpus | head`: the reader has gone, so stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # python -m tui.cli
    sys.exit(main())
