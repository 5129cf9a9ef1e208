"""The minibatch view of the Labs screen: ctrl+l until it shows, ctrl+t steps through the samplers, ctrl+r
draws the next seed; the 0..34 rows are those written out here by hand or counted from data_iter, the
corpus rows the decoded text of the engine's minibatches; it fits 80×24 (a screenshot is saved)."""

from __future__ import annotations


import numpy as np
from textual.widgets import DataTable, Static

from engine.config import SAMPLERS
from engine.corpus import load_corpus
from engine.data import data_iter
from engine.pipeline import build_pipeline
from tui.screens.labs import LAB_VIEWS
from tui_helpers import run_app



def rows(app, selector: str) -> list[list[str]]:
    table = app.screen.query_one(selector, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def test_minibatch_view_shows_each_samplers_rows(corpus_dir) -> None:
    pipeline = build_pipeline(load_corpus("timemachine"))

    async def body(app, pilot):
        await pilot.press("f5")
        await pilot.pause()
        for view_id, _ in LAB_VIEWS:  # ctrl+l until the minibatch view, wherever it sits
            await pilot.press("ctrl+l")
            await pilot.pause()
            if view_id == "lab-iterators":
                break
        view = app.screen.query_one("#lab-iterators")
        seen = {"shown": view.display, "size": app.size}
        for sampler in SAMPLERS:
            seen[sampler] = (rows(app, "#it-book"), rows(app, "#it-corpus"),
                             str(app.screen.query_one("#it-note", Static).render()))
            await pilot.press("ctrl+t")
            await pilot.pause()
        await pilot.press("ctrl+r")  # back at random (six samplers), seed 1
        await pilot.pause()
        seen["seed 1"] = rows(app, "#it-book")
        return seen

    seen = run_app(body, size=(80, 24))
    assert seen["shown"] and tuple(seen["size"]) == (80, 24)
    # Seed 0 draws offset 4 for 0..34 in 2 × 5: sequential rows of 15 tokens start at 4 and 19.
    assert int(np.random.default_rng(0).integers(5)) == 4
    book, corpus, note = seen["sequential"]
    assert book == [["1.1", "4 5 6 7 8", "5 6 7 8 9"], ["1.2", "19 20 21 22 23", "20 21 22 23 24"],
                    ["2.1", "9 10 11 12 13", "10 11 12 13 14"], ["2.2", "24 25 26 27 28", "25 26 27 28 29"],
                    ["3.1", "14 15 16 17 18", "15 16 17 18 19"], ["3.2", "29 30 31 32 33", "30 31 32 33 34"]]
    assert note.startswith("sequential: row i")
    for sampler, seed, key in [(s, 0, s) for s in SAMPLERS if s != "sentences"] + [("random", 1, "seed 1")]:
        want = [[f"{k + 1}.{i + 1}", " ".join(map(str, x)), " ".join(map(str, y))]
                for k, (X, Y) in enumerate(data_iter(np.arange(35), 2, 5, sampler, rng=np.random.default_rng(seed)))
                for i, (x, y) in enumerate(zip(X.tolist(), Y.tolist()))]
        assert (seen[key] if key == "seed 1" else seen[key][0]) == want, sampler
    assert seen["sentences"][0] == [["–", "0..34 has no sentences", ""]]
    # The corpus: the first 3 rows of the first 2 minibatches, decoded (d2l mode: no sentences).
    batches = list(data_iter(pipeline.ids[:10000], 32, 35, "random", rng=np.random.default_rng(0)))[:2]
    want = [[f"{k + 1}.{i + 1}", pipeline.tokenizer.decode(x), pipeline.tokenizer.decode(y)]
            for k, (X, Y) in enumerate(batches) for i, (x, y) in enumerate(zip(X.tolist()[:3], Y.tolist()[:3]))]
    assert seen["random"][1] == want
    assert seen["sentences"][1] == []
