"""Train screen: a tiny run started with ctrl+s plots points and is saved; the UI
handles keys while training; ctrl+g stops the run and keeps it saved."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from pathlib import Path

import torch
from engine.config import ModelConfig, TrainConfig
from engine.corpus import load_corpus
from engine.runs import list_runs, open_run
from engine.pipeline import build_pipeline
from textual.widgets import DataTable, Input, Static
from tui.messages import FollowRun
from tui.widgets.form import ConfigForm
from tui.widgets.plot import SeriesPlot
from tui_helpers import open_train, run_app, wait_events, wait_training
from tui_oracles import hand_continuation, hand_val_ppl


def progress_lines(run_path) -> list[dict]:
    """The Progress records of a run's metrics.jsonl, read with json (not through the engine)."""
    lines = (Path(run_path) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, filter(None, lines)) if r["type"] == "Progress"]


def shown_val_ppl(stats: str) -> float:
    return float(re.search(r"val ppl (\S+)", stats).group(1))


def test_tiny_run_plots_and_saves(corpus_dir) -> None:
    """The curves are the run's logged figures; the val ppl shown is that of the saved weights; the sample
    line is the saved model's greedy continuation of the sample prefix."""

    async def body(app, pilot):
        await open_train(app, pilot)
        assert app.screen.check_action("start", ()) is True
        await pilot.press("ctrl+s")
        await wait_training(app, pilot)
        screen = app.screen
        ppl, grad = screen.query_one("#train-ppl", SeriesPlot), screen.query_one("#train-grad", SeriesPlot)
        curves = {name: plot.series[name].points() for plot, name in
                  ((ppl, "train"), (ppl, "validation"), (grad, "‖g‖"))}
        return (screen.training, curves, str(screen.query_one("#train-stats", Static).render()),
                str(screen.query_one("#train-sample", Static).render()), app.session.run_path)

    training, curves, stats, sample, run_path = run_app(body)
    assert training is False
    run = open_run(run_path)
    summary = run.summary()
    assert summary.status == "completed" and summary.epochs_done == 2
    logged = progress_lines(run_path)
    ends = [m for m in logged if m["epoch_end"]]
    assert [m["epoch"] for m in ends] == [1, 2]
    # Plotted y-values: every logged figure, in order; one validation point per epoch end.
    assert curves["train"][1] == [m["train_ppl"] for m in logged]
    assert curves["‖g‖"][1] == [m["grad_norm"] for m in logged]
    assert [x for x, m in zip(curves["train"][0], logged) if m["epoch_end"]] == [1.0, 2.0]
    assert curves["validation"] == ([1.0, 2.0], [m["val_ppl"] for m in ends])
    # The saved weights give the validation perplexity on the screen (to its 4 digits).
    assert shown_val_ppl(stats) == float(f"{hand_val_ppl(run_path):.4g}")
    assert sample == "epoch 2: time traveller" + hand_continuation(run_path, "time traveller", 5)


def test_keys_work_while_training_and_stop_keeps_run(corpus_dir) -> None:
    """The run trains in a process of its own while the UI switches screens; ctrl+g stops it as Ctrl-C would:
    the process exits 130 and the run is saved as stopped."""

    async def body(app, pilot):
        await open_train(app, pilot, {("train", "epochs"): 10_000})
        await pilot.press("ctrl+s")
        screen = app.screen
        await wait_events(app, pilot)
        child = screen.child
        greyed = (screen.check_action("start", ()), screen.check_action("stop", ()),
                  screen.check_action("resume", ()))
        await pilot.press("f4")  # another screen while training runs
        mode_during = app.current_mode
        running_during = child.running() and child.proc.pid != os.getpid()
        await pilot.press("f2", "ctrl+g")
        await wait_training(app, pilot)
        stats = str(screen.query_one("#train-stats", Static).render())
        return greyed, mode_during, running_during, child.proc.wait(timeout=60), screen.training, \
            app.session.run_path, stats

    greyed, mode, running, code, training, run_path, stats = run_app(body)
    assert greyed == (None, True, None)  # Start and Resume are greyed out while training, Stop is live
    assert mode == "runs" and running
    assert code == 130 and training is False
    summary = open_run(Path(run_path)).summary()
    assert summary.status == "stopped" and summary.epochs_done < 10_000
    # The stats line ends on the figures saved with the run, not the last progress tick's.
    assert f"train ppl {summary.train_ppl:.4g}" in stats
    assert f"val ppl {'–' if summary.val_ppl is None else format(summary.val_ppl, '.4g')}" in stats


