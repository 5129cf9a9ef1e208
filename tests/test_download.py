"""Downloads for real, against a loopback HTTP server started by the test.

``$RNNLAB_CORPUS_URL_<NAME>`` points a catalog entry at the server; the corpus
folder override is removed so the resolution falls through to the download.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.corpus import catalog, load_corpus
from engine.errors import ChecksumError, CorpusError
from loopback import closed_port, serve_files


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, bytes]]]:
    files: dict[str, bytes] = {}
    with serve_files(files) as base:
        yield base, files


@pytest.fixture
def cache(offline_home) -> Path:
    return offline_home / "corpora"


def test_good_download_is_cached_and_verified(server, cache, corpus_dir, monkeypatch):
    base, files = server
    body = (corpus_dir / "timemachine.txt").read_bytes()
    files["/timemachine.txt"] = body
    monkeypatch.setenv("RNNLAB_CORPUS_URL_TIMEMACHINE", base + "/timemachine.txt")
    calls: list[tuple[int, int | None]] = []

    corpus = load_corpus("timemachine", progress=lambda done, total: calls.append((done, total)))

    assert corpus.path == cache / "timemachine.txt" and corpus.warnings == ()
    assert sorted(p.name for p in cache.iterdir()) == ["timemachine.txt"]
    assert hashlib.sha256(corpus.path.read_bytes()).hexdigest() == catalog()["timemachine"].sha256
    assert calls[0] == (0, 178979) and calls[-1] == (178979, 178979)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    # A second load reads the cache: the server no longer has the file.
    files.clear()
    assert load_corpus("timemachine").path == cache / "timemachine.txt"


def test_wrong_checksum_leaves_nothing(server, cache, monkeypatch):
    base, files = server
    files["/tm.txt"] = b"not the time machine\n"
    monkeypatch.setenv("RNNLAB_CORPUS_URL_TIMEMACHINE", base + "/tm.txt")
    with pytest.raises(ChecksumError) as err:
        load_corpus("timemachine")
    message = str(err.value)
    assert catalog()["timemachine"].sha256 in message
    assert hashlib.sha256(b"not the time machine\n").hexdigest() in message
    assert list(cache.iterdir()) == []


def test_gutenberg_mismatch_warns_and_keeps(server, cache, monkeypatch):
    base, files = server
    body = b"header\r\n*** START OF THE EBOOK ***\r\nA revised text.\r\n*** END OF THE EBOOK ***\r\n"
    files["/pg36.txt"] = body
    monkeypatch.setenv("RNNLAB_CORPUS_URL_WAR_OF_THE_WORLDS", base + "/pg36.txt")
    corpus = load_corpus("war_of_the_worlds")
    assert corpus.text == "A revised text.\n"
    assert corpus.path.read_bytes() == body
    (warning,) = corpus.warnings
    assert catalog()["war_of_the_worlds"].sha256 in warning
    assert hashlib.sha256(body).hexdigest() in warning


def test_404_is_a_corpus_error(server, cache, monkeypatch):
    base, _ = server
    monkeypatch.setenv("RNNLAB_CORPUS_URL_TIMEMACHINE", base + "/missing.txt")
    with pytest.raises(CorpusError, match="HTTP 404") as err:
        load_corpus("timemachine")
    assert not isinstance(err.value, ChecksumError)
    assert "rnnlab corpus path/to/timemachine.txt" in str(err.value)
    assert list(cache.iterdir()) == []


def test_unreachable_says_how_to_use_a_local_file(cache, monkeypatch):
    port = closed_port()  # connecting is refused at once
    monkeypatch.setenv("RNNLAB_CORPUS_URL_TIMEMACHINE", f"http://127.0.0.1:{port}/timemachine.txt")
    with pytest.raises(CorpusError) as err:
        load_corpus("timemachine")
    message = str(err.value)
    assert "offline" in message and "rnnlab corpus path/to/timemachine.txt" in message
    assert "RNNLAB_CORPUS_DIR" in message
    assert list(cache.iterdir()) == []
