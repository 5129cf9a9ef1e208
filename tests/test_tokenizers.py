"""Tokenizers: D2L figures on The Time Machine, round trips, ids in range,
serialisation, validation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.corpus import preprocess
from engine.errors import ConfigError
from engine.pipeline import TextPipeline, build_pipeline
from engine.tokenizers import (
    TOKENIZER_KINDS,
    CharTokenizer,
    WordTokenizer,
    load_tokenizer,
    make_tokenizer,
)


def narrowest(vocab_len: int) -> type:
    """The first of uint8, uint16, int32 whose range holds every index 0..vocab_len-1."""
    return next(t for t in (np.uint8, np.uint16, np.int32) if np.iinfo(t).max >= vocab_len - 1)


@dataclass(frozen=True)
class StandIn:
    """Anything with ``.text`` works as a corpus for ``build_pipeline``."""

    text: str


@pytest.fixture(scope="module")
def time_machine(corpus_dir: Path) -> StandIn:
    return StandIn((corpus_dir / "timemachine.txt").read_text(encoding="utf-8"))


# --- D2L's figures --------------------------------------------------------


@pytest.mark.parametrize(
    "kind, n_tokens, vocab_0, vocab_10",
    [("char", 170580, 28, 28), ("word", 32775, 4580, 400)],
)
def test_d2l_figures(time_machine, kind, n_tokens, vocab_0, vocab_10):
    p = build_pipeline(time_machine, mode="d2l", tokenizer=kind, min_freq=0)
    assert isinstance(p, TextPipeline)
    assert len(p.lines) == p.num_lines == 3221
    assert p.ids.dtype == {"char": np.uint8, "word": np.uint16}[kind] and p.ids.shape == (n_tokens,)
    assert len(p.vocab) == vocab_0
    assert not (p.ids == 0).any()  # min_freq 0: nothing is unknown
    p10 = build_pipeline(time_machine, tokenizer=kind, min_freq=10)
    assert len(p10.vocab) == vocab_10
    assert p10.ids.shape == (n_tokens,)


def test_d2l_word_frequencies(time_machine):
    vocab = build_pipeline(time_machine, tokenizer="word").vocab
    assert vocab.token_freqs[0] == ("the", 2261)
    assert vocab.idx_to_token[:4] == ["<unk>", "the", "i", "and"]


def test_char_vocab_is_space_and_26_letters(time_machine):
    p = build_pipeline(time_machine, tokenizer="char")
    assert sorted(p.vocab.idx_to_token[1:]) == sorted(" abcdefghijklmnopqrstuvwxyz")
    assert p.tokenizer.decode(p.ids[:30]) == "the time machine by h g wellsi"


# --- char and word --------------------------------------------------------


def test_char_encode_matches_the_vocab_lookup():
    tok = make_tokenizer("char").fit(["hello world", "héllo ✓"])
    text = "wörld ✓ hello?"
    ids = tok.encode(text)
    assert ids.dtype == np.uint8  # 11 tokens: <unk> and 10 characters
    assert ids.tolist() == tok.vocab[list(text)]
    assert tok.unknown_chars(text) == ["ö", "?"]
    assert tok.decode(ids) == "w<unk>rld ✓ hello<unk>"
    assert tok.encode("").shape == (0,)
    assert tok.encode("h\ud800o").tolist() == [tok.vocab["h"], 0, tok.vocab["o"]]  # lone surrogate


def test_word_tokenizer_splits_on_whitespace_and_is_lossy():
    tok = make_tokenizer("word").fit(["the time  machine", "", "the end"])
    assert isinstance(tok, WordTokenizer) and not tok.lossless
    assert tok.tokenize(["a  b", ""]) == [["a", "b"], []]
    assert tok.vocab.token_freqs[0] == ("the", 2)
    assert tok.decode(tok.encode("the  end\nmachine")) == "the end machine"
    assert tok.unknown_chars("the cat sat the cat") == ["cat", "sat"]


def test_encode_corpus_concatenates_lines_without_separator():
    lines = ["ab", "", "ba a"]
    char = make_tokenizer("char").fit(lines)
    assert char.decode(char.encode_corpus(lines)) == "abba a"
    word = make_tokenizer("word").fit(lines)
    assert word.tokenize(lines) == [["ab"], [], ["ba", "a"]]
    assert word.vocab.to_tokens(word.encode_corpus(lines).tolist()) == ["ab", "ba", "a"]


@pytest.mark.parametrize("kind, n_unk", [("char", 1), ("word", 2)])
def test_min_freq_maps_rare_tokens_to_unk(kind, n_unk):
    lines = ["aaa bbb aaa aaa c"]  # char: a 9, ' ' 4, b 3, c 1; word: aaa 3, bbb 1, c 1
    tok = make_tokenizer(kind, min_freq=2).fit(lines)
    ids = tok.encode_corpus(lines)
    assert tok.vocab["c"] == 0
    assert (ids == 0).sum() == n_unk


# --- validation -----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"kind": "sentencepiece"}, "tokenizer"),
        ({"kind": "bpe", "vocab_size": 0}, "vocab_size"),
        ({"kind": "bpe", "vocab_size": 2.5}, "vocab_size"),
        ({"kind": "char", "vocab_size": True}, "vocab_size"),
        ({"kind": "char", "min_freq": -1}, "min_freq"),
    ],
)
def test_bad_parameters_raise_config_error_naming_the_field(kwargs, field):
    kind = kwargs.pop("kind")
    with pytest.raises(ConfigError, match=f"^{field} must"):
        make_tokenizer(kind, **kwargs)


def test_build_pipeline_validates_mode_and_kind():
    with pytest.raises(ConfigError, match="^mode must"):
        build_pipeline(StandIn("abc"), mode="fancy")
    with pytest.raises(ConfigError, match="^tokenizer must"):
        build_pipeline(StandIn("abc"), tokenizer="bytes")
    with pytest.raises(ConfigError, match="^tokenizer must"):
        load_tokenizer({"kind": "nope"})


def test_raw_mode_keeps_case_and_punctuation():
    p = build_pipeline(StandIn("The Time!\nMachine.\n"), mode="raw", tokenizer="char")
    assert p.lines == ["The Time!\n", "Machine."]  # raw lines keep their breaks
    twin = build_pipeline(StandIn("The Time!\nMachine.\n"), mode="raw", tokenizer="char")
    # identity equality: comparing two pipelines never compares their id arrays (which would raise), and they hash
    assert p != twin and len({p, twin, p}) == 2 and np.array_equal(p.ids, twin.ids)
    assert p.tokenizer.decode(p.ids) == "The Time!\nMachine."


@pytest.mark.parametrize("kind", ["char", "word"])
def test_to_dict_is_json_safe_and_round_trips(kind):
    lines = preprocess("The Time Machine, by H. G. Wells\n\nI\n\nThe Time Traveller", "d2l")
    tok = make_tokenizer(kind, min_freq=1).fit(lines)
    again = load_tokenizer(json.loads(json.dumps(tok.to_dict())))
    assert type(again) is type(tok) and again.vocab == tok.vocab
    text = "the time traveller machine x"
    assert again.encode(text).tolist() == tok.encode(text).tolist()
    assert isinstance(again, (CharTokenizer, WordTokenizer))


def test_kinds_are_the_contract():
    assert TOKENIZER_KINDS == ("char", "word", "bpe", "wordpiece", "unigram")


# --- every kind -----------------------------------------------------------

# A small fitting corpus: the opening of The Time Machine as written, plus a
# line of non-ASCII text so byte-level kinds meet multi-byte characters.
EXTRA = "naïve café — 北京 ✓\tend"


@pytest.fixture(scope="module")
def fit_lines(corpus_dir: Path) -> list[str]:
    text = (corpus_dir / "timemachine.txt").read_text(encoding="utf-8")
    return preprocess(text, "raw")[:300] + [EXTRA]


@pytest.fixture(scope="module", params=TOKENIZER_KINDS)
def fitted(request, fit_lines):
    return make_tokenizer(request.param, vocab_size=300).fit(fit_lines)


def test_lossless_flags_are_as_documented():
    assert {k: make_tokenizer(k).lossless for k in TOKENIZER_KINDS} == {
        "char": True, "word": False, "bpe": True, "wordpiece": True, "unigram": True,
    }


def test_what_the_rest_of_rnnlab_asks_a_tokenizer(fitted, fit_lines):
    """The attributes stats, generation, the Labs screen and the CLI read instead of testing the kind, each
    checked against what it claims."""
    vocab = fitted.vocab
    d2l = vocab.idx_to_token == ["<unk>"] + [t for t, c in vocab.token_freqs if c >= max(fitted.min_freq, 1)]
    assert fitted.vocab_from_counts is d2l is (fitted.kind in ("char", "word"))
    ids = fitted.encode_corpus(fit_lines[:40])
    end_to_end = fitted.decode(ids) == "".join(vocab.to_tokens(ids.tolist()))
    assert fitted.decodes_by_lookup is end_to_end is (fitted.kind == "char")
    assert fitted.joiner == ("" if fitted.kind == "char" else " ")
    line = "the time traveller for so it will be convenient to speak of him"
    if fitted.kind in ("char", "word"):  # an n-gram of the book's tokens, joined, reads as the text
        assert fitted.joiner.join(fitted.tokenize([line])[0]) == line


def test_encode_corpus_is_narrow_in_range_and_counts_match_frequencies(fitted, fit_lines):
    ids = fitted.encode_corpus(fit_lines)
    assert ids.dtype == narrowest(len(fitted.vocab)) and ids.ndim == 1 and len(ids) > 0
    assert 0 <= ids.min() and ids.max() < len(fitted.vocab)
    assert not (ids == fitted.vocab.unk).any()
    # token_freqs counts exactly the fitted corpus
    counts = np.bincount(ids, minlength=len(fitted.vocab))
    assert {t: int(counts[fitted.vocab[t]]) for t, _ in fitted.vocab.token_freqs} == dict(
        fitted.vocab.token_freqs
    )
    # encode_corpus is the lines' encodings, concatenated
    per_line = [fitted.encode(line) for line in fit_lines[:40]]
    assert np.array_equal(np.concatenate(per_line), fitted.encode_corpus(fit_lines[:40]))
    assert [len(t) for t in fitted.tokenize(fit_lines[:40])] == [len(p) for p in per_line]


def test_subword_vocab_respects_vocab_size(fitted):
    if fitted.kind in ("char", "word"):
        assert fitted.pieces == [] and fitted.merges == []
        return
    assert fitted.pieces == fitted.vocab.idx_to_token and fitted.pieces[0] == "<unk>"
    slack = 0 if fitted.kind != "wordpiece" else 40  # ♯♯ forms of the alphabet
    assert 150 <= len(fitted.vocab) <= 300 + slack


def test_bpe_merges_are_in_learned_order(fit_lines):
    tok = make_tokenizer("bpe", vocab_size=200).fit(fit_lines)
    assert len(tok.merges) > 50
    # every merge after the alphabet adds the piece it makes, in order
    n_alpha = len(tok.pieces) - len(tok.merges)
    assert tok.pieces[n_alpha:] == [a + b for a, b in tok.merges]
    assert tok.merges[0] == ("Ġ", "t")  # " t" is the commonest pair in English
    assert all(len(p) == 1 for p in tok.pieces[1:n_alpha])


def test_bpe_training_is_deterministic(fit_lines):
    a = make_tokenizer("bpe", vocab_size=250).fit(fit_lines)
    b = make_tokenizer("bpe", vocab_size=250).fit(fit_lines)
    assert a.merges == b.merges and a.vocab == b.vocab


def test_bpe_min_freq_stops_merging_rare_pairs(fit_lines):
    few = make_tokenizer("bpe", vocab_size=5000, min_freq=50).fit(fit_lines)
    many = make_tokenizer("bpe", vocab_size=5000, min_freq=2).fit(fit_lines)
    assert 0 < len(few.merges) < len(many.merges)


@pytest.mark.parametrize("kind", ["char", "bpe", "wordpiece", "unigram"])
def test_unknown_characters(kind, fit_lines):
    tok = make_tokenizer(kind, vocab_size=300).fit(fit_lines)
    assert tok.unknown_chars("the time ✓ #ö\n") == ["#", "ö", "\n"]
    assert tok.unknown_chars("the time") == []
    assert (tok.encode("the #time") == 0).sum() >= 1
    assert tok.decode(tok.encode("#")) == "<unk>" * len(tok.encode("#"))


def test_serialised_tokenizer_is_json_and_encodes_the_same(fitted):
    d = json.loads(json.dumps(fitted.to_dict()))
    again = load_tokenizer(d)
    assert type(again) is type(fitted) and again.vocab == fitted.vocab
    assert again.pieces == fitted.pieces and again.merges == fitted.merges
    text = "The Time Traveller (for so it will be convenient) ✓ naïve"
    assert np.array_equal(again.encode(text), fitted.encode(text))
    assert again.decode(again.encode(text)) == fitted.decode(fitted.encode(text))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip_where_lossless_and_ids_in_range(fitted, fit_lines, data):
    alphabet = sorted(set("".join(fit_lines)))
    text = data.draw(st.text(alphabet=alphabet, max_size=60), label="known text")
    ids = fitted.encode(text)
    assert ids.dtype == narrowest(len(fitted.vocab))
    assert ((0 <= ids) & (ids < len(fitted.vocab))).all()
    if fitted.lossless:
        assert fitted.decode(ids) == text
    else:  # word: whitespace collapses, known words survive
        assert fitted.decode(ids).split() == [
            w if w in fitted.vocab else "<unk>" for w in text.split()
        ]
    anything = data.draw(st.text(max_size=40), label="any text")
    ids = fitted.encode(anything)
    assert ((0 <= ids) & (ids < len(fitted.vocab))).all()
    if "<unk>" not in anything:
        assert (ids == 0).any() == bool(fitted.unknown_chars(anything))


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_raw_mode_keeps_line_breaks_so_decode_restores_the_text(kind):
    @dataclass
    class _Text:
        text: str

    text = "Tick, tock.\nThe clock\n\nstruck ONE!"
    pipe = build_pipeline(_Text(text), mode="raw", tokenizer=kind, vocab_size=300)
    assert "\n" in pipe.tokenizer.decode(pipe.ids)
    assert pipe.tokenizer.decode(pipe.ids) == text
    assert len(pipe.lines) == 4  # line count unchanged by keeping the breaks


def test_display_token_shows_byte_level_pieces_as_text():
    @dataclass
    class _Text:
        text: str

    pipe = build_pipeline(_Text("the café\nthe time machine " * 20), mode="raw", tokenizer="bpe", vocab_size=300)
    tok = pipe.tokenizer
    shown = {tok.display_token(t) for t in tok.pieces}
    assert "␣the" in shown and "↵" in shown
    assert not any("Ġ" in t or "Ċ" in t for t in shown)
    assert tok.display_token("<unk>") == "<unk>"
    # every piece's display is its decoded text with whitespace made visible
    for piece in tok.pieces[1:]:
        text = tok.decode([tok.vocab[piece]])
        if "\ufffd" not in tok.display_token(piece):
            assert tok.display_token(piece) == text.replace(" ", "␣").replace("\n", "↵")
    char = build_pipeline(_Text("a b\nc"), mode="raw", tokenizer="char").tokenizer
    assert [char.display_token(t) for t in (" ", "\n", "a")] == ["␣", "↵", "a"]