def test_form_sections_and_dropout_needs_layers(corpus_dir) -> None:
    async def body(app, pilot):
        await open_train(app, pilot, {("model", "dropout"): "0.5"})
        screen, form = app.screen, app.screen.query_one(ConfigForm)
        headings = [str(h.render()) for h in form.query(".form-heading")]
        names = [spec.name for spec in form.specs]
        error = form.query_one("#e-model-dropout", Static)
        shown = (error.display, str(error.render()))
        await pilot.press("ctrl+s")  # refused: no worker, a notification says why
        await pilot.pause()
        started = any(w.group == "train" for w in app.workers)
        notes = [(n.title, n.message) for n in app._notifications]
        form.set_value("model", "num_layers", 2)
        await pilot.pause()
        return headings, names, shown, started, notes, screen.training, error.display, form.errors

    headings, names, shown, started, notes, training, still_shown, errors = run_app(body)
    assert headings == ["model", "optimisation", "data", "device", "sampling & logging"]
    model_fields = [f.name for f in dataclasses.fields(ModelConfig) if f.name != "vocab_size"]
    # Not in the form: options another thing fixes (sentence_end_ids by the corpus, world_size by the launcher).
    train_fields = [f.name for f in dataclasses.fields(TrainConfig) if not f.metadata.get("fixed_by")]
    assert sorted(names) == sorted(model_fields + train_fields)  # every option, once
    assert names[:3] == ["kind", "num_hiddens", "num_layers"]
    assert shown[0] and shown[1].startswith("dropout must be 0 when num_layers is 1")
    assert not started and not training
    assert any(title == "Not started" and "dropout must be 0" in message for title, message in notes)
    assert not still_shown and errors == {}  # two layers: dropout acts between them, the error goes


def test_size_and_device_errors_inline_and_no_run_folder(corpus_dir) -> None:
    """A config the trainer would refuse shows under its field and creates no run folder, whether ctrl+s
    is pressed or a bad config gets past the form (as a race with an edit could): create_run checks first."""

    async def body(app, pilot):
        await open_train(app, pilot, {("train", "batch_size"): 900})
        screen, form = app.screen, app.screen.query_one(ConfigForm)
        error = form.query_one("#e-train-batch_size", Static)
        shown = (error.display, str(error.render()))
        await pilot.press("ctrl+s")
        await pilot.pause()
        runs_after_key = list_runs()
        model_cfg = ModelConfig(kind="rnn", num_hiddens=16, vocab_size=len(app.session.pipeline.tokenizer.vocab))
        bad = (TrainConfig(max_tokens=2000, batch_size=900, num_steps=8, device="cpu"),
               TrainConfig(max_tokens=2000, batch_size=8, num_steps=8,
                           device="mps" if torch.cuda.is_available() else "cuda"))
        for train_cfg in bad:
            screen._validate = lambda cfg=train_cfg: (model_cfg, cfg)  # past the form's own check
            await pilot.press("ctrl+s")
            await pilot.pause()
        notes = [(n.title, n.message) for n in app._notifications]
        return shown, runs_after_key, list_runs(), notes, screen.training

    shown, runs_after_key, runs_after_bad, notes, training = run_app(body)
    assert shown[0] and shown[1].startswith("batch_size must be at most")
    assert runs_after_key == [] and runs_after_bad == []
    refused = [message for title, message in notes if title == "Not started"]
    assert len(refused) == 3 and refused[1].startswith("batch_size must be at most") and "cuda" in refused[2].lower()
    assert not training


def test_run_config_records_corpus_tokenizer_settings(corpus_dir) -> None:
    """min_freq set on the Corpus screen is what the run's config.json records."""

    async def body(app, pilot):
        await pilot.press("ctrl+t")  # char -> word
        await app.workers.wait_for_complete()
        await pilot.pause()
        min_freq = app.screen.query_one("#corpus-min-freq", Input)
        min_freq.focus()
        min_freq.value = "10"
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        tokenizer = app.session.pipeline.tokenizer
        await open_train(app, pilot)
        await pilot.press("ctrl+s")
        await wait_training(app, pilot)
        return tokenizer.kind, tokenizer.min_freq, app.session.choice.min_freq, app.session.run_path

    kind, tok_min_freq, choice_min_freq, run_path = run_app(body)
    assert (kind, tok_min_freq, choice_min_freq) == ("word", 10, 10)
    config = json.loads((Path(run_path) / "config.json").read_text())
    assert config["tokenizer"]["kind"] == "word" and config["tokenizer"]["min_freq"] == 10
    expected = build_pipeline(load_corpus("timemachine"), tokenizer="word", min_freq=10).tokenizer
    assert len(open_run(run_path).tokenizer.vocab) == len(expected.vocab)  # the saved tokenizer, too



