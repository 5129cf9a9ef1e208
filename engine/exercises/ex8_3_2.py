"""Exercise 8.3.2: dialogues — reserved tokens in the vocabulary, and minibatches that respect turns.

A small dialogue corpus written for rnnlab (``DIALOGUES``: two speakers, everyday errands) is encoded as
characters plus reserved tokens that the vocabulary keeps at fixed ids whatever the text
(``engine.vocab.Vocab(reserved_tokens=…)``: ``<unk>`` 0, then the reserved tokens in order)::

    <bod> <A> good morning. <eot> <B> morning! <eot> … <A> see you. <eod>

``<bod>`` begins a dialogue, ``<A>`` / ``<B>`` begin a speaker's turn, ``<eot>`` ends a turn and
``<eod>`` ends the last turn of a dialogue (instead of its ``<eot>``), so every turn ends with exactly one
end token. The dialogues are joined into one stream, then read into minibatches four ways for ``epochs``
epochs (each epoch's generator seeded ``(seed, epoch)``, as the trainer seeds it):

* ``sequential`` and ``random``: D2L's samplers (``engine.data``), blind to the text: a row reads
  ``num_steps`` inputs and their targets wherever its window falls;
* ``turns``: the ``sentences`` sampler (``engine.sentences``) with ``<eot>`` and ``<eod>`` as the
  sentence ends, so each row is one turn (cut into pieces of ``num_steps`` when longer), padded;
* ``dialogues``: the same with ``<eod>`` alone, so each row is one dialogue (or a piece of one).

Counted per epoch: rows, rows that straddle a turn boundary (the window's inputs hold an end token, so it
predicts across the boundary) and a dialogue boundary (its inputs hold ``<eod>``), the share of padded
positions and the share of the stream's targets read. All exact given the seed.

Left out: training on the dialogues, more than two speakers, and reading a dialogue file (the corpus is
built in).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.config import option
from engine.exercises.base import Exercise, Progress, Reference, Result, check_stop, need
from engine.exercises.common import integer

BOD, EOD, EOT = "<bod>", "<eod>", "<eot>"
SPEAKERS = ("<A>", "<B>")
RESERVED = (BOD, EOD, EOT, *SPEAKERS)  # ids 1..5, after <unk> 0
SCHEMES = ("sequential", "random", "turns", "dialogues")

# Written for rnnlab: short exchanges between two people, speaker A first.
DIALOGUES: tuple[tuple[str, ...], ...] = (
    ("good morning. is the bakery open yet?", "not until eight, but the door is unlocked.",
     "then i will wait inside, it is cold.", "come in, the ovens keep it warm."),
    ("did you see my keys anywhere?", "they were on the hook by the door.", "the hook is empty.",
     "then try the pocket of your blue coat.", "found them. thank you!"),
    ("which platform does the next train leave from?", "platform four, in ten minutes.",
     "is it the fast one or the slow one?", "the slow one. the fast one was cancelled.", "oh well, slow it is."),
    ("can i borrow your ladder this weekend?", "of course. what are you fixing?",
     "a loose tile on the roof.", "be careful up there, the wind is strong.", "i will wait for a calm day."),
    ("how long do the potatoes need?", "about twenty minutes in boiling water.", "and the carrots?",
     "put them in after ten.", "got it."),
    ("the library closes early today.", "why is that?", "they are painting the reading room.",
     "then i will return my books tomorrow."),
    ("have you seen a grey cat in the garden?", "a small one with a white paw?", "yes, that is her!",
     "she was sleeping under the bench an hour ago.", "i will look there. thanks."),
    ("my bike has a flat tyre again.", "did you check the valve?", "the valve is fine, the tube has a hole.",
     "then we need a patch and some glue.", "i have both in the shed."),
    ("what time is the meeting?", "half past two, in the small room.", "will the projector work this time?",
     "i tested it this morning. it works."),
    ("this museum is bigger than i thought.", "we could start with the old maps.", "good idea, and lunch after that?",
     "the cafe on the top floor has soup.", "soup sounds perfect."),
    ("is the trail to the lake steep?", "only the last part.", "how long does it take?",
     "two hours up, one hour down.", "let us leave at nine then."),
    ("my phone screen went black.", "did it fall?", "no, it just stopped.", "hold the power button for ten seconds.",
     "it is starting again. you saved my day."),
    ("which book should i read next?", "do you like mysteries?", "sometimes, if they are not too long.",
     "then take the one with the red cover.", "i will start it tonight."),
    ("the bus is late again.", "there is a road closed near the bridge.", "should we walk?",
     "it is only fifteen minutes. let us walk."),
    ("what colour should we paint the fence?", "green, like the door.", "we only have white paint.",
     "then white it is. green can wait.", "i will bring the brushes."),
    ("did you water the tomatoes?", "yes, this morning.", "they look thirsty again.",
     "it is very hot today. i will water them tonight.", "good, and the beans too."),
)


@dataclass(frozen=True)
class Settings:
    """How the dialogue stream is read into minibatches."""

    batch_size: int = option(8, "rows per minibatch")
    num_steps: int = option(32, "inputs per row (the longest turn piece read whole)")
    epochs: int = option(1, "epochs counted (figures are per epoch, averaged)")
    seed: int = option(0, "seeds each epoch's offsets and shuffles, (seed, epoch) as the trainer does")

    def __post_init__(self) -> None:
        integer("batch_size", self.batch_size, 1, 256)
        integer("num_steps", self.num_steps, 2, 1024)
        integer("epochs", self.epochs, 1, 10_000)
        integer("seed", self.seed, 0, 2**31 - 1)


def dialogue_tokens(turns: tuple[str, ...]) -> list[str]:
    """One dialogue as tokens: ``<bod>``, then each turn as its speaker token, its characters and ``<eot>``
    (``<eod>`` for the last turn). ``("hi.", "yo")`` → ``<bod> <A> h i . <eot> <B> y o <eod>``."""
    out = [BOD]
    for k, line in enumerate(turns):
        out += [SPEAKERS[k % 2], *line, EOT if k < len(turns) - 1 else EOD]
    return out


def build_stream(dialogues: tuple[tuple[str, ...], ...] = DIALOGUES) -> tuple[Any, np.ndarray]:
    """(vocabulary, ids of every dialogue in order): reserved tokens at ids 1..5, characters after them."""
    from engine.vocab import Vocab

    tokens = [t for d in dialogues for t in dialogue_tokens(d)]
    vocab = Vocab(tokens, reserved_tokens=RESERVED)
    return vocab, np.asarray(vocab[tokens], dtype=vocab.id_dtype)


def window_rows(ids: np.ndarray, s: Settings, sampler: str, epoch: int) -> list[tuple[int, int]]:
    """(first input position, inputs) of every row of one epoch of ``sampler`` (sequential or random): the
    sampler is run on the positions 0..n-1 themselves, so its X holds where each row reads."""
    from engine.data import data_iter

    positions = np.arange(len(ids), dtype=np.int64)
    rng = np.random.default_rng([s.seed, epoch])
    return [(int(row[0]), len(row)) for X, _ in data_iter(positions, s.batch_size, s.num_steps, sampler, rng=rng)
            for row in X.numpy()]


def piece_rows(ids: np.ndarray, s: Settings, end_ids: tuple[int, ...], epoch: int) -> tuple[list[tuple[int, int]],
                                                                                               float]:
    """(first input position, inputs) of every row of one epoch of the sentences sampler with ``end_ids``,
    and the epoch's padding share."""
    from engine.sentences import sentence_epoch

    e = sentence_epoch(ids, end_ids, s.batch_size, s.num_steps, np.random.default_rng([s.seed, epoch]))
    return [(int(e.starts[i]), int(e.lengths[i])) for b in e.batches for i in b], e.padding_share


