"""engine.token_cache (issue 14, big corpora): a big corpus file's ids are encoded once into the corpus cache
as a memory-mapped .npy in the narrowest unsigned dtype, found again by a second pipeline and by a resume
(without reading the text), re-encoded when the file or the tokenizer changes or the cache file is damaged;
the samplers, the evaluation pass and the trainer read the memory map without copying it whole.

The corpora here are a few MB (``CACHE_MIN_CHARS`` lowered to 1 MiB); bench/bench_big_corpus.py runs a
1 GB one. Expected ids come from the in-memory pipeline (the cache threshold raised past the text) and, for
characters, from decoding the ids back to the text itself.
"""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import token_cache
from engine.config import SAMPLERS, ModelConfig, TrainConfig
from engine.corpus import load_corpus
from engine.data import data_iter
from engine.pipeline import build_pipeline
from engine.runs import create_run, open_run
from engine.training import evaluate

SMALL = 1 << 20  # the cache threshold in these tests: 1 Mi characters


@pytest.fixture
def big_file(tmp_path, corpus_dir, monkeypatch) -> Path:
    """~2.3 MB: The Time Machine's body 13 times, each copy with its lines in a different seeded order."""
    monkeypatch.setattr(token_cache, "CACHE_MIN_CHARS", SMALL)
    lines = load_corpus(str(corpus_dir / "timemachine.txt")).text.splitlines()
    rng = np.random.default_rng(0)
    text = "".join("\n".join(lines[i] for i in rng.permutation(len(lines))) + "\n" for _ in range(13))
    f = tmp_path / "shelf.txt"
    f.write_text(text, encoding="utf-8")
    return f


def in_memory(path: Path, monkeypatch, **kw) -> np.ndarray:
    """The ids the pipeline gives without the cache."""
    with monkeypatch.context() as m:
        m.setattr(token_cache, "CACHE_MIN_CHARS", 1 << 40)
        ids = build_pipeline(load_corpus(str(path)), **kw).ids
    assert not isinstance(ids, np.memmap)
    return ids


def steps_heard(path: Path, **kw) -> tuple[list[str], object]:
    heard: list[str] = []
    p = build_pipeline(load_corpus(str(path)), progress=lambda step, done, total: heard.append(step), **kw)
    return list(dict.fromkeys(heard)), p


@pytest.mark.parametrize("vocab_len, dtype", [(2, np.uint8), (256, np.uint8), (257, np.uint16),
                                              (65536, np.uint16), (65537, np.uint32), (4_000_000, np.uint32)])
def test_the_cache_dtype_is_the_narrowest_unsigned_one(vocab_len, dtype):
    assert token_cache.unsigned_dtype(vocab_len) == np.dtype(dtype)


def test_a_big_corpus_is_encoded_once_into_a_memory_map(big_file, monkeypatch):
    text = big_file.read_text(encoding="utf-8")
    steps, p = steps_heard(big_file, mode="raw", tokenizer="char")
    assert steps == ["counting tokens", "encoding"]
    ids = p.ids
    assert isinstance(ids, np.memmap) and ids.dtype == np.uint8 and not ids.flags.writeable
    assert Path(ids.filename).parent == token_cache.cache_dir() and Path(ids.filename).suffix == ".npy"
    # raw characters decode back to the text (its last line break is dropped, as raw mode does)
    assert p.tokenizer.decode(ids[:5000]) == text[:5000] and len(ids) == len(text) - 1
    assert np.array_equal(ids, in_memory(big_file, monkeypatch, mode="raw", tokenizer="char"))
    meta = json.loads(Path(ids.filename).with_suffix(".json").read_text())
    assert (meta["tokens"], meta["dtype"], meta["tokenizer"]) == (len(text) - 1, "uint8", "char")
    # a second pipeline of the same file fits its tokenizer again but finds the ids: no encoding pass
    steps, again = steps_heard(big_file, mode="raw", tokenizer="char")
    assert steps == ["counting tokens"] and again.ids.filename == ids.filename
    assert np.array_equal(again.ids, ids)
    # another mode gives other ids: an entry of its own
    _, d2l = steps_heard(big_file, mode="d2l", tokenizer="char")
    assert d2l.ids.filename != ids.filename
    assert np.array_equal(d2l.ids, in_memory(big_file, monkeypatch, mode="d2l", tokenizer="char"))


