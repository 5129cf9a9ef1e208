"""Labs screen: the coverage table (exercise 8.3.5) and the n-gram table
(8.3.1, 8.3.3) show the engine's figures for the current corpus; new settings
typed in the form recompute them; ctrl+t cycles the plot's views."""

from __future__ import annotations

import numpy as np
from textual.widgets import DataTable, Input

from engine.corpus import load_corpus
from engine.data import data_iter
from engine.stats import corpus_summary
from engine.pipeline import build_pipeline
from tui.widgets.plot import SeriesPlot
from tui_helpers import run_app


def rows(app, table_id: str) -> list[list[str]]:
    table = app.screen.query_one(table_id, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


# Every sampler but sentences: d2l preprocessing leaves no punctuation to end a sentence.
D2L_MODE_SAMPLERS = ("random", "sequential", "sliding", "uniform", "fixed")


def hand_counts(n: int, batch_size: int, num_steps: int, sampler: str, epochs: int, seed: int) -> np.ndarray:
    """How often each of ``n`` positions is an input, counted from the minibatches the trainer's
    ``data_iter`` yields over positions 0..n-1 with one generator seeded ``seed`` for all epochs (not
    from ``engine.data.coverage``, the code under test)."""
    rng = np.random.default_rng(seed)
    counts = np.zeros(n, dtype=np.int64)
    for _ in range(epochs):
        for X, _ in data_iter(np.arange(n), batch_size, num_steps, sampler, rng=rng):
            counts += np.bincount(X.numpy().ravel(), minlength=n)
    return counts


def expected_coverage(n: int, batch_size: int, num_steps: int, epochs: int, seed: int) -> list[list[str]]:
    out = []
    for sampler in D2L_MODE_SAMPLERS:
        c = hand_counts(n, batch_size, num_steps, sampler, epochs, seed)
        out.append([sampler, f"{c.min():,}", f"{c.max():,}", f"{c.mean():.3f}", f"{c.std():.3f}",
                    f"{np.count_nonzero(c == 0):,}"])
    return out


def test_labs_figures_equal_engine_figures(corpus_dir) -> None:
    pipeline = build_pipeline(load_corpus("timemachine"))
    summary = corpus_summary(pipeline, max_n=4, top_k=1)

    async def body(app, pilot):
        await pilot.press("5")  # the Labs screen (F5 too)
        await app.workers.wait_for_complete()
        await pilot.pause()
        mode, first, ngrams = app.current_mode, rows(app, "#labs-coverage"), rows(app, "#labs-ngrams")
        plot = app.screen.query_one("#labs-plot", SeriesPlot)
        views = [(plot.xlabel, plot.point_count("random"))]
        for _ in range(2):
            await pilot.press("ctrl+t")
            await pilot.pause()
            views.append((plot.xlabel, plot.point_count("random")))
        epochs = app.screen.query_one("#labs-epochs", Input)
        epochs.focus()
        await pilot.press("ctrl+a", "ctrl+k", "3", "enter")  # three epochs instead of ten
        await app.workers.wait_for_complete()
        await pilot.pause()
        return mode, first, ngrams, views, rows(app, "#labs-coverage")

    mode, first, ngrams, views, three = run_app(body)
    assert mode == "labs"
    assert first == expected_coverage(10_000, 32, 35, 10, 0)  # D2L's batch_size / num_steps
    assert three == expected_coverage(10_000, 32, 35, 3, 0)
    assert first != three
    assert [r[:3] for r in ngrams] == [
        [str(g["n"]), f"{g['distinct']:,}", f"{g['zipf_exponent']:.2f}"] for g in summary["ngrams"]]
    assert [r[1] for r in ngrams] == ["27", "533", "4,610", "17,813"]  # char n-grams of The Time Machine
    assert ngrams[3][3] == "".join(pipeline.tokenizer.display_token(t) for t in summary["ngrams"][3]["top"][0][0])
    # Views: bins over all positions, the first 4 × num_steps positions, the histogram over k = 0..10.
    assert [x for x, _ in views] == ["position", "position", "k"]
    assert views[1][1] == 4 * 35 and views[2][1] == 11


def test_recompute_key_applies_typed_settings(corpus_dir) -> None:
    """Settings typed without enter take effect on ctrl+r: the table and the plot's views (counts at the
    first positions; log10(1 + positions seen k times)) are those of the new settings."""

    async def body(app, pilot):
        await pilot.press("f5")
        await app.workers.wait_for_complete()
        await pilot.pause()
        first = rows(app, "#labs-coverage")
        for name, value in (("epochs", "3"), ("seed", "7")):
            app.screen.query_one(f"#labs-{name}", Input).focus()
            await pilot.press("ctrl+a", "ctrl+k", *value)  # typed, no enter
        await pilot.pause()
        typed = rows(app, "#labs-coverage")
        await pilot.press("ctrl+r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        plot = app.screen.query_one("#labs-plot", SeriesPlot)
        views = []
        for _ in range(2):
            await pilot.press("ctrl+t")
            await pilot.pause()
            views.append({name: h.points() for name, h in plot.series.items()})
        return first, typed, rows(app, "#labs-coverage"), views

    first, typed, recomputed, (first_positions, histogram) = run_app(body)
    assert typed == first  # not applied before ctrl+r
    assert recomputed == expected_coverage(10_000, 32, 35, 3, 7) != first
    for sampler in D2L_MODE_SAMPLERS:
        counts = hand_counts(10_000, 32, 35, sampler, 3, 7)
        assert first_positions[sampler] == (list(map(float, range(4 * 35))), counts[: 4 * 35].tolist())
        hist = np.bincount(counts)
        assert histogram[sampler][0] == list(map(float, range(len(hist))))
        assert np.allclose(histogram[sampler][1], np.log10(1 + hist), rtol=0, atol=1e-12)
