"""Typed errors that say what was wrong and what to do about it.

Every error the engine raises on bad input derives from ``RnnlabError``, so the
CLI and the TUI can show ``str(err)`` to the user instead of a traceback.
"""


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