def test_a_small_corpus_stays_in_memory(corpus_dir):
    p = build_pipeline(load_corpus(str(corpus_dir / "timemachine.txt")))  # 170k characters < 16 Mi
    assert not isinstance(p.ids, np.memmap) and not token_cache.cache_dir().exists()


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_a_resume_reads_the_cached_ids_without_reading_the_text(kind, big_file, tmp_path, monkeypatch):
    p = build_pipeline(load_corpus(str(big_file)), mode="raw", tokenizer=kind, vocab_size=300)
    assert isinstance(p.ids, np.memmap)
    run = create_run(tmp_path / "runs", ModelConfig(vocab_size=len(p.vocab), num_hiddens=8),
                     TrainConfig(epochs=1, device="cpu"), p)
    import engine.corpus

    def no_reading(path):
        raise AssertionError(f"the text of {path} was read")

    monkeypatch.setattr(engine.corpus, "read_text", no_reading)
    ids = open_run(run.path).corpus_ids()  # the tokenizer as saved in tokenizer.json, loaded back
    assert isinstance(ids, np.memmap) and ids.filename == p.ids.filename


def test_a_resume_encodes_into_the_cache_when_it_is_gone(big_file, tmp_path, monkeypatch):
    p = build_pipeline(load_corpus(str(big_file)), mode="raw", tokenizer="word")
    want = np.array(p.ids)
    run = create_run(tmp_path / "runs", ModelConfig(vocab_size=len(p.vocab), num_hiddens=8),
                     TrainConfig(epochs=1, device="cpu"), p)
    for f in token_cache.cache_dir().glob("*.npy"):
        f.unlink()
    ids = open_run(run.path).corpus_ids()
    assert isinstance(ids, np.memmap) and np.array_equal(ids, want) and ids.dtype == np.uint16  # 4,580 words


def test_a_changed_file_or_tokenizer_gets_an_entry_of_its_own(big_file, monkeypatch):
    first = build_pipeline(load_corpus(str(big_file)), mode="raw", tokenizer="char").ids
    os.utime(big_file, ns=(1, 1))  # touched, same bytes: hashed again, same entry
    steps, same = steps_heard(big_file, mode="raw", tokenizer="char")
    assert steps == ["counting tokens"] and same.ids.filename == first.filename
    with open(big_file, "a", encoding="utf-8") as f:
        f.write("Zebras quietly joined the time machine.\n")  # new bytes: a new digest
    steps, changed = steps_heard(big_file, mode="raw", tokenizer="char")
    assert steps == ["counting tokens", "encoding"] and changed.ids.filename != first.filename
    assert np.array_equal(changed.ids, in_memory(big_file, monkeypatch, mode="raw", tokenizer="char"))
    word = build_pipeline(load_corpus(str(big_file)), mode="raw", tokenizer="word", min_freq=3).ids
    assert word.filename not in (first.filename, changed.ids.filename)


def test_a_damaged_cache_file_is_encoded_again(big_file, monkeypatch):
    ids = build_pipeline(load_corpus(str(big_file)), mode="raw", tokenizer="char").ids
    path, n = Path(ids.filename), len(ids)
    del ids
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 1000)  # a copy cut short
    steps, p = steps_heard(big_file, mode="raw", tokenizer="char")
    assert steps == ["counting tokens", "encoding"] and len(p.ids) == n
    assert np.array_equal(p.ids, in_memory(big_file, monkeypatch, mode="raw", tokenizer="char"))


