"""Corpus screen: the tokenizer key changes the shown vocab size to the engine's
figure; a bad path shows an error in place and keeps the loaded corpus; ctrl+r reads a changed file
again (its vocabulary and Zipf curve, counted by hand)."""

from __future__ import annotations

from collections import Counter

import numpy as np
from engine.corpus import load_corpus
from engine.stats import corpus_summary
from engine.pipeline import build_pipeline
from textual.widgets import DataTable, Select, Static
from tui.screens.corpus import FILE
from tui.widgets.plot import SeriesPlot
from tui_helpers import open_file, run_app


def stats_text(app) -> str:
    return str(app.screen.query_one("#corpus-stats", Static).render())


def test_tokenizer_key_shows_engine_vocab_size(corpus_dir) -> None:
    word = build_pipeline(load_corpus("timemachine"), tokenizer="word")
    word_vocab = len(word.tokenizer.vocab)
    at = {d["min_freq"]: d["vocab_size"] for d in corpus_summary(word)["vocab_size_at_min_freq"]}

    async def body(app, pilot):
        before = stats_text(app)
        await pilot.press("ctrl+t")  # char -> word
        await app.workers.wait_for_complete()
        await pilot.pause()
        return before, stats_text(app), app.session.pipeline.tokenizer.kind

    before, after, kind = run_app(body)
    assert "vocab 28 " in before and "tokens 170,580" in before  # D2L's char figures
    assert kind == "word"
    assert f"vocab {word_vocab:,} " in after and "tokens 32,775" in after
    # Vocabulary size at D2L's min_freq 0 and 10, the engine's figures (4580 and 400 for words).
    assert "vocab at min_freq 0: 28 · 10: 28" in before
    assert f"vocab at min_freq 0: {at[0]:,} · 10: {at[10]:,}" in after and at[10] < at[0]


def test_bad_path_shows_error_and_keeps_corpus(corpus_dir, tmp_path) -> None:
    missing = tmp_path / "no-such-book.txt"

    async def body(app, pilot):
        pipeline = app.session.pipeline
        await open_file(app, pilot, missing)
        error = app.screen.query_one("#corpus-error", Static)
        return pipeline, app.session.pipeline, error.display, str(error.render()), stats_text(app)

    old, now, shown, error, stats = run_app(body)
    assert now is old  # the previous corpus stays
    assert shown and "no-such-book.txt" in error
    assert "The Time Machine" in stats and "vocab 28 " in stats


def test_bpe_tokens_shown_through_display_token(corpus_dir) -> None:
    tok = build_pipeline(load_corpus("timemachine"), tokenizer="bpe").tokenizer
    show = tok.display_token

    async def body(app, pilot):
        await pilot.press("ctrl+t", "ctrl+t")  # char -> word -> bpe
        await app.workers.wait_for_complete()
        await pilot.pause()
        table = app.screen.query_one("#corpus-top-tokens", DataTable)
        top = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        merges = str(app.screen.query_one("#corpus-subword", Static).render())
        preview = str(app.screen.query_one("#corpus-preview", Static).render())
        return app.session.pipeline.tokenizer.kind, top, merges, preview

    kind, top, merges, preview = run_app(body)
    assert kind == "bpe"
    assert top == [show(t) for t, _ in tok.vocab.token_freqs[: len(top)]]
    assert any(t.startswith("␣") for t in top)  # a leading space is shown as ␣, never as Ġ
    a, b = tok.merges[0]
    assert merges.splitlines()[0].split() == ["1", show(a), "+", show(b), "→", show(a + b)]
    for text in (" ".join(top), merges, preview):
        assert "Ġ" not in text and "Ċ" not in text
    assert preview.startswith("the␣time␣machine")  # d2l preprocessing, byte pieces decoded


def test_narrow_footer_leaves_out_the_palette_key(corpus_dir) -> None:
    from textual.widgets import Footer

    async def body(app, pilot):
        wide = app.screen.query_one(Footer).show_command_palette
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        narrow = app.screen.query_one(Footer).show_command_palette
        await pilot.press("f3")  # a screen first shown at 80 columns
        await pilot.pause()
        other = app.screen.query_one(Footer).show_command_palette
        await pilot.resize_terminal(120, 36)
        await pilot.pause()
        return wide, narrow, other, app.screen.query_one(Footer).show_command_palette

    assert run_app(body) == (True, False, False, True)


def test_picker_names_a_file_opened_by_path_and_goes_back(corpus_dir, tmp_path) -> None:
    """A file opened with ctrl+o shows in the picker; picking timemachine then loads it again."""
    book = tmp_path / "book.txt"
    book.write_text((corpus_dir / "timemachine.txt").read_text(encoding="utf-8")[:20_000], encoding="utf-8")

    async def body(app, pilot):
        picker = app.screen.query_one("#corpus-name", Select)
        await open_file(app, pilot, book)
        opened = (picker.value, str(picker.query_one("SelectCurrent Static#label").render()),
                  app.session.pipeline.corpus.name)
        picker.focus()
        await pilot.press("enter", "home", "enter")  # open the list, first entry (timemachine), pick it
        await app.workers.wait_for_complete()
        await pilot.pause()
        return opened, picker.value, app.session.pipeline.corpus.name, stats_text(app)

    opened, value, name, stats = run_app(body)
    assert opened[0] == FILE and opened[1] == "book.txt (file)" and opened[2] != "timemachine"
    assert value == "timemachine" and name == "timemachine"
    assert "The Time Machine" in stats


def test_a_chinese_file_in_d2l_mode_shows_the_whole_warning_at_80x24(tmp_path) -> None:
    """The warning that d2l mode drops the text's letters wraps in full, advice included."""
    zh = tmp_path / "zh.txt"
    zh.write_text("时间机器是一部小说。他说：我们去未来吧。\n" * 50, encoding="utf-8")

    async def body(app, pilot):
        await open_file(app, pilot, zh)
        stats = app.screen.query_one("#corpus-stats")
        return " ".join(line.text.strip() for line in stats.render_lines(stats.region.reset_offset))

    shown = run_app(body, size=(80, 24))
    assert "drops 100% of this text's letters" in shown and "use mode raw (--mode raw) to keep them" in shown


def test_reload_key_reads_the_file_again(tmp_path) -> None:
    """A file changed on disk after it was opened: ctrl+r loads it again and the stats show its new
    character vocabulary (its distinct letters, the space and <unk>)."""
    book = tmp_path / "book.txt"
    book.write_text("ab ba ab\n" * 50, encoding="utf-8")

    async def body(app, pilot):
        await open_file(app, pilot, book)
        before = stats_text(app)
        book.write_text("the quick brown fox\n" * 50, encoding="utf-8")
        await pilot.press("ctrl+r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        zipf = app.screen.query_one("#corpus-zipf", SeriesPlot).series
        unigram = next(h.points() for name, h in zipf.items() if name.startswith("1-gram"))
        return before, stats_text(app), app.session.pipeline.corpus.name, unigram

    before, after, name, (log_rank, log_freq) = run_app(body)
    assert "vocab 4 " in before  # a, b, space, <unk>
    assert f"vocab {len(set('thequickbrownfox')) + 2} " in after and name == "book"
    # The Zipf plot's 1-gram curve: log10 of each character's count in the new text, by log10 rank.
    counts = sorted(Counter("the quick brown fox").values(), reverse=True)
    assert np.allclose(log_freq, np.log10(np.array(counts) * 50), rtol=0, atol=1e-12)
    assert np.allclose(log_rank, np.log10(np.arange(1, len(counts) + 1)), rtol=0, atol=1e-12)
