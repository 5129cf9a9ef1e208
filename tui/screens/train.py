"""The Train screen: every model and trainer option, a live run, its curves.

The form (``ConfigForm``) has one row per field of ``ModelConfig`` and
``TrainConfig`` and shows the configs' own ``ConfigError`` text under the field
it names. ``ctrl+s`` makes the run folder on the Corpus screen's pipeline and
starts ``rnnlab train --resume RUN`` on it as a process of its own
(``tui.trainproc``): the screen is a window onto the run folder, read as it
grows (``engine.follow``), exactly as it follows a run some other process trains
(opened from Runs, ``follow``). ``ctrl+g`` stops it as Ctrl-C would (the trainer
saves first); ``ctrl+e`` resumes the run shown when it is not running.
The plots redraw at most once a second and keep a downsampled history, and the
UI does not share a process with training, so it costs training little.
The stats lines show how often clipping changed the gradient; a run that ends
more than twice as perplexed as guessing uniformly (perplexity over twice the
vocabulary size) is flagged "unstable" in the status line and by a notification.

Left out: editing a run's config (resume takes the run's own, with more epochs
when the form asks for more).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Header, ProgressBar, Static

from engine.config import ModelConfig, TrainConfig
from engine.data import batches_per_epoch
from engine.sentences import with_sentence_ends
from engine.errors import RnnlabError, RunError
from engine.events import Checkpoint, Diverged, Finished, Progress, Sample, Spike
from engine.follow import RunFollower
from engine.runs import create_run, open_run
from engine.trainer import unstable_message
from engine.training import prepare_ids, resolve_device, split_ids
from tui.messages import RunSaved
from tui.screens.base import PlaygroundScreen, error_text
from tui.trainproc import Child, launch, stop_live
from tui.train_view import form_specs, progress_text
from tui.widgets.footer import KeysFooter
from tui.widgets.form import ConfigForm
from tui.widgets.plot import SeriesPlot

REPLOT_INTERVAL_S = 1.0  # the plots redraw at most this often while training
STATS_INTERVAL_S = 0.5  # the stats line and progress bar update this often
POLL_INTERVAL_S = 0.25  # the run folder is read this often while a run is followed
LIVENESS_INTERVAL_S = 2.0  # and whether its trainer still lives, this often (when this screen did not start it)


class TrainScreen(PlaygroundScreen):
    """Configure, start and watch a training run."""

    BINDINGS = [
        Binding("ctrl+s", "start", "Start"),
        Binding("ctrl+g", "stop", "Stop"),
        Binding("ctrl+e", "resume", "Resume"),
    ]

    training: reactive[bool] = reactive(False, bindings=True)

    def __init__(self) -> None:
        super().__init__()
        self.run_path: Path | None = None
        self.child: Child | None = None  # the training process this screen started (None: following another's)
        self._follower: RunFollower | None = None
        self._ranks = 1  # processes training the run followed (its world size)
        self._poll_timer: Any = None
        self._next_liveness = 0.0
        self._history = False  # the first read of a followed run: its past events notify nothing
        self._dirty = False
        self._steps_per_epoch: float | None = None
        self._exact_spe = False  # True once measured at an epoch end
        self._next_replot = 0.0  # perf_counter time before which the plots are not redrawn
        self.events_seen = 0
        self.last_progress: Progress | None = None
        self.unstable = False  # the run ended worse than guessing uniformly (Finished.unstable)
        self._run_configs: tuple[ModelConfig, TrainConfig] | None = None  # those of the run started last

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="train-body"):
            specs, headings = form_specs()
            yield ConfigForm(specs, headings=headings, id="train-form")
            with Vertical(id="train-main"):
                yield Static("", id="train-status")
                yield Static("", id="train-stats")
                yield ProgressBar(total=1, id="train-progress", show_eta=False)
                yield SeriesPlot("perplexity", xlabel="epoch", id="train-ppl")
                yield SeriesPlot("gradient norm (before clipping)", xlabel="epoch", id="train-grad")
                yield Static("", id="train-sample")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.title, self.sub_title = "rnnlab", "Train"
        self.set_interval(STATS_INTERVAL_S, self._flush)
        # Widgets touched per event or per tick, looked up once: a DOM query per event is not O(1).
        self._ppl = self.query_one("#train-ppl", SeriesPlot)
        self._grad = self.query_one("#train-grad", SeriesPlot)
        self._bar = self.query_one("#train-progress", ProgressBar)
        self._stats = self.query_one("#train-stats", Static)
        self._ppl.empty_message = "ctrl+s starts training; curves appear here"
        self._validate()
        self._show_status()

    def on_resize(self) -> None:
        # Below 30 rows the gradient-norm plot would be unreadable; ‖g‖ stays in the stats line.
        self.query_one("#train-main").set_class(self.size.height < 30, "-short")

    def on_screen_resume(self) -> None:
        self._validate()
        self._show_status()

    # -- form and bindings ----------------------------------------------------
    def _vocab_size(self) -> int:
        pipeline = self.app.session.pipeline  # type: ignore[attr-defined]
        return len(pipeline.tokenizer.vocab) if pipeline is not None else 28

    def _build(self, values: dict[str, dict[str, Any]]) -> tuple[ModelConfig, TrainConfig]:
        """The two configs, checked as the trainer will check them before a run folder exists.

        Beyond each config's own checks: the device must be there, and the corpus
        (cut to max_tokens, minus validation) must hold one minibatch of
        batch_size × num_steps. Their ConfigErrors name the field, so the form
        shows them under it.
        """
        model_cfg = ModelConfig(**values["model"], vocab_size=self._vocab_size())
        train_cfg = TrainConfig(**values["train"])
        resolve_device(train_cfg.device)
        pipeline = self.app.session.pipeline  # type: ignore[attr-defined]
        if pipeline is not None:
            train_cfg = with_sentence_ends(train_cfg, pipeline.tokenizer)  # sampler sentences: ids ending one
            prepare_ids(pipeline, model_cfg, train_cfg)  # slices and a max(): cheap per keystroke
        return model_cfg, train_cfg

    def _validate(self) -> tuple[ModelConfig, TrainConfig] | None:
        return self.query_one(ConfigForm).validate(self._build)

    def on_config_form_changed(self, message: ConfigForm.Changed) -> None:
        self._validate()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start":
            return None if self.training else True  # None: shown greyed out
        if action == "stop":
            return True if self.training else None
        if action == "resume":
            return True if not self.training and self.run_path is not None else None
        return super().check_action(action, parameters)

    def _show_status(self) -> None:
        pipeline = self.app.session.pipeline  # type: ignore[attr-defined]
        status = Text()
        if self.training:
            status.append("training ", style="bold green")
        elif pipeline is None:
            status.append("no corpus yet: load one on the Corpus screen (F1)", style="yellow")
        if pipeline is not None:
            status.append(f"{pipeline.corpus.name} · {pipeline.tokenizer.kind} · vocab {len(pipeline.tokenizer.vocab)}")
        if self.run_path is not None and self._ranks > 1:
            status.append(f" · {self._ranks} processes")
        if self.run_path is not None:
            status.append(f" · run {self.run_path.name}", style="dim")
        if self.unstable and not self.training:
            status = Text.assemble(("unstable ", "bold black on yellow"), status)
        self.query_one("#train-status", Static).update(status, layout=False)

    # -- start / stop / resume / follow ------------------------------------------
    def action_start(self) -> None:
        if self.training:
            return
        pipeline = self.app.session.pipeline  # type: ignore[attr-defined]
        if pipeline is None:
            self.notify("Load a corpus first (F1).", severity="warning")
            return
        configs = self._validate()
        if configs is None:
            self.notify(f"{self.query_one(ConfigForm).first_error()}. Fix it in the form, then ctrl+s.",
                        title="Not started", severity="warning")
            return
        # create_run checks sizes and device before making a folder: a ConfigError leaves none. No
        # tokenizer settings passed: create_run reads them off the fitted tokenizer, the one source that
        # cannot go stale (the Corpus form may already show a newer choice).
        try:
            run = create_run(None, *configs, pipeline)
            child = launch(run.path)
        except RnnlabError as exc:
            self.notify(error_text(exc), title="Not started", severity="error", timeout=10)
            return
        self.follow(run.path, child, steps_per_epoch=self._estimate_steps_per_epoch(pipeline, configs[1]))

    def action_resume(self) -> None:
        """Continue the run shown (stopped, interrupted, or completed with more epochs asked in the form)."""
        if self.training or self.run_path is None:
            return
        try:
            self.resume(self.run_path)
        except RnnlabError as exc:
            self.notify(error_text(exc), title="Not resumed", severity="error", timeout=10)

    def resume(self, path: Path) -> None:
        """Start a training process on the run at ``path`` (RnnlabError when it cannot be) and follow it."""
        run = open_run(path)
        done = (run.trainer_state() or {}).get("epoch", 0)
        want = self.query_one(ConfigForm).values()[0].get("train", {}).get("epochs")
        epochs = want if isinstance(want, int) and want > run.train_config.epochs else None
        if done >= (epochs or run.train_config.epochs):
            self.notify(f"{run.name} has trained all its {done} epochs: raise epochs in the Train form above "
                        f"{done}, then ctrl+e.", title="Nothing to resume", severity="warning")
            return
        live = run.live()
        if live is not None and live.alive:
            raise RunError(f"run {run.name} is training already ({live.describe()}); open it to follow it")
        self.follow(run.path, launch(run.path, epochs=epochs))

    def follow(self, path: Path, child: Child | None = None, *, steps_per_epoch: float | None = None) -> None:
        """Show the run at ``path`` live: its history, then what its trainer logs (``child``: the process
        this screen started; None for a run trained by another process or session)."""
        run = open_run(path)
        self._stop_polling()
        for plot in (self._ppl, self._grad):
            plot.clear()
            plot.replot()
        self.query_one("#train-sample", Static).update("")
        # not the previous run's figures: a run that ends before its first progress (a divergence in its first
        # steps) would leave them standing as if they were its own
        self._stats.update(Text("no progress logged yet", style="dim"), layout=False)
        self._bar.update(total=run.train_config.epochs, progress=0)
        self._steps_per_epoch, self._exact_spe = steps_per_epoch, False
        self._ppl.empty_message = "training: the curves start after a few steps"
        self.events_seen, self.last_progress, self.unstable = 0, None, False
        self._run_configs = (run.model_config, run.train_config)
        self._ranks = run.train_config.world_size
        self._show_configs(run)
        self.run_path, self.child = run.path, child
        self._follower = RunFollower(run.path, prefix=run.train_config.sample_prefix)
        self._history = True
        self.training = child is not None or run.status() == "running"
        if self.training:
            self.app.session.training_path = run.path  # type: ignore[attr-defined]
            self.app.session.child = child  # type: ignore[attr-defined]
        self._show_status()
        self._poll()  # the history at once
        if self.training:
            self._poll_timer = self.set_interval(POLL_INTERVAL_S, self._poll)
        # Leave the form: keys pressed while training (1–6 to switch screens, ?) must
        # not type into a field and silently change the next run's settings.
        self.set_focus(None)

    def _show_configs(self, run: Any) -> None:
        """The form shows the followed run's own options (a run opened from Runs was made elsewhere)."""
        form = self.query_one(ConfigForm)
        configs = {"model": run.model_config, "train": run.train_config}
        for spec in form.specs:
            value = getattr(configs[spec.group], spec.name, None)
            if value is not None and not isinstance(value, tuple):
                form.set_value(spec.group, spec.name, value)

    @staticmethod
    def _estimate_steps_per_epoch(pipeline: Any, cfg: TrainConfig) -> float | None:
        """Minibatches per epoch, to place progress within the first epoch on the x axis.

        Replaced by the exact figure (step / epoch) at the first epoch end.
        """
        try:  # the trainer's own split and count
            train_ids, _ = split_ids(pipeline.ids, cfg)
            return float(batches_per_epoch(len(train_ids), cfg.batch_size, cfg.num_steps, cfg.sampler,
                                           stride=cfg.stride, ids=train_ids, sentence_end_ids=cfg.sentence_end_ids))
        except RnnlabError:  # too few tokens for one batch: the trainer will say so
            return None

    def action_stop(self) -> None:
        """Ctrl-C's stop for the run followed: the trainer saves a checkpoint and ends with Finished."""
        if not self.training or self.run_path is None:
            return
        if self.child is not None:
            self.child.stop()
        else:
            live = open_run(self.run_path).live()
            if live is None or not stop_live(live):
                where = f" ({live.describe()})" if live is not None else ""
                self.notify(f"This run is trained by another machine's process{where}: stop it there.",
                            title="Not stopped", severity="warning")
                return
        self.query_one("#train-status", Static).update("stopping: saving the run…")

    def _stop_polling(self) -> None:
        if self._poll_timer is not None:
            self._poll_timer.stop()
            self._poll_timer = None

    def _poll(self) -> None:
        """Read what the trainer logged since the last read; notice a trainer gone without a last word."""
        if self._follower is None:
            return
        got = self._follower.poll()
        if got.reset:  # a resume rewrote the logs: the curves start again from the history
            for plot in (self._ppl, self._grad):
                plot.clear()
            self._history = True
        for event in got.events:
            self._on_event(event)
        self._history = False
        if not self.training:
            self._stop_polling()
            return
        ended = None
        if self.child is not None:
            if not self.child.running():
                self._on_events_after_exit()
                if self.training:  # no Finished logged: a failure before training, or its last event unread
                    ended = self.child.failure()
                    if ended is None:
                        self.training = False
                        self._stop_polling()
                        self._show_status()
        elif time.monotonic() >= self._next_liveness:
            self._next_liveness = time.monotonic() + LIVENESS_INTERVAL_S
            run = open_run(self.run_path) if self.run_path is not None else None
            status = run.status() if run is not None else "?"
            if run is not None and run.train_config.world_size != self._ranks:  # its trainer records how many
                self._ranks = run.train_config.world_size
                self._show_status()
            if status != "running":
                self._on_events_after_exit()
                if self.training:
                    ended = (f"the run is {status}: its training process is gone without a last word "
                             "(killed, or its machine went down); ctrl+e resumes it from its last checkpoint")
        if ended is not None and self.training:
            self.training = False
            self._stop_polling()
            self.notify(ended, title="Training ended", severity="error", timeout=12)
            self._show_status()

    def _on_events_after_exit(self) -> None:
        """The trainer is gone: read what it wrote last (its Finished may have come after the last poll)."""
        if self._follower is not None:
            for event in self._follower.poll().events:
                self._on_event(event)

    def watch_training(self, training: bool) -> None:
        if not training:
            self.app.session.training_path = None  # type: ignore[attr-defined]
            self.app.session.child = None  # type: ignore[attr-defined]

    # -- events -------------------------------------------------------------------
    def _on_event(self, event: Any) -> None:
        """One event the trainer logged (Progress, Sample, Diverged, ...); the history's notify nothing."""
        self.events_seen += 1
        if isinstance(event, Progress):
            self._on_progress(event)
        elif isinstance(event, Sample):
            sample = Text()
            sample.append(f"epoch {event.epoch}: ", style="dim")
            sample.append(event.prefix, style="bold")
            sample.append(event.text[len(event.prefix):] if event.text.startswith(event.prefix) else event.text)
            self.query_one("#train-sample", Static).update(sample, layout=False)
        elif isinstance(event, Diverged) and not self._history:
            self.notify(event.message, title=f"Diverged at step {event.step}", severity="error", timeout=12)
        elif isinstance(event, Spike) and not self._history:
            self.notify(f"epoch {event.epoch}: {event.metric} perplexity {event.val_ppl:.3g} "
                        f"(best {event.best_val_ppl:.3g})", title="Perplexity spike", severity="warning")
        elif isinstance(event, Checkpoint):
            pass
        elif isinstance(event, Finished):
            if self.training and self.last_progress is not None and event.step < self.last_progress.step:
                return  # an earlier session's end, read again after a resume rewrote the logs
            if self.last_progress is not None and event.train_ppl is not None:
                # The figures of the weights that were saved (a stop mid-epoch, or divergence).
                self.last_progress = replace(self.last_progress, train_ppl=event.train_ppl, val_ppl=event.val_ppl)
            self._flush(force=True)
            if self._history and self.training:
                return  # an earlier session's end, before this resume's events
            self.training = False
            self._stop_polling()
            self.unstable = event.unstable
            self._show_status()
            if event.unstable:
                ppl = event.val_ppl if event.val_ppl is not None else event.train_ppl
                cfg = self._run_configs
                text = unstable_message(ppl, cfg[0].vocab_size, cfg[1].clip) if cfg else f"perplexity {ppl:.4g}"
                self.notify(text[0].upper() + text[1:] + ".", title="Unstable run", severity="warning", timeout=12)
            if self.run_path is not None and not self._history:
                self.app.post_message(RunSaved(self.run_path, stopped_early=event.stopped_early))

    def _on_progress(self, p: Progress) -> None:
        self.last_progress = p
        if p.epoch_end and not self._exact_spe and p.epoch > 0:
            self._steps_per_epoch, self._exact_spe = p.step / p.epoch, True
        x = p.epoch if p.epoch_end else (p.step / self._steps_per_epoch if self._steps_per_epoch else None)
        ppl = self._ppl
        if x is not None:
            ppl.append("train", x, p.train_ppl, color="cyan")
            self._grad.append("‖g‖", x, p.grad_norm, color="green")
        if p.epoch_end and p.val_ppl is not None:
            # Bullets, not braille: close curves share braille cells, and a cell takes one colour.
            ppl.append("validation", p.epoch, p.val_ppl, color="orange", marker="•")
        self._dirty = True

    def _show_progress(self, p: Progress) -> None:
        done = p.epoch if p.epoch_end else p.epoch - 1
        self._bar.update(total=p.epochs, progress=done)
        self._stats.update(progress_text(p, self._ranks), layout=False)  # fixed height: no re-layout

    def _flush(self, force: bool = False) -> None:
        """Show what came in since the last tick: stats every tick, plots less often.

        Events are only stored when they arrive; drawing happens here, on a timer,
        so the UI's share of the CPU stays small however fast events come. The
        plots wait at least REPLOT_INTERVAL_S and 30× their last build time, which
        caps them near 3% of a core on a slow terminal or a huge window.
        """
        if not (self._dirty or force):
            return
        if self.last_progress is not None:
            self._show_progress(self.last_progress)
        now = time.perf_counter()
        if not force and now < self._next_replot:
            return
        self._dirty = False
        for plot in (self._ppl, self._grad):
            plot.replot()
        built = time.perf_counter() - now
        self._next_replot = now + max(REPLOT_INTERVAL_S, 30 * built)
