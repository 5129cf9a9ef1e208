"""Corpora: the built-in catalog, finding or downloading a text, and reading it.

``load_corpus("timemachine")`` resolves a name in this order: an explicit file
path → ``$RNNLAB_CORPUS_DIR`` (a user's own copies) → the copy shipped with
rnnlab (``corpora/`` in a checkout, ``engine/_corpora/`` in the wheel: The Time
Machine and The War of the Worlds, so a first run works offline) → the cache
(``engine.paths.corpus_cache_dir()``) → a download, streamed to a temp file in
the cache, checked against the catalog's sha256, then renamed into place. Catalog entries marked ``strict``
(D2L's ``timemachine.txt`` never changes) fail on a checksum mismatch;
Project Gutenberg files are revised now and then, so for them a mismatch only
adds a warning naming both hashes to ``Corpus.warnings``.

Any UTF-8 text file is a corpus: a BOM is dropped, CRLF/CR become LF, and a
Project Gutenberg header and licence (``*** START OF …`` / ``*** END OF …``)
are stripped. ``preprocess`` then turns the text into lines, the way D2L's
``read_time_machine`` does (mode ``"d2l"``) or as written (mode ``"raw"``).

Left out: tokenization (``engine.tokenizers``), other encodings than UTF-8,
compressed files, and retries or resumed downloads.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from http.client import HTTPException
from pathlib import Path

from engine.errors import ChecksumError, ConfigError, CorpusError
from engine.paths import corpus_cache_dir, corpus_dir_override

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PREPROCESS_MODES = ("d2l", "raw")
URL_ENV_PREFIX = "RNNLAB_CORPUS_URL_"  # RNNLAB_CORPUS_URL_TIMEMACHINE=http://… overrides a url
DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK = 1 << 16

Progress = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class CatalogEntry:
    """One built-in corpus, as described in ``corpora/catalog.toml``."""

    name: str  # the key users type: ``rnnlab corpus timemachine``
    title: str  # human title, e.g. "The Time Machine"
    author: str  # e.g. "H. G. Wells"
    url: str  # where the file is downloaded from
    filename: str  # file name in $RNNLAB_CORPUS_DIR and in the cache
    sha256: str  # hex digest of the copy rnnlab was tested with
    sha1: str | None  # D2L publishes sha1; informative only
    size: int | None  # bytes of that copy; informative only
    strict: bool  # True: a mismatch is an error; False: a warning
    licence: str  # licence note shown to the user


@dataclass(frozen=True)
class Corpus:
    """A decoded text ready for ``preprocess``."""

    name: str  # catalog name or file stem
    path: Path  # the file that was read
    text: str  # decoded, BOM removed, CRLF->LF, Gutenberg header/licence stripped
    warnings: tuple[str, ...] = ()  # e.g. a Gutenberg checksum mismatch


def _data_dir() -> Path:
    """The folder of the catalog and the shipped corpora: ``engine/_corpora`` in an installed
    wheel (force-included by the build), ``corpora/`` in a checkout."""
    here = Path(__file__).resolve().parent
    wheel = here / "_corpora"
    return wheel if (wheel / "catalog.toml").is_file() else here.parent / "corpora"


def shipped_dir() -> Path | None:
    """Where the corpora shipped with rnnlab are read from (the tests replace it to act as if a
    catalog entry were not shipped)."""
    return _data_dir()


def _catalog_path() -> Path:
    return _data_dir() / "catalog.toml"


@lru_cache(maxsize=1)
def _load_catalog() -> tuple[CatalogEntry, ...]:
    with open(_catalog_path(), "rb") as f:
        data = tomllib.load(f)
    return tuple(
        CatalogEntry(
            name=name,
            title=d["title"],
            author=d["author"],
            url=d["url"],
            filename=d["filename"],
            sha256=d["sha256"].lower(),
            sha1=d.get("sha1"),
            size=d.get("size"),
            strict=bool(d.get("strict", True)),
            licence=d.get("licence", ""),
        )
        for name, d in data.items()
    )


def catalog() -> dict[str, CatalogEntry]:
    """The built-in corpora by name, in catalog order."""
    return {e.name: e for e in _load_catalog()}


def load_corpus(
    name_or_path: str,
    *,
    progress: Progress | None = None,
    allow_download: bool = True,
) -> Corpus:
    """Find, fetch if needed, verify and decode a corpus (see the module docstring)."""
    path = Path(name_or_path).expanduser()
    entries = catalog()
    if path.exists() or name_or_path not in entries:
        if not path.exists() and not _looks_like_path(name_or_path):
            known = ", ".join(entries)
            raise CorpusError(
                f"unknown corpus {name_or_path!r}; built-in corpora are: {known} "
                "(or pass the path of a plain-text file)"
            )
        return Corpus(name=path.stem, path=path, text=read_text(path))
    entry = entries[name_or_path]
    local = _local_copy(entry)
    if local is not None:
        warnings = _verify(entry, local, sha256_file(local), where=str(local))
        return Corpus(entry.name, local, read_text(local), warnings)
    if not allow_download:
        raise CorpusError(
            f"corpus {entry.name!r} is not on this machine and downloading is off; "
            + _local_hint(entry)
        )
    local, warnings = download(entry, corpus_cache_dir(), progress=progress)
    return Corpus(entry.name, local, read_text(local), warnings)


def _local_copy(entry: CatalogEntry) -> Path | None:
    """The first copy of a catalog entry on this machine: $RNNLAB_CORPUS_DIR, shipped, cached."""
    for folder in (corpus_dir_override(), shipped_dir(), corpus_cache_dir()):
        if folder is not None and (folder / entry.filename).is_file():
            return folder / entry.filename
    return None


def corpus_file(name_or_path: str) -> Path | None:
    """The file ``load_corpus(name_or_path)`` would read, found without reading it (``engine.token_cache``
    looks a resumed run's ids up by it); None when it is not on this machine."""
    path = Path(name_or_path).expanduser()
    entries = catalog()
    if path.exists() or name_or_path not in entries:
        return path if path.is_file() else None
    return _local_copy(entries[name_or_path])


def _looks_like_path(s: str) -> bool:
    return os.sep in s or "/" in s or Path(s).suffix != "" or s.startswith("~")


def _local_hint(entry: CatalogEntry) -> str:
    return (
        f"use a local copy instead: `rnnlab corpus path/to/{entry.filename}`, "
        f"or put {entry.filename} in a folder and set RNNLAB_CORPUS_DIR to that folder"
    )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(entry: CatalogEntry, path: Path, actual: str, *, where: str) -> tuple[str, ...]:
    """Strict entries raise on a mismatch; the others return one warning."""
    if actual == entry.sha256:
        return ()
    what = f"{where} does not match the catalog's checksum for {entry.name!r}: expected sha256 {entry.sha256}, got {actual}"
    if entry.strict:
        raise ChecksumError(f"{what}; delete the file and try again")
    return (f"{what}; the source may have been revised, so figures can differ from rnnlab's",)


def entry_url(entry: CatalogEntry) -> str:
    """The entry's url, or ``$RNNLAB_CORPUS_URL_<NAME>`` when set (tests, mirrors)."""
    return os.environ.get(URL_ENV_PREFIX + entry.name.upper(), entry.url)


def download(
    entry: CatalogEntry, cache_dir: Path, *, progress: Progress | None = None
) -> tuple[Path, tuple[str, ...]]:
    """Stream ``entry`` into ``cache_dir``; return its path and any warnings.

    The bytes go to a temp file next to the target, hashed on the way; only a
    verified file is renamed into place, so the cache never holds half a file
    or a strict file with the wrong checksum.
    """
    url = entry_url(entry)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.filename}.", suffix=".part", dir=cache_dir)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": "rnnlab"})
            with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as resp:
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                done = 0
                if progress:
                    progress(0, total)
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        warnings = _verify(entry, tmp, h.hexdigest(), where=f"the file downloaded from {url}")
        target = cache_dir / entry.filename
        os.replace(tmp, target)
        return target, warnings
    except urllib.error.HTTPError as exc:
        raise CorpusError(
            f"could not download {entry.name!r} from {url}: HTTP {exc.code} {exc.reason}; "
            + _local_hint(entry)
        ) from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError, HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise CorpusError(
            f"could not download {entry.name!r} from {url} ({reason}); if you are offline, "
            + _local_hint(entry)
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)


