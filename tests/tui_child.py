"""The playground in a child process, headless, for tests that need a real process:
signals (``kill -HUP``) and its exit status.

``python tests/tui_child.py train`` starts a long tiny run from the Train screen and
keeps running until a signal or ctrl+q ends it. ``python tests/tui_child.py crash``
makes the Runs screen's listing raise a plain ``ZeroDivisionError`` (an error no
handler expects) and presses F4. ``hang`` is ``train`` with the app's shutdown stuck. Either way the process exits with
``tui.app.run_app``'s status, which is what ``rnnlab`` returns.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from textual.pilot import Pilot  # noqa: E402

from tui.app import run_app  # noqa: E402
from tui_helpers import SIZE, open_train  # noqa: E402


async def train(pilot: Pilot) -> None:
    app = pilot.app
    await app.workers.wait_for_complete()  # the default corpus
    await pilot.pause()
    await open_train(app, pilot, {("train", "epochs"): 10_000})  # type: ignore[arg-type]
    await pilot.press("ctrl+s")


async def crash(pilot: Pilot) -> None:
    import tui.screens.runs

    def broken(*args: object) -> list:
        return [1 / 0]

    tui.screens.runs.list_runs = broken  # type: ignore[assignment]
    await pilot.app.workers.wait_for_complete()
    await pilot.press("f4")


async def hang(pilot: Pilot) -> None:
    """``train``, with the app's shutdown stuck the way a dead terminal leaves Textual's (its main
    thread blocked on the output queue of a writer thread that died on EIO)."""
    import time

    async def stuck(self: object) -> None:
        time.sleep(3600)  # blocks the event loop itself, as queue.put on a full queue does

    type(pilot.app)._shutdown = stuck  # type: ignore[method-assign]
    await train(pilot)


if __name__ == "__main__":
    modes = {"train": train, "crash": crash, "hang": hang}
    sys.exit(run_app(headless=True, size=SIZE, auto_pilot=modes[sys.argv[1]]))