def test_stop_then_resume_continues_the_same_run_live(corpus_dir) -> None:
    """ctrl+g stops a run; ctrl+e resumes it (a new process on the same folder): the curves go on from the
    saved epoch, the log keeps the first session's epochs, and a second ctrl+g saves it again."""

    async def body(app, pilot):
        await open_train(app, pilot, {("train", "epochs"): 10_000})
        await pilot.press("ctrl+s")
        screen = app.screen
        await wait_events(app, pilot, epochs=2)
        await pilot.press("ctrl+g")
        await wait_training(app, pilot)
        first = open_run(screen.run_path).trainer_state()["epoch"]
        resumable = screen.check_action("resume", ())
        await pilot.press("ctrl+e")
        await pilot.pause()
        resumed = (screen.training, screen.child is not None and screen.child.running())
        await wait_events(app, pilot, epochs=first + 2)
        xs = screen.query_one("#train-ppl", SeriesPlot).series["validation"].points()[0]
        await pilot.press("ctrl+g")
        await wait_training(app, pilot)
        return screen.run_path, first, resumable, resumed, xs, screen.child

    run_path, first, resumable, resumed, xs, child = run_app(body)
    assert first >= 2 and resumable is True and resumed == (True, True)
    run = open_run(run_path)
    assert run.summary().status == "stopped" and run.trainer_state()["epoch"] >= first + 2
    ends = [m["epoch"] for m in progress_lines(run_path) if m["epoch_end"]]
    assert ends == list(range(1, len(ends) + 1))  # one log, the resumed epochs after the first session's
    assert xs[: first + 2] == [float(e) for e in range(1, first + 3)]


def test_quit_while_training_asks_and_stop_saves_the_run(corpus_dir) -> None:
    """ctrl+q mid-run asks; s stops the training process (it saves) and the app exits."""

    async def body(app, pilot):
        await open_train(app, pilot, {("train", "epochs"): 10_000})
        await pilot.press("ctrl+s")
        screen = app.screen
        await wait_events(app, pilot, epochs=2)
        child = screen.child
        await pilot.press("ctrl+q")
        await pilot.pause()
        asked = type(app.screen).__name__, app.is_running
        await pilot.press("s")
        await pilot.pause()
        return app, asked, child, screen.run_path

    app, asked, child, run_path = run_app(body)
    assert asked == ("ChoiceScreen", True)
    assert app.return_code == 0 and not app.is_running and app.left_running == []
    assert child.proc.wait(timeout=120) == 130
    run = open_run(run_path)
    summary = run.summary()
    assert summary.status == "stopped" and 2 <= summary.epochs_done < 10_000
    # The weights saved at the stop give the validation perplexity the run records.
    assert run.has_checkpoint() and math.isclose(hand_val_ppl(run_path), summary.val_ppl, rel_tol=1e-5)


def test_leave_running_then_a_new_app_follows_and_stops_it(corpus_dir) -> None:
    """ctrl+q, l: the app exits and the run goes on in its process. A second app lists it as running,
    opens it live on Train (its curves advance), and stops it from there: saved as stopped."""

    async def first_app(app, pilot):
        await open_train(app, pilot, {("train", "epochs"): 10_000})
        await pilot.press("ctrl+s")
        await wait_events(app, pilot, epochs=1)
        child = app.screen.child
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.press("l")
        await pilot.pause()
        return app, child

    app, child = run_app(first_app)
    try:
        assert app.return_code == 0 and not app.is_running and app.left_running == [child]
        assert child.running()  # left running after its app ended

        async def second_app(app, pilot):
            await pilot.press("f4")
            await pilot.pause()
            listed = {r.name: r.status for r in app.screen.runs}
            app.post_message(FollowRun(child.run_path))
            await pilot.pause()
            screen = app.screen
            await wait_events(app, pilot)
            seen = screen.events_seen
            epoch = screen.last_progress.epoch
            await wait_events(app, pilot, epochs=epoch + 1)  # it advances, read from the folder
            following = (app.current_mode, screen.training, screen.child, screen.events_seen > seen)
            await pilot.press("ctrl+g")
            await wait_training(app, pilot)
            return listed, following

        listed, following = run_app(second_app)
        assert listed == {child.run_path.name: "running"}
        assert following == ("train", True, None, True)
        assert child.proc.wait(timeout=120) == 130
        assert open_run(child.run_path).summary().status == "stopped"
    finally:
        if child.running():
            child.proc.kill()


