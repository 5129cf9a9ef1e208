"""engine.corpus: catalog, resolution order, decoding, errors and preprocessing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.corpus import (
    PREPROCESS_MODES,
    catalog,
    decode_text,
    load_corpus,
    preprocess,
    strip_gutenberg,
)
from engine.errors import ChecksumError, ConfigError, CorpusError

TIMEMACHINE_SHA256 = "8424dbd9532ac81f7e5f0b6add90e6952baea29158309d7d1bf3884f4e12c516"


def test_catalog_entries():
    cat = catalog()
    assert list(cat) == ["timemachine", "war_of_the_worlds"]
    tm = cat["timemachine"]
    assert tm.strict and tm.size == 178979 and tm.sha256 == TIMEMACHINE_SHA256
    assert tm.sha1 == "090b5e7e70c295757f55df93cb0a180b9691891a"
    wotw = cat["war_of_the_worlds"]
    assert not wotw.strict and "gutenberg" in wotw.url and wotw.author == "H. G. Wells"


def test_timemachine_d2l_lines(corpus_dir):
    corpus = load_corpus("timemachine", allow_download=False)
    assert corpus.name == "timemachine" and corpus.path == corpus_dir / "timemachine.txt"
    assert corpus.warnings == ()
    lines = preprocess(corpus.text, "d2l")
    assert len(lines) == 3221
    assert lines[0] == "the time machine by h g wells"
    assert lines[10] == "twinkled and his usually pale face was flushed and animated the"


def test_war_of_the_worlds_gutenberg_stripped(corpus_dir):
    corpus = load_corpus("war_of_the_worlds", allow_download=False)
    text = corpus.text
    assert "\r" not in text and "*** START" not in text and "*** END" not in text
    assert "Project Gutenberg" not in text
    assert text.startswith("by H. G. Wells\n")
    assert text.endswith("among the dead.\n")
    assert len(preprocess(text, "raw")) == 6312


def test_explicit_path_beats_catalog_and_uses_stem(tmp_path):
    f = tmp_path / "my notes.txt"
    f.write_text("Hello, World!\nsecond line\n", encoding="utf-8")
    corpus = load_corpus(str(f))
    assert corpus.name == "my notes" and corpus.text == "Hello, World!\nsecond line\n"
    assert preprocess(corpus.text) == ["hello world", "second line"]


def test_bom_and_crlf_and_cr(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"\xef\xbb\xbfOne\r\nTwo\rThree\n")
    assert load_corpus(str(f)).text == "One\nTwo\nThree\n"


def test_strip_gutenberg_worked_example():
    text = "head\nmore\n*** START OF THE EBOOK X ***\n\nbody\nline 2\n\nEnd of the Project Gutenberg EBook of X\n\n*** END OF THE EBOOK X ***\nlicence\n"
    assert strip_gutenberg(text) == "body\nline 2\n"
    assert strip_gutenberg("no markers\n") == "no markers\n"


def test_cache_is_used_for_an_entry_not_shipped(tmp_path, monkeypatch, corpus_dir, _isolated_home):
    import engine.corpus

    monkeypatch.setattr(engine.corpus, "shipped_dir", lambda: None)
    cache = Path(_isolated_home) / "corpora"
    cache.mkdir()
    (cache / "timemachine.txt").write_bytes((corpus_dir / "timemachine.txt").read_bytes())
    corpus = load_corpus("timemachine", allow_download=False)
    assert corpus.path == cache / "timemachine.txt"


def test_shipped_copy_beats_cache_and_corpus_dir_beats_shipped(tmp_path, monkeypatch, corpus_dir, _isolated_home):
    cache = Path(_isolated_home) / "corpora"
    cache.mkdir()
    (cache / "timemachine.txt").write_bytes(b"wrong")
    # No RNNLAB_CORPUS_DIR and no network needed: the copy in the checkout's corpora/ is read first.
    assert load_corpus("timemachine", allow_download=False).path == corpus_dir / "timemachine.txt"
    own = tmp_path / "mine"
    own.mkdir()
    (own / "war_of_the_worlds.txt").write_text("my own edition\n")
    monkeypatch.setenv("RNNLAB_CORPUS_DIR", str(own))
    assert load_corpus("war_of_the_worlds", allow_download=False).text == "my own edition\n"


def test_both_books_are_shipped_with_the_catalog_checksums(corpus_dir):
    for entry in catalog().values():
        data = (corpus_dir / entry.filename).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.sha256 and len(data) == entry.size
    wotw = (corpus_dir / "war_of_the_worlds.txt").read_text(encoding="utf-8")
    assert "*** START OF THIS PROJECT GUTENBERG EBOOK" in wotw and "THE FULL PROJECT GUTENBERG LICENSE" in wotw  # as distributed


def test_local_copy_checksum_strict_and_lenient(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNLAB_CORPUS_DIR", str(tmp_path))
    (tmp_path / "timemachine.txt").write_text("tampered\n")
    with pytest.raises(ChecksumError) as err:
        load_corpus("timemachine", allow_download=False)
    actual = hashlib.sha256(b"tampered\n").hexdigest()
    assert TIMEMACHINE_SHA256 in str(err.value) and actual in str(err.value)

    (tmp_path / "war_of_the_worlds.txt").write_text("a revised edition\n")
    corpus = load_corpus("war_of_the_worlds", allow_download=False)
    assert corpus.text == "a revised edition\n"
    (warning,) = corpus.warnings
    assert catalog()["war_of_the_worlds"].sha256 in warning
    assert hashlib.sha256(b"a revised edition\n").hexdigest() in warning


def test_not_local_and_no_download(offline_home):
    with pytest.raises(CorpusError, match="RNNLAB_CORPUS_DIR"):
        load_corpus("timemachine", allow_download=False)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x89PNG\r\n\x1a\n", r"not UTF-8 text \(byte 0x89 at offset 0\)"),
        (b"caf\xe9\n", r"not UTF-8 text \(byte 0xe9 at offset 3\)"),
        (b"\xef\xbb\xbfab\xff", r"byte 0xff at offset 5"),
        (b"abc\x00\x01\x02", r"binary \(byte 0x00 at offset 3\)"),
        (b"\xff\xfeh\x00i\x00", r"UTF-16"),
        (b"", r"is empty"),
        (b"\xef\xbb\xbf \n\r\n", r"is empty"),
    ],
)
def test_bad_files(tmp_path, content, message):
    f = tmp_path / "bad.txt"
    f.write_bytes(content)
    with pytest.raises(CorpusError, match=message):
        load_corpus(str(f))


def test_directory_missing_and_unknown(tmp_path):
    with pytest.raises(CorpusError, match="is a directory"):
        load_corpus(str(tmp_path))
    with pytest.raises(CorpusError, match="no such file"):
        load_corpus(str(tmp_path / "nope.txt"))
    with pytest.raises(CorpusError, match="timemachine, war_of_the_worlds"):
        load_corpus("moby_dick")


def test_preprocess_modes():
    text = "The Time-Machine!\n\n  It's 1895.\n"
    assert preprocess(text, "d2l") == ["the time machine", "", "it s"]
    assert preprocess(text, "raw") == ["The Time-Machine!", "", "  It's 1895."]
    assert preprocess("no final newline", "raw") == ["no final newline"]
    assert PREPROCESS_MODES == ("d2l", "raw")
    with pytest.raises(ConfigError, match="mode must be one of d2l, raw"):
        preprocess(text, "lower")


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n\x00\ufeff", blacklist_categories=("Cs",)), max_size=20), max_size=8))
def test_raw_lines_round_trip(lines):
    text = "\n".join(lines) + "\n"
    if lines and not any(line.startswith("***") for line in lines):
        assert preprocess(decode_text(text.encode()), "raw") == lines


@given(st.text(max_size=50))
def test_d2l_lines_are_lowercase_letters(text):
    for line in preprocess(text, "d2l"):
        assert line == line.strip() and "  " not in line
        assert all(c == " " or "a" <= c <= "z" for c in line)


def test_the_wheel_carries_both_books_and_reads_them_offline(tmp_path, corpus_dir, offline_home):
    """Build the wheel as pip would, unpack it outside the checkout, and load both books from it."""
    import subprocess
    import sys
    import zipfile

    repo = corpus_dir.parent
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(repo)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("rnnlab-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    for entry in catalog().values():
        packed = site / "engine" / "_corpora" / entry.filename
        assert hashlib.sha256(packed.read_bytes()).hexdigest() == entry.sha256
    code = ("import engine.corpus as c; t = c.load_corpus('timemachine', allow_download=False); "
            "w = c.load_corpus('war_of_the_worlds', allow_download=False); print(t.path); print(w.path)")
    env = {k: v for k, v in os.environ.items() if k != "RNNLAB_CORPUS_DIR"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env, "PYTHONPATH": str(site)},
                         check=True, capture_output=True, text=True).stdout.split()
    assert out == [str(site / "engine" / "_corpora" / "timemachine.txt"),
                   str(site / "engine" / "_corpora" / "war_of_the_worlds.txt")]


def test_two_gutenberg_books_and_text_after_the_licence_are_kept(corpus_dir):
    book = (corpus_dir / "war_of_the_worlds.txt").read_bytes()
    both = decode_text(book + book + b"My own notes on the two copies.\n")
    one = decode_text(book)
    assert one.startswith("by H. G. Wells\n") and one.endswith("among the dead.\n")
    assert both == one + "\n" + one + "\nMy own notes on the two copies.\n"
    assert "Project Gutenberg" not in both and len(preprocess(both, "raw")) == 2 * 6312 + 3
    small = ("head\n*** START OF A ***\nfirst book\n*** END OF A ***\nlicence A\nheader B\n"
             "*** START OF B ***\nsecond book\n*** END OF B ***\nlicence B\n")
    assert strip_gutenberg(small) == "first book\n\nsecond book\n"


def test_d2l_mode_on_chinese_text_says_what_it_drops(tmp_path):
    from engine.corpus import d2l_dropped, mode_warnings
    from engine.pipeline import build_pipeline

    assert d2l_dropped("Zürich 的") == (pytest.approx(2 / 7), ["ü", "的"])  # Z r i c h kept; ü 的 dropped
    assert d2l_dropped("12 + 3 = 15") == (0.0, [])  # no letters at all: nothing to say
    f = tmp_path / "zh.txt"
    f.write_text("时间机器是一部小说。\n他说：我们去未来吧。\n", encoding="utf-8")
    corpus = load_corpus(str(f))
    d2l = build_pipeline(corpus, mode="d2l", tokenizer="char")
    assert len(d2l.ids) == 0 or len(d2l.vocab) <= 2  # what D2L's preprocessing leaves of it
    (warning,) = d2l.warnings
    assert "100%" in warning and "--mode raw" in warning and "时" in warning
    assert build_pipeline(corpus, mode="raw", tokenizer="char").warnings == ()
    assert mode_warnings("The Time Machine, by H. G. Wells", "d2l") == ()
    assert mode_warnings("Ἐν ἀρχῇ ἦν ὁ λόγος, a Greek line", "d2l") != ()  # drops 14 of 24 letters
    assert mode_warnings("Ἐν ἀρχῇ ἦν ὁ λόγος and a few English words", "d2l") == ()  # drops 14 of 33
