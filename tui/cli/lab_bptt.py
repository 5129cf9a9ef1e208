"""``rnnlab lab bptt power|gradients|steps|truncation``: the BPTT lab (D2L 8.7) headless (``engine.labs.bptt``,
``bptt_grads``, ``truncation``).

    rnnlab lab bptt power --lambda1 0.9 --gap 0.95        # M^k x vanishes, and aligns slowly
    rnnlab lab bptt power --matrix gaussian --n 50
    rnnlab lab bptt gradients --model rnn:relu --scale 0.5,1,4
    rnnlab lab bptt gradients --run 20261126-153012-gru-timemachine
    rnnlab lab bptt steps --model rnn --lr 2 --steps 200 --window 20
    rnnlab lab bptt truncation --epochs 20 --truncation-p 0.25

Each prints a few lines saying what the figures are and a table; ``--json``
prints the same figures (every k, every t, every step) as one JSON object,
non-finite numbers (a gradient that reached exactly 0: log10 = -inf) as null.
Bad options exit 2 naming the option. ``gradients`` runs on one CPU thread by
default: its matrices are tiny, and a second thread only adds waiting; so does
``truncation``, which trains one small model three times (regular, random and
no truncation) and prints a summary, every epoch's figures, what they say, and
the errors PyTorch raises when the state is not detached and the optimizer
steps after every minibatch.
Left out: the plots (the TUI's Labs screen).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from engine.config import CLIPS, DEVICES, OPTIMIZERS, SAMPLERS
from engine.errors import ConfigError


def register(subparsers: Any) -> None:
    from engine.config import ACTIVATIONS, MODEL_KINDS
    from engine.tokenizers import TOKENIZER_KINDS
    from engine.labs.bptt import MATRICES, PowerConfig

    p = subparsers.add_parser("bptt", help="backpropagation through time (D2L 8.7)",
                              description="Power iteration, gradient flow through time, per-step gradient norms.")
    sub = p.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    p.set_defaults(func=lambda args: _missing(p))

    d = PowerConfig()
    pw = sub.add_parser("power", help="power iteration: M^k x aligns with v1 and grows or vanishes as |λ1|",
                        description="Apply a matrix with a chosen spectrum to a random unit vector k times.")
    pw.add_argument("--n", type=int, default=d.n, help=f"M is n × n (default {d.n})")
    pw.add_argument("--lambda1", type=float, default=d.lambda1,
                    help=f"|λ1|, the largest eigenvalue's magnitude; gaussian: the entries' scale "
                         f"(default {d.lambda1})")
    pw.add_argument("--gap", type=float, default=d.gap, help=f"|λ2/λ1| in [0, 1) (default {d.gap})")
    pw.add_argument("--steps", type=int, default=d.steps, help=f"apply M this many times (default {d.steps})")
    pw.add_argument("--matrix", choices=MATRICES, default=d.matrix,
                    help="symmetric Q Λ Qᵀ | nonsymmetric P Λ P⁻¹ | gaussian N(0, λ1²/n) entries "
                         f"(default {d.matrix})")
    pw.add_argument("--seed", type=int, default=d.seed, help=f"draws M and x (default {d.seed})")
    pw.add_argument("--json", action="store_true", help="print the figures as JSON")
    pw.set_defaults(func=run_power)

    from engine.labs.bptt import DEFAULT_MODELS, FlowConfig

    f = FlowConfig()
    gr = sub.add_parser("gradients", help="‖∂L_T/∂h_t‖ for every step t, and W_hh scaled",
                        description="How the gradient of a loss at the last step reaches every earlier state.")
    gr.add_argument("--model", default=",".join(DEFAULT_MODELS),
                    help=f"cells, comma-separated, as kind[:tanh|relu] with kind one of {', '.join(MODEL_KINDS)} "
                         f"(default {','.join(DEFAULT_MODELS)})")
    gr.add_argument("--scale", default=",".join(f"{s:g}" for s in f.scales),
                    help=f"factors for W_hh, comma-separated (default {','.join(f'{s:g}' for s in f.scales)})")
    gr.add_argument("--num-steps", type=int, default=f.num_steps, help=f"T (default {f.num_steps})")
    gr.add_argument("--num-hiddens", type=int, default=f.num_hiddens, help=f"(default {f.num_hiddens})")
    gr.add_argument("--num-layers", type=int, default=f.num_layers, help=f"(default {f.num_layers})")
    gr.add_argument("--input-size", type=int, default=f.input_size,
                    help=f"features of the N(0, 1) inputs (default {f.input_size})")
    gr.add_argument("--batch-size", type=int, default=f.batch_size,
                    help=f"sequences averaged, in log10 (default {f.batch_size})")
    gr.add_argument("--seed", type=int, default=f.seed, help=f"(default {f.seed})")
    gr.add_argument("--run", metavar="RUN", default=None,
                    help="a saved run's model instead, on windows of its corpus (--model, sizes ignored)")
    gr.add_argument("--runs-dir", default=None, help="folder of runs (default: $RNNLAB_HOME/runs)")
    gr.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1; 0 = torch's default)")
    gr.add_argument("--json", action="store_true", help="print the figures as JSON")
    gr.set_defaults(func=run_gradients)

    st = sub.add_parser("steps", help="per-step gradient norms and clipping during a short training run",
                        description="Train a few steps as the trainer does and show every step's gradient norm.")
    st.add_argument("--corpus", default="timemachine", help="built-in corpus name or a .txt path")
    st.add_argument("--tokenizer", choices=TOKENIZER_KINDS, default="char", help="tokenizer kind (default char)")
    st.add_argument("--model", choices=MODEL_KINDS, default="rnn", help="recurrent cell (default rnn)")
    st.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                    help="rnn/scratch nonlinearity (default relu: its gradients spike early in training)")
    st.add_argument("--num-hiddens", type=int, default=128, help="(default 128)")
    train = st.add_argument_group("training", "defaults as shown; with --run, options not given keep the run's")
    for name, (kind, default, choices, help_) in STEP_OPTIONS.items():
        train.add_argument("--" + name.replace("_", "-"), type=kind, choices=choices, default=None,
                           help=f"{help_} (default {default})")
    st.add_argument("--steps", type=int, default=200, help="optimizer steps to take (default 200)")
    st.add_argument("--window", type=int, default=10,
                    help="steps per window of the trainer-style means shown next to them (default 10)")
    st.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default 0: torch's default)")
    st.add_argument("--run", metavar="RUN", default=None,
                    help="continue from a saved run's weights, with its model, corpus and training options")
    st.add_argument("--runs-dir", default=None, help="folder of runs (default: $RNNLAB_HOME/runs)")
    st.add_argument("--json", action="store_true", help="print the figures as JSON")
    st.set_defaults(func=run_steps)

    from engine.config import TRUNCATIONS
    from engine.labs.truncation import TruncationConfig

    t = TruncationConfig()
    tr = sub.add_parser("truncation", help="regular, random and no truncation of BPTT trained side by side",
                        description="Train one model (same seed and epochs, sequential minibatches) once per "
                                    "truncation strategy; then show PyTorch refusing a step between minibatches "
                                    "that share a graph.")
    tr.add_argument("--corpus", default="timemachine", help="built-in corpus name or a .txt path")
    tr.add_argument("--tokenizer", choices=TOKENIZER_KINDS, default="char", help="tokenizer kind (default char)")
    tr.add_argument("--model", choices=MODEL_KINDS, default=t.kind, help=f"recurrent cell (default {t.kind})")
    tr.add_argument("--num-hiddens", type=int, default=t.num_hiddens, help=f"(default {t.num_hiddens})")
    tr.add_argument("--epochs", type=int, default=t.epochs, help=f"epochs for every strategy (default {t.epochs})")
    tr.add_argument("--truncation-p", type=float, default=t.truncation_p,
                    help=f"random: probability of a cut at each minibatch boundary (default {t.truncation_p:g})")
    tr.add_argument("--strategies", default=",".join(t.strategies),
                    help=f"comma-separated, some of {', '.join(TRUNCATIONS)} (default all)")
    tr.add_argument("--lr", type=float, default=t.lr, help=f"SGD learning rate (default {t.lr:g})")
    tr.add_argument("--batch-size", type=int, default=t.batch_size, help=f"(default {t.batch_size})")
    tr.add_argument("--num-steps", type=int, default=t.num_steps, help=f"(default {t.num_steps})")
    tr.add_argument("--max-tokens", type=int, default=t.max_tokens,
                    help=f"use only the first N tokens, the last 10%% for validation (default {t.max_tokens})")
    tr.add_argument("--seed", type=int, default=t.seed, help=f"weights and minibatch order (default {t.seed})")
    tr.add_argument("--threads", type=int, default=1,
                    help="CPU threads for torch (default 1: the model is small; 0 = torch's default)")
    tr.add_argument("--json", action="store_true", help="print the figures as JSON")
    tr.set_defaults(func=run_truncation)


# The training options of `steps`: name -> (type, default, choices, help). D2L 8.5's setup.
STEP_OPTIONS: dict[str, tuple[type, Any, tuple[str, ...] | None, str]] = {
    "optimizer": (str, "sgd", OPTIMIZERS, "optimizer"),
    "lr": (float, 1.0, None, "learning rate"),
    "clip": (str, "norm", CLIPS, "gradient clipping"),
    "clip_theta": (float, 1.0, None, "clipping bound θ"),
    "batch_size": (int, 32, None, "subsequences per minibatch"),
    "num_steps": (int, 35, None, "time steps per subsequence"),
    "sampler": (str, "random", SAMPLERS, "minibatches"),
    "max_tokens": (int, 10000, None, "use only the first N tokens (0 = all)"),
    "seed": (int, 0, None, "weights and minibatch order"),
    "device": (str, "cpu", DEVICES, "device"),
}


def _missing(parser: argparse.ArgumentParser) -> int:
    parser.print_usage(sys.stderr)
    print("rnnlab lab bptt: error: name an experiment: power, gradients, steps or truncation", file=sys.stderr)
    return 2


# --- output ------------------------------------------------------------------------------------------------
def _finite(x: Any) -> Any:
    """JSON has no inf or nan: write them as null (a log10 of an exact 0 is -inf)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    return x


