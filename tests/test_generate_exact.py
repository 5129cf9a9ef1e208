"""Exact oracles for engine.generate (issue 9, mutation score).

The model is D2L 8.5's RNN with weights set so its next-token distribution is known in closed form:
H = tanh(20 onehot(x)) is onehot(x) exactly in float32 and W_hh = 0, so the logits after token x are
c at succ(x), a large bias at <unk> (which the corpus never contains, so generation must mask it) and 0
elsewhere. With c = log 3 and four seen tokens, P(succ(x)) = 3 / (3 + 3) = 1/2 and each other seen
token has 1/6. Greedy text follows the chain; sampled text follows it about half the time, and
q ∝ P^α changes that fraction to 3^α / (3^α + 3). Empty prefixes start from the corpus counts."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from engine.config import ModelConfig
from engine.errors import ConfigError
from engine.generate import Generation, generate, next_token_distribution, sampling_distribution
from engine.models import build_model
from engine.tokenizers import load_tokenizer, make_tokenizer
from engine.vocab import UNK

TEXT = "aaaabbbccd"  # a 4, b 3, c 2, d 1: ids <unk> 0, a 1, b 2, c 3, d 4
NEXT = {"a": "b", "b": "c", "c": "d", "d": "a"}


def chain_model(vocab_size: int, succ: dict[int, int], c: float = math.log(3), unk_bias: float = 30.0):
    """D2L 8.5's scratch RNN whose logits after token x are c at succ[x], unk_bias at <unk>, 0 elsewhere
    (parameters by their checkpoint names, which runs on disk rely on)."""
    model = build_model(ModelConfig(kind="scratch", vocab_size=vocab_size, num_hiddens=vocab_size))
    p = dict(model.named_parameters())
    W_hq, b_q = torch.zeros(vocab_size, vocab_size), torch.zeros(vocab_size)
    for x, y in succ.items():
        W_hq[x, y] = c
    b_q[0] = unk_bias
    with torch.no_grad():
        p["W_xh"].copy_(20 * torch.eye(vocab_size))
        p["W_hh"].zero_()
        p["b_h"].zero_()
        p["W_hq"].copy_(W_hq)
        p["b_q"].copy_(b_q)
    return model.eval()


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer("char").fit([TEXT])


@pytest.fixture(scope="module")
def model(tok):
    v = tok.vocab
    return chain_model(len(v), {v[x]: v[y] for x, y in NEXT.items()} | {0: v["a"]})


def chain(start: str, n: int) -> str:
    out, x = [], start
    for _ in range(n):
        x = NEXT[x]
        out.append(x)
    return "".join(out)


def follow_rate(text: str) -> tuple[float, Counter]:
    """Fraction of steps that follow the chain, and the counts of the tokens drawn."""
    steps = list(zip(text, text[1:]))
    return sum(NEXT[a] == b for a, b in steps) / len(steps), Counter(text[1:])


def test_the_vocabulary_is_as_the_docstring_says(tok):
    """The oracle's premise: ids and counts of the tiny corpus."""
    assert tok.vocab.idx_to_token == [UNK, "a", "b", "c", "d"]
    assert tok.vocab.token_freqs == [("a", 4), ("b", 3), ("c", 2), ("d", 1)]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 16, 17, 18, 33, 40])
def test_greedy_follows_the_chain_from_the_prefix_last_token_for_exactly_n_tokens(model, tok, n):
    """α = ∞ yields n pieces: succ of the prefix's last character, then the chain; never <unk>, whose
    raw logit is the largest (so it must be masked at the first token and at every step after)."""
    assert "".join(generate(model, tok, "abc", n, alpha=math.inf)) == chain("c", n)
    assert list(Generation(model, tok, "dab", n, alpha=math.inf)) == list(chain("b", n))


def test_top_k_1_and_a_small_top_p_are_greedy(model, tok):
    """Top-k = 1 keeps only succ(x); top-p = 0.4 keeps only succ(x) too (its q of 1/2 reaches 0.4)."""
    want = chain("a", 40)
    assert "".join(generate(model, tok, "a", 40, top_k=1, seed=1)) == want
    assert "".join(generate(model, tok, "a", 40, top_p=0.4, seed=2)) == want
    assert "".join(generate(model, tok, "a", 40, alpha=1.0, top_k=1, top_p=0.4, seed=3)) == want