def test_keys_pressed_while_training_do_not_edit_the_form(corpus_dir) -> None:
    async def body(app, pilot):
        await open_train(app, pilot, {("train", "epochs"): 10_000})
        field = app.screen.query_one(ConfigForm).query(Input).first()
        field.focus()
        await pilot.pause()
        before = field.value
        await pilot.press("ctrl+s")
        await wait_events(app, pilot)
        await pilot.press("5")  # "go to Labs", not a digit for the focused field
        mode = app.current_mode
        await pilot.press("f2", "ctrl+g")
        await wait_training(app, pilot)
        return before, field.value, mode

    before, after, mode = run_app(body)
    assert after == before and mode == "labs"


def test_stats_show_clipping_and_an_unstable_end(corpus_dir) -> None:
    """θ = 0.001 clips every step (any ‖g‖ is larger): "clipped 100%"; lr 4 without clipping is thrown
    off (validation perplexity 767, far above twice the 28 characters, yet no loss past the divergence limit,
    which lr 5 reaches at step 22): the run is flagged unstable on Train and Runs."""

    async def body(app, pilot):
        screen, seen = None, []
        for overrides in ({("train", "clip"): "norm", ("train", "clip_theta"): 0.001},
                          {("train", "clip"): "off", ("train", "lr"): 4.0}):
            await open_train(app, pilot, overrides)
            await pilot.press("ctrl+s")
            await wait_training(app, pilot)
            screen = app.screen
            seen.append((str(screen.query_one("#train-stats", Static).render()),
                         str(screen.query_one("#train-status", Static).render()), screen.run_path))
        notes = [(n.title, n.message) for n in app._notifications]
        await pilot.press("f4")
        await pilot.pause()
        runs = {r.name: r.status for r in app.screen.runs}
        table = app.screen.query_one(DataTable)
        labels = [str(col.label) for col in table.ordered_columns]  # the columns shown are those that differ
        rows = [dict(zip(labels, map(str, table.get_row_at(i)))) for i in range(table.row_count)]
        statuses = {row["run"]: row["status"] for row in rows}
        return seen, notes, runs, statuses

    (clipped, unstable), notes, runs, statuses = run_app(body)
    assert "clipped 100%" in clipped[0] and "unstable" not in clipped[1]
    assert "clipped 0%" in unstable[0] and unstable[1].startswith("unstable ")
    first, second = clipped[2].name, unstable[2].name
    summary = open_run(unstable[2]).summary()
    assert summary.unstable and summary.val_ppl > 2 * 28
    assert any(title == "Unstable run" and "guessing uniformly among 28 tokens" in message
               and "turn on gradient clipping" in message for title, message in notes)  # clip was off
    assert statuses == {first: runs[first], second: f"{runs[second]} unstable"}


def test_a_new_run_does_not_show_the_previous_runs_figures(corpus_dir) -> None:
    """A run that diverges in its first steps may end before any progress is logged: its stats must not be
    the previous run's (which clipped every step) standing as its own."""

    async def body(app, pilot):
        seen = []
        for overrides in ({("train", "clip"): "norm", ("train", "clip_theta"): 0.001},
                          {("train", "clip"): "off", ("train", "lr"): 50.0}):
            await open_train(app, pilot, overrides)
            await pilot.press("ctrl+s")
            await wait_training(app, pilot)
            seen.append(str(app.screen.query_one("#train-stats", Static).render()))
        return seen

    first, second = run_app(body)
    assert "clipped 100%" in first
    assert "clipped 100%" not in second and ("clipped 0%" in second or second == "no progress logged yet")