def _dump(doc: dict[str, Any]) -> None:
    print(json.dumps(_finite(doc), indent=1))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns right-aligned to their widest cell, two spaces apart."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    return "\n".join("  ".join(str(c).rjust(w) for c, w in zip(row, widths)) for row in (headers, *rows))


def _log(x: float) -> str:
    return f"{x:.2f}" if math.isfinite(x) else "-inf"


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--{name} must be numbers separated by commas, e.g. 0.5,1,2 (got {text!r})") from None


def _threads(n: int) -> None:
    if n < 0:
        raise ConfigError(f"--threads must be 0 (torch's default) or a positive number (got {n})")
    if n:
        import torch

        torch.set_num_threads(n)


# --- power -------------------------------------------------------------------------------------------------
def power_rows(steps: int) -> list[int]:
    """The k shown in the table: 0, then about ten steps spread geometrically up to ``steps``."""
    import numpy as np

    return [0] + sorted({int(k) for k in np.round(np.geomspace(1, steps, 10))})


def _eig(z: complex) -> str:
    return f"{z.real:.4g}" if abs(z.imag) < 1e-12 * max(1.0, abs(z)) else f"{z.real:.4g}{z.imag:+.4g}i"


def run_power(args: argparse.Namespace) -> int:
    from engine.labs.bptt import ALIGNED, PowerConfig, power_iteration

    cfg = PowerConfig(n=args.n, lambda1=args.lambda1, gap=args.gap, steps=args.steps, matrix=args.matrix,
                      seed=args.seed)
    r = power_iteration(cfg)
    if args.json:
        _dump({"config": dataclasses.asdict(cfg), "matrix": r.matrix.tolist(), "x": r.x.tolist(),
               "eigenvalues": [[z.real, z.imag] for z in r.eigenvalues], "gap": r.gap, "k": list(range(cfg.steps + 1)),
               "alignment": r.alignment, "tangent": r.tangent, "log10_norm": r.log10_norm, "predicted": r.predicted,
               "steps_to_aligned": r.steps_to_aligned, "bound_to_aligned": r.bound_to_aligned,
               "log10_norm_per_step": r.rate()})
        return 0
    lam = r.eigenvalues
    shown = ", ".join(_eig(z) for z in lam[:6]) + (", …" if len(lam) > 6 else "")
    print(f"M: {cfg.matrix} {cfg.n}×{cfg.n}, seed {cfg.seed}; x: a random unit vector")
    print(f"eigenvalues by magnitude: {shown}")
    if abs(lam[0].imag) > 1e-12 * abs(lam[0]):
        print("λ1 is one of a complex pair: M^k x turns within the pair's plane (Re v1, Im v1), so the "
              "alignment is with that plane")
    first = "not within the steps" if r.steps_to_aligned is None else f"at k = {r.steps_to_aligned}"
    bound = "" if r.bound_to_aligned is None else f" (certain from k = {r.bound_to_aligned}: gap^k · tan θ0)"
    print(f"gap |λ2/λ1| = {r.gap:.4g}; alignment > {ALIGNED} first {first}{bound}")
    print(f"log10 ‖M^k x‖ grows {r.rate():+.4f} per step over the last half (log10 |λ1| = "
          f"{math.log10(abs(lam[0])):+.4f})")
    closed = r.predicted is not None
    headers = ["k", "|cos(M^k x, v1)|", *(["closed form"] if closed else []), "tan θ",
               *(["gap^k · tan θ0"] if closed else []), "log10 ‖M^k x‖"]
    rows = [[str(k), f"{r.alignment[k]:.6f}", *([f"{r.predicted[k]:.6f}"] if closed else []), f"{r.tangent[k]:.3e}",
             *([f"{r.gap**k * r.tangent[0]:.3e}"] if closed else []), _log(r.log10_norm[k])]
            for k in power_rows(cfg.steps)]
    print(table(headers, rows))
    return 0


