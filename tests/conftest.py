"""Shared fixtures. Tests read the two books shipped in ``corpora/`` (as a first
run offline does), so they need no network and no folder outside the checkout.
``RNNLAB_HOME`` is a fresh temp folder per test session so no test touches a
user's runs or cache.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("rnnlab-home")
    monkeypatch.setenv("RNNLAB_HOME", str(home))
    monkeypatch.delenv("RNNLAB_CORPUS_DIR", raising=False)  # a developer's own copies must not leak in
    return home


@pytest.fixture
def offline_home(monkeypatch, _isolated_home) -> Path:
    """RNNLAB_HOME with no local corpus folder and, as for a catalog entry rnnlab does not ship, no
    shipped copy: a corpus comes from the cache or a download (tests serve those from a loopback
    server, which no proxy may intercept)."""
    import engine.corpus

    monkeypatch.delenv("RNNLAB_CORPUS_DIR", raising=False)
    monkeypatch.setattr(engine.corpus, "shipped_dir", lambda: None)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "*")
    return Path(_isolated_home)


@pytest.fixture(scope="session")
def pipeline(corpus_dir):
    """The Time Machine as D2L preprocesses it, in characters (shared: tests only read it)."""
    from engine.corpus import load_corpus
    from engine.pipeline import build_pipeline

    return build_pipeline(load_corpus(str(corpus_dir / "timemachine.txt")), mode="d2l", tokenizer="char")


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The folder holding timemachine.txt and war_of_the_worlds.txt: the checkout's corpora/."""
    return _REPO / "corpora"
