"""Generation: α → ∞ is greedy, α = 0 is uniform, top-k/top-p keep the right
tokens, seeds reproduce, the state is kept between tokens, odd prefixes warn."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ConfigError
from engine.generate import generate, next_token_distribution, sampling_distribution
from engine.config import ModelConfig
from engine.models import build_model
from engine.tokenizers import make_tokenizer

LINES = ["the time traveller for so it will be convenient to speak of him",
         "was expounding a recondite matter to us his grey eyes shone and twinkled"]


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer("char").fit(LINES)


@pytest.fixture(scope="module", params=["scratch", "gru"])
def model(request, tokenizer):
    torch.manual_seed(0)
    m = build_model(ModelConfig(kind=request.param, vocab_size=len(tokenizer.vocab), num_hiddens=24))
    with torch.no_grad():  # larger weights than the N(0, 0.01²) init, so the distribution is far from uniform
        for p in m.parameters():
            p.mul_(40 if request.param == "scratch" else 3)
    return m.eval()


def greedy_by_recomputation(model, tokenizer, prefix, n):
    """D2L-style reference: rerun the whole text each time and take the argmax."""
    ids = [int(i) for i in tokenizer.encode(prefix)]
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(torch.tensor([ids]), model.begin_state(1))
            ids.append(int(seen_only(logits[-1, 0], tokenizer).argmax()))
    return tokenizer.decode(ids[len(tokenizer.encode(prefix)):])


def seen_only(logits, tokenizer):
    """Logits with the tokens absent from the training corpus (<unk> here) ruled out, as generation does."""
    freqs = dict(tokenizer.vocab.token_freqs)
    unseen = torch.tensor([freqs.get(t, 0) == 0 for t in tokenizer.vocab.idx_to_token])
    return logits.masked_fill(unseen, -math.inf)


def test_greedy_keeps_state_and_equals_recomputation(model, tokenizer):
    pieces = list(generate(model, tokenizer, "time travel", 30, alpha=math.inf))
    assert len(pieces) == 30
    assert "".join(pieces) == greedy_by_recomputation(model, tokenizer, "time travel", 30)


def test_lstm_state_tuple_is_kept(tokenizer):
    # nn.LSTM is slow per call on this CPU build (~10 ms), so only a short check here.
    torch.manual_seed(0)
    m = build_model(ModelConfig(kind="lstm", vocab_size=len(tokenizer.vocab), num_hiddens=16)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3)
    pieces = list(generate(m, tokenizer, "time", 6, alpha=math.inf))
    assert "".join(pieces) == greedy_by_recomputation(m, tokenizer, "time", 6)


def test_huge_alpha_equals_greedy(model, tokenizer):
    greedy = "".join(generate(model, tokenizer, "the ", 25, alpha=math.inf))
    assert "".join(generate(model, tokenizer, "the ", 25, alpha=1e6, seed=3)) == greedy
    assert "".join(generate(model, tokenizer, "the ", 25, alpha=1.0, top_k=1, seed=3)) == greedy


def test_alpha_zero_is_uniform(model, tokenizer):
    V = len(tokenizer.vocab)
    seen = sum(1 for _, f in tokenizer.vocab.token_freqs if f > 0)  # all but <unk>
    dist = next_token_distribution(model, tokenizer, "time", alpha=0, n=V)
    assert seen == V - 1 and dist[-1] == ("<unk>", 0.0)
    assert len(dist) == V and all(p == pytest.approx(1 / seen) for _, p in dist[:seen])
    top5 = next_token_distribution(model, tokenizer, "time", alpha=0, top_k=5, n=V)
    assert [p for _, p in top5[:5]] == pytest.approx([0.2] * 5) and all(p == 0 for _, p in top5[5:])
    model_top5 = [t for t, _ in next_token_distribution(model, tokenizer, "time", alpha=1, n=5)]
    assert sorted(t for t, _ in top5[:5]) == sorted(model_top5)  # uniform over the model's top 5


def test_top_k_never_leaves_the_top_k(model, tokenizer):
    k = 3
    ids = [int(i) for i in tokenizer.encode("the")]
    for piece in generate(model, tokenizer, "the", 30, alpha=1.0, top_k=k, seed=0):
        with torch.no_grad():
            logits, _ = model(torch.tensor([ids]), model.begin_state(1))
        allowed = torch.topk(seen_only(logits[-1, 0], tokenizer), k).indices.tolist()
        idx = tokenizer.vocab.token_to_idx[piece]
        assert idx in allowed
        ids.append(idx)


def test_seed_reproduces_and_differs(model, tokenizer):
    a = "".join(generate(model, tokenizer, "time", 40, alpha=1.0, seed=7))
    b = "".join(generate(model, tokenizer, "time", 40, alpha=1.0, seed=7))
    c = "".join(generate(model, tokenizer, "time", 40, alpha=0.5, seed=8))
    assert a == b and a != c


def test_distribution_sums_to_one_and_alpha_sharpens(model, tokenizer):
    V = len(tokenizer.vocab)
    p1 = dict(next_token_distribution(model, tokenizer, "time", alpha=1.0, n=V))
    p2 = dict(next_token_distribution(model, tokenizer, "time", alpha=2.0, n=V))
    assert sum(p1.values()) == pytest.approx(1.0, abs=1e-5)
    top = max(p1, key=p1.get)
    assert p2[top] > p1[top]
    expected = {t: p1[t] ** 2 for t in p1}
    z = sum(expected.values())
    assert all(p2[t] == pytest.approx(expected[t] / z, abs=1e-5) for t in p1)  # q ∝ P^α


def test_unknown_prefix_characters_warn_not_crash(model, tokenizer):
    gen = generate(model, tokenizer, "Time Traveller!", 5, alpha=math.inf)
    assert gen.warnings and "'T'" in gen.warnings[0] and "'!'" in gen.warnings[0]
    assert len(list(gen)) == 5
    dist = next_token_distribution(model, tokenizer, "Zz", n=3)
    assert dist.warnings and len(dist) == 3
    assert generate(model, tokenizer, "time", 3).warnings == []


def test_empty_prefix_starts_with_the_most_frequent_token_when_greedy(model, tokenizer):
    pieces = list(generate(model, tokenizer, "", 10, alpha=math.inf))
    assert len(pieces) == 10 and pieces[0] == tokenizer.vocab.token_freqs[0][0]
    dist = next_token_distribution(model, tokenizer, "", alpha=1.0, n=1)
    assert dist[0][0] == tokenizer.vocab.token_freqs[0][0]


@pytest.mark.parametrize("prefix", ["time trav", "", "Zz"])
def test_the_bars_are_the_distribution_the_first_token_is_drawn_from(model, tokenizer, prefix):
    """next_token_distribution and generate read the prefix the same way: with the bars' q written out by token
    id, the first generated token under seed s is torch.multinomial(q, 1) under seed s, for every s."""
    V = len(tokenizer.vocab)
    bars = next_token_distribution(model, tokenizer, prefix, alpha=0.7, top_k=6, n=V)
    q = torch.zeros(V)
    for token, p in bars:
        q[tokenizer.vocab.token_to_idx[token]] = p
    assert int((q > 0).sum()) == 6 and float(q.sum()) == pytest.approx(1.0, abs=1e-6)
    for seed in range(20):
        first = next(generate(model, tokenizer, prefix, 1, alpha=0.7, top_k=6, seed=seed))
        drawn = int(torch.multinomial(q, 1, generator=torch.Generator().manual_seed(seed)))
        assert first == tokenizer.vocab.idx_to_token[drawn], f"seed {seed}"


def test_empty_prefix_bars_are_the_corpus_character_frequencies(model, tokenizer):
    """No prefix: the first token is drawn from the unigram frequencies of the fitted text (α = 1), counted here
    with a Counter over LINES; the model's weights play no part."""
    from collections import Counter

    counts = Counter("".join(LINES))
    total = sum(counts.values())
    bars = dict(next_token_distribution(model, tokenizer, "", alpha=1.0, n=len(tokenizer.vocab)))
    assert {t: p for t, p in bars.items() if p > 0} == pytest.approx({t: c / total for t, c in counts.items()})