# --- gradients ---------------------------------------------------------------------------------------------
def flow_distances(num_steps: int) -> list[int]:
    """Distances T − t shown in the table: 1, 10, 50, 100 … up to T."""
    return [d for d in (1, 10, 50, 100, 200, 500, 1000) if d < num_steps] + [num_steps]


def _radius(curve: Any) -> str:
    if curve.scale is None:
        return "no W_hh"
    return " ".join(f"{r:.3g}" for layer in curve.radius for r in layer)


def run_gradients(args: argparse.Namespace) -> int:
    from engine.labs.bptt import FlowConfig, check_flow_sizes, check_scales
    from engine.labs.bptt_grads import corpus_windows, gradient_flow, run_gradient_flow

    _threads(args.threads)
    scales = _floats(args.scale, "scale")
    if args.run:
        from engine.runs import open_run

        check_scales(scales)
        check_flow_sizes(args.num_steps, args.batch_size, args.seed)
        run = open_run(args.run, args.runs_dir)
        windows = corpus_windows(run.corpus_ids(), args.num_steps, args.batch_size, args.seed)
        curves = run_gradient_flow(run.load_model(), windows, scales, run.name)
        what = (f"run {run.name} ({run.model_config.kind}), loss: cross-entropy of the token after step T, "
                f"{args.batch_size} windows of its corpus")
        doc: dict[str, Any] = {"run": run.name, "num_steps": args.num_steps, "batch_size": args.batch_size,
                               "seed": args.seed, "scales": list(scales)}
    else:
        models = tuple(s.strip() for s in args.model.split(",") if s.strip())
        cfg = FlowConfig(models=models, scales=scales, num_steps=args.num_steps, num_hiddens=args.num_hiddens,
                         num_layers=args.num_layers, input_size=args.input_size, batch_size=args.batch_size,
                         seed=args.seed)
        curves = gradient_flow(cfg)
        what = (f"untrained cells, {cfg.num_hiddens} hidden units, {cfg.batch_size} sequences of N(0, 1) inputs; "
                f"loss L_T = u · h_T (u a random unit vector)")
        doc = {"config": dataclasses.asdict(cfg)}
    T = args.num_steps
    if args.json:
        doc["curves"] = [dataclasses.asdict(c) | {"per_step": c.per_step()} for c in curves]
        _dump(doc)
        return 0
    print(f"‖∂L_T/∂h_t‖ for T = {T}: {what}")
    print("ρ: spectral radius of W_hh (one per gate block); per step: the mean factor per step back, "
          "(‖∂L_T/∂h_0‖ / ‖∂L_T/∂h_T‖)^(1/T); T-d: log10 ‖∂L_T/∂h_(T-d)‖")
    dists = flow_distances(T)
    headers = ["model", "scale", "ρ(W_hh)", "per step", *(f"T-{d}" for d in dists)]
    rows = [[c.model, "-" if c.scale is None else f"{c.scale:g}", _radius(c), f"{c.per_step():.3g}",
             *(_log(c.at_distance(d)) for d in dists)] for c in curves]
    print(table(headers, rows))
    return 0


