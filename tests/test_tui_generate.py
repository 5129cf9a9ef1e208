"""Generate screen: the next-token bars show the labels and percentages of q ∝ P^α computed by hand
from the model's softmax; α, top-k, greedy, reseed, stop and clear keys do what the screen says;
enter appends generated text."""

from __future__ import annotations

import random
import re
import threading

from textual.widgets import DataTable, Static, TextArea
from tui.screens.generate import GenerateScreen
from tui.widgets.bars import ProbBars
from tui_helpers import open_train, run_app, tiny_run, wait_training
from tui_oracles import hand_continuation, hand_q


def shown_bars(app) -> list[tuple[str, float]]:
    """(label, percentage) of each bar as drawn: "  ␣ ████▍      43.1%" -> ("␣", 43.1)."""
    lines = app.screen.query_one(ProbBars).render().plain.split("\n")
    bars = [re.fullmatch(r"\s*(\S+) .*?\s*(\d+\.\d)%", line) for line in lines]
    return [(m.group(1), float(m.group(2))) for m in bars if m]


def assert_bars_equal(shown: list[tuple[str, float]], expected: list[tuple[str, float]]) -> None:
    """Same labels in the same order; each percentage is q to the 0.1% the screen shows."""
    assert [t for t, _ in shown] == [t for t, _ in expected], (shown, expected)
    for (_, pct), (_, q) in zip(shown, expected):
        assert abs(pct - 100 * q) <= 0.05 + 1e-6, (shown, expected)


def test_prompt_bars_alpha_and_generation(corpus_dir) -> None:
    path = tiny_run()

    async def body(app, pilot):
        await pilot.press("f4")  # Runs: the saved run is highlighted
        await pilot.pause()
        await pilot.press("g")  # open it in Generate
        await pilot.pause()
        assert app.current_mode == "generate"
        await pilot.press(*"time traveller")
        await app.workers.wait_for_complete()
        await pilot.pause()
        bars_alpha1 = shown_bars(app)
        await pilot.press("up", "up", "up")  # α 1 -> 1.5 -> 2 -> 3
        await app.workers.wait_for_complete()
        await pilot.pause()
        bars_alpha3 = shown_bars(app)
        sampling = str(app.screen.query_one("#gen-sampling", Static).render())
        before = app.screen.query_one("#gen-output", TextArea).text
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        after = app.screen.query_one("#gen-output", TextArea).text
        return bars_alpha1, bars_alpha3, sampling, before, after

    bars1, bars3, sampling, before, after = run_app(body)
    assert "α 3 " in sampling and "T=1/α 0.33" in sampling
    assert len(bars1) == len(bars3) == 10
    assert_bars_equal(bars1, hand_q(path, "time traveller", alpha=1))
    assert_bars_equal(bars3, hand_q(path, "time traveller", alpha=3))
    assert before == "time traveller"
    assert after.startswith(before) and len(after) > len(before)


def test_top_p_key_cycles_and_bars_show_the_nucleus(corpus_dir) -> None:
    """ctrl+t walks top-p off -> 0.9 -> 0.8 -> 0.5 -> off; the bars keep the fewest likeliest tokens whose
    q reaches p, renormalised (computed by hand)."""
    path = tiny_run()

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
                         shown_bars(app)))
        return seen

    seen = run_app(body)
    assert [p for p, _, _ in seen] == [0.9, 0.8, 0.5, None]
    assert "top-p 0.9" in seen[0][1] and "top-p 0.5" in seen[2][1] and "top-p off" in seen[3][1]
    for top_p, _, bars in seen:
        assert_bars_equal(bars, hand_q(path, "the time", top_p=top_p))
    # The nucleus of 0.5: fewer, larger bars than without top-p.
    nonzero = [p for _, p in seen[2][2] if p > 0]
    assert len(nonzero) < len([p for _, p in seen[3][2] if p > 0]) and nonzero[0] > seen[3][2][0][1]


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
            return (str(screen.query_one("#gen-info", Static).render()), shown_bars(app),
                    screen.query_one("#gen-offer").display, str(screen.query_one("#gen-offer", Static).render()))

        await pilot.press("f3")
        await pilot.press(*"the time")
        await settle()
        before = seen()
        await open_train(app, pilot, {("train", "seed"): 7})  # a second run, finished in the background
        await pilot.press("ctrl+s")
        await wait_training(app, pilot)
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
    assert first.name in before[0] and not before[2]
    assert_bars_equal(before[1], hand_q(first, "the time"))
    # The run that finished is offered, not used: same header, same bars.
    assert first.name in after_training[0] and second.name not in after_training[0]
    assert after_training[1] == before[1]
    assert after_training[2] and second.name in after_training[3] and "ctrl+o" in after_training[3]
    assert first.name in typed[0]
    assert_bars_equal(typed[1], hand_q(first, "the timex"))
    # ctrl+o: the header and the bars both move to the new run; the offer goes.
    assert second.name in switched[0] and not switched[2]
    assert_bars_equal(switched[1], hand_q(second, "the timex"))
    assert switched[1] != typed[1]
    assert first.name in reopened[0]
    assert_bars_equal(reopened[1], hand_q(first, "the timex"))