def test_a_cache_that_cannot_be_written_keeps_the_ids_in_memory_and_says_so(big_file, monkeypatch):
    def full(self, chunks):
        for _ in chunks:  # the disk fills up after some of the encoding
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(token_cache.TokenCache, "store", full)
    p = build_pipeline(load_corpus(str(big_file)), mode="raw", tokenizer="char")
    assert not isinstance(p.ids, np.memmap)
    assert np.array_equal(p.ids, in_memory(big_file, monkeypatch, mode="raw", tokenizer="char"))
    assert any("could not be written (No space left on device)" in w for w in p.warnings)


def test_a_vocabulary_past_65536_tokens_is_cached_as_uint32(tmp_path, monkeypatch):
    monkeypatch.setattr(token_cache, "CACHE_MIN_CHARS", SMALL)
    words = [f"w{i}" for i in range(70_000)]
    f = tmp_path / "words.txt"
    f.write_text("".join(" ".join(words[i : i + 20]) + "\n" for i in range(0, len(words), 20)) * 3)  # 1.4 MB
    p = build_pipeline(load_corpus(str(f)), mode="raw", tokenizer="word")
    assert isinstance(p.ids, np.memmap) and p.ids.dtype == np.uint32 and len(p.vocab) == 70_001
    assert int(p.ids.max()) == 70_000 and np.array_equal(p.ids, in_memory(f, monkeypatch, mode="raw",
                                                                           tokenizer="word"))


# --- reading a memory map without copying it -----------------------------------------------------------


@pytest.fixture
def memmap_ids(tmp_path) -> np.ndarray:
    """4 Mi uint16 ids on disk (8 MiB; an int64 copy would be 32 MiB); token 7 ends a sentence."""
    path = tmp_path / "ids.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(1 << 22,))
    out[:] = np.random.default_rng(0).integers(0, 300, size=1 << 22)
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_samplers_read_a_memory_map_without_copying_it(sampler, memmap_ids):
    ends = {"sentence_end_ids": (7,)} if sampler == "sentences" else {}
    tracemalloc.start()
    try:
        batches = data_iter(memmap_ids, 32, 35, sampler, rng=np.random.default_rng(0), **ends)
        X, Y = next(batches)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert X.dtype == torch.int64 and X.shape[0] == 32
    # the windows' starts (8 bytes per subsequence or sentence piece) but no copy of the ids: less than the
    # memory map's own 8 MiB (scanning for sentence ends whole took three 4 MiB masks)
    assert peak < memmap_ids.nbytes


