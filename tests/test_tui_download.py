"""First run: with no local corpus the app downloads the default one with a
visible progress bar; offline it still opens and says how to get a corpus.

The catalog URL points at a loopback server (``$RNNLAB_CORPUS_URL_TIMEMACHINE``);
``$RNNLAB_CORPUS_DIR`` is removed and ``$RNNLAB_HOME`` is fresh, as on a new machine.
"""

from __future__ import annotations

from textual.widgets import ProgressBar, Static

from tui.screens.corpus import CorpusScreen
from tui_helpers import closed_port, run_app, serve_files

SIZE = 178979  # bytes of timemachine.txt (the catalog's figure)


def test_first_run_downloads_with_progress_bar(offline_home, corpus_dir, monkeypatch) -> None:
    body = (corpus_dir / "timemachine.txt").read_bytes()
    assert len(body) == SIZE
    seen: list[tuple[int, int | None, bool]] = []
    original = CorpusScreen.on_corpus_screen_download

    def spy(screen, message):  # what the bar shows after each progress message
        original(screen, message)
        bar = screen.query_one("#corpus-download", ProgressBar)
        seen.append((int(bar.progress), bar.total, bool(bar.display)))

    monkeypatch.setattr(CorpusScreen, "on_corpus_screen_download", spy)
    with serve_files({"/timemachine.txt": body}) as base:
        monkeypatch.setenv("RNNLAB_CORPUS_URL_TIMEMACHINE", base + "/timemachine.txt")

        async def run(app, pilot):
            stats = str(app.screen.query_one("#corpus-stats", Static).render())
            return app.session.pipeline, stats, app.screen.query_one("#corpus-download").display

        pipeline, stats, bar_shown = run_app(run)

    assert len(seen) >= 3 and all(shown and total == SIZE for _, total, shown in seen)
    progress = [done for done, _, _ in seen]
    assert progress == sorted(progress) and progress[0] < SIZE and progress[-1] == SIZE  # it advanced
    assert pipeline is not None and len(pipeline.ids) == 170580  # the corpus loaded (D2L's char figure)
    assert "The Time Machine" in stats and "tokens 170,580" in stats
    assert not bar_shown  # the bar goes once the corpus is in
    assert (offline_home / "corpora" / "timemachine.txt").stat().st_size == SIZE  # cached for next time


def test_offline_app_opens_and_says_how_to_get_a_corpus(offline_home, monkeypatch) -> None:
    monkeypatch.setenv("RNNLAB_CORPUS_URL_TIMEMACHINE", f"http://127.0.0.1:{closed_port()}/timemachine.txt")

    async def run(app, pilot):
        stats = str(app.screen.query_one("#corpus-stats", Static).render())
        await pilot.press("f2")  # the other screens still work
        await pilot.pause()
        train_status = str(app.screen.query_one("#train-status", Static).render())
        return app.session.pipeline, stats, app.current_mode, train_status

    pipeline, stats, mode, train_status = run_app(run)
    assert pipeline is None and mode == "train"
    assert "No corpus loaded" in stats and "offline" in stats
    assert "ctrl+o" in stats and "RNNLAB_CORPUS_DIR" in stats
    assert "load one on the Corpus screen" in train_status
