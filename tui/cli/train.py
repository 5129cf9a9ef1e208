"""``rnnlab train``: train a model headless, with a progress bar, into a run folder.

    rnnlab train --corpus timemachine --tokenizer char --model gru --num-hiddens 256 --epochs 50 --lr 1
    rnnlab train --model scratch --num-hiddens 512 --epochs 500 --sampler sequential --val-fraction 0
    rnnlab train --resume 20261126-153012-gru-timemachine --epochs 100
    rnnlab train --nproc 2 --sampler sequential --batch-size 16
    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 -m tui.cli train …

Every ``TrainConfig`` and ``ModelConfig`` field is a flag (``--num-steps``,
``--clip value``, ``--truncation random`` …). The bar (on stderr) shows epoch, live
train/validation perplexity and tokens/s; samples, spikes and divergence are
printed above it. Ctrl-C, a hangup (the terminal or SSH connection closed) and
``kill`` (SIGTERM, e.g. a cluster's job limit) stop cleanly at the next step:
the weights reached are saved, the run is marked stopped and the exit status is
130, 129 or 143 (a second signal aborts at once, keeping the last checkpoint).
Bad options exit 2 naming the option; a run that cannot be written (no
permission, a full disk) or runs out of memory exits 1 with the reason.
``--resume`` prints one warning per log file with damaged lines (dropped).

``--nproc N`` trains data-parallel with N processes on this machine (``engine.distributed``): it runs
PyTorch's own launcher, torchrun (standalone: a rendezvous on a free local port), which starts N copies
of this command. A copy started by torchrun, by ``--nproc`` or by hand for several machines, finds its
rank in the environment and joins the others. Rank 0 prepares the corpus and the run folder and sends
the token ids and configs to the others (one tokenization, so every rank reads the same ids); it alone
writes the run and prints, and its exit status is the run's (the others exit 0 unless they fail
themselves). A signal to the launcher reaches every rank once: they stop together at the next
minibatch, rank 0 saves, and the launcher exits 128 + the signal's number.
Left out: training several runs at once (the TUI compares runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from typing import Any

from engine.errors import ConfigError
from tui.cli.signals import StopOnSignal
from engine.events import Diverged, Finished, Progress, Sample, Spike


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _shown(default: Any) -> str:
    """A default as the user would type it (argparse's help needs '%' doubled)."""
    if isinstance(default, bool):
        return "on" if default else "off"
    shown = repr(default) if isinstance(default, str) and (" " in default or not default) else str(default)
    return shown.replace("%", "%%")


def _add_options(group: Any, cls: type) -> list[str]:
    """One flag per user option of the config dataclass ``cls``, its help and choices from the field's metadata;
    default None, so only flags given on the command line override the config (or a resumed run's)."""
    from engine.config import user_options

    names = []
    for f in user_options(cls):
        help_ = f"{f.metadata['help']} (default {_shown(f.default)})"
        kw: dict[str, Any] = {"dest": f.name, "default": None, "help": help_}
        flag = f.metadata.get("flag", _flag(f.name))
        if isinstance(f.default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        else:
            group.add_argument(flag, type=type(f.default), choices=f.metadata.get("choices"), **kw)
        names.append(f.name)
    return names


def add_corpus_options(p: Any) -> None:
    """The corpus, its preprocessing and tokenizer, and the runs folder: shared by train and sweep."""
    from engine.corpus import PREPROCESS_MODES
    from engine.tokenizers import TOKENIZER_KINDS

    p.add_argument("--corpus", default="timemachine", help="built-in corpus name or a .txt path")
    p.add_argument("--mode", choices=PREPROCESS_MODES, default="d2l", help="preprocessing (d2l: letters, lower case)")
    p.add_argument("--tokenizer", choices=TOKENIZER_KINDS, default="char", help="tokenizer kind")
    p.add_argument("--vocab-size", type=int, default=1000, help="target vocabulary size (subword tokenizers)")
    p.add_argument("--min-freq", type=int, default=0, help="drop tokens rarer than this")
    p.add_argument("--runs-dir", default=None, help="folder of runs (default: $RNNLAB_HOME/runs)")


def register(subparsers: Any) -> None:
    from engine.config import ModelConfig, TrainConfig

    p = subparsers.add_parser("train", help="train a model into a run folder",
                              description="Train an RNN language model (D2L 8.5-8.6) and save it as a run.")
    add_corpus_options(p)
    p.add_argument("--resume", metavar="RUN", default=None, help="continue this run from its checkpoint")
    p.add_argument("--nproc", metavar="N", type=int, default=None,
                   help="train data-parallel with N processes on this machine (one GPU each on CUDA), started by "
                        "PyTorch's torchrun launcher; the effective batch is batch_size × N. Several machines: "
                        "run 'torchrun … -m tui.cli train …' on each (README)")
    model_fields = _add_options(p.add_argument_group("model", "with --resume, these must stay as the run has them"),
                                ModelConfig)
    train_fields = _add_options(
        p.add_argument_group("training", "defaults as shown; with --resume, options not given keep the run's values"),
        TrainConfig)
    p.set_defaults(func=run, _model_fields=model_fields, _train_fields=train_fields)


def _given(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _prepare(args: argparse.Namespace) -> tuple[Any, Any, Any, Any, Any]:
    """(data, model_cfg, train_cfg, tokenizer, run) — config errors surface before a run folder exists."""
    from engine.config import ModelConfig, TrainConfig
    from engine.runs import create_run, open_run
    from engine.sentences import with_sentence_ends
    from engine.training import prepare_ids

    train_kw = _given(args, args._train_fields)
    if args.resume:
        run = open_run(args.resume, args.runs_dir)
        changed = [n for n, v in _given(args, args._model_fields).items() if getattr(run.model_config, n) != v]
        if changed:
            flags = ", ".join(_flag(n) for n in changed)
            m = run.model_config
            raise ConfigError(f"{flags} cannot change when resuming: {run.name} is a {m.kind} model with "
                              f"num_hiddens {m.num_hiddens}, num_layers {m.num_layers}; start a new run instead")
        train_cfg = dataclasses.replace(run.train_config, **train_kw)
        done = (run.trainer_state() or {}).get("epoch", 0)
        if done >= train_cfg.epochs:
            raise ConfigError(f"{run.name} has already trained {done} epochs; pass --epochs N with N > {done} "
                              "to train it further")
        train_cfg = with_sentence_ends(train_cfg, run.tokenizer)  # --sampler sentences: the ids that end one
        ids = run.corpus_ids()
        prepare_ids(ids, run.model_config, train_cfg)
        return ids, run.model_config, train_cfg, run.tokenizer, run
    from tui.cli.corpus import load_corpus_arg, pipeline_with_progress

    train_cfg = TrainConfig(**train_kw)
    corpus = load_corpus_arg(args.corpus)
    pipeline = pipeline_with_progress(corpus, mode=args.mode, tokenizer=args.tokenizer,
                                      vocab_size=args.vocab_size, min_freq=args.min_freq)
    for warning in pipeline.warnings:
        print(f"rnnlab train: warning: {warning}", file=sys.stderr)
    model_cfg = ModelConfig(**_given(args, args._model_fields), vocab_size=len(pipeline.vocab))
    train_cfg = with_sentence_ends(train_cfg, pipeline.tokenizer)
    run = create_run(args.runs_dir, model_cfg, train_cfg, pipeline)  # checks sizes and device before the folder
    return pipeline, model_cfg, train_cfg, pipeline.tokenizer, run


def _fmt(x: float | None) -> str:
    return "-" if x is None else str(x) if not math.isfinite(x) else f"{x:.3f}" if abs(x) < 1e6 else f"{x:.3g}"


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    if args.nproc is not None and _wants_launch(args):
        return _launch(args)
    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    with StopOnSignal() as signals:
        try:
            return _train(args, out, err, signals)
        except KeyboardInterrupt:
            err.print("interrupted (the last checkpoint is kept)", markup=False)
            return signals.exit_code


def _short(x: float | None) -> str:
    """A perplexity in the bar: 4 significant digits, '-' for none (``15.771 -> '15.77'``)."""
    return "-" if x is None else f"{x:.4g}"


def finish_line(finished: Finished, name: str) -> str:
    """``completed: epoch 50, step 400, train perplexity 5.123, validation perplexity 6.234  run NAME``."""
    return (f"{finished.reason}: epoch {finished.epoch}, step {finished.step}, train perplexity "
            f"{_fmt(finished.train_ppl)}, validation perplexity {_fmt(finished.val_ppl)}  run {name}")


class EventPrinter:
    """Training events on a console (stderr): a progress bar (epoch, perplexities, ‖g‖, share clipped,
    tokens/s, time left; the time taken once done) with samples, spikes and divergence printed above it. Shared
    by ``rnnlab train`` and ``rnnlab watch`` (which replays a run's logged events)."""

    def __init__(self, console: Any, cfg: Any, done: int = 0, ranks: int | None = None) -> None:
        from rich.progress import BarColumn, Progress as Bar, TextColumn, TimeRemainingColumn

        self.cfg = cfg
        self.ranks = ranks if ranks is not None else cfg.world_size  # processes training: tok/s shown per rank too
        # 80 columns hold the epoch, a short bar, the figures and the time left (the time taken at the end)
        self.bar = Bar(TextColumn("epoch {task.completed:.0f}/{task.total:.0f}"), BarColumn(bar_width=12),
                       TextColumn("{task.fields[info]}"), TimeRemainingColumn(elapsed_when_finished=True),
                       console=console, transient=False)
        self.task = self.bar.add_task("train", total=cfg.epochs, info="starting", completed=done)

    def __enter__(self) -> EventPrinter:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def show(self, ev: Any) -> None:
        from rich.markup import escape

        from engine.compare import si

        console = self.bar.console
        if isinstance(ev, Progress):
            done = ev.epoch if ev.epoch_end else ev.epoch - 1
            # Short enough for 80 columns with the epoch and both clocks: perplexities to 4 digits, tok/s in k/M.
            clipped = f" clip {ev.clip_fraction:.0%}" if self.cfg.clip != "off" else ""
            per_rank = f" ({self.ranks}×{si(ev.tokens_per_s / self.ranks)})" if self.ranks > 1 else ""
            self.bar.update(self.task, completed=done, total=ev.epochs,
                            info=f"ppl {_short(ev.train_ppl)} val {_short(ev.val_ppl)} ‖g‖ {ev.grad_norm:.2g}{clipped} "
                                 f"{si(ev.tokens_per_s)} tok/s{per_rank}")
        elif isinstance(ev, Sample):
            console.print(f"epoch {ev.epoch}: {ev.text!r}", markup=False, highlight=False)
        elif isinstance(ev, Spike):
            console.print(f"[yellow]spike[/] at epoch {ev.epoch}: {ev.metric} perplexity "
                          f"{ev.val_ppl:.3f} > {self.cfg.spike_factor:g} × best {ev.best_val_ppl:.3f}")
        elif isinstance(ev, Diverged):
            console.print(f"[red]diverged[/]: {escape(ev.message)}", highlight=False)


def _wants_launch(args: argparse.Namespace) -> bool:
    """Whether ``--nproc`` asks this process to start the others (else it is one of them, or trains alone)."""
    if args.nproc < 1:
        raise ConfigError(f"--nproc must be at least 1 (got {args.nproc})")
    if "WORLD_SIZE" in os.environ:  # started by torchrun: its --nproc-per-node decides
        local = os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])
        if str(args.nproc) != local:
            raise ConfigError(f"--nproc {args.nproc} but torchrun started {local} processes on this machine; "
                              "leave --nproc out under torchrun (its --nproc-per-node sets the number)")
        return False
    return args.nproc > 1


def _launch(args: argparse.Namespace) -> int:
    """``--nproc N``: torchrun's own launcher, standalone on this machine, starts N copies of this command; the
    exit status is rank 0's, or 128 + the signal's number when a signal stopped them."""
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args as torchrun_args, run as torchrun

    if not args.resume:  # bad options exit 2 here, before N processes load torch (a resume's are checked by rank 0)
        from engine.config import ModelConfig, TrainConfig

        TrainConfig(**_given(args, args._train_fields))
        ModelConfig(**_given(args, args._model_fields))
    for name in list(logging.root.manager.loggerDict):  # torchrun's own notes (each logger has its level set)
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.ERROR)  # rank 0 reports the run
    launch = torchrun_args(["--standalone", f"--nproc-per-node={args.nproc}", "--module", "tui.cli"])
    launch.training_script_args = list(getattr(args, "argv", None) or sys.argv[1:])  # as given, not parsed by torchrun
    try:
        torchrun(launch)
    except SignalException as exc:  # torchrun handed the signal to every process: they stopped and rank 0 saved
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        code = (exc.failures.get(0) or min(exc.failures.items())[1]).exitcode
        return code if code >= 0 else 128 - code  # killed by a signal: as a shell reports it
    return 0


