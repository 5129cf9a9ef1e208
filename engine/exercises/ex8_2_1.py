"""Exercise 8.2.1: three other common ways to tokenize text — BPE, WordPiece and Unigram — beside D2L's
characters and words.

Every tokenizer of ``engine.tokenizers`` is fitted on the same text (d2l preprocessing, so the five see
the same letters and spaces) with the same subword vocabulary budget, and compared: vocabulary size,
tokens for the whole text, tokens per word and characters per token, the share of ``<unk>``, how each
splits one sentence, and BPE's first merges (the most frequent adjacent pairs, in the order learnt).
Subword tokenizers sit between the two extremes: a small vocabulary like characters, far fewer tokens
than characters, and no unknown words (a new word falls back to smaller pieces).

Left out: speed (``rnnlab corpus`` times the passes) and the trainers' options (dropout, byte fallback).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from engine.config import option
from engine.exercises.base import Exercise, Progress, Reference, Result, check_stop, need
from engine.exercises.common import CORPUS_HELP, integer, pipeline

KINDS = ("char", "word", "bpe", "wordpiece", "unigram")
SAMPLE = "the time traveller for so it will be convenient to speak of him"  # D2L's first line, d2l-preprocessed
SHOWN_TOKENS = 14  # tokens of the sample shown
MERGES_SHOWN = 8


@dataclass(frozen=True)
class Settings:
    """The text and the subword vocabulary budget."""

    corpus: str = option("timemachine", CORPUS_HELP)
    vocab_size: int = option(1000, "vocabulary budget of bpe, wordpiece and unigram")
    sample: str = option(SAMPLE, "a sentence each tokenizer splits")

    def __post_init__(self) -> None:
        need(isinstance(self.corpus, str) and self.corpus != "", f"corpus must name a text (got {self.corpus!r})")
        integer("vocab_size", self.vocab_size, 50, 100_000)
        need(isinstance(self.sample, str) and self.sample.strip() != "", "sample must be some text")


class OtherTokenizers(Exercise):
    id = "8.2.1"
    question = ("Tokenization is a key preprocessing step and varies between languages. Find three other "
                "commonly used ways to tokenize text, and compare them.")
    Settings = Settings
    default = Settings()
    long = Settings(corpus="war_of_the_worlds", vocab_size=4000)
    references = (  # BPE is deterministic; WordPiece and Unigram may differ by a few pieces between fits
        Reference("tokens_char", 170580, 0, "default", "D2L's figure: exact"),
        Reference("tokens_word", 32775, 0, "default", "D2L's figure: exact"),
        Reference("vocab_bpe", 1000, 0, "default", "the budget, reached"),
        Reference("tokens_per_word_bpe", 1.6005, 0.0001, "default", "BPE is deterministic"),
        Reference("tokens_per_word_wordpiece", 1.6284, 0.0005, "default", "fits vary (tokenizers trains in threads): 1.6281-1.6285 seen"),
        Reference("tokens_per_word_unigram", 1.7929, 0.0001, "default", "three fits gave the same"),
        Reference("vocab_bpe", 4000, 0, "long", "the budget, reached"),
        Reference("tokens_per_word_bpe", 1.2129, 0.0001, "long", "The War of the Worlds"),
        Reference("tokens_per_word_wordpiece", 1.2282, 0.0003, "long", "three fits gave 1.2281-1.2283"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        words = None
        rows, figures = [], {}
        merges: list[str] = []
        for i, kind in enumerate(KINDS):
            check_stop(stop)
            progress(i, len(KINDS), f"fitting {kind}")
            p = pipeline(s.corpus, "d2l", kind, s.vocab_size)
            tok = p.tokenizer
            n = len(p.ids)
            if kind == "word":
                words = n
            pieces = [tok.display_token(t) for t in tok.vocab.to_tokens(tok.encode(s.sample))]
            unk = float((p.ids == tok.vocab.unk).mean()) if n else 0.0
            rows.append([kind, len(tok.vocab), n, unk, " ".join(pieces[:SHOWN_TOKENS])
                         + (" …" if len(pieces) > SHOWN_TOKENS else "")])
            figures[f"vocab_{kind}"], figures[f"tokens_{kind}"], figures[f"unk_{kind}"] = len(tok.vocab), n, unk
            figures[f"sample_tokens_{kind}"] = len(pieces)
            if kind == "bpe":
                merges = [f"{tok.display_token(a)}+{tok.display_token(b)}" for a, b in tok.merges[:MERGES_SHOWN]]
        progress(len(KINDS), len(KINDS), "done")
        chars = figures["tokens_char"]
        for row in rows:
            kind = row[0]
            figures[f"tokens_per_word_{kind}"] = figures[f"tokens_{kind}"] / words
            row[3:3] = [figures[f"tokens_{kind}"] / words, chars / figures[f"tokens_{kind}"]]
        f = figures
        explanation = (
            f"Characters need only {f['vocab_char']:.0f} symbols but {f['tokens_char']:,.0f} tokens; words give "
            f"{f['tokens_word']:,.0f} tokens over {f['vocab_word']:,.0f} types, and every word not seen in "
            f"training is <unk>. With a budget of {s.vocab_size} pieces, BPE (merge the most frequent adjacent "
            f"pair, again and again: first {', '.join(merges[:5])}), WordPiece (merges scored by how much more "
            f"often a pair occurs than its parts, pieces inside a word marked ##) and Unigram (start large, drop "
            f"the pieces whose loss hurts a unigram language model least) use "
            f"{f['tokens_per_word_bpe']:.2f}, {f['tokens_per_word_wordpiece']:.2f} and "
            f"{f['tokens_per_word_unigram']:.2f} tokens per word: frequent words stay whole, rare ones split into "
            f"pieces, so no word is unknown. On the sample sentence: {f['sample_tokens_char']:.0f} characters, "
            f"{f['sample_tokens_word']:.0f} words, {f['sample_tokens_bpe']:.0f} BPE pieces. Others still: "
            f"SentencePiece on raw bytes, morphological analysers for agglutinative languages, dictionary-based "
            f"word segmentation for Chinese or Japanese.")
        return Result(["tokenizer", "vocab", "tokens", "tokens/word", "chars/token", "<unk> share",
                       "the sample"], rows, explanation, figures)


EXERCISE = OtherTokenizers()
