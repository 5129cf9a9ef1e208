"""The minibatch view of the Labs screen (D2L 8.3.4): what one epoch's first minibatches hold, per sampler.

Two tables: the book's example, the sequence 0..34 in minibatches of batch_size 2 × num_steps 5,
every minibatch of one epoch as X/Y rows; and the current corpus with D2L's sizes (32 × 35), the
first rows of the first two minibatches as decoded text. ``ctrl+t`` steps through the samplers
(``engine.config.SAMPLERS``), ``ctrl+r`` draws the next seed; the note says what to look for in
the sampler shown. The figures come from ``engine.labs.iterators`` (pure functions, cheap: no worker).
Left out: coverage (the Labs screen's own view) and training.
"""

from __future__ import annotations


from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from engine.config import SAMPLERS
from engine.errors import RnnlabError
from engine.labs.iterators import book_example, end_ids_of, minibatch_example

LOOK_FOR = {  # sampler -> what the rows show, in a sentence
    "random": "random: a random offset, then non-adjacent subsequences; each minibatch starts from a fresh state",
    "sequential": "sequential: row i of a minibatch continues row i of the one before, so the state carries over",
    "sliding": "sliding: windows every stride tokens (here num_steps // 2), overlapping: tokens are read twice",
    "uniform": "uniform: a random offset anywhere, the text read as a ring (one window runs from the end to the "
               "start), no subsequence dropped",
    "fixed": "fixed: offset 0, so subsequences always start at multiples of num_steps and the tail is never read",
    "sentences": "sentences: one sentence per row, padded at the right; Y's padding (·) is left out of the loss",
}
CORPUS_SIZES = (32, 35)  # D2L's batch_size and num_steps for the corpus table
CORPUS_ROWS = 3  # rows shown of each corpus minibatch


def _ids(row: list[int]) -> str:
    return " ".join("·" if t == -100 else str(t) for t in row)


class IteratorsLabView(Vertical):
    """A note and two tables; the Labs screen calls ``shown``, ``toggle_view``, ``recompute``."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sampler, self.seed = SAMPLERS[0], 0

    def compose(self) -> ComposeResult:
        yield Static("", id="it-note")
        yield DataTable(id="it-book", cursor_type="none", zebra_stripes=True)
        yield Static("", id="it-corpus-note")
        yield DataTable(id="it-corpus", cursor_type="none", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one("#it-book", DataTable).add_columns("#", "X", "Y")
        self.query_one("#it-corpus", DataTable).add_columns("#", "X", "Y")

    def shown(self) -> None:
        self._display()

    def toggle_view(self) -> None:
        self.sampler = SAMPLERS[(SAMPLERS.index(self.sampler) + 1) % len(SAMPLERS)]
        self._display()

    def recompute(self) -> None:
        self.seed += 1
        self._display()

    def _display(self) -> None:
        s = self.sampler
        self.query_one("#it-note", Static).update(
            f"{LOOK_FOR[s]}\n0..34, batch_size 2 × num_steps 5, seed {self.seed} (ctrl+t: next sampler, "
            "ctrl+r: next seed)")
        book = self.query_one("#it-book", DataTable)
        book.clear()
        if s == "sentences":
            book.add_row("–", "0..34 has no sentences", "")
        else:
            ex = book_example(s, self.seed)
            for k, b in enumerate(ex.batches):
                for i, (x, y) in enumerate(zip(b.X, b.Y)):
                    book.add_row(f"{k + 1}.{i + 1}", _ids(x), _ids(y))
        self._corpus()

    def _corpus(self) -> None:
        table, note = self.query_one("#it-corpus", DataTable), self.query_one("#it-corpus-note", Static)
        table.clear()
        pipeline = self.app.session.pipeline  # type: ignore[attr-defined]
        if pipeline is None:
            note.update("no corpus yet: load one on the Corpus screen (F1)")
            return
        b, n = CORPUS_SIZES
        try:
            ex = minibatch_example(pipeline.ids[:10000], b, n, self.sampler, self.seed, tokenizer=pipeline.tokenizer,
                                   end_ids=end_ids_of(pipeline.tokenizer), max_batches=2)
        except RnnlabError as exc:
            note.update(f"the corpus: {exc}")
            return
        note.update(f"the corpus, batch_size {b} × num_steps {n}: first {CORPUS_ROWS} rows of 2 of "
                    f"{ex.num_batches} minibatches")
        for k, mb in enumerate(ex.batches):
            for i, (x, y) in enumerate(zip(mb.x_text[:CORPUS_ROWS], mb.y_text[:CORPUS_ROWS])):
                table.add_row(f"{k + 1}.{i + 1}", _shown(x), _shown(y))


def _shown(text: str) -> str:
    """A row's text on one line: line breaks as ⏎."""
    return text.replace("\n", "⏎")