def test_divergence_and_spike_notifications(corpus_dir) -> None:
    """lr 50 without clipping blows up in the first epoch: a "Diverged at step N" notification carries the
    run's logged message. lr 4 with clipping has its validation perplexity jump at epoch 3 above
    1.01 × its best: a "Perplexity spike" notification gives the epoch, the figure and the best so far,
    as read from metrics.jsonl."""

    async def body(app, pilot):
        paths = []
        for overrides in ({("train", "clip"): "off", ("train", "lr"): 50.0},
                          {("train", "clip"): "norm", ("train", "lr"): 4.0, ("train", "epochs"): 4,
                           ("train", "spike_factor"): 1.01}):
            await open_train(app, pilot, overrides)
            await pilot.press("ctrl+s")
            await wait_training(app, pilot)
            paths.append(app.screen.run_path)
        return paths, [(n.title, n.message) for n in app._notifications]

    (diverged, spiked), notes = run_app(body)
    events = [json.loads(line) for line in (diverged / "events.jsonl").read_text().splitlines() if line]
    bad = [e for e in events if e["type"] == "Diverged"]
    assert len(bad) == 1 and bad[0]["epoch"] == 1 and "lr 50" in bad[0]["message"]
    assert (f"Diverged at step {bad[0]['step']}", bad[0]["message"]) in notes
    # The first epoch whose validation perplexity exceeds 1.01 × the best before it.
    vals = [m["val_ppl"] for m in progress_lines(spiked) if m["epoch_end"]]
    epoch = next(e for e in range(2, len(vals) + 1) if vals[e - 1] > 1.01 * min(vals[: e - 1]))
    expected = f"epoch {epoch}: validation perplexity {vals[epoch - 1]:.3g} (best {min(vals[: epoch - 1]):.3g})"
    assert [m for t, m in notes if t == "Perplexity spike"] == [expected]


def test_first_epoch_points_are_placed_by_the_trainers_minibatch_count(corpus_dir) -> None:
    """Within the first epoch a point's x is step / minibatches per epoch, counted on the tokens the trainer
    trains on: 1281 tokens hold out round(128.1) = 128 for validation, leaving 1153, so (1153 - 1) // (8 · 8)
    = 18 minibatches (1281 · 0.9 = 1152.9 tokens would give 17)."""

    async def body(app, pilot):
        await open_train(app, pilot, {("train", "epochs"): 1, ("train", "max_tokens"): 1281,
                                      ("train", "log_every_steps"): 1, ("train", "log_interval_s"): 1000.0})
        await pilot.press("ctrl+s")
        await wait_training(app, pilot)
        return app.screen.query_one("#train-ppl", SeriesPlot).series["train"].points(), app.session.run_path

    (xs, _), run_path = run_app(body)
    within = [m["step"] for m in progress_lines(run_path) if not m["epoch_end"]]
    assert len(within) >= 16 and xs[:len(within)] == [step / 18 for step in within]


def test_a_run_of_two_processes_shows_them_and_each_ones_tokens_per_s(corpus_dir) -> None:
    """A run folder trained by 2 processes (its config says world_size 2; its log is written here as rank 0
    writes it, total tokens/s over both): followed on Train, the status names 2 processes and the stats give
    the total and each one's tokens/s."""
    from engine.events import Progress
    from engine.runs import create_run

    async def body(app, pilot):
        pipeline = app.session.pipeline
        model_cfg = ModelConfig(kind="rnn", vocab_size=len(pipeline.vocab), num_hiddens=16)
        run = create_run(None, model_cfg, TrainConfig(epochs=2, world_size=2, max_tokens=2000, batch_size=8,
                                                      num_steps=8), pipeline)
        run.log_event(Progress(epoch=1, step=28, train_ppl=20.0, val_ppl=19.0, tokens_per_s=1.2e6, grad_norm=0.5,
                               lr=1.0, elapsed_s=1.0, eta_s=1.0, epochs=2, epoch_end=True, clip_fraction=0.0))
        app.post_message(FollowRun(run.path))
        await pilot.pause()
        await pilot.pause(0.3)
        screen = app.screen
        return (str(screen.query_one("#train-stats", Static).render()),
                str(screen.query_one("#train-status", Static).render()))

    stats, status = run_app(body)
    assert "tok/s 1.2M=2×600k" in stats and "train ppl 20" in stats
    assert " · 2 processes · run " in status
