"""Big corpora (issue 8): narrow id dtypes, chunked passes equal to whole-text
ones, n-grams on a prefix that say so, progress callbacks and bounded memory.

Memory is asserted with ``tracemalloc`` (numpy reports its buffers to it), so
the bounds are exact byte counts, never timings. The wall-clock and RSS
figures on 20 MB and 200 MB files come from ``bench/bench_memory.py``.
"""

from __future__ import annotations

import io
import tracemalloc
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import pipeline, stats
from engine.corpus import Corpus, decode_text, load_corpus, preprocess, strip_gutenberg
from engine.data import SAMPLERS, data_iter
from engine.stats import corpus_stats, corpus_summary, ngram_counts
from engine.pipeline import build_pipeline, corpus_chunks, corpus_lines, line_end, text_pieces
from engine.tokenizer_base import IdArray
from engine.tokenizers import make_tokenizer
from engine.vocab import Vocab, narrowest_dtype
from tui.cli import main
from tui.cli.corpus import StepBar


@dataclass(frozen=True)
class StandIn:
    """Anything with ``.text`` works as a corpus for ``build_pipeline``."""

    text: str


@pytest.fixture(scope="module")
def timemachine(corpus_dir):
    return load_corpus(str(corpus_dir / "timemachine.txt"))


def expected_dtype(vocab_len: int) -> np.dtype:
    """Independent of the code under test: the first type whose range holds vocab_len - 1."""
    return np.dtype(next(t for t in (np.uint8, np.uint16, np.int32) if np.iinfo(t).max >= vocab_len - 1))


# --- narrow dtypes ----------------------------------------------------------------


@pytest.mark.parametrize(
    "vocab_len, dtype",
    [(200, np.uint8), (256, np.uint8), (257, np.uint16), (300, np.uint16),
     (65536, np.uint16), (65537, np.int32), (70000, np.int32)],
)
def test_ids_use_the_narrowest_dtype_that_fits_the_vocabulary(vocab_len, dtype):
    words = [f"w{i}" for i in range(vocab_len - 1)]  # plus <unk>
    lines = [" ".join(words[i : i + 100]) for i in range(0, len(words), 100)]
    tok = make_tokenizer("word").fit(lines)
    assert len(tok.vocab) == vocab_len
    assert narrowest_dtype(vocab_len) == expected_dtype(vocab_len) == np.dtype(dtype)
    ids = tok.encode_corpus(lines)
    assert ids.dtype == dtype and tok.encode("w0 nope").dtype == dtype
    # every index survives, the largest included: nothing wraps around
    assert ids.astype(np.int64).tolist() == [tok.vocab.token_to_idx[w] for w in words]
    assert int(ids.max()) == vocab_len - 1


def test_pipeline_ids_of_the_book_are_one_byte_per_character(timemachine):
    p = build_pipeline(timemachine, tokenizer="char")
    assert p.ids.dtype == np.uint8 and p.ids.nbytes == len(p.ids) == 170580


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
def test_narrow_ids_give_the_same_int64_batches(sampler, dtype):
    ids = np.random.default_rng(0).integers(0, 250, size=3000)
    ends = {"sentence_end_ids": (7,)} if sampler == "sentences" else {}  # token 7 ends a sentence
    wide = list(data_iter(ids, 8, 10, sampler, rng=np.random.default_rng(1), **ends))
    narrow = list(data_iter(ids.astype(dtype), 8, 10, sampler, rng=np.random.default_rng(1), **ends))
    assert len(wide) == len(narrow) > 0
    for (X, Y), (Xn, Yn) in zip(wide, narrow):
        assert Xn.dtype == Yn.dtype == torch.int64
        assert torch.equal(X, Xn) and torch.equal(Y, Yn)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_minibatches_never_widen_the_whole_corpus(sampler):
    ids = np.zeros(2_000_000, dtype=np.uint8)  # an int64 copy would be 16 MB
    tracemalloc.start()
    try:
        ends = {"sentence_end_ids": (1,)} if sampler == "sentences" else {}  # no 1: one sentence, in pieces
        batches = data_iter(ids, 32, 35, sampler, rng=np.random.default_rng(0), **ends)
        X, Y = next(batches)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert X.shape == (32, 35) and X.dtype == torch.int64
    # random sampling draws a permutation of the subsequences (int64, ~0.5 MB here); sentences also scan the
    # corpus for sentence ends (a bool mask, 2 MB here) and keep their pieces' starts: still under half the
    # 16 MB an int64 copy would take
    assert peak < (8_000_000 if sampler == "sentences" else 2_000_000)


