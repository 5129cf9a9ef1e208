"""``rnnlab generate``: continue a prefix with a trained run's model, streaming to stdout.

    rnnlab generate 20261126-153012-gru-timemachine --prefix "time traveller" --alpha 2 -n 200
    rnnlab generate RUN --alpha inf                # greedy, as D2L's predict
    rnnlab generate RUN --alpha 1 --top-k 5 --seed 0

The sampling exponent α sharpens (α > 1) or flattens (α < 1) the model's
distribution, q ∝ P^α; the temperature 1/α is printed on stderr with any
warning about prefix characters the vocabulary lacks. Left out: interactive
prompting (the TUI's generation pane does that).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any


def register(subparsers: Any) -> None:
    from engine.config import DEVICES
    p = subparsers.add_parser("generate", help="generate text with a trained run",
                              description="Stream a continuation of --prefix from a run's model.")
    p.add_argument("run", metavar="RUN", help="run name (see `rnnlab runs`) or folder")
    p.add_argument("--prefix", default="time traveller", help="text to continue (default: D2L's)")
    p.add_argument("-n", "--num-tokens", type=int, default=200, help="tokens to generate")
    p.add_argument("--alpha", type=float, default=1.0, help="sampling exponent α (inf = greedy, 0 = uniform)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass in (0, 1]")
    p.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")
    p.add_argument("--device", default="cpu", choices=DEVICES, help="device to run on")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="replay each token's step from a captured CUDA graph (fewer kernel launches; CUDA only)")
    p.add_argument("--runs-dir", default=None, help="folder of runs (default: $RNNLAB_HOME/runs)")
    p.set_defaults(func=run)


def temperature(alpha: float) -> str:
    """1/α as text: α = inf → 0 (greedy), α = 0 → inf (uniform)."""
    if math.isinf(alpha):
        return "0 (greedy)"
    return "inf (uniform)" if alpha == 0 else f"{1 / alpha:.3g}"


def run(args: argparse.Namespace) -> int:
    from engine.corpus import prompt_text
    from engine.errors import ConfigError
    from engine.generate import generate
    from engine.runs import open_run
    from engine.training import resolve_device

    if args.num_tokens < 0:
        raise ConfigError(f"num_tokens must be zero or more (got {args.num_tokens})")
    run_ = open_run(args.run, args.runs_dir)
    model = run_.load_model(resolve_device(args.device))
    prefix = prompt_text(args.prefix, run_.config.get("mode", "d2l"))  # as the training text was cleaned
    gen = generate(model, run_.tokenizer, prefix, args.num_tokens, alpha=args.alpha, top_k=args.top_k,
                   top_p=args.top_p, seed=args.seed, graphs=args.cuda_graphs)
    print(f"alpha {args.alpha:g}, temperature {temperature(args.alpha)}", file=sys.stderr)
    for w in gen.warnings:
        print(f"warning: {w}", file=sys.stderr)
    sys.stdout.write(prefix)
    sys.stdout.flush()
    for piece in gen:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
