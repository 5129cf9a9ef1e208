"""``rnnlab corpus``: load a corpus, tokenize it and print its statistics.

    rnnlab corpus                              # The Time Machine, char-level
    rnnlab corpus timemachine --tokenizer word --min-freq 10
    rnnlab corpus path/to/book.txt --mode raw --tokenizer bpe --vocab-size 2000
    rnnlab corpus war_of_the_worlds --json     # the same figures, machine-readable

The figures come from ``engine.stats.corpus_summary``: lines, tokens, vocab
size (at ``min_freq`` 0 and 10 for char/word), the ``<unk>`` rate, the top
tokens, and per n = 1..4 the number of distinct n-grams, the top ones and the
Zipf exponent. A catalog corpus that is not on this machine is downloaded with
a progress bar on stderr; so is every step of a big file (reading, counting,
encoding, n-grams) that runs longer than a second. On a corpus longer than
``engine.stats.NGRAM_MAX_TOKENS`` tokens the n-grams (n >= 2) are counted on
its first tokens, and the report says "(first N tokens)".

Bad arguments (an unknown name, a missing or unreadable file, a value out of
range) exit 2; a failed download or checksum exits 1. Never imports Textual.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.corpus import PREPROCESS_MODES, Corpus, catalog, load_corpus
from engine.errors import ConfigError, CorpusError
from engine.stats import DEFAULT_RANK_RANGE, corpus_summary
from engine.pipeline import TextPipeline, build_pipeline
from engine.tokenizers import TOKENIZER_KINDS

SHOW_AFTER_S = 1.0  # a step's progress bar appears once the step has run this long


def _int_at_least(lo: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer (got {text!r})") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo} (got {value})")
        return value

    return parse


def _rank_range(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(part) for part in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO-HI, e.g. 10-1000 (got {text!r})") from None
    if not 1 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"need 1 <= LO <= HI (got {text!r})")
    return lo, hi


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "corpus",
        help="corpus statistics: tokens, vocab, n-grams, Zipf",
        description="Load a corpus (a built-in name or a .txt file), tokenize it and print "
        "its statistics (D2L 8.2-8.3). Built-in: " + ", ".join(catalog()) + ".",
    )
    p.add_argument("corpus", nargs="?", default="timemachine", metavar="NAME|FILE",
                   help="built-in corpus name or path to a UTF-8 text file (default: timemachine)")
    p.add_argument("--tokenizer", choices=TOKENIZER_KINDS, default="char", help="default: char")
    p.add_argument("--vocab-size", type=_int_at_least(1), default=1000, metavar="N",
                   help="vocabulary size for bpe/wordpiece/unigram (default: 1000)")
    p.add_argument("--min-freq", type=_int_at_least(0), default=0, metavar="N",
                   help="drop tokens seen fewer than N times (they become <unk>; default: 0)")
    p.add_argument("--mode", choices=PREPROCESS_MODES, default="d2l",
                   help="d2l: letters only, lower case (default); raw: text as written")
    p.add_argument("--top", type=_int_at_least(1), default=10, metavar="K",
                   help="how many top tokens and n-grams to show (default: 10)")
    p.add_argument("--max-n", type=_int_at_least(1), default=4, metavar="N",
                   help="n-grams for n = 1..N (default: 4)")
    p.add_argument("--zipf-ranks", type=_rank_range, default=DEFAULT_RANK_RANGE, metavar="LO-HI",
                   help="rank range of the Zipf fit (default: %d-%d)" % DEFAULT_RANK_RANGE)
    p.add_argument("--offline", action="store_true",
                   help="never download; use RNNLAB_CORPUS_DIR or the cache")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def load_corpus_arg(source: str, *, offline: bool = False) -> Corpus:
    """``load_corpus`` for a command-line argument, with a download bar on stderr.
    A bad NAME|FILE is the user's argument (ConfigError: exit 2); download or
    checksum trouble with a catalog corpus is not (CorpusError: exit 1)."""
    bar, reading = _DownloadBar(), StepBar()
    try:
        if Path(source).expanduser().is_file():  # a big file takes seconds to read and decode
            reading(f"reading {Path(source).name}", 0, None)
        return load_corpus(source, progress=bar, allow_download=not offline)
    except CorpusError as exc:
        if source in catalog():
            raise
        raise ConfigError(str(exc)) from exc
    finally:
        reading.close()
        bar.close()


def pipeline_with_progress(corpus: Corpus, **kwargs: Any) -> TextPipeline:
    """``build_pipeline`` with a bar on stderr for each pass that takes over a second."""
    bar = StepBar()
    try:
        return build_pipeline(corpus, progress=bar, **kwargs)
    finally:
        bar.close()


def run(args: argparse.Namespace) -> int:
    corpus = load_corpus_arg(args.corpus, offline=args.offline)
    for warning in corpus.warnings:
        print(f"rnnlab corpus: warning: {warning}", file=sys.stderr)
    bar = StepBar()
    try:
        pipeline = build_pipeline(corpus, mode=args.mode, tokenizer=args.tokenizer,
                                  vocab_size=args.vocab_size, min_freq=args.min_freq, progress=bar)
        for warning in pipeline.warnings[len(corpus.warnings):]:  # what preprocessing found
            print(f"rnnlab corpus: warning: {warning}", file=sys.stderr)
        summary = corpus_summary(pipeline, max_n=args.max_n, top_k=args.top, rank_range=args.zipf_ranks,
                                 progress=bar)
    finally:
        bar.close()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        entry = catalog().get(corpus.name)
        title = f"{entry.title} ({entry.author})" if entry and args.corpus == corpus.name else corpus.name
        print(format_summary(summary, title=title, show=pipeline.tokenizer.display_token,
                             joiner=pipeline.tokenizer.joiner))
    return 0


class _DownloadBar:
    """A rich progress bar on stderr, created on the first byte downloaded."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None

    def __call__(self, done: int, total: int | None) -> None:
        if self._progress is None:
            from rich.console import Console
            from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

            self._progress = Progress(*Progress.get_default_columns(), DownloadColumn(),
                                      TransferSpeedColumn(), console=Console(stderr=True),
                                      transient=True)
            self._progress.start()
            self._task = self._progress.add_task("downloading", total=total)
        self._progress.update(self._task, completed=done)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class StepBar:
    """``progress(step, done, total)`` as a rich bar on stderr, one line per step.

    Nothing shows until a step has run ``SHOW_AFTER_S`` seconds, so a small
    corpus prints nothing; the bar is transient (gone when done). A timer shows
    a step that reports nothing more for that long (reading a file: ``total``
    None gives a pulsing bar); ``clock`` is injectable for tests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, console: Any = None) -> None:
        self._clock = clock
        self._console = console
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._progress: Any = None
        self._step: str | None = None
        self._since = 0.0
        self._last: tuple[int, int | None] = (0, None)
        self._task: Any = None

    @property
    def shown(self) -> bool:
        return self._progress is not None

    def __call__(self, step: str, done: int, total: int | None) -> None:
        with self._lock:
            now = self._clock()
            self._last = (done, total)
            if step != self._step:
                self._step, self._since, self._task = step, now, None
                self._restart_timer()
            if self._progress is not None or now - self._since >= SHOW_AFTER_S:
                self._show()

    def _restart_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(SHOW_AFTER_S, self._on_timer)
        self._timer.daemon = True
        self._timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            if self._step is not None:
                self._show()

    def _show(self) -> None:
        """Start the bar if needed and bring the current step's line up to date (lock held)."""
        if self._progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                      TimeElapsedColumn(), console=self._console or Console(stderr=True),
                                      transient=True)
            self._progress.start()
        done, total = self._last
        if self._task is None:
            self._task = self._progress.add_task(self._step or "", total=total)
        self._progress.update(self._task, completed=done, total=total)

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._step = None
            if self._progress is not None:
                self._progress.stop()
                self._progress = None


