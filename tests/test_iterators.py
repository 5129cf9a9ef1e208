"""rnnlab's samplers beyond D2L's two (issue 11, 8.3): the book's 0..34 example by hand, sliding windows,
the uniform and fixed samplers' coverage, whole sentences padded and masked (the same loss as scoring
each sentence alone), batches_per_epoch and coverage against the batches data_iter yields, and a short
training run through engine.trainer.train with every new sampler."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from engine.config import SAMPLERS, ModelConfig, TrainConfig
from engine.data import batches_per_epoch, coverage, data_iter
from engine.errors import ConfigError
from engine.events import Progress
from engine.models import build_model
from engine.pipeline import build_pipeline
from engine.sentences import IGNORE_INDEX, pieces, sentence_bounds, sentence_end_ids, with_sentence_ends
from engine.trainer import train
from engine.training import sequence_loss

NEW = ("sliding", "uniform", "fixed", "sentences")


def test_the_registry_offers_every_sampler_and_only_sequential_carries_state():
    assert SAMPLERS == ("random", "sequential", *NEW)
    assert [s for s in SAMPLERS if TrainConfig(sampler=s).carries_state] == ["sequential"]
    assert [s for s in SAMPLERS if TrainConfig(sampler=s).pads] == ["sentences"]


def seed_with_offset(offset: int, num_steps: int) -> int:
    """A seed whose generator's first draw in 0..num_steps-1 is ``offset`` (the samplers draw it first)."""
    return next(s for s in range(1000) if int(np.random.default_rng(s).integers(num_steps)) == offset)


def test_the_books_example_sequential_at_offset_3_by_hand():
    """0..34, batch_size 2, num_steps 5, offset 3: rows of (35 - 3 - 1) // 2 = 15 tokens start at 3 and 18,
    15 // 5 = 3 minibatches walk along them."""
    rng = np.random.default_rng(seed_with_offset(3, 5))
    got = [(X.tolist(), Y.tolist()) for X, Y in data_iter(np.arange(35), 2, 5, "sequential", rng=rng)]
    assert got == [
        ([[3, 4, 5, 6, 7], [18, 19, 20, 21, 22]], [[4, 5, 6, 7, 8], [19, 20, 21, 22, 23]]),
        ([[8, 9, 10, 11, 12], [23, 24, 25, 26, 27]], [[9, 10, 11, 12, 13], [24, 25, 26, 27, 28]]),
        ([[13, 14, 15, 16, 17], [28, 29, 30, 31, 32]], [[14, 15, 16, 17, 18], [29, 30, 31, 32, 33]]),
    ]


def test_sliding_windows_start_at_multiples_of_the_stride():
    """20 tokens, num_steps 5, stride 2: a window needs start + 6 <= 20, so starts 0, 2, …, 14 (eight),
    each once, in minibatches of 3, 3 and 2; stride 0 means num_steps // 2 = 2."""
    for stride in (2, 0):
        batches = list(data_iter(np.arange(20), 3, 5, "sliding", rng=np.random.default_rng(4), stride=stride))
        starts = sorted(int(x) for X, _ in batches for x in X[:, 0])
        assert starts == [0, 2, 4, 6, 8, 10, 12, 14]
        assert [X.shape[0] for X, _ in batches] == [3, 3, 2]
        for X, Y in batches:
            assert torch.equal(X, X[:, :1] + torch.arange(5)) and torch.equal(Y, X + 1)
    assert batches_per_epoch(20, 3, 5, "sliding", stride=2) == 3
    assert batches_per_epoch(20, 3, 5, "sliding", stride=5) == 1  # starts 0, 5, 10: one minibatch of 3


def test_fixed_never_reads_the_tail_and_always_the_head():
    """0..34, batch 2, 5 steps at offset 0: 34 // 5 = 6 subsequences at 0, 5, …, 25 fill three minibatches;
    positions 30..34 are never inputs, every other position is one in every epoch."""
    assert coverage(35, 2, 5, "fixed", 7, seed=3).tolist() == [7] * 30 + [0] * 5
    starts = sorted(int(x) for X, _ in data_iter(np.arange(35), 2, 5, "fixed", rng=np.random.default_rng(1))
                    for x in X[:, 0])
    assert starts == [0, 5, 10, 15, 20, 25]


