"""Shared fixtures. Tests read the real corpora from ``$RNNLAB_CORPUS_DIR``
(CI points it at ``../shared/corpora``); a developer checkout next to
``shared/`` gets the same default. ``RNNLAB_HOME`` is a fresh temp folder per
test session so no test touches a user's runs or cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parent.parent
_SHARED = _REPO.parent / "shared" / "corpora"

if not os.environ.get("RNNLAB_CORPUS_DIR") and _SHARED.is_dir():
    os.environ["RNNLAB_CORPUS_DIR"] = str(_SHARED)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("rnnlab-home")
    monkeypatch.setenv("RNNLAB_HOME", str(home))
    return home


@pytest.fixture
def offline_home(monkeypatch, _isolated_home) -> Path:
    """RNNLAB_HOME with no local corpus folder: a corpus comes from the cache or a download
    (tests serve those from a loopback server, which no proxy may intercept)."""
    monkeypatch.delenv("RNNLAB_CORPUS_DIR", raising=False)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "*")
    return Path(_isolated_home)


@pytest.fixture(scope="session")
def pipeline(corpus_dir):
    """The Time Machine as D2L preprocesses it, in characters (shared: tests only read it)."""
    from engine.corpus import load_corpus
    from engine.tokenizers import build_pipeline

    return build_pipeline(load_corpus(str(corpus_dir / "timemachine.txt")), mode="d2l", tokenizer="char")


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The folder holding timemachine.txt and war_of_the_worlds.txt."""
    env = os.environ.get("RNNLAB_CORPUS_DIR")
    if not env or not (Path(env) / "timemachine.txt").is_file():
        pytest.fail(
            "RNNLAB_CORPUS_DIR must name a folder holding timemachine.txt "
            "(CI sets it to ../shared/corpora)"
        )
    return Path(env)