def test_word_tokens_are_joined_with_spaces():
    tok = make_tokenizer("word").fit(LINES)
    torch.manual_seed(0)
    m = build_model(ModelConfig(kind="gru", vocab_size=len(tok.vocab), num_hiddens=8)).eval()
    pieces = list(generate(m, tok, "the time", 5, alpha=1.0, seed=0))
    assert len(pieces) == 5 and all(p.startswith(" ") for p in pieces)


def test_bad_sampling_options_are_config_errors(model, tokenizer):
    for kw in ({"alpha": -1.0}, {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ConfigError):
            generate(model, tokenizer, "time", 3, **kw)


def test_top_p_keeps_the_nucleus():
    logits = torch.log(torch.tensor([0.2, 0.5, 0.3]))
    assert sampling_distribution(logits, 1.0, top_p=0.6).tolist() == pytest.approx([0, 0.625, 0.375])
    assert sampling_distribution(logits, 1.0, top_p=0.5).tolist() == pytest.approx([0, 1, 0])
    assert sampling_distribution(logits, 1.0, top_p=1.0).tolist() == pytest.approx([0.2, 0.5, 0.3])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-20, 20), min_size=2, max_size=30), st.integers(1, 30),
       st.sampled_from([0.0, 0.5, 1.0, 3.0, math.inf]), st.sampled_from([None, 0.3, 0.9, 1.0]))
