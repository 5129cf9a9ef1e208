"""The chapter's 27 exercises (D2L ch. 8), each answered by an experiment run on the learner's machine.

``TITLES`` lists every exercise id with a one-line title in our words; ``EXERCISES``
maps each id to the ``"module:attribute"`` of its ``Exercise`` (``engine.exercises.base``),
or to ``NOT_BUILT`` while its experiment is still to be written — such an exercise is
listed, with that status, and never given a made-up result. Adding one is a module
``engine/exercises/exN_N_N.py`` and its line here.

``get(id)`` returns the exercise, raising ``UnknownExercise`` (a ``ConfigError``) for an id
that is not in the chapter and ``NotBuilt`` for one listed but not built.

Left out: printing (``tui.cli.exercise``) and the screen (``tui.screens.exercises``).
"""

from __future__ import annotations

import importlib
from typing import Any

from engine.errors import ConfigError, RnnlabError

NOT_BUILT = ""

TITLES: dict[str, str] = {
    "8.1.1": "How many past observations a sequence model needs (τ sweep, σ = 0, merged blocks)",
    "8.1.2": "Past returns: a model fitted before a regime change extrapolates and fails",
    "8.1.3": "Is text causal in time? The same model trained forwards and reversed",
    "8.1.4": "A hidden switching state: a recurrent model against windows of every τ",
    "8.2.1": "BPE, WordPiece and Unigram side by side: pieces, vocabulary, merges",
    "8.2.2": "Vocabulary size and <unk> share as min_freq grows",
    "8.3.1": "Storing n-gram counts: n-grams observed against the V^n possible",
    "8.3.2": "Dialogues: reserved tokens and minibatches that respect turns",
    "8.3.3": "Zipf exponents of 1- to 4-grams and the rank range fitted",
    "8.3.4": "Other ways to read a long sequence into minibatches",
    "8.3.5": "The random offset: why it is there, and how evenly it reads the text",
    "8.3.6": "Whole sentences as minibatch rows: padding and coverage",
    "8.4.1": "Output dimension: the parameter shapes of the language model",
    "8.4.2": "Conditioning on every earlier token: same last characters, other context",
    "8.4.3": "Gradients over long sequences: ‖∂L/∂h_t‖ over t",
    "8.4.4": "How much context the model uses: state reset every n tokens",
    "8.5.1": "One-hot input is an embedding per token: one-hot·W = W[x]",
    "8.5.2": "How low perplexity can go: a small sweep ranked by validation",
    "8.5.3": "Sampling instead of argmax: α from 0 to ∞",
    "8.5.4": "Training without gradient clipping",
    "8.5.5": "Training without detaching the state",
    "8.5.6": "ReLU instead of tanh, with and without clipping",
    "8.6.1": "Overfitting: train perplexity falls while validation rises",
    "8.6.2": "More recurrent layers at an equal budget",
    "8.6.3": "An RNN for the 8.1 sequence model",
    "8.7.1": "Power iteration: what M^k x does, and what it means for BPTT",
    "8.7.2": "Remedies for exploding gradients compared at one learning rate",
}

EXERCISES: dict[str, str] = {ex_id: NOT_BUILT for ex_id in TITLES} | {
    "8.1.1": "engine.exercises.ex8_1_1:EXERCISE",
    "8.1.2": "engine.exercises.ex8_1_2:EXERCISE",
    "8.1.3": "engine.exercises.ex8_1_3:EXERCISE",
    "8.1.4": "engine.exercises.ex8_1_4:EXERCISE",
    "8.2.1": "engine.exercises.ex8_2_1:EXERCISE",
    "8.2.2": "engine.exercises.ex8_2_2:EXERCISE",
    "8.3.1": "engine.exercises.ex8_3_1:EXERCISE",
    "8.3.2": "engine.exercises.ex8_3_2:EXERCISE",
    "8.3.3": "engine.exercises.ex8_3_3:EXERCISE",
    "8.3.4": "engine.exercises.ex8_3_4:EXERCISE",
    "8.3.5": "engine.exercises.ex8_3_5:EXERCISE",
    "8.3.6": "engine.exercises.ex8_3_6:EXERCISE",
    "8.4.1": "engine.exercises.ex8_4_1:EXERCISE",
    "8.4.2": "engine.exercises.ex8_4_2:EXERCISE",
    "8.4.3": "engine.exercises.ex8_4_3:EXERCISE",
    "8.4.4": "engine.exercises.ex8_4_4:EXERCISE",
    "8.5.1": "engine.exercises.ex8_5_1:EXERCISE",
    "8.5.2": "engine.exercises.ex8_5_2:EXERCISE",
    "8.5.3": "engine.exercises.ex8_5_3:EXERCISE",
    "8.5.4": "engine.exercises.ex8_5_4:EXERCISE",
    "8.5.5": "engine.exercises.ex8_5_5:EXERCISE",
    "8.5.6": "engine.exercises.ex8_5_6:EXERCISE",
    "8.6.1": "engine.exercises.ex8_6_1:EXERCISE",
    "8.6.2": "engine.exercises.ex8_6_2:EXERCISE",
    "8.6.3": "engine.exercises.ex8_6_3:EXERCISE",
    "8.7.1": "engine.exercises.ex8_7_1:EXERCISE",
    "8.7.2": "engine.exercises.ex8_7_2:EXERCISE",
}


class UnknownExercise(ConfigError):
    """An id that is not one of the chapter's exercises."""


class NotBuilt(RnnlabError):
    """An exercise listed in the chapter whose experiment is not written yet."""


def is_built(ex_id: str) -> bool:
    return EXERCISES.get(ex_id, NOT_BUILT) != NOT_BUILT


def get(ex_id: str) -> Any:
    """The ``Exercise`` of ``ex_id`` (e.g. ``"8.5.4"``)."""
    if ex_id not in EXERCISES:
        raise UnknownExercise(f"there is no exercise {ex_id!r} in chapter 8; the ids are "
                              f"{', '.join(EXERCISES)} ('rnnlab exercise list' shows their titles)")
    target = EXERCISES[ex_id]
    if target == NOT_BUILT:
        raise NotBuilt(f"exercise {ex_id} ({TITLES[ex_id]}) is listed but its experiment is not built yet")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