@pytest.mark.parametrize("alpha,want", [(None, 0.5), (1.0, 0.5), (2.0, 0.75), (0.0, 0.25)])
def test_sampled_text_follows_the_chain_at_the_closed_form_rate(model, tok, alpha, want):
    """Over 1500 sampled tokens the chain is followed at rate 3^α / (3^α + 3) (α = 1 by default; α = 0 is
    uniform over the four seen tokens), within 0.04 (> 4 standard deviations); <unk> never appears."""
    kw = {} if alpha is None else {"alpha": alpha}
    for text in ("".join(generate(model, tok, "a", 1500, seed=7, **kw)),
                 "".join(Generation(model, tok, "a", 1500, seed=8, **kw))):
        rate, drawn = follow_rate("a" + text)
        assert len(text) == 1500 and set(drawn) <= set("abcd")
        assert rate == pytest.approx(want, abs=0.04)


def test_a_seed_reproduces_the_text_and_another_seed_changes_it(model, tok):
    """The same seed gives the same 200 tokens; another seed gives other tokens (each step is a coin flip)."""
    a = "".join(generate(model, tok, "a", 200, seed=5))
    assert a == "".join(generate(model, tok, "a", 200, seed=5))
    assert a != "".join(generate(model, tok, "a", 200, seed=6))


def test_generation_leaves_the_model_in_the_mode_it_found(model, tok):
    """A model in training mode is back in training mode after generating; one in eval mode stays there."""
    model.train()
    try:
        assert "".join(generate(model, tok, "ab", 20, alpha=math.inf)) == chain("b", 20)
        assert model.training
        next_token_distribution(model, tok, "ab")
        assert model.training
    finally:
        model.eval()
    list(generate(model, tok, "ab", 3))
    assert not model.training


def test_empty_prefix_starts_from_the_corpus_counts(model, tok):
    """No prefix: the first token is drawn from the unigram counts with the same α: greedy takes 'a'
    (4 of 10), the bars are 4/10, 3/10, 2/10, 1/10 (α = 1) or ∝ counts² (α = 2), <unk> 0."""
    assert "".join(generate(model, tok, "", 6, alpha=math.inf)) == "a" + chain("a", 5)
    bars = next_token_distribution(model, tok, "", n=5)
    assert [t for t, _ in bars] == ["a", "b", "c", "d", UNK]
    assert [p for _, p in bars] == pytest.approx([0.4, 0.3, 0.2, 0.1, 0.0], abs=1e-6)
    bars = next_token_distribution(model, tok, "", alpha=2.0, n=5)
    assert [p for _, p in bars] == pytest.approx([16 / 30, 9 / 30, 4 / 30, 1 / 30, 0.0], abs=1e-6)
    assert bars.warnings == []


def test_empty_prefix_first_tokens_are_drawn_in_proportion_to_the_counts(model, tok):
    """400 one-token generations with seeds 0..399 draw a, b, c, d about 40/30/20/10 % of the time."""
    drawn = Counter("".join(generate(model, tok, "", 1, seed=s)) for s in range(400))
    for t, share in {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}.items():
        assert drawn[t] / 400 == pytest.approx(share, abs=0.08)
    assert sum(drawn.values()) == 400


def test_bars_after_a_prefix_are_the_closed_form_distribution(model, tok):
    """After 'abc': d 1/2, then a, b, c 1/6 each in vocabulary order (ties keep it), <unk> 0."""
    bars = next_token_distribution(model, tok, "abc", n=5)
    assert [t for t, _ in bars] == ["d", "a", "b", "c", UNK]
    assert [p for _, p in bars] == pytest.approx([1 / 2, 1 / 6, 1 / 6, 1 / 6, 0.0], abs=1e-6)
    bars = next_token_distribution(model, tok, "abc", alpha=2.0, n=2)
    assert bars == [("d", pytest.approx(0.75, abs=1e-6)), ("a", pytest.approx(1 / 12, abs=1e-6))]


