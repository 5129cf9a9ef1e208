"""Where rnnlab keeps its files: the corpus cache and the runs folder.

``RNNLAB_HOME`` overrides everything (one folder holding ``corpora/`` and
``runs/``); otherwise platformdirs' per-user data dir is used. Nothing here
creates a folder until a caller asks to write into it.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "rnnlab"


def home() -> Path:
    """The root of rnnlab's files: ``$RNNLAB_HOME`` or the user data dir."""
    env = os.environ.get("RNNLAB_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def corpus_cache_dir() -> Path:
    """Downloaded corpora live here, one file per catalog entry."""
    return home() / "corpora"


def runs_dir() -> Path:
    """Training runs live here, one folder per run."""
    return home() / "runs"


def corpus_dir_override() -> Path | None:
    """``$RNNLAB_CORPUS_DIR``: a folder of corpus files checked before the cache."""
    env = os.environ.get("RNNLAB_CORPUS_DIR")
    return Path(env).expanduser() if env else None