def test_sampling_distribution_invariants(values, k, alpha, top_p):
    logits = torch.tensor(values)
    q = sampling_distribution(logits, alpha, top_k=k, top_p=top_p)
    assert float(q.sum()) == pytest.approx(1.0, abs=1e-5) and bool((q >= 0).all())
    support = set(torch.nonzero(q).flatten().tolist())
    kth = torch.sort(logits, descending=True).values[min(k, len(values)) - 1]
    assert all(logits[i] >= kth for i in support)  # never outside the top k
    assert len(support) <= k


def test_alpha_zero_is_uniform_over_tokens_the_model_allows():
    import math

    import torch

    from engine.generate import sampling_distribution

    logits = torch.tensor([-math.inf, 0.3, 2.0, -math.inf, -1.0])
    assert sampling_distribution(logits, 0.0).tolist() == pytest.approx([0, 1 / 3, 1 / 3, 0, 1 / 3])


def test_a_huge_alpha_is_greedy_not_nan():
    import torch

    from engine.generate import sampling_distribution

    logits = torch.tensor([0.1, 2.0, -1.0])
    assert sampling_distribution(logits, 1e308).tolist() == [0.0, 1.0, 0.0]


def test_prompts_are_cleaned_like_the_training_text():
    from engine.corpus import prompt_text

    assert prompt_text("The Time-Machine, ", "d2l") == "the time machine "
    assert prompt_text("The Time-Machine, ", "raw") == "The Time-Machine, "


def test_tokens_never_seen_in_training_are_never_generated(corpus_dir):
    import math

    import torch

    from engine.corpus import load_corpus
    from engine.generate import generate, next_token_distribution
    from engine.config import ModelConfig
    from engine.models import build_model
    from engine.pipeline import build_pipeline

    pipe = build_pipeline(load_corpus(str(corpus_dir / "timemachine.txt")), tokenizer="char")
    assert dict(pipe.vocab.token_freqs).get("<unk>", 0) == 0
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="rnn", vocab_size=len(pipe.vocab), num_hiddens=8))
    with torch.no_grad():
        model.linear.bias[pipe.vocab.unk] = 50.0  # the untrained model "prefers" <unk>
    text = "".join(generate(model, pipe.tokenizer, "time ", 200, alpha=0.0, seed=1))
    assert "<unk>" not in text and len(text) == 200
    dist = dict(next_token_distribution(model, pipe.tokenizer, "time ", alpha=1.0, n=len(pipe.vocab)))
    assert dist.get("<unk>", 0.0) == 0.0 and math.isclose(sum(dist.values()), 1.0, rel_tol=1e-5)