def count(ids: np.ndarray, rows: list[tuple[int, int]], ends: np.ndarray) -> tuple[int, float]:
    """Rows whose inputs hold one of ``ends`` (``ends``: a boolean per position), and the share of the stream's
    n - 1 targets (positions 1..n-1) that some row predicts."""
    read = np.zeros(len(ids), dtype=bool)
    crossing = 0
    for a, m in rows:
        crossing += bool(ends[a: a + m].any())
        read[a + 1: a + m + 1] = True
    return crossing, float(read[1:].mean())


class Dialogues(Exercise):
    id = "8.3.2"
    question = ("How would you model a dialogue? Which reserved tokens does the vocabulary need (speakers, turn "
                "and dialogue boundaries), and how should minibatches respect turns?")
    Settings = Settings
    default = Settings()
    long = Settings(epochs=100)
    references = (  # exact given the corpus and the seed: the tolerance is the rounding shown
        Reference("tokens", 2419, 0, "default", "the built-in dialogues: exact"),
        Reference("id_<eot>", 3, 0, "default", "reserved ids are fixed: <unk> 0, <bod> 1, <eod> 2, <eot> 3"),
        Reference("rows_sequential", 72, 0, "default", "exact"),
        Reference("turn_straddling_sequential", 63, 0, "default", "seed 0 (the offset decides it)"),
        Reference("dialogue_straddling_sequential", 12, 0, "default", "seed 0"),
        Reference("turn_straddling_random", 64, 0, "default", "seed 0"),
        Reference("turn_straddling_turns", 0, 0, "default", "none, by construction"),
        Reference("padding_turns", 0.0429, 0.0001, "default", "seed 0"),
        Reference("coverage_turns", 0.9690, 0.0001, "default", "exact: every target but each turn's first token"),
        Reference("turn_straddling_sequential", 64.35, 0.005, "long", "mean of epochs 1-100, seed 0"),
        Reference("dialogue_straddling_random", 14.51, 0.005, "long", "mean of epochs 1-100, seed 0"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        from engine.data import min_tokens

        vocab, ids = build_stream()
        need(len(ids) >= min_tokens(s.batch_size, s.num_steps),
             f"the dialogues hold {len(ids)} tokens: batch_size and num_steps must leave (batch_size + 1) × "
             f"num_steps ≤ {len(ids)} (got {s.batch_size} and {s.num_steps})")
        eot, eod = vocab[EOT], vocab[EOD]
        turn_end, dialogue_end = np.isin(ids, [eot, eod]), ids == eod
        sums = {name: np.zeros(5) for name in SCHEMES}
        for epoch in range(1, s.epochs + 1):
            check_stop(stop)
            progress(epoch - 1, s.epochs, f"epoch {epoch}")
            for name in SCHEMES:
                if name in ("sequential", "random"):
                    rows, pad = window_rows(ids, s, name, epoch), 0.0
                else:
                    rows, pad = piece_rows(ids, s, (eot, eod) if name == "turns" else (eod,), epoch)
                turns, covered = count(ids, rows, turn_end)
                dialogues, _ = count(ids, rows, dialogue_end)
                sums[name] += (len(rows), turns, dialogues, pad, covered)
        progress(s.epochs, s.epochs, "done")
        table, figures = [], {}
        for name in SCHEMES:
            n_rows, turns, dialogues, pad, covered = sums[name] / s.epochs
            table.append([name, n_rows, turns, turns / n_rows, dialogues, pad, covered])
            figures |= {f"rows_{name}": n_rows, f"turn_straddling_{name}": turns,
                        f"dialogue_straddling_{name}": dialogues, f"padding_{name}": pad,
                        f"coverage_{name}": covered}
        n_turns = int(turn_end.sum())
        figures |= {"tokens": float(len(ids)), "vocab": float(len(vocab)), "turns": float(n_turns),
                    "dialogues": float(len(DIALOGUES))}
        figures |= {f"id_{tok}": float(vocab[tok]) for tok in RESERVED}
        return Result(["rows from", "rows / epoch", "rows across a turn", "share", "rows across a dialogue",
                       "padding", "targets read"], table, explain(s, vocab, ids, figures), figures)


def explain(s: Settings, vocab: Any, ids: np.ndarray, f: dict[str, float]) -> str:
    """The vocabulary, one turn's encoding, and what the counts say."""
    first = dialogue_tokens(DIALOGUES[0])
    cut = first.index(EOT) + 1
    shown = " ".join(str(i) for i in vocab[first[:cut]])
    chars = vocab.idx_to_token[len(RESERVED) + 1:][:4]
    char_ids = ", ".join(f"{t!r} {vocab[t]}" for t in chars)
    seq, rnd = f["turn_straddling_sequential"] / f["rows_sequential"], f["turn_straddling_random"] / f["rows_random"]
    per_epoch = "" if s.epochs == 1 else f" (means over {s.epochs} epochs)"
    return (
        "The vocabulary keeps <unk> at 0 and the reserved tokens next, in the order given: "
        + ", ".join(f"{t} {vocab[t]}" for t in RESERVED)
        + f"; the {len(vocab) - len(RESERVED) - 1} characters follow by frequency ({char_ids}, …), so the "
        f"reserved ids stay fixed whatever the text. A turn is its speaker token, its characters and one end "
        f"token: the first turn, {''.join(first[:cut])!r}, is {cut} tokens, ids {shown}. The {f['dialogues']:.0f} "
        f"dialogues make {f['turns']:.0f} turns and {f['tokens']:,.0f} tokens{per_epoch}. Read blind with "
        f"num_steps = {s.num_steps}, sequential partitioning gives {f['rows_sequential']:.0f} rows of which "
        f"{f['turn_straddling_sequential']:.0f} ({seq:.0%}) predict across a turn boundary and "
        f"{f['dialogue_straddling_sequential']:.0f} across the end of a dialogue (into an unrelated one); random "
        f"sampling {f['turn_straddling_random']:.0f} of {f['rows_random']:.0f} ({rnd:.0%}) and "
        f"{f['dialogue_straddling_random']:.0f}. Crossing into the next turn is not wrong for a language model — "
        f"the reply depends on what was said — but crossing into another dialogue is noise, and a row cut "
        f"mid-turn starts without its speaker. Reading whole turns as rows (the sentences sampler with <eot> "
        f"and <eod> as ends) crosses nothing by construction, at the cost of {f['padding_turns']:.0%} padding "
        f"and of never predicting a turn's first token (who speaks next, or <bod>); still "
        f"{f['coverage_turns']:.1%} of the targets are read, against {f['coverage_sequential']:.1%} sequentially "
        f"(its offset and the rows' ends go unread). Whole dialogues as rows (<eod> alone) keep every reply with "
        f"its context: {f['dialogue_straddling_dialogues']:.0f} rows cross a dialogue, "
        f"{f['turn_straddling_dialogues']:.0f} of {f['rows_dialogues']:.0f} cross turns inside one, padding "
        f"{f['padding_dialogues']:.0%}, targets read {f['coverage_dialogues']:.1%}; a dialogue longer than "
        f"num_steps is cut into pieces, so a model that should see the whole conversation needs the state "
        f"carried across them or a larger num_steps.")


EXERCISE = Dialogues()
