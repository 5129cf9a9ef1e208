"""Vocab: D2L ordering, min_freq, unknown tokens, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from engine.vocab import UNK, Vocab


def test_order_unk_reserved_then_by_frequency():
    v = Vocab(list("abracadabra"), reserved_tokens=["<bos>", "<eos>"])
    # a:5, b:2, r:2, c:1, d:1 — ties keep first-seen order
    assert v.idx_to_token == [UNK, "<bos>", "<eos>", "a", "b", "r", "c", "d"]
    assert v.token_freqs == [("a", 5), ("b", 2), ("r", 2), ("c", 1), ("d", 1)]
    assert v.token_to_idx["a"] == 3
    assert v.unk == 0 and v[UNK] == 0
    assert len(v) == 8


def test_unknown_tokens_map_to_unk_and_lists_map_elementwise():
    v = Vocab(["the", "time", "the"])
    assert v["the"] == 1
    assert v["machine"] == 0
    assert v[["time", "machine", "the"]] == [2, 0, 1]
    assert v.to_tokens(2) == "time"
    assert v.to_tokens(np.int64(1)) == "the"
    assert v.to_tokens([1, 0]) == ["the", UNK]
    assert v.to_tokens([2]) == ["time"]  # a one-element list stays a list
    assert v.to_tokens(np.array([2, 1], dtype=np.int32)) == ["time", "the"]
    assert v.to_tokens(np.array([2])) == ["time"]
    assert v.to_tokens(torch.tensor([1, 2])) == ["the", "time"]
    assert v.to_tokens(torch.tensor(2)) == "time"
    assert "the" in v and "machine" not in v


def test_min_freq_drops_rare_tokens_but_keeps_their_counts():
    tokens = ["a"] * 5 + ["b"] * 3 + ["c"]
    v = Vocab(tokens, min_freq=3)
    assert v.idx_to_token == [UNK, "a", "b"]
    assert v["c"] == 0
    assert dict(v.token_freqs) == {"a": 5, "b": 3, "c": 1}
    assert Vocab(tokens, min_freq=0).idx_to_token == Vocab(tokens, min_freq=1).idx_to_token


def test_two_dimensional_input_is_flattened_like_d2l():
    v = Vocab([["a", "b"], ["b"]])
    assert v.idx_to_token == [UNK, "b", "a"]


def test_unk_in_the_text_is_not_duplicated():
    v = Vocab([UNK, "x", UNK])
    assert v.idx_to_token == [UNK, "x"]


def test_empty_vocab_holds_only_unk():
    v = Vocab()
    assert len(v) == 1 and v.idx_to_token == [UNK] and v.token_freqs == []


def test_from_pieces_keeps_order_and_sorts_counts():
    v = Vocab.from_pieces([UNK, "a", "b", "ab"], [0, 3, 1, 7])
    assert v.idx_to_token == [UNK, "a", "b", "ab"]
    assert v.token_freqs == [("ab", 7), ("a", 3), ("b", 1)]
    with pytest.raises(ValueError, match="<unk>"):
        Vocab.from_pieces(["a"], [1])


@given(st.lists(st.text(min_size=1, max_size=3), max_size=60), st.integers(0, 4))
def test_json_round_trip_and_invariants(tokens, min_freq):
    v = Vocab(tokens, min_freq=min_freq, reserved_tokens=["<pad>"])
    w = Vocab.from_dict(json.loads(json.dumps(v.to_dict())))
    assert w == v and w.idx_to_token == v.idx_to_token and w.token_freqs == v.token_freqs
    # indices are a bijection and frequencies never increase along the vocab
    assert all(v.token_to_idx[t] == i for i, t in enumerate(v.idx_to_token))
    counts = dict(v.token_freqs)
    kept = [counts[t] for t in v.idx_to_token if t not in (UNK, "<pad>")]
    assert kept == sorted(kept, reverse=True)
    assert all(f >= min_freq for f in kept)
    assert sum(counts.values()) == len(tokens)