# --- chunked passes equal whole-text ones ---------------------------------------------

TEXT = st.text(alphabet=st.sampled_from(list("ab cD\n\n.é✓\t")), max_size=300)


@settings(max_examples=80, deadline=None)
@given(text=TEXT, chunk=st.integers(1, 40), mode=st.sampled_from(["d2l", "raw"]),
       kind=st.sampled_from(["char", "word", "bpe"]), head=st.integers(0, 300))
def test_chunks_concatenate_to_the_lines_of_the_whole_text(text, chunk, mode, kind, head):
    pieces = list(text_pieces(text, chunk))
    assert "".join(pieces) == text and all(p.endswith("\n") for p in pieces[:-1])
    chunks = list(corpus_chunks(text, mode, kind, chunk_chars=chunk))
    lines = corpus_lines(text, mode, kind)
    assert [line for c in chunks for line in c] == lines
    # stopping at a line end gives the first lines, exactly as they are in the whole text
    end = line_end(text, head)
    first = [line for c in corpus_chunks(text, mode, kind, chunk_chars=chunk, end=end) for line in c]
    assert first == lines[: len(preprocess(text[:end], mode))]


@settings(max_examples=80, deadline=None)
@given(text=TEXT, chunk=st.integers(1, 40), mode=st.sampled_from(["d2l", "raw"]),
       kind=st.sampled_from(["char", "word"]))
def test_chunked_pipeline_equals_d2l_on_the_whole_text(text, chunk, mode, kind):
    # The reference is D2L's own way, in plain Python on the whole text at once.
    lines = preprocess(text, mode)
    if mode == "raw" and kind == "char":
        lines = [line + "\n" for line in lines[:-1]] + lines[-1:]
    tokens = list("".join(lines)) if kind == "char" else [w for line in lines for w in line.split()]
    vocab = Vocab(tokens)
    with mock.patch.object(pipeline, "CHUNK_CHARS", chunk):
        p = build_pipeline(StandIn(text), mode=mode, tokenizer=kind)
    assert p.vocab.idx_to_token == vocab.idx_to_token and p.vocab.token_freqs == vocab.token_freqs
    assert p.ids.tolist() == [vocab.token_to_idx[t] for t in tokens]
    assert p.num_lines == len(lines)


@pytest.mark.parametrize("kind", ["char", "word", "bpe", "wordpiece"])
def test_the_book_in_small_chunks_gives_the_same_pipeline(kind, timemachine, monkeypatch):
    whole = build_pipeline(timemachine, mode="raw", tokenizer=kind, vocab_size=400)
    monkeypatch.setattr(pipeline, "CHUNK_CHARS", 997)
    chunked = build_pipeline(timemachine, mode="raw", tokenizer=kind, vocab_size=400)
    if kind == "wordpiece":  # HuggingFace's WordPiece trainer breaks ties in hash order
        assert len(chunked.vocab) == pytest.approx(len(whole.vocab), abs=20)
        return
    assert np.array_equal(whole.ids, chunked.ids) and whole.ids.dtype == chunked.ids.dtype
    assert whole.vocab == chunked.vocab and whole.tokenizer.merges == chunked.tokenizer.merges


def test_id_array_grows_to_the_concatenation_of_its_parts():
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 60000, size=int(n)).astype(np.uint16) for n in rng.integers(0, 5000, size=60)]
    out = IdArray(np.dtype(np.uint16), capacity=10)
    for part in parts:
        out.extend(part)
    assert len(out) == sum(map(len, parts))
    got = out.finish()
    assert got.dtype == np.uint16 and np.array_equal(got, np.concatenate(parts))


def test_subword_token_counts_over_many_id_chunks_match_the_token_strings(timemachine, monkeypatch):
    p = build_pipeline(timemachine, mode="raw", tokenizer="bpe", vocab_size=400)
    tokens = [t for line in p.tokenizer.tokenize(p.lines) for t in line]
    monkeypatch.setattr(stats, "CHUNK_IDS", 1000)  # ~75 chunks, new pieces seen in many of them
    uni = corpus_summary(p, max_n=1, top_k=400)["ngrams"][0]
    counter = Counter(tokens)
    assert uni["distinct"] == len(counter) and uni["total"] == len(tokens)
    assert uni["top"] == [[[t], c] for t, c in counter.most_common(400)]  # ties first-seen


