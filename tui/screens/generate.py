"""The Generate screen: a prompt, streamed text, and what α does to the odds.

The model is the run the user picked (opened from the Runs screen, the newest
saved run at start, or the first run trained when there was none); the header
names it, and every bar and piece of text is tagged with the run that produced
it, so nothing from another model is shown. A run that finishes in the
background never replaces it: a banner offers it, and ``ctrl+o`` switches.
``escape`` leaves the prompt, so that ``?`` and the screen keys work; ``tab``
goes back (see ``tui.screens.base``). Typing a prompt resets the text to the prompt; ``enter`` or
``ctrl+s`` streams a continuation onto the end of the text, so pressing it
again keeps going. Beside it, bars show the next-token distribution
q ∝ P^α for the current text (after top-k and top-p), recomputed as you type
and as α changes — α = 1 samples from the model, α → ∞ is greedy, α = 0 is
uniform; the temperature 1/α is shown next to α. Top-k keeps the k likeliest
tokens; top-p (nucleus) keeps the fewest whose q adds up to p; both renormalise.

Left out: editing the generated text by hand.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Header, Input, Label, Static, TextArea
from textual.worker import Worker, WorkerState, get_current_worker

from engine.errors import RnnlabError
from engine.corpus import prompt_text
from engine.generate import generate, next_token_distribution
from engine.runs import open_run
from tui.messages import RunOffered
from tui.screens.base import PlaygroundScreen, error_text
from tui.widgets.bars import ProbBars
from tui.widgets.footer import KeysFooter

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)  # the α steps ↑/↓ walk through
TOP_KS = (None, 50, 20, 10, 5, 3, 1)  # ctrl+n cycles through these
TOP_PS = (None, 0.9, 0.8, 0.5)  # ctrl+t cycles through these (the CLI's --top-p)
GEN_TOKENS = 200  # tokens per press of enter
N_BARS = 10


def temperature(alpha: float) -> str:
    """1/α as shown next to α."""
    return "∞" if alpha == 0 else ("0 (greedy)" if math.isinf(alpha) else f"{1 / alpha:.2f}")


class GenerateScreen(PlaygroundScreen):
    """Prompt, streamed generation and next-token bars."""

    BINDINGS = [
        Binding("ctrl+s", "generate", "Generate"),
        Binding("ctrl+o", "switch_run", "Use new run"),
        # priority: the prompt Input would otherwise take up/down (it scrolls).
        Binding("up", "alpha(1)", "α up", priority=True),
        Binding("down", "alpha(-1)", "α down", priority=True),
        Binding("ctrl+n", "top_k", "Top-k"),
        Binding("ctrl+t", "top_p", "Top-p"),
        # priority: the generated text (a TextArea, reached with tab) would take ctrl+y as redo.
        Binding("ctrl+y", "greedy", "Greedy", priority=True),
        Binding("ctrl+r", "reseed", "Reseed"),
        Binding("ctrl+g", "stop", "Stop", show=False),
        Binding("ctrl+l", "clear", "Clear", show=False),
    ]

    alpha_index: reactive[int] = reactive(ALPHAS.index(1.0))
    top_k_index: reactive[int] = reactive(0)
    top_p_index: reactive[int] = reactive(0)
    greedy: reactive[bool] = reactive(False)
    seed: reactive[int] = reactive(0)

    @dataclass
    class Piece(Message):
        text: str
        generation: int  # which press of enter it belongs to (see _stop_generation)

    @dataclass
    class Distribution(Message):
        path: Path  # the run whose model computed it: bars of any other model are dropped
        context: str
        bars: list[tuple[str, float]]
        warnings: list[str]

    def __init__(self) -> None:
        super().__init__()
        self._run_version = -1
        self.model_path: Path | None = None  # the run the header names and the bars and text come from
        self._model: tuple[Path, Any, Any, str] | None = None  # (path, model, tokenizer, preprocessing mode)
        self._lock = threading.Lock()
        self._generation = 0  # id of the live generation; pieces of any other are dropped
        self.run_info = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="gen-info")
        yield Static("", id="gen-sampling")
        with Horizontal(id="gen-prompt-row"):
            yield Label("prompt ›", id="gen-prompt-label")
            yield Input(placeholder="e.g. time traveller, then enter", compact=True, id="gen-prompt")
        yield Static("", id="gen-offer")
        with Horizontal(id="gen-body"):
            yield TextArea("", read_only=True, soft_wrap=True, id="gen-output")
            with Vertical(id="gen-side"):
                yield Static("next token: q ∝ P^α", id="gen-bars-title")
                yield ProbBars(id="gen-bars")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.title, self.sub_title = "rnnlab", "Generate"
        self._show_sampling()

    def on_screen_resume(self) -> None:
        session = self.app.session  # type: ignore[attr-defined]
        if session.run_version != self._run_version:
            self._run_version = session.run_version
            self._use_run(session.run_path)
        self._show_offer()
        self.query_one("#gen-prompt", Input).focus()

    # -- the run on offer -------------------------------------------------------------
    def _offer(self) -> Path | None:
        """A run that finished after this one was picked, if it is not the one in use."""
        offered = self.app.session.offered_run  # type: ignore[attr-defined]
        return offered if offered is not None and offered != self.model_path else None

    def _show_offer(self) -> None:
        offered = self._offer()
        banner = self.query_one("#gen-offer", Static)
        banner.display = offered is not None
        if offered is not None:
            banner.update(Text.assemble(("run ", "bold"), (offered.name, "bold"), " finished — ",
                                        ("ctrl+o", "bold"), " generates with it"))
        self.refresh_bindings()

    def on_run_offered(self, message: RunOffered) -> None:
        self._show_offer()

    def action_switch_run(self) -> None:
        offered = self._offer()
        if offered is not None:
            self.app.session.set_run(offered)  # type: ignore[attr-defined]
            self.on_screen_resume()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "switch_run":
            return self._offer() is not None  # hidden unless a run is on offer
        return super().check_action(action, parameters)

    # -- settings -----------------------------------------------------------------
    @property
    def alpha(self) -> float:
        return math.inf if self.greedy else ALPHAS[self.alpha_index]

    @property
    def top_k(self) -> int | None:
        return TOP_KS[self.top_k_index]

    @property
    def top_p(self) -> float | None:
        return TOP_PS[self.top_p_index]

    def _show_sampling(self) -> None:
        text = Text()
        for label, value in (("α", "∞" if self.greedy else f"{self.alpha:g}"), ("T=1/α", temperature(self.alpha)),
                             ("top-k", str(self.top_k or "off")), ("top-p", f"{self.top_p:g}" if self.top_p else "off"),
                             ("greedy", "on" if self.greedy else "off"),
                             ("seed", str(self.seed))):
            text.append(f"{label} ", style="dim")
            text.append(f"{value}  ", style="bold")
        self.query_one("#gen-sampling", Static).update(text)

    def _settings_changed(self) -> None:
        self._show_sampling()
        self._update_bars()

    def action_alpha(self, step: int) -> None:
        self.greedy = False
        self.alpha_index = max(0, min(len(ALPHAS) - 1, self.alpha_index + step))
        self._settings_changed()

    def action_top_k(self) -> None:
        self.top_k_index = (self.top_k_index + 1) % len(TOP_KS)
        self._settings_changed()

    def action_top_p(self) -> None:
        self.top_p_index = (self.top_p_index + 1) % len(TOP_PS)
        self._settings_changed()

    def action_greedy(self) -> None:
        self.greedy = not self.greedy
        self._settings_changed()

    def action_reseed(self) -> None:
        self.seed = random.randrange(10_000)
        self._show_sampling()

    def action_clear(self) -> None:
        self._stop_generation()
        self.query_one("#gen-output", TextArea).text = self.query_one("#gen-prompt", Input).value
        self._update_bars()

    # -- the model ----------------------------------------------------------------------
    def _use_run(self, path: Path | None) -> None:
        """Name ``path`` in the header and recompute the bars with its model (the old bars go)."""
        self._stop_generation()
        self.model_path = path
        info = self.query_one("#gen-info", Static)
        bars = self.query_one(ProbBars)
        if path is None:
            self.run_info = ""
            info.update(Text("no model yet: train one (F2) or open a saved run (F4)", style="yellow"))
            bars.set_bars([], note="no model")
            return
        try:
            run = open_run(path)
            summary = run.summary()
        except RnnlabError as exc:
            self.model_path = None
            info.update(Text(str(exc), style="red"))
            bars.set_bars([], note="no model")
            return
        bars.set_bars([], note="computing…")
        kind = run.config.get("tokenizer", {}).get("kind", "?")
        ppl = "–" if summary.val_ppl is None else f"{summary.val_ppl:.2f}"
        self.run_info = f"{summary.model} · {summary.corpus}/{kind} · val ppl {ppl} · {run.name}"
        info.update(Text(self.run_info))
        self._update_bars()

    def _load_model(self, path: Path | None) -> tuple[Any, Any, str]:
        """The model, tokenizer and preprocessing mode of run ``path``, loaded once per run
        (called from workers)."""
        if path is None:
            raise RnnlabError("no model yet: train one (F2) or open a saved run (F4)")
        with self._lock:
            if self._model is None or self._model[0] != path:
                run = open_run(path)
                self._model = (path, run.load_model("cpu"), run.tokenizer, run.config.get("mode", "d2l"))
            return self._model[1], self._model[2], self._model[3]

    # -- next-token bars ----------------------------------------------------------------
    @on(Input.Changed, "#gen-prompt")
    def _prompt_changed(self, event: Input.Changed) -> None:
        self._stop_generation()
        self.query_one("#gen-output", TextArea).text = event.value
        self._update_bars()

    def _update_bars(self) -> None:
        if self.model_path is None:
            return
        self._distribution(self.model_path, self.query_one("#gen-output", TextArea).text, self.alpha, self.top_k,
                           self.top_p)

    @work(thread=True, exclusive=True, group="dist", exit_on_error=False)
    def _distribution(self, path: Path, context: str, alpha: float, top_k: int | None, top_p: float | None) -> None:
        model, tokenizer, mode = self._load_model(path)
        # The text as the model read its training text (d2l: lower-case letters only).
        dist = next_token_distribution(model, tokenizer, prompt_text(context, mode), alpha=alpha, top_k=top_k,
                                       top_p=top_p, n=N_BARS)
        bars = [(tokenizer.display_token(token), p) for token, p in dist]  # "Ġthe" -> "␣the"
        if not get_current_worker().is_cancelled:
            self.post_message(self.Distribution(path, context, bars, list(getattr(dist, "warnings", []))))

    def on_generate_screen_distribution(self, message: Distribution) -> None:
        if message.path != self.model_path:
            return  # computed by a model this screen no longer shows
        shown = sum(p for _, p in message.bars)
        note = f"top {len(message.bars)}: {shown:.0%} of q"
        if message.warnings:
            note += "\n" + "\n".join(message.warnings)
        self.query_one(ProbBars).set_bars(message.bars, note=note)

    # -- generation ------------------------------------------------------------------
    @on(Input.Submitted, "#gen-prompt")
    def _prompt_submitted(self) -> None:
        self.action_generate()

    def action_generate(self) -> None:
        if self.model_path is None:
            self.notify("No model yet: train one (F2) or open a saved run (F4).", severity="warning")
            return
        context = self.query_one("#gen-output", TextArea).text
        self._stop_generation()
        self._generate(self.model_path, context, self.alpha, self.top_k, self.top_p, self.seed, self._generation)

    def action_stop(self) -> None:
        self._stop_generation()

    def _stop_generation(self) -> None:
        """Cancel the stream and disown what it already posted.

        Cancelling stops the worker at its next piece, but pieces posted before
        that still sit in the message queue; a new id makes them stale, so they
        are not appended to the text that replaced theirs.
        """
        self.workers.cancel_group(self, "generate")
        self._generation += 1

    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def _generate(self, path: Path, context: str, alpha: float, top_k: int | None, top_p: float | None, seed: int,
                  generation: int) -> None:
        worker = get_current_worker()
        model, tokenizer, mode = self._load_model(path)
        for piece in generate(model, tokenizer, prompt_text(context, mode), GEN_TOKENS, alpha=alpha, top_k=top_k,
                              top_p=top_p, seed=seed):
            if worker.is_cancelled:
                return
            self.post_message(self.Piece(piece, generation))

    def on_generate_screen_piece(self, message: Piece) -> None:
        if message.generation != self._generation:
            return
        output = self.query_one("#gen-output", TextArea)
        output.insert(message.text, output.document.end)
        output.scroll_end(animate=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "generate" and event.state == WorkerState.SUCCESS:
            self._update_bars()
        if event.worker.group in ("generate", "dist") and event.state == WorkerState.ERROR:
            self.notify(error_text(event.worker.error), title="Generation failed", severity="error")
