"""Exact oracles for engine.vocab (issue 9, mutation score): the id dtype at each size boundary, the
documented defaults (min_freq 0), the order of tokens worked out by hand where frequency order and
alphabetical order disagree, from_pieces / from_dict / to_dict field by field with their error
messages, equality, and the repr a person reads."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from engine.vocab import UNK, Vocab, narrowest_dtype


@pytest.mark.parametrize("size,dtype", [
    (1, np.uint8), (255, np.uint8), (256, np.uint8), (257, np.uint16), (65_535, np.uint16),
    (65_536, np.uint16), (65_537, np.int32), (1_000_000, np.int32),
])
def test_narrowest_dtype_at_each_boundary(size, dtype):
    """uint8 holds ids 0..255 (256 tokens), uint16 ids 0..65535, beyond that int32."""
    assert narrowest_dtype(size) == np.dtype(dtype)
    assert np.iinfo(narrowest_dtype(size)).max >= size - 1


def test_id_dtype_follows_the_vocabulary_size():
    """255 distinct characters + <unk> = 256 tokens still fit uint8; one more needs uint16."""
    chars = [chr(0x100 + i) for i in range(255)]
    assert len(Vocab(chars)) == 256 and Vocab(chars).id_dtype == np.dtype(np.uint8)
    assert Vocab([*chars, "z"]).id_dtype == np.dtype(np.uint16)


def test_order_is_by_frequency_then_first_seen_not_alphabetical():
    """'b a a c c c p q': c (3), a (2), then b, p, q (1 each) in first-seen order."""
    v = Vocab("b a a c c c p q".split())
    assert v.idx_to_token == [UNK, "c", "a", "b", "p", "q"]
    assert v.token_freqs == [("c", 3), ("a", 2), ("b", 1), ("p", 1), ("q", 1)]
    assert v.token_to_idx == {UNK: 0, "c": 1, "a": 2, "b": 3, "p": 4, "q": 5}
    assert v.min_freq == 0 and v.reserved_tokens == []


def test_min_freq_keeps_tokens_seen_exactly_min_freq_times():
    """min_freq=2 keeps c (3) and a (2), drops the singletons; their counts stay in token_freqs."""
    v = Vocab("b a a c c c p q".split(), min_freq=2)
    assert v.idx_to_token == [UNK, "c", "a"]
    assert v.min_freq == 2
    assert v.token_freqs == [("c", 3), ("a", 2), ("b", 1), ("p", 1), ("q", 1)]


def test_reserved_tokens_come_after_unk_and_are_not_repeated():
    """Reserved tokens take ids 1.. in the order given; one that also occurs in the text is not added twice."""
    v = Vocab("x y y <pad>".split(), reserved_tokens=("<pad>", "<bos>"))
    assert v.idx_to_token == [UNK, "<pad>", "<bos>", "y", "x"]
    assert v.reserved_tokens == ["<pad>", "<bos>"] and isinstance(v.reserved_tokens, list)
    assert v["<bos>"] == 2 and v["y"] == 3


def test_lines_of_tokens_are_counted_across_lines():
    """A list of token lists counts every token of every line (D2L's flattening)."""
    v = Vocab([["q", "r"], ["r", "s", "r"], []])
    assert v.token_freqs == [("r", 3), ("q", 1), ("s", 1)]
    assert v.idx_to_token == [UNK, "r", "q", "s"]


def test_from_counts_equals_vocab_of_the_tokens_and_keeps_zero_counts_by_default():
    """from_counts(Counter(tokens)) builds Vocab(tokens); with the default min_freq 0 a token counted
    0 times (a char tokenizer registers characters before counting) is kept, with min_freq 1 it is not."""
    tokens = "b a a c c c p q".split()
    assert Vocab.from_counts(Counter(tokens)) == Vocab(tokens)
    assert Vocab.from_counts(Counter(tokens), min_freq=2) == Vocab(tokens, min_freq=2)
    v = Vocab.from_counts({"a": 2, "z": 0}, reserved_tokens=["<eos>"])
    assert v.idx_to_token == [UNK, "<eos>", "a", "z"] and v.min_freq == 0
    assert v.token_freqs == [("a", 2), ("z", 0)]
    assert Vocab.from_counts({"a": 2, "z": 0}, min_freq=1).idx_to_token == [UNK, "a"]


def test_lookups_of_known_and_unknown_tokens():
    """Known tokens give their id, unknown ones <unk>'s id 0, for one token and for a list."""
    v = Vocab("b a a c c c".split())
    assert (v["c"], v["a"], v["b"], v["nope"]) == (1, 2, 3, 0)
    assert v[["b", "nope", "c"]] == [3, 0, 1]
    assert ("a" in v, "nope" in v) == (True, False)


def test_to_tokens_of_scalars_and_sequences():
    """Every kind of scalar gives one token; lists, arrays and tensors give a list."""
    v = Vocab("b a a c c c".split())
    for scalar in (2, np.int64(2), np.uint8(2), np.array(2), torch.tensor(2)):
        assert v.to_tokens(scalar) == "a"
    for seq in ([3, 0, 1], (3, 0, 1), np.array([3, 0, 1], dtype=np.uint8), torch.tensor([3, 0, 1])):
        assert v.to_tokens(seq) == ["b", UNK, "c"]
    assert v.to_tokens([]) == []


def test_from_pieces_field_by_field():
    """The order is kept as given; token_freqs leaves out <unk> and the reserved tokens, most frequent first
    (ties in the given order), counts as ints; min_freq is 0."""
    v = Vocab.from_pieces([UNK, "<pad>", "a", "b", "ab", "c"], np.array([9, 8, 3, 1, 7, 3]),
                          reserved_tokens=("<pad>",))
    assert v.idx_to_token == [UNK, "<pad>", "a", "b", "ab", "c"]
    assert v.token_to_idx == {UNK: 0, "<pad>": 1, "a": 2, "b": 3, "ab": 4, "c": 5}
    assert v.token_freqs == [("ab", 7), ("a", 3), ("c", 3), ("b", 1)]
    assert all(type(f) is int for _, f in v.token_freqs)
    assert v.min_freq == 0 and v.reserved_tokens == ["<pad>"]
    assert v.to_tokens(4) == "ab" and v["c"] == 5


@pytest.mark.parametrize("pieces,freqs,message", [
    ([], [], "pieces must start with '<unk>' (got [])"),
    (["a", UNK], [1, 0], "pieces must start with '<unk>' (got ['a'])"),
    ([UNK, "a", "b"], [0, 1], "freqs must have one count per piece (3, got 2)"),
])
def test_from_pieces_refuses_bad_input_with_a_message(pieces, freqs, message):
    """Pieces must start with <unk> and come with one count each; the message says which rule broke."""
    with pytest.raises(ValueError) as e:
        Vocab.from_pieces(pieces, freqs)
    assert str(e.value) == message


def test_to_dict_is_exactly_the_documented_json():
    """Four keys, lists only, so json.dumps takes it as is."""
    v = Vocab("b a a c c c".split(), min_freq=2, reserved_tokens=["<eos>"])
    d = v.to_dict()
    assert d == {"idx_to_token": [UNK, "<eos>", "c", "a"], "token_freqs": [["c", 3], ["a", 2], ["b", 1]],
                 "min_freq": 2, "reserved_tokens": ["<eos>"]}
    assert json.loads(json.dumps(d)) == d


def test_from_dict_reads_every_field_and_defaults_the_optional_ones():
    """A full dict is read field by field; only idx_to_token is required (no counts, min_freq 0, nothing
    reserved)."""
    v = Vocab.from_dict({"idx_to_token": [UNK, "<eos>", "c", "a"], "token_freqs": [["c", 3], ["a", 2], ["b", 1]],
                         "min_freq": 2, "reserved_tokens": ["<eos>"]})
    assert v.idx_to_token == [UNK, "<eos>", "c", "a"]
    assert v.token_to_idx == {UNK: 0, "<eos>": 1, "c": 2, "a": 3}
    assert v.token_freqs == [("c", 3), ("a", 2), ("b", 1)]
    assert (v.min_freq, v.reserved_tokens) == (2, ["<eos>"])
    assert v == Vocab("b a a c c c".split(), min_freq=2, reserved_tokens=["<eos>"])
    bare = Vocab.from_dict({"idx_to_token": [UNK, "x"]})
    assert (bare.idx_to_token, bare.token_freqs, bare.min_freq, bare.reserved_tokens) == ([UNK, "x"], [], 0, [])
    assert bare["x"] == 1


@pytest.mark.parametrize("tokens", [[], ["a", UNK], ["x"]])
def test_from_dict_refuses_a_vocab_not_starting_with_unk(tokens):
    """An empty list or one whose first token is not <unk> is a ValueError saying so."""
    with pytest.raises(ValueError) as e:
        Vocab.from_dict({"idx_to_token": tokens})
    assert str(e.value) == "a vocab must start with '<unk>'"


def test_equality_compares_every_field_and_only_vocabs():
    """Equal when built the same way; a different min_freq or another type is not equal."""
    tokens = "b a a c c c".split()
    assert Vocab(tokens) == Vocab(tokens)
    assert (Vocab(tokens) == Vocab(tokens, min_freq=1)) is False  # same tokens, other min_freq
    assert (Vocab(tokens) == Vocab(tokens[:-1])) is False
    assert (Vocab(tokens) == "b a a c c c") is False
    assert (Vocab(tokens) == Vocab(tokens).to_dict()) is False


def test_repr_shows_size_min_freq_and_the_first_six_tokens():
    """Up to six tokens are listed in full; a longer vocab shows its first six and an ellipsis."""
    assert repr(Vocab(list("abcde"))) == "Vocab(len=6, min_freq=0, ['<unk>', 'a', 'b', 'c', 'd', 'e'])"
    assert repr(Vocab(list("abcdef"), min_freq=1)) == (
        "Vocab(len=7, min_freq=1, ['<unk>', 'a', 'b', 'c', 'd', 'e', …])")
    assert repr(Vocab()) == "Vocab(len=1, min_freq=0, ['<unk>'])"
