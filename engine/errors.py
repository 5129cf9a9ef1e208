"""Typed errors that say what was wrong and what to do about it.

Every error the engine raises on bad input derives from ``RnnlabError``, so the
CLI and the TUI can show ``str(err)`` to the user instead of a traceback.
``write_error`` turns a failed write (an ``OSError``, or safetensors' own
``SafetensorError`` whose message carries "os error N") into a ``WriteError``
whose advice follows the errno: permissions and read-only disks ask for
another runs folder, a full disk asks for space. Left out: logging.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

# errnos that mean "you may not write here" and "there is no room to write"
PERMISSION_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class RnnlabError(Exception):
    """Base class: the message is written for the user, not the developer."""


class CorpusError(RnnlabError):
    """A corpus could not be found, downloaded, verified or read."""


class ChecksumError(CorpusError):
    """A downloaded file did not match the catalog's checksum."""


class ConfigError(RnnlabError, ValueError):
    """A configuration value is out of range; the message names the field."""


class RunError(RnnlabError):
    """A run folder is missing, incomplete or corrupt."""


class RunNotFoundError(RunError, ConfigError):
    """No run by that name or path: the caller's argument is wrong (a ConfigError too)."""


class WriteError(RunError):
    """A run file could not be written (no permission, a read-only or a full disk); ``errno`` says which."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


def os_errno(exc: BaseException) -> int | None:
    """The errno of a failed write: ``OSError.errno``, or the "(os error 28)" safetensors writes in its message."""
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    m = re.search(r"os error (\d+)", str(exc))
    return int(m.group(1)) if m else None


def write_error(exc: BaseException, path: Path | str, kept: str = "", action: str = "write") -> WriteError:
    """A ``WriteError`` for failing to ``action`` ``path``: what failed, ``kept`` (what is safe), what to do.

    >>> str(write_error(OSError(28, "No space left on device"), "runs/x/metrics.jsonl"))
    'could not write runs/x/metrics.jsonl: No space left on device; the disk is full: free some space'
    """
    code = os_errno(exc)
    reason = os.strerror(code) if code else (getattr(exc, "strerror", None) or str(exc))
    if code in PERMISSION_ERRNOS:
        advice = ("the folder is read-only or not writable by you: choose another runs folder "
                  "(--runs-dir or $RNNLAB_HOME) or fix its permissions")
    elif code in SPACE_ERRNOS:
        advice = "the disk is full: free some space"
    else:
        advice = "check the disk and the folder"
    return WriteError(f"could not {action} {path}: {reason}; {kept + '; ' if kept else ''}{advice}", code)