def test_a_subword_tokenizer_trains_on_the_head_of_a_big_text_and_says_so(timemachine, monkeypatch):
    text = timemachine.text
    assert build_pipeline(timemachine, tokenizer="bpe", vocab_size=300).warnings == ()
    monkeypatch.setattr(pipeline, "SUBWORD_FIT_CHARS", 20_000)
    p = build_pipeline(timemachine, tokenizer="bpe", vocab_size=300)
    head = text.index("\n", 20_000) + 1  # the line that holds character 20,000 is trained on whole
    assert p.warnings == (f"bpe was trained on the first {head:,} of {len(text):,} characters (a subword "
                          "trainer's memory grows with the text); all of the text is encoded",)
    alone = make_tokenizer("bpe", vocab_size=300).fit(corpus_lines(text[:head], "d2l", "bpe"))
    assert p.tokenizer.merges == alone.merges
    assert np.array_equal(p.ids, alone.encode_corpus(corpus_lines(text, "d2l", "bpe")))
    assert len(p.ids) == sum(c for _, c in p.vocab.token_freqs)  # pieces counted over the whole text


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from(["*** START OF X ***\n", "*** END OF X ***\n", "To hear about new eBooks.\n",
                                 "End of the Project Gutenberg EBook\n", "** no\n", "*\n", "text\n", "\n"]),
                max_size=12))
def test_decoding_skips_the_gutenberg_regexes_only_when_no_marker_can_match(parts):
    text = "".join(parts)
    assert decode_text(text.encode("utf-8")) == strip_gutenberg(text)