def _train(args: argparse.Namespace, out: Any, err: Any, signals: StopOnSignal) -> int:
    from engine import distributed

    world = distributed.World.from_env()
    if world is None or world.size == 1:
        return _train_as(args, out, err, signals, None)
    distributed.setup(world)
    try:
        return _train_as(args, out, err, signals, world)
    finally:
        distributed.cleanup()


def _prepare_ranks(args: argparse.Namespace, world: Any) -> tuple[Any, Any, Any, Any, Any] | None:
    """Rank 0 prepares as one process would and sends the token ids and configs to the others: one
    tokenization (a subword tokenizer's training need not be repeatable), one run folder. On the others:
    (ids, configs, None, None), or None when rank 0 could not start (it says why). A big corpus's ids
    travel as the name of their token-cache file, which each rank maps (``engine.token_cache.share``)."""
    from engine import distributed, token_cache

    if not world.is_main:
        got = distributed.broadcast(None, world)
        return None if got is None else (token_cache.settle(got[0], world), *got[1:], None, None)
    try:
        data, model_cfg, train_cfg, tokenizer, run_ = _prepare(args)
    except BaseException:
        distributed.broadcast(None, world)
        raise
    ids = getattr(data, "ids", data)
    shared = token_cache.share(ids)
    distributed.broadcast((shared, model_cfg, train_cfg), world)
    token_cache.settle(shared, world, ids)
    return data, model_cfg, train_cfg, tokenizer, run_


