"""``rnnlab lab coverage``: the data-iterator lab (D2L 8.3.4, exercise 8.3.5) headless.

    rnnlab lab coverage                                    # every sampler on The Time Machine, D2L's sizes
    rnnlab lab coverage --mode raw --epochs 50 --json      # sentences too (raw text keeps . ! ?)
    rnnlab lab coverage --example                          # the minibatches: 0..34 and the corpus, as X/Y

It prints, for each sampler, how often the positions of the first ``--tokens`` tokens are read as
input over ``--epochs`` epochs (``engine.labs.iterators.coverage_comparison``): min, max, mean and
std of the counts, and the share never read, each with a line on why. ``--example`` prints the first
minibatches of one epoch instead: the book's sequence 0..34 (batch_size 2, num_steps 5) and the
corpus as decoded text. ``--json`` prints the same figures as JSON. Bad options exit 2 naming the
option. Left out: the plots (the Labs screen draws the counts per position).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from engine.config import SAMPLERS
from engine.errors import ConfigError

WHY = {  # sampler -> what its row shows, in a few words
    "random": "D2L: random offset, drops num_subseqs % batch_size subsequences per epoch",
    "sequential": "D2L: random offset, drops the end of every row; state carried over",
    "sliding": "windows every stride tokens: each position read ~num_steps/stride times",
    "uniform": "random offset anywhere, text read as a ring, nothing dropped: flattest",
    "fixed": "offset 0: the tail past the last whole subsequence is never read",
    "sentences": "whole sentences: every token but a sentence's last (only a target)",
}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("coverage", help="minibatches and coverage of every sampler (D2L 8.3.4, 8.3.5)",
                              description="How often each token position is read as input over a few epochs, "
                              "for each sampler; with --example, the minibatches themselves.")
    p.add_argument("--corpus", default="timemachine", help="built-in corpus name or a .txt path (default timemachine)")
    p.add_argument("--mode", default="d2l", choices=("d2l", "raw"),
                   help="preprocessing: d2l (letters only, no sentences) | raw (keeps . ! ?) (default d2l)")
    p.add_argument("--tokenizer", default="char", choices=("char", "word"), help="(default char)")
    p.add_argument("--tokens", type=int, default=10000, help="first N tokens of the corpus, 0 = all (default 10000)")
    p.add_argument("--batch-size", type=int, default=32, help="(default 32)")
    p.add_argument("--num-steps", type=int, default=35, help="(default 35)")
    p.add_argument("--epochs", type=int, default=10, help="(default 10)")
    p.add_argument("--seed", type=int, default=0, help="seeds the offsets and shuffles (default 0)")
    p.add_argument("--stride", type=int, default=0, help="sliding window stride (default 0 = num_steps // 2)")
    p.add_argument("--samplers", default=",".join(SAMPLERS), help=f"comma-separated (default {','.join(SAMPLERS)})")
    p.add_argument("--example", action="store_true", help="print the minibatches (0..34 and the corpus) instead")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=run)


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    """(ids cut to --tokens, tokenizer), after checking the options that need no corpus."""
    for name in ("tokens", "epochs", "seed", "stride"):
        if getattr(args, name) < (1 if name == "epochs" else 0):
            raise ConfigError(f"--{name} must be {'a positive' if name == 'epochs' else 'zero or a positive'} "
                              f"integer (got {getattr(args, name)})")
    for name in ("batch_size", "num_steps"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer (got {getattr(args, name)})")
    from engine.labs.iterators import check_samplers

    args.samplers = check_samplers(tuple(s.strip() for s in args.samplers.split(",") if s.strip()))
    from tui.cli.corpus import load_corpus_arg, pipeline_with_progress

    pipeline = pipeline_with_progress(load_corpus_arg(args.corpus), mode=args.mode, tokenizer=args.tokenizer)
    ids = pipeline.ids if args.tokens == 0 else pipeline.ids[: args.tokens]
    return ids, pipeline.tokenizer


def run(args: argparse.Namespace) -> int:
    from engine.labs.iterators import coverage_comparison, end_ids_of

    ids, tokenizer = _load(args)
    end_ids = end_ids_of(tokenizer) if "sentences" in args.samplers else ()
    if args.example:
        doc = examples(args, ids, tokenizer, end_ids)
        print(json.dumps(doc, indent=1) if args.json else example_report(doc))
        return 0
    lab = coverage_comparison(ids, args.batch_size, args.num_steps, args.epochs, args.seed, samplers=args.samplers,
                              stride=args.stride, end_ids=end_ids)
    doc = lab.to_dict()
    print(json.dumps(doc, indent=1) if args.json else report(doc))
    return 0


def examples(args: argparse.Namespace, ids: Any, tokenizer: Any, end_ids: tuple[int, ...]) -> dict[str, Any]:
    """The first minibatches of each sampler: the book's 0..34, then the corpus (two minibatches each)."""
    from engine.labs.iterators import book_example, minibatch_example

    book = {s: book_example(s, args.seed, args.stride).to_dict() for s in args.samplers if s != "sentences"}
    corpus, left_out = {}, {}
    for s in args.samplers:
        if s == "sentences" and not end_ids:
            left_out[s] = "no sentence ends in this vocabulary; use --mode raw"
            continue
        corpus[s] = minibatch_example(ids, args.batch_size, args.num_steps, s, args.seed, tokenizer=tokenizer,
                                      stride=args.stride, end_ids=end_ids, max_batches=2).to_dict()
    return {"book": book, "corpus": corpus, "left_out": left_out}


