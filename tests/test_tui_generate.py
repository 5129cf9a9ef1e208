"""Generate screen: typing a prompt shows next-token bars that sum to at most 1;
α keys change them; enter appends generated text."""

from __future__ import annotations

from engine.corpus import prompt_text
from engine.generate import next_token_distribution
from engine.runs import open_run
from textual.widgets import DataTable, Static, TextArea
from tui.screens.generate import GenerateScreen
from tui.widgets.bars import ProbBars
from tui_helpers import open_train, run_app, tiny_run


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
        tokenizer = app.screen._load_model(app.screen.model_path)[1]
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
        model, tokenizer, _ = app.screen._load_model(app.screen.model_path)

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


def engine_bars(path, text: str) -> tuple[tuple[str, float], ...]:
    """The next-token bars of run ``path``'s model for ``text``, straight from the engine."""
    run = open_run(path)
    model, tokenizer = run.load_model("cpu"), run.tokenizer
    dist = next_token_distribution(model, tokenizer, prompt_text(text, run.config.get("mode", "d2l")), n=10)
    return tuple((tokenizer.display_token(t), p) for t, p in dist)


def test_a_finished_run_is_offered_never_switched_to(corpus_dir) -> None:
    """Generate keeps the run the user picked when another finishes; ctrl+o switches; opening
    a run again from Runs shows that run's bars at once (no edit needed)."""
    first = tiny_run()

    async def body(app, pilot):
        async def settle():
            await app.workers.wait_for_complete()
            await pilot.pause()

        def seen():
            screen = app.screen
            return (str(screen.query_one("#gen-info", Static).render()), screen.query_one(ProbBars).bars,
                    screen.query_one("#gen-offer").display, str(screen.query_one("#gen-offer", Static).render()))

        await pilot.press("f3")
        await pilot.press(*"the time")
        await settle()
        before = seen()
        await open_train(app, pilot, {("train", "seed"): 7})  # a second run, finished in the background
        await pilot.press("ctrl+s")
        await settle()
        second = app.screen.run_path
        await pilot.press("f3")
        await settle()
        after_training = seen()
        await pilot.press("x")  # typing still uses the picked model
        await settle()
        typed = seen()
        await pilot.press("ctrl+o")
        await settle()
        switched = seen()
        await pilot.press("f4")
        await pilot.pause()
        rows = [app.screen.query_one(DataTable).get_row_at(i)[-1] for i in range(2)]
        await pilot.press("down" if rows[1] == first.name else "up", "g")  # open the first run again
        await settle()
        return second, before, after_training, typed, switched, seen()

    second, before, after_training, typed, switched, reopened = run_app(body)
    assert second is not None and second != first
    assert first.name in before[0] and before[1] == engine_bars(first, "the time") and not before[2]
    # The run that finished is offered, not used: same header, same bars.
    assert first.name in after_training[0] and second.name not in after_training[0]
    assert after_training[1] == before[1]
    assert after_training[2] and second.name in after_training[3] and "ctrl+o" in after_training[3]
    assert first.name in typed[0] and typed[1] == engine_bars(first, "the timex")
    # ctrl+o: the header and the bars both move to the new run; the offer goes.
    assert second.name in switched[0] and switched[1] == engine_bars(second, "the timex") and not switched[2]
    assert engine_bars(second, "the timex") != engine_bars(first, "the timex")
    assert first.name in reopened[0] and reopened[1] == engine_bars(first, "the timex")