def _train_rank(data: Any, model_cfg: Any, train_cfg: Any, signals: StopOnSignal, world: Any) -> int:
    """A rank other than 0: trains its shard in step with the others, silently (rank 0 writes and reports)."""
    from engine import distributed
    from engine.trainer import train

    signals.training = True
    try:
        events = train(data, model_cfg, train_cfg, stop=signals.stop, world=world)
    except ConfigError:  # the same options fail on rank 0, which says why
        return 0
    try:
        for _ in events:
            pass
    finally:
        events.close()
    distributed.barrier()  # leave with rank 0, once it has saved: torchrun ends the others when one exits
    return 0


def _train_as(args: argparse.Namespace, out: Any, err: Any, signals: StopOnSignal, world: Any) -> int:
    """Train alone (``world`` None) or as one rank of several."""
    from engine.trainer import train

    if world is None:
        data, model_cfg, train_cfg, tokenizer, run_ = _prepare(args)
    else:
        prepared = _prepare_ranks(args, world)
        if prepared is None:
            return 0
        data, model_cfg, train_cfg, tokenizer, run_ = prepared
        del prepared  # holds the pipeline (and its text) otherwise
        if not world.is_main:
            return _train_rank(data, model_cfg, train_cfg, signals, world)
    finished: Finished | None = None
    try:
        if args.resume:
            for warning in run_.check_logs():  # damaged log lines: the resume drops them
                err.print(f"warning: {warning}", markup=False, highlight=False)
        ranks = (f", {world.size} processes × batch {train_cfg.batch_size} = effective batch "
                 f"{world.size * train_cfg.batch_size}" if world is not None else "")
        err.print(f"run {run_.name}: {model_cfg.kind} {model_cfg.num_hiddens}x{model_cfg.num_layers}, "
                  f"{train_cfg.optimizer} lr {train_cfg.lr:g}, {train_cfg.epochs} epochs{ranks}  ({run_.path})",
                  markup=False, highlight=False)
        data = getattr(data, "ids", data)  # the pipeline's text goes: a big corpus's would sit in memory all run
        with EventPrinter(err, train_cfg, ranks=world.size if world is not None else 1) as printer:
            signals.training = True
            events = train(data, model_cfg, train_cfg, tokenizer=tokenizer, run=run_, stop=signals.stop, world=world)
            try:
                for ev in events:
                    printer.show(ev)
                    if isinstance(ev, Finished):
                        finished = ev
            finally:
                events.close()  # an abort (a second signal) lets the trainer clean up now, not at garbage collection
    except BaseException:
        run_.discard_if_unused()  # interrupted before training wrote anything: no empty run folder
        raise
    assert finished is not None
    if world is not None:
        from engine import distributed

        distributed.barrier()  # every rank has ended at the same step; they leave together
    out.print(finish_line(finished, run_.name), markup=False, highlight=False)
    if finished.unstable:
        from engine.trainer import unstable_message

        ppl = finished.val_ppl if finished.val_ppl is not None else finished.train_ppl
        err.print(f"unstable: {unstable_message(ppl, model_cfg.vocab_size, train_cfg.clip)}",
                  markup=False, highlight=False)
    if finished.reason == "stopped":
        return signals.exit_code
    return 1 if finished.reason == "diverged" else 0