def test_uniform_coverage_is_flatter_than_random():
    """D2L's defaults (10,000 tokens, batch 32, 35 steps), 50 epochs: random loses its head and tail and
    drops 29 of ~285 subsequences per epoch; uniform misses only 9999 % 35 = 24 positions per epoch, at a
    random place, so its counts vary far less across positions (the last token is never an input)."""
    n, b, s, e = 10_000, 32, 35, 50
    rand, uni = coverage(n, b, s, "random", e, seed=0), coverage(n, b, s, "uniform", e, seed=0)
    assert uni.std() < rand.std() / 4
    assert int((e - uni[:-1]).sum()) == e * ((n - 1) % s) and uni[-1] == 0
    assert uni[:s].min() > e // 2 > rand[:s].min()  # the head too


def test_uniform_reads_the_text_as_a_ring_by_hand():
    """0..34, batch 2, 5 steps, offset 12, no shuffle: windows at 12, 17, 22, 27, 32 and 3 (34 // 5 = 6);
    the one at 32 crosses the end, each target still its input's next token; 8..11 are not read."""
    got = [(X.tolist(), Y.tolist()) for X, Y in data_iter(np.arange(35), 2, 5, "uniform", rng=_Scripted(12))]
    assert got == [
        ([[12, 13, 14, 15, 16], [17, 18, 19, 20, 21]], [[13, 14, 15, 16, 17], [18, 19, 20, 21, 22]]),
        ([[22, 23, 24, 25, 26], [27, 28, 29, 30, 31]], [[23, 24, 25, 26, 27], [28, 29, 30, 31, 32]]),
        ([[32, 33, 0, 1, 2], [3, 4, 5, 6, 7]], [[33, 34, 1, 2, 3], [4, 5, 6, 7, 8]]),
    ]


class _Scripted:
    """A generator whose offset draw is ``offset`` and whose shuffles are the identity."""

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset

    def integers(self, high: int) -> int:
        assert 0 <= self.offset < high
        return self.offset

    def permutation(self, n: int) -> np.ndarray:
        return np.arange(n)


@pytest.mark.parametrize("sampler", ["sliding", "uniform", "fixed"])
def test_coverage_and_batch_counts_replay_data_iter(sampler):
    """coverage equals counting the inputs data_iter yields from one default_rng(seed); batches_per_epoch
    is the most minibatches an epoch yields."""
    for n, b, s, stride, epochs in [(50, 3, 4, 1, 3), (37, 2, 5, 3, 2), (64, 4, 3, 0, 5)]:
        rng, counts, sizes = np.random.default_rng(9), np.zeros(n, dtype=np.int64), set()
        for _ in range(epochs):
            batches = list(data_iter(np.arange(n), b, s, sampler, rng=rng, stride=stride))
            sizes.add(len(batches))
            for X, _ in batches:
                np.add.at(counts, X.flatten().numpy(), 1)
        assert coverage(n, b, s, sampler, epochs, seed=9, stride=stride).tolist() == counts.tolist()
        assert max(sizes) <= batches_per_epoch(n, b, s, sampler, stride=stride)
    assert len(list(data_iter(np.arange(40), 3, 4, sampler, rng=_Scripted(0)))) == batches_per_epoch(40, 3, 4, sampler)


# --- sentences ------------------------------------------------------------------------------------
def char_pipeline(text: str):
    return build_pipeline(SimpleNamespace(text=text), mode="raw", tokenizer="char")


def test_sentences_are_cut_after_runs_of_end_tokens_by_hand():
    """'Hi. Go!? Ok' as characters: sentences 'Hi.', ' Go!?', ' Ok' → bounds [0, 3, 8, 11]; with 2 steps
    'Hi.' has inputs 0..1 (one piece), ' Go!?' inputs 3..6 (pieces at 3 and 5), ' Ok' inputs 8..9."""
    pipe = char_pipeline("Hi. Go!? Ok")
    ends = sentence_end_ids(pipe.tokenizer)
    assert sorted(pipe.tokenizer.decode([i]) for i in ends) == ["!", ".", "?"]
    assert sentence_bounds(pipe.ids, ends).tolist() == [0, 3, 8, 11]
    starts, lengths = pieces(pipe.ids, ends, 2)
    assert starts.tolist() == [0, 3, 5, 8] and lengths.tolist() == [2, 2, 2, 2]
    starts, lengths = pieces(pipe.ids, ends, 3)
    assert starts.tolist() == [0, 3, 6, 8] and lengths.tolist() == [2, 3, 1, 2]


