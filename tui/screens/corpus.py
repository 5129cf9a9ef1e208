"""The Corpus screen: pick a text and a tokenizer, see what the model will see.

A form on the left (built-in corpus or file path, preprocessing, tokenizer,
vocab size, min_freq); on the right the counts (lines, tokens, vocab size,
``<unk>`` rate), the top tokens, a Zipf plot for 1-/2-/3-grams with fitted
exponents, the first few hundred characters as tokens in alternating colours
and, for subword tokenizers, the merges or pieces in learned order.

Loading runs in a thread worker; a first-run download, and each step of a big
file that runs over a second (counting, encoding, n-grams), show a progress bar.
A corpus that fails to load shows its error in place and the previous corpus
stays. Left out: editing the text, corpora other than plain text files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import DataTable, Header, Input, Label, ProgressBar, Select, Static
from textual.worker import Worker, WorkerState, get_current_worker

from engine.corpus import PREPROCESS_MODES, catalog, load_corpus
from engine.errors import ConfigError, RnnlabError
from engine.pipeline import build_pipeline
from engine.tokenizers import TOKENIZER_KINDS
from tui.screens.base import PlaygroundScreen
from tui.corpus_view import CorpusView, build_view, format_exponent
from tui.messages import PipelineChanged
from tui.session import CorpusChoice
from tui.widgets.footer import KeysFooter
from tui.widgets.form import FormScroll, parse_int
from tui.widgets.plot import SeriesPlot

TOKEN_STYLES = ("black on #7fb3d5", "black on #f5cba7")  # alternating token backgrounds
FILE = "(file)"  # corpus picker entry shown while a file path is in use
STEP_SHOW_AFTER_S = 1.0  # a loading step's progress bar shows once the step has run this long


def token_text(lines: list[list[str]]) -> Text:
    """Displayed tokens of each line on alternating backgrounds; one text line per corpus line."""
    text = Text(no_wrap=False)
    for n, tokens in enumerate(lines):
        if n:
            text.append("\n")
        for i, tok in enumerate(tokens):
            text.append(tok, style=TOKEN_STYLES[i % 2])
    return text


def howto(source: str, error: str) -> Text:
    """What to do when no corpus could be loaded (the first run without a network)."""
    text = Text()
    text.append(f"No corpus loaded: {source} could not be read or downloaded.\n", style="bold yellow")
    text.append(f"{error}\n\n", style="dim")
    text.append("To use a local copy: ", style="bold")
    text.append("press ctrl+o, type the path of a plain-text file (e.g. timemachine.txt), then enter; "
                "or quit (ctrl+q) and start with RNNLAB_CORPUS_DIR set to the folder that holds it. "
                "Online again? ctrl+r retries the download.")
    return text


class CorpusScreen(PlaygroundScreen):
    """Corpus, preprocessing and tokenizer, with the statistics they give."""

    BINDINGS = [
        Binding("ctrl+t", "next_tokenizer", "Tokenizer"),
        Binding("ctrl+o", "focus_path", "Open file"),
        Binding("ctrl+r", "reload", "Reload / retry", show=False),
    ]

    @dataclass
    class Download(Message):
        """Bytes of a download so far (total None when unknown)."""

        done: int
        total: int | None

    @dataclass
    class Step(Message):
        """A long step of loading (counting, encoding, n-grams): how far it got."""

        step: str
        done: int
        total: int | None

    @dataclass
    class Loaded(Message):
        view: CorpusView
        choice: CorpusChoice

    @dataclass
    class Failed(Message):
        error: str
        choice: CorpusChoice

    def __init__(self) -> None:
        super().__init__()
        self.choice = CorpusChoice()
        self.view: CorpusView | None = None
        self._syncing = False  # True while the form is set from code

    def compose(self) -> ComposeResult:
        names = list(catalog())
        yield Header()
        with Horizontal(id="corpus-body"):
            with FormScroll(id="corpus-form", classes="form"):
                yield from self._row("corpus", Select([(n, n) for n in names] + [(FILE, FILE)],
                                                      value=self.choice.source, allow_blank=False,
                                                      compact=True, id="corpus-name"))
                yield from self._row("file", Input(placeholder="path, then enter", compact=True,
                                                   id="corpus-path"))
                yield from self._row("preprocess", Select([(m, m) for m in PREPROCESS_MODES],
                                                          value=self.choice.mode, allow_blank=False,
                                                          compact=True, id="corpus-mode"))
                yield from self._row("tokenizer", Select([(k, k) for k in TOKENIZER_KINDS],
                                                         value=self.choice.tokenizer, allow_blank=False,
                                                         compact=True, id="corpus-tokenizer"))
                yield from self._row("vocab_size", Input(str(self.choice.vocab_size), compact=True,
                                                         id="corpus-vocab-size"))
                yield from self._row("min_freq", Input(str(self.choice.min_freq), compact=True,
                                                       id="corpus-min-freq"))
                yield Static("vocab_size applies to bpe, wordpiece and unigram; enter applies a number.",
                             classes="hint")
                yield ProgressBar(total=1, id="corpus-download", show_eta=False)
                yield Static("", id="corpus-status")
                yield Static("", id="corpus-error", classes="error")
            with Vertical(id="corpus-main"):
                yield Static("loading…", id="corpus-stats")
                with Horizontal(id="corpus-top"):
                    yield DataTable(id="corpus-top-tokens", cursor_type="row", zebra_stripes=True)
                    yield SeriesPlot("Zipf: log10 freq vs log10 rank", xlabel="log10 rank",
                                     id="corpus-zipf")
                with Horizontal(id="corpus-bottom"):
                    with VerticalScroll(id="corpus-preview-box"):
                        yield Static("", id="corpus-preview")
                    with VerticalScroll(id="corpus-subword-box"):
                        yield Static("", id="corpus-subword")
        yield KeysFooter()

    @staticmethod
    def _row(label: str, widget: Widget) -> ComposeResult:
        with Horizontal(classes="field-row"):
            yield Label(label, classes="field-label")
            yield widget

    def on_mount(self) -> None:
        self.title, self.sub_title = "rnnlab", "Corpus"
        table = self.query_one("#corpus-top-tokens", DataTable)
        table.add_columns("token", "count", "%")
        self.query_one("#corpus-download").display = False
        self.query_one("#corpus-error").display = False
        self.query_one("#corpus-subword-box").display = False
        self.load(self.choice)

    # -- loading -----------------------------------------------------------
    def load(self, choice: CorpusChoice) -> None:
        """Start loading ``choice``; the current corpus stays until it succeeds."""
        self.query_one("#corpus-status", Static).update(f"loading {choice.source} ({choice.tokenizer})…")
        self._load(choice)

    @work(thread=True, exclusive=True, group="corpus", exit_on_error=False)
    def _load(self, choice: CorpusChoice) -> None:
        worker = get_current_worker()

        def progress(done: int, total: int | None) -> None:
            if not worker.is_cancelled:
                self.post_message(self.Download(done, total))

        started: dict[str, float] = {}

        def step(name: str, done: int, total: int | None) -> None:
            # Only a step that has run over a second shows (a small corpus never flickers).
            now = time.monotonic()
            if not worker.is_cancelled and now - started.setdefault(name, now) >= STEP_SHOW_AFTER_S:
                self.post_message(self.Step(name, done, total))

        try:
            corpus = load_corpus(choice.source, progress=progress)
            pipeline = build_pipeline(corpus, mode=choice.mode, tokenizer=choice.tokenizer,
                                      vocab_size=choice.vocab_size, min_freq=choice.min_freq, progress=step)
            view = build_view(pipeline, progress=step)
        except (RnnlabError, OSError) as exc:
            if not worker.is_cancelled:
                self.post_message(self.Failed(str(exc), choice))
            return
        if not worker.is_cancelled:
            self.post_message(self.Loaded(view, choice))

    def on_corpus_screen_download(self, message: Download) -> None:
        bar = self.query_one("#corpus-download", ProgressBar)
        bar.display = True
        bar.update(total=message.total, progress=message.done)
        of = f" of {message.total / 1e3:,.0f}" if message.total else ""
        self.query_one("#corpus-status", Static).update(
            f"downloading {self.choice.source}: {message.done / 1e3:,.0f}{of} kB"
        )

    def on_corpus_screen_step(self, message: Step) -> None:
        bar = self.query_one("#corpus-download", ProgressBar)
        bar.display = True
        bar.update(total=message.total, progress=message.done)
        self.query_one("#corpus-status", Static).update(f"{message.step}…")

    def on_corpus_screen_loaded(self, message: Loaded) -> None:
        self.choice, self.view = message.choice, message.view
        self.query_one("#corpus-download").display = False
        self.query_one("#corpus-error").display = False
        self.query_one("#corpus-status", Static).update("")
        self.query_one("#corpus-main").remove_class("-howto")
        self.show(message.view)
        self._sync_form(message.choice)  # e.g. the picker names a file opened by path
        self.app.post_message(PipelineChanged(message.view.pipeline, message.choice))

    def on_corpus_screen_failed(self, message: Failed) -> None:
        self.query_one("#corpus-download").display = False
        self.query_one("#corpus-status", Static).update(
            f"keeping {self.choice.source} ({self.choice.tokenizer})" if self.view else "no corpus loaded"
        )
        error = self.query_one("#corpus-error", Static)
        error.update(message.error)
        if self.view is None:  # nothing to show yet (e.g. offline on a first run): say how to get one
            self.query_one("#corpus-main").add_class("-howto")
            self.query_one("#corpus-stats", Static).update(howto(message.choice.source, message.error))
        error.display = self.view is not None  # else the how-to on the right says it all
        self._sync_form(self.choice)  # the form goes back to what is shown

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "corpus" and event.state == WorkerState.ERROR:
            self.post_message(self.Failed(f"could not load the corpus: {event.worker.error}", self.choice))

    # -- display -----------------------------------------------------------
    def show(self, view: CorpusView) -> None:
        stats = Text()
        stats.append(view.title, style="bold")
        stats.append(f" · {view.pipeline.mode} · {view.pipeline.tokenizer.kind}\n")
        for label, value in (("lines", f"{view.lines:,}"), ("tokens", f"{view.tokens:,}"),
                             ("vocab", f"{view.vocab_size:,}"), ("<unk>", f"{view.unk_rate:.2%}")):
            stats.append(f"{label} ", style="dim")
            stats.append(value, style="bold")
            stats.append(" ")
        at_min_freq = view.summary.get("vocab_size_at_min_freq")
        if at_min_freq:  # char / word only: subword vocabularies are sized by training
            stats.append("\nvocab at min_freq ", style="dim")
            stats.append(" · ".join(f"{d['min_freq']}: {d['vocab_size']:,}" for d in at_min_freq), style="bold")
        if view.summary.get("ngram_tokens"):  # a big corpus: n-grams counted on its head
            stats.append(f"\nn-grams (n ≥ 2) on the first {view.summary['ngram_tokens']:,} tokens", style="dim")
        for warning in view.warnings:
            stats.append(f"\n⚠ {warning}", style="yellow")
        self.query_one("#corpus-stats", Static).update(stats)

        table = self.query_one("#corpus-top-tokens", DataTable)
        table.clear()
        total = max(1, view.tokens)
        for token, count in view.top:
            table.add_row(token, f"{count:,}", f"{count / total:.1%}")

        plot = self.query_one("#corpus-zipf", SeriesPlot)
        plot.clear()
        for curve in view.zipf:
            plot.set_series(f"{curve.n}-gram a={format_exponent(curve.exponent)}",
                            curve.log_rank, curve.log_freq)
        plot.replot()

        self.query_one("#corpus-preview", Static).update(token_text(view.preview))
        box = self.query_one("#corpus-subword-box")
        box.display = bool(view.subword)
        if view.subword:
            box.border_title = view.subword_title
            lines = "\n".join(f"{i + 1:>4} {s}" for i, s in enumerate(view.subword[:500]))
            self.query_one("#corpus-subword", Static).update(Text(lines))

    # -- form --------------------------------------------------------------
    def _sync_form(self, choice: CorpusChoice) -> None:
        self._syncing = True
        try:
            names = list(catalog())
            picker = self.query_one("#corpus-name", Select)
            if choice.source in names:
                picker.value = choice.source
            else:  # a file opened by path: the picker's last entry names it
                picker.set_options([(n, n) for n in names] + [(f"{Path(choice.source).name} (file)", FILE)])
                picker.value = FILE
                self.query_one("#corpus-path", Input).value = choice.source
            self.query_one("#corpus-mode", Select).value = choice.mode
            self.query_one("#corpus-tokenizer", Select).value = choice.tokenizer
            self.query_one("#corpus-vocab-size", Input).value = str(choice.vocab_size)
            self.query_one("#corpus-min-freq", Input).value = str(choice.min_freq)
        finally:
            self.call_after_refresh(setattr, self, "_syncing", False)

    def _form_choice(self, source: str | None = None) -> CorpusChoice | None:
        """The form's choice, or None (with an in-place error) if a number is bad."""
        fields = {}
        for name, widget_id in (("vocab_size", "#corpus-vocab-size"), ("min_freq", "#corpus-min-freq")):
            try:
                fields[name] = parse_int(name, self.query_one(widget_id, Input).value)
            except ConfigError as exc:
                error = self.query_one("#corpus-error", Static)
                error.update(str(exc))
                error.display = True
                return None
        return replace(self.choice, source=source or self.choice.source,
                       mode=str(self.query_one("#corpus-mode", Select).value),
                       tokenizer=str(self.query_one("#corpus-tokenizer", Select).value), **fields)

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        if self._syncing:
            return
        source = None
        if event.select.id == "corpus-name":
            if event.value == FILE:
                self.action_focus_path()
                return
            source = str(event.value)
        choice = self._form_choice(source)
        if choice is not None and choice != self.choice:
            self.load(choice)

    @on(Input.Submitted)
    def _input_submitted(self, event: Input.Submitted) -> None:
        source = event.value.strip() if event.input.id == "corpus-path" else None
        if event.input.id == "corpus-path" and not source:
            return
        choice = self._form_choice(source)
        if choice is not None:
            self.load(choice)

    def action_next_tokenizer(self) -> None:
        select = self.query_one("#corpus-tokenizer", Select)
        kinds = list(TOKENIZER_KINDS)
        select.value = kinds[(kinds.index(str(select.value)) + 1) % len(kinds)]

    def action_focus_path(self) -> None:
        self.query_one("#corpus-path", Input).focus()

    def action_reload(self) -> None:
        choice = self._form_choice()
        if choice is not None:
            self.load(choice)
