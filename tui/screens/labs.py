"""The Labs screen: the chapter's exercises the other screens don't cover.

Exercise 8.3.5 — does the random offset make coverage uniform? For the
current corpus, ``engine.data.coverage`` counts how often each token position
is seen as input over E epochs, for every sampler (D2L's random sampling and
sequential partitioning, and rnnlab's sliding, uniform, fixed and, in mode raw,
sentences), with the same batch_size / num_steps / seed. The plot shows the
counts per position (averaged over bins of positions so a whole novel fits the
width); ``ctrl+t`` switches to the first few subsequences position by position
(where the random offset shows) and to the histogram (how many positions were
seen k times); the table gives min / max / mean / std and the positions never seen.
What to look for: random sampling spreads the counts (some positions are
skipped in an epoch, others not), both samplers see the first positions less
(the offset passes them), and more epochs bring the counts closer to E.

Exercises 8.3.1 / 8.3.3 — the n-gram table: distinct n-grams for n = 1..4,
the most frequent one and the Zipf exponent a of ``n_i ∝ 1 / i^a``, from
``engine.stats.corpus_summary``.

Other labs are views of this screen, one module each, listed in ``LAB_VIEWS``;
``ctrl+l`` shows the next one, and ``ctrl+t`` / ``ctrl+r`` act on the view shown
(a view widget's ``toggle_view`` / ``recompute``; ``shown`` when it appears).

Left out: the other exercises (perplexity, α, clipping: the Train and
Generate screens are the lab for those).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import ContentSwitcher, DataTable, Header, Input, Label, Static
from textual.worker import Worker, WorkerState, get_current_worker

from engine.labs.iterators import coverage_comparison, end_ids_of
from engine.errors import ConfigError
from engine.stats import corpus_summary
from tui.corpus_view import format_exponent
from tui.screens.base import PlaygroundScreen, error_text
from tui.widgets.footer import KeysFooter
from tui.widgets.form import FormScroll, parse_int
from tui.widgets.plot import SeriesPlot

FIELDS = (  # (name, default, hint): the coverage experiment's settings, D2L's defaults
    ("tokens", 10000, "0 = the whole corpus; 10000 = the trainer's max_tokens"),
    ("batch_size", 32, ""),
    ("num_steps", 35, ""),
    ("epochs", 10, ""),
    ("seed", 0, ""),
)
BINS_PER_CELL = 2  # per-position plot: two bins per column (a braille cell is two dots wide)
VIEWS = ("per position", "first positions", "histogram")
TITLES = {
    "per position": ("mean count per bin of positions", "position"),
    "first positions": ("count at each of the first 4 × num_steps positions", "position"),
    "histogram": ("log10(1 + positions seen k times)", "k"),
}
COLORS = {"random": "cyan", "sequential": "orange", "sliding": "magenta", "uniform": "green", "fixed": "red",
          "sentences": "yellow"}
LAB_VIEWS = (  # (id, "module:Widget") of each lab view after this screen's own (#labs-body), in ctrl+l order
    ("lab-bptt", "tui.screens.lab_bptt:BpttLab"),
    ("lab-sequence", "tui.screens.lab_sequence:SequenceLabView"),
    ("lab-iterators", "tui.screens.lab_iterators:IteratorsLabView"),
)


@dataclass
class CoverageStats:
    """Summary of one sampler's per-position counts (what the table shows)."""

    sampler: str
    min: int
    max: int
    mean: float
    std: float
    unseen: int  # positions never seen as input

    @classmethod
    def of(cls, sampler: str, counts: np.ndarray) -> CoverageStats:
        return cls(sampler, int(counts.min()), int(counts.max()), float(counts.mean()), float(counts.std()),
                   int(np.count_nonzero(counts == 0)))


def binned(counts: np.ndarray, bins: int) -> tuple[list[float], list[float]]:
    """(first position of each bin, mean count in the bin): ``[1, 1, 3, 3], 2 -> ([0, 2], [1, 3])``."""
    starts = np.unique(np.linspace(0, len(counts), min(bins, len(counts)), endpoint=False).astype(np.int64))
    means = np.add.reduceat(counts.astype(np.float64), starts) / np.diff(np.append(starts, len(counts)))
    return starts.astype(float).tolist(), means.tolist()