def test_bars_apply_top_k_and_top_p(model, tok):
    """top_p = 0.4 leaves succ(x) alone with q = 1; top_k = 2 keeps succ(x) and the first tied token."""
    bars = next_token_distribution(model, tok, "abc", top_p=0.4, n=3)
    assert bars == [("d", 1.0), (UNK, 0.0), ("a", 0.0)]
    bars = next_token_distribution(model, tok, "abc", top_k=2, n=3)
    assert [t for t, _ in bars] == ["d", "a", UNK]
    assert [p for _, p in bars] == pytest.approx([0.75, 0.25, 0.0], abs=1e-6)


def test_bars_default_to_ten_tokens_at_alpha_one():
    """With 13 seen tokens whose model probabilities are w_i / Σw (w = 1..13, output bias log w), the
    default bars are the ten most probable with exactly those probabilities."""
    letters = "abcdefghijklm"
    tok = make_tokenizer("char").fit([letters])
    model = chain_model(len(tok.vocab), {}, unk_bias=-math.inf)
    w = {ch: i + 1 for i, ch in enumerate(letters)}
    with torch.no_grad():
        dict(model.named_parameters())["b_q"][1:] = torch.log(torch.tensor([float(w[t]) for t in letters]))
    bars = next_token_distribution(model, tok, "a")
    assert [t for t, _ in bars] == list("mlkjihgfed")
    assert [p for _, p in bars] == pytest.approx([w[t] / 91 for t in "mlkjihgfed"], rel=1e-5)


def test_ties_in_the_bars_keep_vocabulary_order_even_for_a_large_vocabulary():
    """120 characters seen once each and a model with all-zero weights: every seen token has q = 1/120,
    and the bars list the first ten characters of the vocabulary (first-seen order), not a shuffle."""
    chars = "".join(chr(0x3B1 + i) for i in range(120))
    tok = make_tokenizer("char").fit([chars])
    model = build_model(ModelConfig(kind="scratch", vocab_size=len(tok.vocab), num_hiddens=4))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    bars = next_token_distribution(model.eval(), tok, chars[:3])
    assert [t for t, _ in bars] == list(chars[:10])
    assert [p for _, p in bars] == pytest.approx([1 / 120] * 10, rel=1e-5)


def test_unigram_start_uses_only_the_tokens_in_the_vocabulary():
    """min_freq 2 drops 'd' (seen once) from the vocabulary though its count stays in token_freqs: the
    empty-prefix bars are a 4/9, b 3/9, c 2/9."""
    tok = make_tokenizer("char", min_freq=2).fit([TEXT])
    assert tok.vocab.idx_to_token == [UNK, "a", "b", "c"] and ("d", 1) in tok.vocab.token_freqs
    model = chain_model(4, {1: 2, 2: 3, 3: 1})
    bars = next_token_distribution(model, tok, "", n=4)
    assert bars == [("a", pytest.approx(4 / 9)), ("b", pytest.approx(3 / 9)), ("c", pytest.approx(2 / 9)),
                    (UNK, 0.0)]
    assert "".join(generate(model, tok, "", 4, alpha=math.inf)) == "abca"


def test_a_single_counted_token_gets_all_the_unigram_mass():
    """Corpus 'a': one token counted once; the empty-prefix bars are a 1, <unk> 0."""
    tok = make_tokenizer("char").fit(["a"])
    model = chain_model(2, {1: 1})
    assert next_token_distribution(model, tok, "", n=2) == [("a", 1.0), (UNK, 0.0)]
    assert "".join(generate(model, tok, "", 3, alpha=0.0, seed=0)) == "aaa"


def test_without_counts_the_start_is_uniform_and_nothing_is_masked(tok):
    """A vocabulary saved without token_freqs: no token is known unseen, the empty-prefix bars are uniform
    over all five tokens including <unk>."""
    d = tok.to_dict()
    d["vocab"] = {"idx_to_token": d["vocab"]["idx_to_token"]}
    bare = load_tokenizer(d)
    model = chain_model(5, {1: 2, 2: 3, 3: 4, 4: 1}, unk_bias=0.0)
    bars = next_token_distribution(model, bare, "", n=5)
    assert [t for t, _ in bars] == [UNK, "a", "b", "c", "d"]
    assert [p for _, p in bars] == pytest.approx([0.2] * 5)
    assert len("".join(generate(model, bare, "", 5, seed=0))) > 0