# --- n-grams on a prefix -------------------------------------------------------------


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["corpus", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_ngrams_on_a_prefix_count_that_prefix_and_say_so(timemachine, monkeypatch, capsys):
    words = [w for line in build_pipeline(timemachine, tokenizer="word").lines for w in line.split()]
    assert corpus_summary(build_pipeline(timemachine, tokenizer="word"))["ngram_tokens"] is None
    monkeypatch.setattr(stats, "NGRAM_MAX_TOKENS", 1000)
    for min_freq in (0, 10):  # with 10, rare words are still counted as written, not as <unk>
        s = corpus_summary(build_pipeline(timemachine, tokenizer="word", min_freq=min_freq), max_n=3, top_k=5)
        assert s["tokens"] == 32775 and s["ngram_tokens"] == 1000
        uni, bi, tri = s["ngrams"]
        assert (uni["total"], uni["distinct"]) == (32775, 4579)  # tokens: the whole book
        for g, n in ((bi, 2), (tri, 3)):
            counter = ngram_counts(words[:1000], n)
            assert (g["total"], g["distinct"]) == (1000 - n + 1, len(counter))
            assert g["top"] == [[list(k), c] for k, c in counter.most_common(5)]
    rc, out, _ = run_cli(capsys, "--tokenizer", "word", "--max-n", "2", "--top", "1")
    assert rc == 0
    assert "n-grams for n >= 2 are counted on the first 1,000 of 32,775 tokens" in out
    assert "top 2-grams   (first 1,000 tokens)" in out
    assert "  1       4579      32775  1.044\n" in out  # the token row has no note
    rc, out, _ = run_cli(capsys, "--tokenizer", "word", "--max-n", "2", "--json")
    assert json_ngram_tokens(out) == 1000


def json_ngram_tokens(out: str) -> int | None:
    import json

    return json.loads(out)["ngram_tokens"]


# --- progress ---------------------------------------------------------------------


@pytest.mark.parametrize("kind, first_step", [("word", "counting tokens"), ("bpe", "training bpe")])
def test_progress_hears_each_pass_with_growing_counts(kind, first_step, timemachine, monkeypatch):
    monkeypatch.setattr(pipeline, "CHUNK_CHARS", 10_000)
    calls: list[tuple[str, int, int | None]] = []
    p = build_pipeline(timemachine, tokenizer=kind, vocab_size=300, progress=lambda *a: calls.append(a))
    steps = list(dict.fromkeys(step for step, _, _ in calls))
    assert steps == [first_step, "encoding"]
    n = len(timemachine.text)
    for step in steps:
        done = [d for s, d, _ in calls if s == step]
        assert done[0] == 0 and done[-1] == n and all(b > a for a, b in zip(done, done[1:]))
        assert len(done) > n // 10_000  # one call per chunk, and one before the first
        assert {t for s, _, t in calls if s == step} == {n}
    calls.clear()
    corpus_stats(p, max_n=4, progress=lambda *a: calls.append(a))
    assert calls == [("counting n-grams", k, 4) for k in range(5)]


def test_step_bar_shows_a_step_only_once_it_has_run_a_second():
    from rich.console import Console

    now = [0.0]
    out = io.StringIO()
    bar = StepBar(clock=lambda: now[0], console=Console(file=out, force_terminal=True, width=80))
    bar("counting tokens", 0, 100)
    now[0] = 0.9
    bar("counting tokens", 100, 100)
    assert not bar.shown  # a quick step prints nothing
    bar("encoding", 0, 100)
    now[0] = 2.0
    bar("encoding", 40, 100)
    assert bar.shown
    bar("encoding", 70, 100)
    bar.close()
    assert not bar.shown
    text = out.getvalue()
    assert "encoding" in text and "counting tokens" not in text


def test_step_bar_timer_shows_a_step_that_blocks_without_reporting():
    from rich.console import Console

    out = io.StringIO()
    bar = StepBar(clock=lambda: 0.0, console=Console(file=out, force_terminal=True, width=80))
    bar("reading book.txt", 0, None)  # then load_corpus blocks: no more calls
    assert not bar.shown
    bar._on_timer()  # what the timer does once SHOW_AFTER_S has passed
    assert bar.shown
    bar.close()
    bar._on_timer()  # a timer that fires after close shows nothing
    assert not bar.shown and "reading book.txt" in out.getvalue()


# --- memory -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["char", "word"])
def test_pipeline_and_summary_stay_within_a_few_times_the_text(kind, monkeypatch):
    """Streaming keeps the traced peak near the ids plus one chunk's work: the old
    pipeline held the lines, a list of every token and int64 copies (> 20x the text)."""
    rng = np.random.default_rng(0)
    words = np.array(["the", "time", "machine", "traveller", "said", "and", "of", "a", "it", "was"])
    text = "\n".join(" ".join(rng.choice(words, size=12)) for _ in range(80_000)) + "\n"  # ~4.4 MB
    monkeypatch.setattr(pipeline, "CHUNK_CHARS", 1 << 16)
    monkeypatch.setattr(stats, "NGRAM_MAX_TOKENS", 100_000)
    tracemalloc.start()
    try:
        p = build_pipeline(Corpus("synthetic", Path("synthetic.txt"), text), mode="raw", tokenizer=kind)
        s = corpus_summary(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert s["tokens"] == (len(text) - 1 if kind == "char" else 12 * 80_000)  # raw: the last "\n" ends a line
    assert s["ngram_tokens"] == 100_000
    assert peak < 3 * len(text)


def test_reading_a_marked_crlf_file_holds_at_most_its_bytes_and_one_text(tmp_path, corpus_dir):
    """A Gutenberg book with CRLF line ends: the bytes are dropped before the text is copied, and the
    one book between the markers is cut out with one slice, so at most two texts exist at once. The
    old reader held the bytes, the text, its CRLF-free copy, the body and its end-note-free copy."""
    import sys

    from engine.corpus import load_corpus

    book = (corpus_dir / "war_of_the_worlds.txt").read_bytes()  # CRLF, header, licence
    head, rest = book.split(b"\r\n*** START", 1)
    body, tail = rest.split(b"\r\n*** END", 1)
    f = tmp_path / "big.txt"
    f.write_bytes(head + b"\r\n*** START" + body * 12 + b"\r\n*** END" + tail)  # ~4.3 MB, ASCII
    tracemalloc.start()
    try:
        text = load_corpus(str(f)).text
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    expected = body.split(b"\r\n", 1)[1].replace(b"\r\n", b"\n").decode("utf-8")
    assert text.startswith("by H. G. Wells\n") and text.count("among the dead.\n") == 12
    assert len(text) > 0.95 * len(expected * 12)
    assert peak < 2.3 * sys.getsizeof(text)  # the text has curly quotes: 2 bytes a character