class LabsScreen(PlaygroundScreen):
    """Sampler coverage (8.3.5) and the n-gram table (8.3.1, 8.3.3)."""

    BINDINGS = [
        Binding("ctrl+t", "view_key('toggle_view')", "Plot view"),
        Binding("ctrl+r", "view_key('recompute')", "Recompute"),
        Binding("ctrl+l", "next_lab", "Next lab"),
    ]

    @dataclass
    class Computed(Message):
        settings: dict[str, int]
        counts: dict[str, np.ndarray]  # sampler -> count per position

    @dataclass
    class Ngrams(Message):
        summary: dict[str, Any]
        tokenizer: Any  # for display_token and kind

    def __init__(self) -> None:
        super().__init__()
        self._pipeline_version = -1
        self.view = VIEWS[0]
        self.counts: dict[str, np.ndarray] = {}
        self.settings: dict[str, int] = {}
        self.stats: list[CoverageStats] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with ContentSwitcher(initial="labs-body", id="labs-views"), Horizontal(id="labs-body"):
            with FormScroll(id="labs-form", classes="form"):
                yield Static("coverage (8.3.5)", classes="form-heading")
                for name, default, hint in FIELDS:
                    with Horizontal(classes="field-row"):
                        yield Label(name, classes="field-label")
                        yield Input(str(default), compact=True, id=f"labs-{name}", select_on_focus=True,
                                    tooltip=hint or None)
                yield Static("", id="labs-error", classes="error")
                yield Static("n-grams (8.3.1, 8.3.3)", classes="form-heading")
                yield DataTable(id="labs-ngrams", cursor_type="none", zebra_stripes=True)
            with Vertical(id="labs-main"):
                yield Static("", id="labs-note")
                yield DataTable(id="labs-coverage", cursor_type="none", zebra_stripes=True)
                yield SeriesPlot("", id="labs-plot")
        yield KeysFooter()

    def _mount_lab_views(self) -> None:
        switcher = self.query_one("#labs-views", ContentSwitcher)
        for view_id, target in LAB_VIEWS:
            module, _, name = target.partition(":")
            view = getattr(importlib.import_module(module), name)(id=view_id)
            view.display = False  # the switcher shows one view at a time
            switcher.mount(view)

    def _lab_view(self) -> Any:
        """The lab view shown, or None on this screen's own (coverage and n-grams)."""
        current = self.query_one("#labs-views", ContentSwitcher).current
        return None if current == "labs-body" else self.query_one(f"#{current}")

    def action_next_lab(self) -> None:
        ids = ["labs-body", *(view_id for view_id, _ in LAB_VIEWS)]
        switcher = self.query_one("#labs-views", ContentSwitcher)
        switcher.current = ids[(ids.index(switcher.current or "labs-body") + 1) % len(ids)]
        view = self._lab_view()
        if view is not None:
            view.shown()

    def action_view_key(self, name: str) -> None:
        """ctrl+t / ctrl+r: the shown lab view's own ``toggle_view`` / ``recompute``, or this screen's."""
        view = self._lab_view()
        getattr(self, f"action_{name}")() if view is None else getattr(view, name)()

    def on_mount(self) -> None:
        self.title, self.sub_title = "rnnlab", "Labs"
        self.query_one("#labs-ngrams", DataTable).add_columns("n", "distinct", "Zipf a", "top")
        self.query_one("#labs-coverage", DataTable).add_columns("sampler", "min", "max", "mean", "std",
                                                               "unseen")
        self.query_one("#labs-error").display = False
        self._mount_lab_views()

    def on_screen_resume(self) -> None:
        session = self.app.session  # type: ignore[attr-defined]
        if session.pipeline_version != self._pipeline_version:
            self._pipeline_version = session.pipeline_version
            self.action_recompute()
            if session.pipeline is not None:
                self._ngrams(session.pipeline)

    # -- settings -------------------------------------------------------------
    def _settings(self) -> dict[str, int] | None:
        values, error = {}, ""
        for name, _, _ in FIELDS:
            try:
                values[name] = parse_int(name, self.query_one(f"#labs-{name}", Input).value)
            except ConfigError as exc:
                error = error or str(exc)
        self._show_error(error)
        return None if error else values

    def _show_error(self, message: str) -> None:
        error = self.query_one("#labs-error", Static)
        error.update(message)
        error.display = bool(message)

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_recompute()

    def action_recompute(self) -> None:
        pipeline = self.app.session.pipeline  # type: ignore[attr-defined]
        note = self.query_one("#labs-note", Static)
        if pipeline is None:
            note.update("no corpus yet: load one on the Corpus screen (F1)")
            return
        settings = self._settings()
        if settings is not None:
            n = len(pipeline.ids) if settings["tokens"] <= 0 else min(settings["tokens"], len(pipeline.ids))
            self._coverage({**settings, "tokens": n}, pipeline)

    def action_toggle_view(self) -> None:
        self.view = VIEWS[(VIEWS.index(self.view) + 1) % len(VIEWS)]
        self._replot()

    # -- workers ----------------------------------------------------------------
    @work(thread=True, exclusive=True, group="labs", exit_on_error=False)
    def _coverage(self, settings: dict[str, int], pipeline: Any) -> None:
        # Every sampler; sentences only where the vocabulary ends sentences (mode raw).
        counts = coverage_comparison(pipeline.ids[: settings["tokens"]], settings["batch_size"],
                                     settings["num_steps"], settings["epochs"], settings["seed"],
                                     end_ids=end_ids_of(pipeline.tokenizer)).counts
        if not get_current_worker().is_cancelled:
            self.post_message(self.Computed(settings, counts))

    @work(thread=True, exclusive=True, group="labs-ngrams", exit_on_error=False)
    def _ngrams(self, pipeline: Any) -> None:
        summary = corpus_summary(pipeline, max_n=4, top_k=1)
        if not get_current_worker().is_cancelled:
            self.post_message(self.Ngrams(summary, pipeline.tokenizer))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group.startswith("labs") and event.state == WorkerState.ERROR:
            self._show_error(error_text(event.worker.error))

    # -- display ----------------------------------------------------------------
    def on_labs_screen_computed(self, message: Computed) -> None:
        self._show_error("")
        self.settings, self.counts = message.settings, message.counts
        self.stats = [CoverageStats.of(s, c) for s, c in message.counts.items()]
        table = self.query_one("#labs-coverage", DataTable)
        table.clear()
        for st in self.stats:
            table.add_row(st.sampler, f"{st.min:,}", f"{st.max:,}", f"{st.mean:.3f}", f"{st.std:.3f}",
                          f"{st.unseen:,}")
        s = message.settings
        self.query_one("#labs-note", Static).update(
            f"{s['tokens']:,} tokens · {s['epochs']} epochs · batch_size {s['batch_size']} · "
            f"num_steps {s['num_steps']} · seed {s['seed']}")
        self._replot()

    def _replot(self) -> None:
        plot = self.query_one("#labs-plot", SeriesPlot)
        plot.clear()
        marker = None
        # Random last: a braille cell takes one colour, so the later series wins where both fall.
        for sampler, counts in sorted(self.counts.items(), key=lambda item: item[0] == "random"):
            if self.view == "per position":
                xs, ys = binned(counts, max(20, BINS_PER_CELL * plot.size.width))
            elif self.view == "first positions":
                ys = counts[: 4 * self.settings["num_steps"]].astype(float).tolist()
                xs = list(map(float, range(len(ys))))
            else:  # histogram: positions seen k times, for k = 0..max
                hist = np.bincount(counts)
                xs, ys = list(map(float, range(len(hist)))), np.log10(1 + hist).tolist()
                marker = "•"
            plot.set_series(sampler, xs, ys, color=COLORS.get(sampler))
            if marker:
                plot.series_markers[sampler] = marker
        plot.plot_title, plot.xlabel = TITLES[self.view]
        plot.plot_title += " (ctrl+t: next view)"
        plot.replot()

    def on_labs_screen_ngrams(self, message: Ngrams) -> None:
        table = self.query_one("#labs-ngrams", DataTable)
        table.clear()
        tok = message.tokenizer
        join = tok.joiner  # char n-grams read as text: "the␣"
        for g in message.summary["ngrams"]:
            a = g["zipf_exponent"]
            top = join.join(tok.display_token(t) for t in g["top"][0][0]) if g["top"] else ""
            table.add_row(str(g["n"]), f"{g['distinct']:,}", "–" if a is None else format_exponent(a),
                          top)