def test_evaluation_reads_a_memory_map_a_step_at_a_time(memmap_ids):
    ids = memmap_ids[: 1 << 19]  # 1 MiB of uint16
    model = torch.nn.Module()
    from engine.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="rnn", vocab_size=300, num_hiddens=4))
    want = evaluate(model, np.array(ids, dtype=np.int64), 32, 35, torch.device("cpu"))
    tracemalloc.start()
    try:
        got = evaluate(model, ids, 32, 35, torch.device("cpu"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == want
    assert peak < ids.nbytes // 4  # an int64 copy of the ids would be 4 MiB, eight times this array's 1 MiB


def test_training_on_the_memory_map_equals_training_on_the_array(big_file):
    from engine.trainer import train

    p = build_pipeline(load_corpus(str(big_file)), mode="raw", tokenizer="char")
    assert isinstance(p.ids, np.memmap)
    model_cfg = ModelConfig(kind="gru", vocab_size=len(p.vocab), num_hiddens=16)
    cfg = TrainConfig(epochs=2, batch_size=8, num_steps=20, max_tokens=20_000, device="cpu", threads=1,
                      sample_every=0, log_interval_s=1e9, sampler="sequential")

    def curve(ids):
        return [(type(e).__name__, getattr(e, "train_ppl", None), getattr(e, "val_ppl", None))
                for e in train(ids, model_cfg, cfg)]

    assert curve(p.ids) == curve(np.array(p.ids))


# --- handing the ids to the other ranks --------------------------------------------------------------------


def _settle_rank(rank: int, port: int, cached: str, folder: str) -> None:
    """One of two Gloo ranks, as rnnlab train --nproc hands out the ids (tui.cli.train._prepare_ranks): a
    cached corpus; the same with rank 1 unable to see the file (another machine); ids that are not cached."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from engine import distributed

    world = distributed.World(rank=rank, size=2, local_rank=rank, local_size=2)
    distributed.setup(world, timeout_s=60)
    seen = {}
    try:
        for play in ("cached", "blind", "in memory"):
            if play == "blind" and rank == 1:
                token_cache.SharedIds.open = lambda self: None  # type: ignore[method-assign]
            if rank == 0:
                ids = np.load(cached, mmap_mode="r") if play != "in memory" else np.arange(5000, dtype=np.uint16)
                shared = token_cache.share(ids)
                distributed.broadcast(shared, world)
                got = token_cache.settle(shared, world, ids)
                sent = type(shared).__name__
            else:
                got = token_cache.settle(distributed.broadcast(None, world), world)
                sent = ""
            seen[play] = {"sent": sent, "memmap": isinstance(got, np.memmap),
                          "file": str(got.filename) if isinstance(got, np.memmap) else None, "sum": int(np.asarray(got, dtype=np.int64).sum()),
                          "len": len(got)}
    finally:
        distributed.cleanup()
    Path(folder, f"rank{rank}.json").write_text(json.dumps(seen))


def test_other_ranks_map_the_cache_file_and_get_the_ids_only_when_they_cannot(big_file, tmp_path):
    import socket

    import torch.multiprocessing as mp

    p = build_pipeline(load_corpus(str(big_file)), mode="raw", tokenizer="char")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_settle_rank, args=(port, str(p.ids.filename), str(tmp_path)), nprocs=2)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    total = int(np.asarray(p.ids, dtype=np.int64).sum())
    assert r0["cached"]["sent"] == r0["blind"]["sent"] == "SharedIds"  # a name, not 2.3 MB of ids
    assert r1["cached"] == {"sent": "", "memmap": True, "file": str(p.ids.filename), "sum": total, "len": len(p.ids)}
    assert r1["blind"] == {"sent": "", "memmap": False, "file": None, "sum": total, "len": len(p.ids)}
    assert r0["in memory"]["sent"] == "ndarray" and r1["in memory"]["sum"] == sum(range(5000))


def test_rnnlab_train_lets_the_pipelines_text_go_before_training(tmp_path, monkeypatch):
    """The CLI hands the trainer the ids, not the pipeline that holds the corpus's text: a 1 GB corpus's text
    would otherwise stay in memory for the whole run (bench/RESULTS.md: 246 MiB instead of 1.8 GB)."""
    import gc

    import engine.trainer
    from tui.cli import main

    def pipelines() -> set[int]:
        gc.collect()
        return {id(o) for o in gc.get_objects() if type(o).__name__ == "TextPipeline"}

    real, seen, before = engine.trainer.train, {}, pipelines()  # a session's shared fixtures may hold some

    def spy(data, *a, **kw):
        seen["data"], seen["pipelines made by the CLI and alive"] = type(data).__name__, len(pipelines() - before)
        return real(data, *a, **kw)

    monkeypatch.setattr(engine.trainer, "train", spy)
    assert main(["train", "--model", "gru", "--num-hiddens", "8", "--epochs", "1", "--max-tokens", "500",
                 "--batch-size", "4", "--num-steps", "5", "--sample-every", "0", "--threads", "1",
                 "--runs-dir", str(tmp_path)]) == 0
    assert seen == {"data": "ndarray", "pipelines made by the CLI and alive": 0}