def test_word_pieces_carry_their_spaces():
    """Word tokens: each piece after the first word is ' word'; with an empty prefix the first piece
    is the most frequent word, whole (here a redaction mark 'XXXX…') with no space before it."""
    tok = make_tokenizer("word").fit(["one two two XXXXthree XXXXthree XXXXthree"])
    v = tok.vocab
    assert v.idx_to_token == [UNK, "XXXXthree", "two", "one"]
    model = chain_model(4, {v["one"]: v["two"], v["two"]: v["XXXXthree"], v["XXXXthree"]: v["one"]})
    assert list(generate(model, tok, "one two", 4, alpha=math.inf)) == [" XXXXthree", " one", " two", " XXXXthree"]
    assert list(generate(model, tok, "", 3, alpha=math.inf)) == ["XXXXthree", " one", " two"]


def test_a_character_split_over_byte_tokens_is_shown_whole_once_complete():
    """A byte-level BPE fitted with room for no merges keeps 'é' as two byte tokens (Ã ©); generating
    them and then 'c' yields the pieces '', 'é', 'c': the first byte is held back until the character is
    whole (it used to stream as '�', '�', 'c'). A byte never completed is shown as it decodes, at most
    4 tokens later (a UTF-8 character has at most 4 bytes)."""
    tok = make_tokenizer("bpe", vocab_size=20).fit(["hello hello hello world", "caf\u00e9 ok"])
    c, _, f, e1, e2 = tok.encode("caf\u00e9").tolist()
    assert tok.decode([e1, e2]) == "\u00e9" and tok.decode([e1]) != "\u00e9"
    model = chain_model(len(tok.vocab), {f: e1, e1: e2, e2: c})
    assert list(generate(model, tok, "caf", 3, alpha=math.inf)) == ["", "\u00e9", "c"]
    stuck = chain_model(len(tok.vocab), {f: e1, e1: e1})  # first bytes only: the character never completes
    assert list(generate(stuck, tok, "caf", 4, alpha=math.inf)) == ["", "", "", tok.decode([e1] * 4)]


def test_a_model_in_training_mode_generates_as_in_eval_mode():
    """Dropout (0.5 between two layers) must not act while generating: greedy text and its state are
    those of the model in eval mode, and the model is back in training mode afterwards."""
    tok = make_tokenizer("char").fit(["the time machine by h g wells"])
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="rnn", vocab_size=len(tok.vocab), num_hiddens=32, num_layers=2,
                                    dropout=0.5))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8)
    want = "".join(generate(model.eval(), tok, "the time machine", 30, alpha=math.inf))
    model.train()
    for seed in range(3):
        torch.manual_seed(seed)  # the dropout masks, were dropout on
        assert "".join(generate(model, tok, "the time machine", 30, alpha=math.inf)) == want
        assert model.training


def test_prefix_warnings_list_the_first_ten_unknown_characters_once_each(model, tok):
    """Unknown characters are reported once each, in order, at most ten, by generate and by the bars."""
    prefix = "aeefghijklmnopq"
    want = ["not in the vocabulary, read as <unk>: 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n'"]
    assert generate(model, tok, prefix, 1).warnings == want
    assert next_token_distribution(model, tok, prefix).warnings == want
    assert generate(model, tok, "abz", 1).warnings == ["not in the vocabulary, read as <unk>: 'z'"]
    assert generate(model, tok, "abc", 1).warnings == []


@pytest.mark.parametrize("kw,message", [
    ({"alpha": -1.0}, "alpha must be zero or more (inf = greedy) (got -1.0)"),
    ({"alpha": "2"}, "alpha must be zero or more (inf = greedy) (got '2')"),
    ({"top_k": 0}, "top_k must be a positive integer (got 0)"),
    ({"top_k": 2.0}, "top_k must be a positive integer (got 2.0)"),
    ({"top_p": 0.0}, "top_p must be in (0, 1] (got 0.0)"),
    ({"top_p": 1.5}, "top_p must be in (0, 1] (got 1.5)"),
])
def test_bad_sampling_options_are_refused_with_their_value(model, tok, kw, message):
    """generate and the bars refuse the same options with the same message."""
    for call in (lambda: generate(model, tok, "a", 3, **kw), lambda: next_token_distribution(model, tok, "a", **kw)):
        with pytest.raises(ConfigError) as e:
            call()
        assert str(e.value) == message