def test_d2l_mode_has_no_sentence_ends_and_says_to_use_raw():
    pipe = build_pipeline(SimpleNamespace(text="Hi. Go! Ok."), mode="d2l", tokenizer="char")
    with pytest.raises(ConfigError, match="^sampler sentences needs tokens that end a sentence.*--mode raw"):
        with_sentence_ends(TrainConfig(sampler="sentences"), pipe.tokenizer)
    assert with_sentence_ends(TrainConfig(), pipe.tokenizer) == TrainConfig()  # other samplers: unchanged
    with pytest.raises(ConfigError, match="^sampler sentences needs sentence_end_ids"):
        data_iter(np.arange(50), 2, 3, "sentences")


TEXT = ("The cat sat. A dog ran far away! Why? It rained on the old town all day. "
        "No. We walked home slowly, then slept. Fine!")


def real_sentences(text: str) -> list[str]:
    """The sentences written out by hand: each ends at its '.', '!' or '?'; the space after starts the next."""
    return ["The cat sat.", " A dog ran far away!", " Why?", " It rained on the old town all day.", " No.",
            " We walked home slowly, then slept.", " Fine!"]


def test_masked_sentence_minibatches_score_like_each_sentence_alone():
    """A small RNN: the masked minibatches' losses, weighted by their real targets, equal the sum over
    sentences scored one at a time (batch 1, no padding) divided by the real targets; so does the
    perplexity. Padding exists (lengths differ) and is reported."""
    pipe = char_pipeline(TEXT)
    tok, ends = pipe.tokenizer, sentence_end_ids(pipe.tokenizer)
    assert "".join(real_sentences(TEXT)) == TEXT
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="rnn", vocab_size=len(tok.vocab), num_hiddens=16)).eval()
    alone, real = 0.0, 0
    with torch.no_grad():
        for sentence in real_sentences(TEXT):
            ids = torch.as_tensor(tok.encode(sentence).astype(np.int64))[None]
            logits, _ = model(ids[:, :-1], model.begin_state(1))
            alone += F.cross_entropy(logits[:, 0], ids[0, 1:], reduction="sum").item()
            real += ids.shape[1] - 1
        batched, padded, seen = 0.0, 0, 0
        for X, Y in data_iter(pipe.ids, 2, 35, "sentences", rng=np.random.default_rng(1), sentence_end_ids=ends):
            logits, _ = model(X, model.begin_state(X.shape[0]))
            n_real = int((Y != IGNORE_INDEX).sum())
            batched += sequence_loss(logits, Y).item() * n_real
            padded += int((Y == IGNORE_INDEX).sum())
            seen += n_real
    assert seen == real == len(TEXT) - 7 and padded > 0
    assert batched / real == pytest.approx(alone / real, rel=1e-5)
    assert math.exp(batched / real) == pytest.approx(math.exp(alone / real), rel=1e-5)
    counts = coverage(len(pipe.ids), 2, 35, "sentences", 2, ids=pipe.ids, sentence_end_ids=ends)
    last = np.cumsum([len(s) for s in real_sentences(TEXT)]) - 1  # each sentence's last token: only a target
    assert counts.tolist() == [0 if p in set(last.tolist()) else 2 for p in range(len(TEXT))]


def test_bucketing_pads_less_than_text_order():
    """Minibatches of neighbours in length waste fewer positions than minibatches in text order."""
    from engine.sentences import sentence_epoch

    pipe = char_pipeline(TEXT * 4)
    ends = sentence_end_ids(pipe.tokenizer)
    epoch = sentence_epoch(pipe.ids, ends, 4, 40, np.random.default_rng(0))
    lengths = epoch.lengths
    text_order = sum(len(lengths[i:i + 4]) * lengths[i:i + 4].max() for i in range(0, len(lengths), 4))
    assert epoch.padded_positions < text_order
    assert epoch.padding_share == pytest.approx(1 - lengths.sum() / epoch.padded_positions)
    assert batches_per_epoch(len(pipe.ids), 4, 40, "sentences", ids=pipe.ids, sentence_end_ids=ends) == 7  # 28 / 4


# --- the trainer ----------------------------------------------------------------------------------
def tiny(vocab_size: int) -> ModelConfig:
    return ModelConfig(kind="rnn", vocab_size=vocab_size, num_hiddens=16)


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=4, num_steps=8, lr=0.5, val_fraction=0.0, max_tokens=0, device="cpu",
                sample_every=0, log_interval_s=1e9, checkpoint_interval_s=1e9)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("sampler", ["sliding", "uniform", "fixed", "sentences"])
