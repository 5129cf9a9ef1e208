"""Generate screen: typing a prompt shows next-token bars that sum to at most 1;
α keys change them; enter appends generated text."""

from __future__ import annotations

from engine.generate import next_token_distribution
from textual.widgets import Static, TextArea
from tui.screens.generate import GenerateScreen
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



def test_top_p_key_cycles_and_bars_match_engine(corpus_dir) -> None:
    tiny_run()

    async def body(app, pilot):
        await pilot.press("f3")  # the newest saved run is already loaded
        await pilot.pause()
        await pilot.press(*"the time")
        seen = []
        for _ in range(4):  # off -> 0.9 -> 0.8 -> 0.5 -> off
            await pilot.press("ctrl+t")
            await app.workers.wait_for_complete()
            await pilot.pause()
            seen.append((app.screen.top_p, str(app.screen.query_one("#gen-sampling", Static).render()),
                         app.screen.query_one(ProbBars).bars))
        model, tokenizer = app.screen._load_model()

        def engine(top_p):
            dist = next_token_distribution(model, tokenizer, "the time", top_p=top_p, n=10)
            return tuple((tokenizer.display_token(t), p) for t, p in dist)

        return seen, engine(0.5), engine(None)

    seen, nucleus, full = run_app(body)
    assert [p for p, _, _ in seen] == [0.9, 0.8, 0.5, None]
    assert "top-p 0.9" in seen[0][1] and "top-p 0.5" in seen[2][1] and "top-p off" in seen[3][1]
    # The bars are the engine's distribution under the shown top-p.
    assert seen[2][2] == nucleus and seen[3][2] == full
    # The nucleus keeps the fewest tokens whose q reaches 0.5, renormalised: fewer, larger bars.
    nonzero = [p for _, p in nucleus if p > 0]
    assert len(nonzero) < len(full) and nonzero[0] > full[0][1]


def test_pieces_queued_before_typing_are_dropped(corpus_dir) -> None:
    """Pieces a stream posted before the prompt changed never reach the new text."""
    tiny_run()

    async def body(app, pilot):
        await pilot.press("f3")
        await pilot.pause()
        await pilot.press(*"the")
        await app.workers.wait_for_complete()
        screen = app.screen
        # Hold the stream's pieces back, as a busy message queue would, until after typing.
        held, post = [], screen.post_message
        screen.post_message = lambda m: held.append(m) or True if isinstance(m, GenerateScreen.Piece) else post(m)
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        del screen.post_message
        await pilot.press("x")  # the text resets to the prompt "thex"
        await pilot.pause()
        for message in held:  # now the old stream's pieces arrive
            screen.post_message(message)
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        dropped = screen.query_one("#gen-output", TextArea).text
        await pilot.press("enter")  # a new stream still appends
        await app.workers.wait_for_complete()
        await pilot.pause()
        return len(held), dropped, screen.query_one("#gen-output", TextArea).text

    n_held, dropped, after = run_app(body)
    assert n_held > 0
    assert dropped == "thex"
    assert after.startswith("thex") and len(after) > len("thex")