# --- the text ------------------------------------------------------------------------------------------------
def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns two spaces apart: the first left-aligned, the numbers right-aligned, the last (words) left."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    last = len(headers) - 1
    return "\n".join("  ".join(str(c).ljust(w) if i in (0, last) else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))).rstrip() for row in (headers, *rows))


def report(doc: dict[str, Any]) -> str:
    """The text ``rnnlab lab coverage`` prints for ``CoverageComparison.to_dict()``."""
    rows = [[r["sampler"], r["min"], r["max"], f"{r['mean']:.3f}", f"{r['std']:.3f}", f"{r['unseen_share']:.2%}",
             WHY[r["sampler"]] + (f" ({r['padding_share']:.1%} padding)" if r["padding_share"] is not None else "")]
            for r in doc["rows"]]
    out = [f"How often each of {doc['n_tokens']:,} positions is read as input over {doc['epochs']} epochs "
           f"(batch_size {doc['batch_size']}, num_steps {doc['num_steps']}, seed {doc['seed']}"
           + (f", stride {doc['stride']}" if any(r["sampler"] == "sliding" for r in doc["rows"]) else "") + ").",
           "An even sampler reads every position the same number of times: small std, nothing unseen.", "",
           table(["sampler", "min", "max", "mean", "std", "unseen", "why"], rows)]
    out += [f"{s}: left out: {why}" for s, why in doc["left_out"].items()]
    return "\n".join(out)


def _rows(batch: dict[str, Any], text: bool) -> list[str]:
    if text:
        return [f"  X {x!r}  ->  Y {y!r}" for x, y in zip(batch["x_text"], batch["y_text"])]
    return [f"  X {x}  Y {['pad' if t == -100 else t for t in y]}" for x, y in zip(batch["X"], batch["Y"])]


def example_report(doc: dict[str, Any]) -> str:
    """The minibatches as rows: ids for 0..34, decoded text for the corpus."""
    out = ["The sequence 0..34 in minibatches of batch_size 2 × num_steps 5: Y is X shifted by one token."]
    for s, ex in doc["book"].items():
        stride = f", stride {ex['stride']}" if ex["stride"] else ""
        out += ["", f"{s} (seed {ex['seed']}{stride}): {ex['num_batches']} minibatches"]
        for k, b in enumerate(ex["batches"]):
            out += [f" minibatch {k + 1}", *_rows(b, False)]
    for s, ex in doc["corpus"].items():
        out += ["", f"corpus, {s}: first 2 of {ex['num_batches']} minibatches of batch_size {ex['batch_size']}, "
                    f"num_steps {ex['num_steps']} (first 3 rows)"]
        for k, b in enumerate(ex["batches"]):
            out += [f" minibatch {k + 1}", *_rows({key: v[:3] for key, v in b.items()}, True)]
    out += [f"{s}: left out: {why}" for s, why in doc["left_out"].items()]
    return "\n".join(out)
