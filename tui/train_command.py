"""The ``rnnlab train …`` line that reproduces a run ("copy as command").

``train_argv(run)`` gives ``--corpus`` (the catalog name of a built-in corpus, else the path the
run read), then each preprocessing/tokenizer option and each model and training option whose
value is not its default, as ``rnnlab train``'s own flags (``tui.cli.train``: a field's ``flag``,
else ``--field-name``). The defaults are the real parser's (``rnnlab train`` with no options) and
the config dataclasses'. A run trained by several processes gets ``--nproc N`` (its world size; for
several machines, the README's torchrun line). ``command_line`` quotes it for a shell::

    rnnlab train --corpus timemachine --model rnn --num-hiddens 16 --epochs 2 --clip off --lr 3

Left out: ``--runs-dir`` (where the copy goes is the user's choice), the vocabulary's sentence
ends (``rnnlab train`` finds them from the tokenizer) and a run's tags (an exercise or a sweep
made it; the command trains a plain run with the same settings).
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import fields
from typing import Any

from engine.config import ModelConfig, TrainConfig, user_options
from engine.runs import Run
from engine.tokenizers import SUBWORD_KINDS


def _parser_defaults() -> argparse.Namespace:
    """What ``rnnlab train`` with no options sets (its own defaults for the corpus and tokenizer)."""
    from tui.cli.train import register

    sub = argparse.ArgumentParser(prog="rnnlab").add_subparsers(dest="command")
    register(sub)
    return sub.choices["train"].parse_args([])


def _arg(value: Any) -> str:
    """A value as a flag's argument that parses back to the same value: ``1.0 -> "1"``, ``0.1 -> "0.1"``."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


def _option_args(cls: type, values: dict[str, Any]) -> list[str]:
    from tui.cli.train import _flag

    out: list[str] = []
    for f in user_options(cls):
        value = values.get(f.name, f.default)
        if isinstance(value, list):
            value = tuple(value)
        if value == f.default:
            continue
        flag = f.metadata.get("flag", _flag(f.name))
        if isinstance(f.default, bool):
            out.append(flag if value else "--no-" + flag[2:])
        else:
            out += [flag, _arg(value)]
    return out


def train_argv(run: Run) -> list[str]:
    """``["rnnlab", "train", "--corpus", …]``: the options that differ from ``rnnlab train``'s defaults."""
    from engine.corpus import catalog

    defaults = _parser_defaults()
    corpus = run.config.get("corpus", {})
    name, path = corpus.get("name", ""), corpus.get("path", "")
    argv = ["rnnlab", "train", "--corpus", name if name in catalog() or not path else path]
    tok = run.config.get("tokenizer", {}) if isinstance(run.config.get("tokenizer"), dict) else {}
    data = {"mode": run.config.get("mode", defaults.mode), "tokenizer": tok.get("kind", defaults.tokenizer),
            "vocab_size": tok.get("vocab_size"), "min_freq": tok.get("min_freq")}
    if data["tokenizer"] not in SUBWORD_KINDS:
        data["vocab_size"] = None  # char and word tokenizers have no target size
    for dest, flag in (("mode", "--mode"), ("tokenizer", "--tokenizer"), ("vocab_size", "--vocab-size"),
                       ("min_freq", "--min-freq")):
        if data[dest] is not None and data[dest] != getattr(defaults, dest):
            argv += [flag, _arg(data[dest])]
    model = {f.name: getattr(run.model_config, f.name) for f in fields(ModelConfig)}
    train = {f.name: getattr(run.train_config, f.name) for f in fields(TrainConfig)}
    # the processes it trained on (world_size is set by the launcher, so it has no flag of its own)
    ranks = ["--nproc", str(run.train_config.world_size)] if run.train_config.world_size > 1 else []
    return argv + _option_args(ModelConfig, model) + _option_args(TrainConfig, train) + ranks


def command_line(run: Run) -> str:
    """``train_argv`` quoted for a POSIX shell."""
    return shlex.join(train_argv(run))