def test_the_smallest_valid_sampling_options_are_accepted(model, tok):
    """α = 0, α = 0.5, top_k = 1 and top_p = 1 are all valid."""
    for kw in ({"alpha": 0.0}, {"alpha": 0.5}, {"top_k": 1}, {"top_p": 1.0}):
        assert len(list(generate(model, tok, "a", 2, seed=0, **kw))) == 2
        assert len(next_token_distribution(model, tok, "a", **kw)) == 5


def test_a_negative_number_of_tokens_and_a_foreign_tokenizer_are_refused(model, tok):
    """num_tokens < 0 and a tokenizer of another size are ConfigErrors that say what is wrong."""
    with pytest.raises(ConfigError) as e:
        generate(model, tok, "a", -1)
    assert str(e.value) == "num_tokens must be zero or more (got -1)"
    other = make_tokenizer("char").fit(["abcdefg"])
    for call in (lambda: generate(model, other, "a", 1), lambda: next_token_distribution(model, other, "a")):
        with pytest.raises(ConfigError) as e:
            call()
        assert str(e.value) == ("the tokenizer has 8 tokens but the model was trained with 5: the tokenizer "
                                "does not belong to this model; use the tokenizer saved with its run")


def test_sampling_distribution_defaults_to_the_model_distribution():
    """With no options, q is P itself: softmax of log(0.2, 0.5, 0.3)."""
    q = sampling_distribution(torch.log(torch.tensor([0.2, 0.5, 0.3])))
    assert q.tolist() == pytest.approx([0.2, 0.5, 0.3], abs=1e-6)


def test_a_finite_alpha_splits_q_between_tied_top_tokens():
    """Even α = float32's largest value is finite: q ∝ P^α gives two tied top tokens 1/2 each
    (only α = ∞ is greedy's single first argmax)."""
    alpha = torch.finfo(torch.float32).max
    assert sampling_distribution(torch.tensor([1.0, 1.0, 0.0]), alpha).tolist() == [0.5, 0.5, 0.0]
    assert sampling_distribution(torch.tensor([1.0, 1.0, 0.0]), math.inf).tolist() == [1.0, 0.0, 0.0]


def test_a_huge_alpha_with_large_logits_gives_the_argmax_not_nan():
    """α = 1e38 on logits up to 3: q puts all mass on the largest logit (no inf - inf)."""
    assert sampling_distribution(torch.tensor([3.0, 1.0, 2.0]), 1e38).tolist() == [1.0, 0.0, 0.0]
    assert sampling_distribution(torch.tensor([100.0, 90.0]), 5.0).tolist() == pytest.approx([1.0, math.exp(-50)])


def test_top_p_one_keeps_even_a_tiny_tail():
    """top_p = 1 is no nucleus cut: tokens with q ≈ 5e-10 keep their mass, even though the head's cumulative
    sum already rounds to 1 in float32."""
    e = math.exp(-21.4)
    q = sampling_distribution(torch.tensor([0.0, -21.4, -21.4]), 1.0, top_p=1.0)
    assert q[1].item() == pytest.approx(e / (1 + 2 * e), rel=1e-3)
    assert q[2].item() == pytest.approx(e / (1 + 2 * e), rel=1e-3)


def test_top_k_ties_keep_the_lowest_ids_even_for_a_large_vocabulary():
    """128 equal logits and top_k = 3: the three kept are ids 0, 1, 2 (vocabulary order, as greedy's
    first argmax), each with q = 1/3."""
    q = sampling_distribution(torch.zeros(128), 1.0, top_k=3)
    assert torch.nonzero(q).flatten().tolist() == [0, 1, 2]
    assert q[:3].tolist() == pytest.approx([1 / 3] * 3)