# --- steps -------------------------------------------------------------------------------------------------
def run_steps(args: argparse.Namespace) -> int:
    from engine.config import ModelConfig, TrainConfig
    from engine.labs.bptt import SPIKE, summarize, window_means
    from engine.labs.bptt_grads import step_norms

    _threads(args.threads)
    window_means([], args.window)  # a bad --window is refused before any training
    given = {n: getattr(args, n) for n in STEP_OPTIONS if getattr(args, n) is not None}
    model = None
    if args.run:
        from engine.runs import open_run

        run = open_run(args.run, args.runs_dir)
        model_cfg, train_cfg = run.model_config, dataclasses.replace(run.train_config, **given, truncation="regular")
        ids, model = run.corpus_ids(), run.load_model("cpu")
        source = f"run {run.name}"
    else:
        from tui.cli.corpus import load_corpus_arg, pipeline_with_progress

        train_cfg = TrainConfig(**{**{n: default for n, (_, default, _, _) in STEP_OPTIONS.items()}, **given})
        pipeline = pipeline_with_progress(load_corpus_arg(args.corpus), tokenizer=args.tokenizer)
        ids = pipeline.ids
        model_cfg = ModelConfig(kind=args.model, activation=args.activation, num_hiddens=args.num_hiddens,
                                vocab_size=len(pipeline.vocab))
        source = f"{args.corpus} ({args.tokenizer})"
    records = list(step_norms(ids, model_cfg, train_cfg, args.steps, model=model))
    s = summarize(records, args.window)
    windows = window_means(records, args.window)
    if args.json:
        _dump({"model": dataclasses.asdict(model_cfg), "train": train_cfg.to_dict(), "window": args.window,
               "steps": [dataclasses.asdict(r) for r in records],
               "windows": [{"step": w[0], "mean_grad_norm": w[1], "clipped_share": w[2]} for w in windows],
               "summary": dataclasses.asdict(s)})
        return 0
    t = train_cfg
    print(f"{len(records)} steps of {model_cfg.kind} {model_cfg.num_hiddens}x{model_cfg.num_layers} on {source}: "
          f"{t.optimizer} lr {t.lr:g}, clip {t.clip}" + (f" θ = {t.clip_theta:g}" if t.clip != "off" else "")
          + f", batch_size {t.batch_size}, num_steps {t.num_steps}, {t.sampler} minibatches")
    print(f"‖g‖ before clipping: mean {s.mean_norm:.4g}, median {s.median_norm:.4g}, largest {s.max_norm:.4g} "
          f"at step {s.max_step}; the largest {args.window}-step mean (what the trainer plots) {s.max_window_mean:.4g}")
    spikes = ", ".join(f"{r.step} (‖g‖ {r.grad_norm:.4g}{', clipped' if r.clipped else ''})" for r in s.spikes[:5])
    where = f", at steps {spikes}" + (", …" if len(s.spikes) > 5 else "") if spikes else ""
    print(f"clipping changed the gradient at {s.clipped} of {len(records)} steps; spikes (‖g‖ above {SPIKE:g}× the "
          f"median): {len(s.spikes)}{where}")
    rows = []
    for (end, mean, share), start in zip(windows, range(0, len(records), args.window)):
        w = records[start : start + args.window]
        top = max(w, key=lambda r: r.grad_norm)
        rows.append([f"{w[0].step}-{end}", f"{mean:.4g}", f"{top.grad_norm:.4g}", str(top.step),
                     f"{sum(r.clipped for r in w)}/{len(w)}", f"{sum(r.loss for r in w) / len(w):.4f}"])
    print(table(["steps", "mean ‖g‖", "max ‖g‖", "at step", "clipped", "mean loss"], rows))
    return 0