def test_training_runs_with_every_new_sampler(sampler):
    pipe = char_pipeline(TEXT * 3)
    tc = with_sentence_ends(cfg(sampler=sampler, stride=3, num_steps=40 if sampler == "sentences" else 8),
                            pipe.tokenizer)
    events = list(train(pipe, tiny(len(pipe.vocab)), tc))
    ends = [e for e in events if isinstance(e, Progress) and e.epoch_end]
    assert [e.epoch for e in ends] == [1, 2]
    assert all(math.isfinite(e.train_ppl) and 1 < e.train_ppl < 2 * len(pipe.vocab) for e in ends)
    assert events[-1].reason == "completed"


# Ten sentences of 4 or 5 characters (44 in all): with num_steps 4 and batch_size 10 the size rule
# (batch_size + 1) · num_steps = 44 holds and one minibatch takes every sentence, padded to 4 inputs.
SHORT = ["Ab c.", " Cd.", " E f.", " Gh.", " Ij!", " Kk.", " L n?", " Op.", " Q r.", " St."]


def test_sentences_training_perplexity_is_over_real_tokens():
    """One minibatch holds every sentence, so epoch 1's perplexity is that of the initial weights:
    exp(sum of each sentence's loss scored alone / real targets), padding left out."""
    text = "".join(SHORT)
    pipe = char_pipeline(text)
    tok = pipe.tokenizer
    mc = tiny(len(tok.vocab))
    torch.manual_seed(0)
    model = build_model(mc)
    before = copy.deepcopy(model).eval()
    tc = with_sentence_ends(cfg(sampler="sentences", batch_size=10, num_steps=4, epochs=1), tok)
    (X, Y), = data_iter(pipe.ids, 10, 4, "sentences", rng=np.random.default_rng(0), sentence_end_ids=tc.sentence_end_ids)
    assert X.shape == (10, 4) and int((Y == IGNORE_INDEX).sum()) == 40 - (len(text) - len(SHORT))  # 6 padded
    events = list(train(pipe, mc, tc, model=model))
    got = next(e for e in events if isinstance(e, Progress) and e.epoch_end).train_ppl
    total, real = 0.0, 0
    with torch.no_grad():
        for sentence in SHORT:
            ids = torch.as_tensor(tok.encode(sentence).astype(np.int64))[None]
            logits, _ = before(ids[:, :-1], before.begin_state(1))
            total += F.cross_entropy(logits[:, 0], ids[0, 1:], reduction="sum").item()
            real += ids.shape[1] - 1
    assert real == 34
    assert got == pytest.approx(math.exp(total / real), rel=1e-5)


@pytest.mark.parametrize("stride, message", [(-1, "got -1"), (9, "got 9"), (1.5, "got 1.5"), (True, "got True")])
def test_stride_is_checked(stride, message):
    with pytest.raises(ConfigError, match=r"^stride must be an integer in 0\.\.num_steps \(8\) \(" + message):
        cfg(stride=stride)


def test_the_trainers_sentence_perplexity_weights_minibatches_by_real_targets():
    """An epoch of several padded minibatches with weights that do not move (lr 1e-30): the trainer's train
    perplexity is exp(summed loss over every real target / real targets), computed here from the epoch's own
    minibatches (the trainer's order: seed and epoch) with reduction='sum' — not the mean of minibatch means,
    which differs here because the minibatches hold different numbers of real targets."""
    from engine.data import train_batches
    from engine.events import Progress
    from engine.trainer import train

    pipe = char_pipeline(TEXT * 3)
    cfg = with_sentence_ends(TrainConfig(sampler="sentences", batch_size=2, num_steps=12, epochs=1, lr=1e-30,
                                         max_tokens=0, val_fraction=0.0, sample_every=0, threads=1, clip="off"),
                             pipe.tokenizer)
    mc = ModelConfig(kind="gru", vocab_size=len(pipe.tokenizer.vocab), num_hiddens=8)
    torch.manual_seed(0)
    model = build_model(mc)
    total, real, means = 0.0, 0, []
    with torch.no_grad():
        for X, Y in train_batches(pipe.ids, cfg, np.random.default_rng([cfg.seed, 1])):
            logits, _ = model(X, model.begin_state(X.shape[0]))
            # logits are time-major (num_steps, batch, vocab): the targets are read in the same order
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y.T.reshape(-1), reduction="sum").item()
            n = int((Y != IGNORE_INDEX).sum())
            total, real = total + loss, real + n
            means.append(loss / n)
    end = [e for e in train(pipe, mc, cfg, model=model) if isinstance(e, Progress) and e.epoch_end][0]
    assert len(means) > 3
    assert end.train_ppl == pytest.approx(math.exp(total / real), rel=1e-5)
    assert abs(math.exp(sum(means) / len(means)) - math.exp(total / real)) > 1e-4 * math.exp(total / real)
