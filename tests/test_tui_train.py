"""Train screen: a tiny run started with ctrl+s plots points and is saved; the UI
handles keys while training; ctrl+g stops the run and keeps it saved."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
from pathlib import Path

import torch
from engine.config import ModelConfig, TrainConfig
from engine.corpus import load_corpus
from engine.events import Finished
from engine.runs import list_runs, open_run
from engine.pipeline import build_pipeline
from textual.widgets import DataTable, Input, Static
from textual.worker import Worker, WorkerFailed, WorkerState
from tui.widgets.form import ConfigForm
from tui.widgets.plot import SeriesPlot
from tui_helpers import open_train, run_app
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
        await app.workers.wait_for_complete()
        await pilot.pause()
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
    async def body(app, pilot):
        await open_train(app, pilot, {("train", "epochs"): 10_000})
        await pilot.press("ctrl+s")
        screen = app.screen
        worker = next(w for w in app.workers if w.group == "train")
        while not screen.events_seen:  # wait for the first event (no fixed sleep)
            await pilot.pause(0.05)
        greyed = (screen.check_action("start", ()), screen.check_action("stop", ()))
        await pilot.press("f4")  # another screen while training runs
        mode_during = app.current_mode
        running_during = worker.state == WorkerState.RUNNING
        await pilot.press("f2", "ctrl+g")
        await app.workers.wait_for_complete()
        await pilot.pause()
        stats = str(screen.query_one("#train-stats", Static).render())
        return greyed, mode_during, running_during, worker.state, screen.training, app.session.run_path, stats

    greyed, mode, running, state, training, run_path, stats = run_app(body)
    assert greyed == (None, True)  # Start is greyed out while training, Stop is live
    assert mode == "runs" and running
    assert state == WorkerState.SUCCESS and training is False
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
    train_fields = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "sentence_end_ids"]  # corpus's
    assert sorted(names) == sorted(model_fields + train_fields)  # every option, once
    assert names[:3] == ["kind", "num_hiddens", "num_layers"]
    assert shown[0] and shown[1].startswith("dropout must be 0 when num_layers is 1")
    assert not started and not training
    assert any(title == "Not started" and "dropout must be 0" in message for title, message in notes)
    assert not still_shown and errors == {}  # two layers: dropout acts between them, the error goes


def test_size_and_device_errors_inline_and_no_run_folder(corpus_dir) -> None:
    """A config the trainer would refuse shows under its field and creates no run folder,
    whether ctrl+s is pressed or the worker is handed the bad config directly."""

    async def body(app, pilot):
        await open_train(app, pilot, {("train", "batch_size"): 900})
        screen, form = app.screen, app.screen.query_one(ConfigForm)
        error = form.query_one("#e-train-batch_size", Static)
        shown = (error.display, str(error.render()))
        await pilot.press("ctrl+s")
        await app.workers.wait_for_complete()
        await pilot.pause()
        runs_after_key = list_runs()
        # Past the form (as a race with an edit could): the worker checks before create_run.
        model_cfg = ModelConfig(kind="rnn", num_hiddens=16, vocab_size=len(app.session.pipeline.tokenizer.vocab))
        bad = (TrainConfig(max_tokens=2000, batch_size=900, num_steps=8, device="cpu"),
               TrainConfig(max_tokens=2000, batch_size=8, num_steps=8,
                           device="mps" if torch.cuda.is_available() else "cuda"))
        for train_cfg in bad:
            screen._worker = screen._train(app.session.pipeline, model_cfg, train_cfg)
            with contextlib.suppress(WorkerFailed):  # the failure is shown as a notification
                await app.workers.wait_for_complete()
            await pilot.pause()
        notes = [(n.title, n.message) for n in app._notifications]
        return shown, runs_after_key, list_runs(), notes, screen.training

    shown, runs_after_key, runs_after_worker, notes, training = run_app(body)
    assert shown[0] and shown[1].startswith("batch_size must be at most")
    assert runs_after_key == [] and runs_after_worker == []
    failed = [message for title, message in notes if title == "Training failed"]
    assert len(failed) == 2 and failed[0].startswith("batch_size must be at most")
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
        await app.workers.wait_for_complete()
        await pilot.pause()
        return tokenizer.kind, tokenizer.min_freq, app.session.choice.min_freq, app.session.run_path

    kind, tok_min_freq, choice_min_freq, run_path = run_app(body)
    assert (kind, tok_min_freq, choice_min_freq) == ("word", 10, 10)
    config = json.loads((Path(run_path) / "config.json").read_text())
    assert config["tokenizer"]["kind"] == "word" and config["tokenizer"]["min_freq"] == 10
    expected = build_pipeline(load_corpus("timemachine"), tokenizer="word", min_freq=10).tokenizer
    assert len(open_run(run_path).tokenizer.vocab) == len(expected.vocab)  # the saved tokenizer, too



def test_late_messages_of_a_previous_worker_are_ignored(corpus_dir) -> None:
    """An older run's late SUCCESS or Finished does not end the live run's `training`."""

    async def body(app, pilot):
        await open_train(app, pilot)
        await pilot.press("ctrl+s")
        screen = app.screen
        old = screen._worker  # the first run's worker (it leaves app.workers when done)
        await app.workers.wait_for_complete()
        await pilot.pause()
        first_run = app.session.run_path
        screen.query_one(ConfigForm).set_value("train", "epochs", 10_000)
        await pilot.pause()
        await pilot.press("ctrl+s")
        while not screen.events_seen:
            await pilot.pause(0.05)
        new_run = screen.run_path
        # What the old worker could still deliver after the new one started.
        screen.post_message(Worker.StateChanged(old, WorkerState.SUCCESS))
        screen.post_message(screen.TrainingEvent(Finished(2, 10, 5.0, 6.0, False, "completed"), old))
        await pilot.pause(0.2)
        during = (screen.training, screen.run_path, screen.check_action("stop", ()))
        await pilot.press("ctrl+g")
        for worker in app.workers:  # should ctrl+g be dead (the bug), still end the run
            worker.cancelled_event.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        return first_run, new_run, during, screen.training

    first_run, new_run, during, training = run_app(body)
    assert new_run is not None and new_run != first_run
    assert during == (True, new_run, True)  # still training, Stop still live
    assert training is False
    assert open_run(new_run).summary().status == "stopped"


def test_quit_while_training_stops_and_saves_the_run(corpus_dir) -> None:
    """ctrl+q mid-run: the app exits, and the trainer stops cleanly with a checkpoint."""

    async def body(app, pilot):
        await open_train(app, pilot, {("train", "epochs"): 10_000})
        await pilot.press("ctrl+s")
        screen = app.screen
        while screen.last_progress is None or screen.last_progress.epoch < 2:  # past an epoch end
            await pilot.pause(0.05)
        worker = screen._worker
        await pilot.press("ctrl+q")
        await pilot.pause()
        return app, worker, screen.run_path

    # asyncio.run returns once the executor's threads are done: the trainer has had its say.
    app, worker, run_path = run_app(body)
    assert app.return_code == 0 and not app.is_running
    assert worker.state == WorkerState.CANCELLED
    run = open_run(run_path)
    summary = run.summary()
    assert summary.status == "stopped" and 1 <= summary.epochs_done < 10_000
    # The weights saved at the stop give the validation perplexity the run records.
    assert run.has_checkpoint() and math.isclose(hand_val_ppl(run_path), summary.val_ppl, rel_tol=1e-5)


def test_keys_pressed_while_training_do_not_edit_the_form(corpus_dir) -> None:
    async def body(app, pilot):
        await open_train(app, pilot, {("train", "epochs"): 10_000})
        field = app.screen.query_one(ConfigForm).query(Input).first()
        field.focus()
        await pilot.pause()
        before = field.value
        await pilot.press("ctrl+s")
        screen = app.screen
        while not screen.events_seen:
            await pilot.pause(0.05)
        await pilot.press("5")  # "go to Labs", not a digit for the focused field
        mode = app.current_mode
        await pilot.press("f2", "ctrl+g")
        await app.workers.wait_for_complete()
        return before, field.value, mode

    before, after, mode = run_app(body)
    assert after == before and mode == "labs"


def test_stats_show_clipping_and_an_unstable_end(corpus_dir) -> None:
    """θ = 0.001 clips every step (any ‖g‖ is larger): "clipped 100%"; lr 5 without clipping blows
    up (perplexity far above twice the 28 characters): the run is flagged unstable on Train and Runs."""

    async def body(app, pilot):
        screen, seen = None, []
        for overrides in ({("train", "clip"): "norm", ("train", "clip_theta"): 0.001},
                          {("train", "clip"): "off", ("train", "lr"): 5.0}):
            await open_train(app, pilot, overrides)
            await pilot.press("ctrl+s")
            await app.workers.wait_for_complete()
            await pilot.pause()
            screen = app.screen
            seen.append((str(screen.query_one("#train-stats", Static).render()),
                         str(screen.query_one("#train-status", Static).render()), screen.run_path))
        notes = [(n.title, n.message) for n in app._notifications]
        await pilot.press("f4")
        await pilot.pause()
        runs = {r.name: r.status for r in app.screen.runs}
        table = app.screen.query_one(DataTable)
        statuses = {table.get_row_at(i)[-1]: table.get_row_at(i)[7] for i in range(table.row_count)}
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
            await app.workers.wait_for_complete()
            await pilot.pause()
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
        await app.workers.wait_for_complete()
        await pilot.pause()
        return app.screen.query_one("#train-ppl", SeriesPlot).series["train"].points(), app.session.run_path

    (xs, _), run_path = run_app(body)
    within = [m["step"] for m in progress_lines(run_path) if not m["epoch_end"]]
    assert len(within) >= 16 and xs[:len(within)] == [step / 18 for step in within]