# --- truncation --------------------------------------------------------------------------------------------
def truncation_doc(c: Any, refusals: Sequence[Any], explanation: Sequence[str]) -> dict[str, Any]:
    """The comparison as JSON: what ``--json`` prints."""
    return {"config": dataclasses.asdict(c.config), "vocab_size": c.vocab_size, "train_tokens": c.train_tokens,
            "stopped": c.stopped, "strategies": [dataclasses.asdict(r) for r in c.results],
            "explanation": list(explanation), "refusals": [dataclasses.asdict(r) for r in refusals]}


def _ppl(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def summary_rows(c: Any) -> list[list[str]]:
    """One row per strategy: steps per epoch, median s/epoch, best validation perplexity and when, the last
    epoch's train and validation perplexity, the largest graph kept and the bound the trainer allows for."""
    import numpy as np

    rows = []
    for r in c.results:
        if not r.epochs:
            continue
        best, last = r.best_val, r.epochs[-1]
        rows.append([r.strategy, f"{np.median([e.steps for e in r.epochs]):g}",
                     f"{np.median([e.seconds for e in r.epochs]):.3f}", f"{r.seconds:.2f}",
                     _ppl(best[0] if best else None), str(best[1]) if best else "-", _ppl(last.train_ppl),
                     _ppl(last.val_ppl), f"{r.peak_positions:,}", f"{r.bound_positions:,}"])
    return rows


SUMMARY_HEADERS = ["strategy", "steps/epoch", "s/epoch", "total s", "best val ppl", "epoch", "train ppl",
                   "val ppl", "peak graph", "bound"]


def run_truncation(args: argparse.Namespace) -> int:
    from engine.labs.truncation import TruncationConfig, compare, explain, refusals
    from tui.cli.corpus import load_corpus_arg, pipeline_with_progress

    _threads(args.threads)
    strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    cfg = TruncationConfig(kind=args.model, num_hiddens=args.num_hiddens, epochs=args.epochs,
                           truncation_p=args.truncation_p, lr=args.lr, batch_size=args.batch_size,
                           num_steps=args.num_steps, max_tokens=args.max_tokens, seed=args.seed,
                           strategies=strategies, threads=args.threads)  # refused before the corpus loads
    pipeline = pipeline_with_progress(load_corpus_arg(args.corpus), tokenizer=args.tokenizer)
    gen = compare(pipeline.ids, len(pipeline.vocab), cfg)
    while True:
        try:
            ev = next(gen)
        except StopIteration as done:
            c = done.value
            break
        if getattr(ev.event, "epoch_end", False) and ev.event.epoch == cfg.epochs:
            print(f"rnnlab lab bptt truncation: {ev.strategy} done ({ev.event.elapsed_s:.1f} s)", file=sys.stderr)
    explanation, refused = explain(c), refusals(cfg.seed)
    if args.json:
        _dump(truncation_doc(c, refused, explanation))
        return 0
    print(f"{len(c.results)} strategies × {cfg.epochs} epochs of {cfg.kind} {cfg.num_hiddens} hidden units on "
          f"{args.corpus} ({args.tokenizer}, {c.train_tokens:,} training tokens): sequential minibatches of "
          f"{cfg.batch_size} × {cfg.num_steps}, sgd lr {cfg.lr:g}, clip norm θ = 1, seed {cfg.seed}, "
          f"random p = {cfg.truncation_p:g}")
    print("peak graph: token positions in the largest graph kept; bound: what the trainer's memory check allows "
          "for; s/epoch: the median, validation pass included")
    print(table(SUMMARY_HEADERS, summary_rows(c)))
    for r in c.results:
        if r.message:
            print(f"{r.strategy}: {r.message}")
    print()
    print(table(["strategy", "epoch", "train ppl", "val ppl", "s/epoch", "steps"],
                [[r.strategy, str(e.epoch), _ppl(e.train_ppl), _ppl(e.val_ppl), f"{e.seconds:.3f}", str(e.steps)]
                 for r in c.results for e in r.epochs]))
    print()
    for line in explanation:
        print(line)
    print()
    print("Without detaching the state, stepping the optimizer after every minibatch (a tiny RNN, two minibatches):")
    for r in refused:
        print(f"  loss.{r.variant} on minibatch 2: "
              + (f"RuntimeError: {r.error}" if r.error is not None else "no error"))
        print(f"    {r.why}")
    return 0