def read_text(path: Path) -> str:
    """Read a file as a corpus: errors name the problem and what to do."""
    if not path.exists():
        raise CorpusError(f"{path}: no such file; pass the path of a plain-text (.txt) file")
    if path.is_dir():
        raise CorpusError(f"{path} is a directory; pass a plain-text file inside it")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"cannot read {path} ({exc.strerror}); check its permissions") from exc
    text = _decode(data, source=str(path))
    del data  # on a 200 MB file every copy counts: the bytes go before the text is copied again
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _strip_if_marked(text)
    if not text.strip():
        raise CorpusError(f"{path} is empty (no text after decoding); pass a file with some text")
    return text


def decode_text(data: bytes, *, source: str = "<bytes>") -> str:
    """UTF-8 (BOM optional) → str with LF line ends and no Gutenberg boilerplate."""
    text = _decode(data, source=source)
    return _strip_if_marked(text.replace("\r\n", "\n").replace("\r", "\n"))


def _decode(data: bytes, *, source: str) -> str:
    """UTF-8 (BOM optional) → str; CorpusError for UTF-16, other bytes and NUL."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise CorpusError(f"{source} looks like UTF-16 text; save it as UTF-8 and try again")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        raise CorpusError(
            f"{source} is not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset}); "
            "pass a plain-text file saved as UTF-8"
        ) from exc
    nul = text.find("\x00")
    if nul >= 0:
        offset = len(text[:nul].encode("utf-8")) + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        raise CorpusError(
            f"{source} looks binary (byte 0x00 at offset {offset}); pass a plain-text file"
        )
    return text


def _strip_if_marked(text: str) -> str:
    """``strip_gutenberg`` for a text that has a marker line.

    Every Gutenberg marker line starts with "***": one fast scan spares a big
    text without any the line-by-line regex searches (seconds on 200 MB)."""
    return strip_gutenberg(text) if "***" in text else text


_START = re.compile(r"^\*{3}\s*START OF .*$", re.IGNORECASE | re.MULTILINE)
_END = re.compile(r"^\*{3}\s*END OF .*$", re.IGNORECASE | re.MULTILINE)
_END_NOTE = re.compile(r"\n\s*End of (the )?Project Gutenberg.*\s*$", re.IGNORECASE)
# The last line of the licence Gutenberg appends (modern and older files): text after it is the user's.
_LICENCE_LAST = re.compile(r"^.*(to hear about new eBooks\.|\*END\*THE SMALL PRINT!.*)$", re.IGNORECASE | re.MULTILINE)


def strip_gutenberg(text: str) -> str:
    """Drop each Project Gutenberg header and licence; keep every text between them.

    ``"head\\n*** START OF X ***\\nbody\\n*** END OF X ***\\nlicence"`` → ``"body\\n"``. A file
    holding several books keeps each book: the block from one book's END marker to the next
    one's START marker is that book's licence and the next one's header. Text after the final
    licence's last line stays too. Texts without markers pass unchanged.
    """
    starts, ends = list(_START.finditer(text)), list(_END.finditer(text))
    if not starts and not ends:
        return text
    bounds, pos = [], 0
    while True:
        start = next((m for m in starts if m.start() >= pos), None)
        lo = start.end() if start else pos
        end = next((m for m in ends if m.start() >= lo), None)
        hi = end.start() if end else len(text)
        note = _END_NOTE.search(text, max(lo, hi - 4096), hi)  # "End of the Project Gutenberg EBook …"
        bounds.append((lo, note.start() if note else hi))
        if end is None:
            break
        pos = end.end()
        if not any(m.start() >= pos for m in starts):
            tail = _LICENCE_LAST.search(text, pos)
            if tail:
                bounds.append((tail.end(), len(text)))
            break
    # Index arithmetic instead of sub/strip on slices: a 200 MB text is copied once.
    kept = []
    for lo, hi in bounds:
        while lo < hi and text[lo] == "\n":
            lo += 1
        while hi > lo and text[hi - 1] == "\n":
            hi -= 1
        blank = hi - lo < 4096 and not text[lo:hi].strip()  # only a short piece can be all whitespace
        if lo < hi and not blank:
            kept.append((lo, hi))
    if len(kept) == 1 and text[kept[0][1]:kept[0][1] + 1] == "\n":  # one book: one slice
        return text[kept[0][0]:kept[0][1] + 1]
    return "\n\n".join(text[lo:hi] for lo, hi in kept) + "\n"


def preprocess(text: str, mode: str = "d2l") -> list[str]:
    """Split ``text`` into lines, as ``readlines()`` does, and clean each one.

    ``"d2l"`` is D2L's ``read_time_machine``: every run of non-letters becomes
    one space, then strip and lower-case (``"The Time-Machine!"`` →
    ``"the time machine"``); empty lines are kept, so The Time Machine has 3221.
    ``"raw"`` keeps every line as written. A final newline ends the last line
    rather than starting an empty one.
    """
    if mode not in PREPROCESS_MODES:
        raise ConfigError(f"mode must be one of {', '.join(PREPROCESS_MODES)} (got {mode!r})")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if mode == "raw":
        return lines
    return [_NON_LETTERS.sub(" ", line).strip().lower() for line in lines]


_NON_LETTERS = re.compile("[^A-Za-z]+")
_CHECKED_CHARS = 1 << 20  # the share of letters d2l drops is estimated on the first 1M characters
DROPPED_WARN = 0.5  # warn when d2l mode drops more than this share of the letters


def d2l_dropped(text: str) -> tuple[float, list[str]]:
    """(share of the letters that ``d2l`` mode drops, its most common dropped letters).

    D2L's preprocessing keeps only a–z: ``"Zürich 的"`` has 7 letters, of which ``ü`` and ``的``
    are dropped → ``(2/7, ['ü', '的'])``. Counted on the first 1M characters of a big text.
    """
    head = text[:_CHECKED_CHARS]
    letters = [c for c in head if c.isalpha()]
    if not letters:
        return 0.0, []
    dropped = [c for c in letters if not ("a" <= c <= "z" or "A" <= c <= "Z")]
    common = [c for c, _ in Counter(dropped).most_common(5)]
    return len(dropped) / len(letters), common


def mode_warnings(text: str, mode: str) -> tuple[str, ...]:
    """A warning when ``mode`` throws away most of the text's letters (d2l on Chinese, Greek, …)."""
    if mode != "d2l":
        return ()
    share, common = d2l_dropped(text)
    if share <= DROPPED_WARN:
        return ()
    return (f"d2l preprocessing keeps only the letters a-z and drops {share:.0%} of this text's letters "
            f"(such as {' '.join(common)}); use mode raw (--mode raw) to keep them",)


def prompt_text(prefix: str, mode: str = "d2l") -> str:
    """A typed prompt cleaned the way the training text was (``"Time-Machine, "``
    → ``"time machine "`` in ``d2l`` mode), so a model trained on lower-cased
    letters is not handed characters it never saw. Unlike ``preprocess`` it keeps
    a trailing space: "the " and "the" ask for different next tokens."""
    if mode not in PREPROCESS_MODES:
        raise ConfigError(f"mode must be one of {', '.join(PREPROCESS_MODES)} (got {mode!r})")
    return prefix if mode == "raw" else _NON_LETTERS.sub(" ", prefix).lower()
