"""Generate screen: typing a prompt shows next-token bars that sum to at most 1;
α keys change them; enter appends generated text."""

from __future__ import annotations

from textual.widgets import TextArea
from tui.widgets.bars import ProbBars
from tui_helpers import run_app, tiny_run


def test_prompt_bars_alpha_and_generation(corpus_dir) -> None:
    tiny_run()

    async def body(app, pilot):
        await pilot.press("f4")  # Runs: the saved run is highlighted
        await pilot.pause()
        await pilot.press("g")  # open it in Generate
        await pilot.pause()
        assert app.current_mode == "generate"
        await pilot.press(*"time traveller")
        await app.workers.wait_for_complete()
        await pilot.pause()
        bars_alpha1 = app.screen.query_one(ProbBars).bars
        await pilot.press("up", "up", "up")  # α 1 -> 1.5 -> 2 -> 3
        await app.workers.wait_for_complete()
        await pilot.pause()
        bars_alpha3 = app.screen.query_one(ProbBars).bars
        before = app.screen.query_one("#gen-output", TextArea).text
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        after = app.screen.query_one("#gen-output", TextArea).text
        tokenizer = app.screen._load_model()[1]
        shown = {tokenizer.display_token(t) for t in tokenizer.vocab.idx_to_token}
        return app.screen.alpha, bars_alpha1, bars_alpha3, before, after, shown

    alpha, bars1, bars3, before, after, shown = run_app(body)
    assert alpha == 3.0
    for bars in (bars1, bars3):
        total = sum(p for _, p in bars)
        assert 0 < total <= 1 + 1e-6 and len(bars) == 10
        assert [p for _, p in bars] == sorted((p for _, p in bars), reverse=True)
    # q ∝ P^α sharpens as α grows: the most likely token gains probability.
    assert bars3[0][1] > bars1[0][1]
    # Labels are the tokenizer's displayed tokens: a space shows as ␣, never blank.
    assert {t for t, _ in bars1} <= shown and not any(t.strip() != t or not t for t, _ in bars1)
    assert before == "time traveller"
    assert after.startswith(before) and len(after) > len(before)