def format_summary(s: dict[str, Any], *, title: str, show: Callable[[str], str] = str, joiner: str = " ") -> str:
    """The readable report: one block of figures, then the tops. ``show`` draws a token, ``joiner`` goes
    between the tokens of an n-gram (the tokenizer's: '' for characters, as 'the␣' reads better than
    't' 'h' 'e' '␣')."""
    kind = s["tokenizer"]
    sizes = s["vocab_size_at_min_freq"]
    at = ", ".join(f"{v['min_freq']}: {v['vocab_size']}" for v in sizes or ())
    at = f"   (at min_freq {at})" if at else ""
    lo, hi = s["zipf_rank_range"]
    out = [
        f"{title} — {s['corpus']['path']}",
        f"mode {s['mode']}, tokenizer {kind}, min_freq {s['min_freq']}",
        "",
        f"lines        {s['lines']}",
        f"tokens       {s['tokens']}",
        f"vocab size   {s['vocab_size']}{at}",
        f"<unk> rate   {100 * s['unk_rate']:.2f}%   ({s['unk_count']} tokens)",
        "",
        f"{'n':>3}  {'distinct':>9}  {'total':>9}  zipf exponent (ranks {lo}-{hi})",
    ]
    prefix = s.get("ngram_tokens")
    first = f"   (first {prefix:,} tokens)" if prefix else ""
    for g in s["ngrams"]:
        a = "—" if g["zipf_exponent"] is None else f"{g['zipf_exponent']:.3f}"
        out.append(f"{g['n']:>3}  {g['distinct']:>9}  {g['total']:>9}  {a}{first if g['n'] > 1 else ''}")
    if prefix and len(s["ngrams"]) > 1:
        out.append(f"n-grams for n >= 2 are counted on the first {prefix:,} of {s['tokens']:,} tokens")
    for g in s["ngrams"]:
        name = "tokens" if g["n"] == 1 else f"{g['n']}-grams{first}"
        shown = [(joiner.join(show(t) for t in gram), count) for gram, count in g["top"]]
        width = max((len(text) for text, _ in shown), default=0)
        out += ["", f"top {name}"]
        out += [f"{i:>4}  {text:<{width}}  {count:>7}" for i, (text, count) in enumerate(shown, 1)]
    return "\n".join(out)