def test_top_k_greedy_and_clear_keys(corpus_dir) -> None:
    """ctrl+n walks top-k (the bars keep the k likeliest, renormalised); ctrl+y turns greedy on (one bar at
    100%, enter appends the argmax continuation) and off, also from the generated text; ctrl+l puts the
    text back to the prompt and recomputes the bars for it."""
    path = tiny_run()

    async def body(app, pilot):
        async def press(*keys):
            await pilot.press(*keys)
            await app.workers.wait_for_complete()
            await pilot.pause()

        def seen():
            screen = app.screen
            return (str(screen.query_one("#gen-sampling", Static).render()), shown_bars(app),
                    screen.query_one("#gen-output", TextArea).text)

        await pilot.press("f3")
        await press(*"the time")
        await press(*["ctrl+n"] * 4)  # off -> 50 -> 20 -> 10 -> 5
        top5 = seen()
        await press(*["ctrl+n"] * 3)  # 5 -> 3 -> 1 -> off
        top_off = seen()
        await press("ctrl+y")
        greedy = seen()
        await press("enter")
        generated = seen()
        await press("tab")  # into the generated text (a TextArea, whose own ctrl+y is redo)
        focused = app.screen.focused.id
        await press("ctrl+y")
        greedy_off = seen()
        await press("ctrl+l")
        return top5, top_off, greedy, generated, focused, greedy_off, seen()

    top5, top_off, greedy, generated, focused, greedy_off, cleared = run_app(body)
    assert "top-k 5 " in top5[0]
    assert_bars_equal(top5[1], hand_q(path, "the time", top_k=5))
    assert [p for _, p in top5[1]][5:] == [0.0] * 5
    assert "top-k off" in top_off[0]
    assert_bars_equal(top_off[1], hand_q(path, "the time"))
    assert "α ∞ " in greedy[0] and "greedy on" in greedy[0] and "T=1/α 0 (greedy)" in greedy[0]
    argmax = hand_q(path, "the time")[0][0]
    assert greedy[1][0] == (argmax, 100.0) and all(p == 0.0 for _, p in greedy[1][1:])
    assert generated[2] == "the time" + hand_continuation(path, "the time", 200)
    assert focused == "gen-output" and "greedy off" in greedy_off[0] and "α 1 " in greedy_off[0]
    assert_bars_equal(greedy_off[1], hand_q(path, generated[2]))
    assert cleared[2] == "the time"
    assert_bars_equal(cleared[1], hand_q(path, "the time"))


def test_reseed_and_stop_keys(corpus_dir) -> None:
    """ctrl+r draws a new seed, shown in the sampling line, and enter then samples with it; ctrl+g stops a
    stream: nothing more is appended after it."""
    path = tiny_run()

    async def body(app, pilot):
        screen = None

        async def press(*keys):
            await pilot.press(*keys)
            await app.workers.wait_for_complete()
            await pilot.pause()

        await pilot.press("f3")
        screen = app.screen
        await press(*"the")
        random.seed(2024)  # ctrl+r draws from the random module
        await press("ctrl+r")
        sampling = str(screen.query_one("#gen-sampling", Static).render())
        await press("enter")
        sampled = screen.query_one("#gen-output", TextArea).text
        await press("ctrl+l")
        # Hold the stream after its first piece until ctrl+g has been pressed.
        first, release = threading.Event(), threading.Event()
        post = screen.post_message

        def held_post(message):
            posted = post(message)
            if isinstance(message, GenerateScreen.Piece) and not first.is_set():
                first.set()
                release.wait(10)
            return posted

        screen.post_message = held_post
        await pilot.press("enter")
        while not first.is_set():
            await pilot.pause(0.01)
        await pilot.pause()
        await pilot.press("ctrl+g")
        release.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        del screen.post_message
        return screen.seed, sampling, sampled, screen.query_one("#gen-output", TextArea).text

    seed, sampling, sampled, stopped = run_app(body)
    assert seed == random.Random(2024).randrange(10_000)
    assert f"seed {seed} " in sampling
    assert sampled == "the" + hand_continuation(path, "the", 200, seed=seed)
    assert stopped == "the" + hand_continuation(path, "the", 1, seed=seed)  # the first piece only
