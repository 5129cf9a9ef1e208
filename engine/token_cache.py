"""The token ids of a big corpus, encoded once and kept in the corpus cache as a memory-mapped ``.npy``.

Encoding a multi-GB text takes minutes, and its ids take one to four bytes per token. A corpus file of at
least ``CACHE_MIN_CHARS`` characters is therefore encoded straight into a file, a chunk of lines at a time
(``build_pipeline``'s "encoding" progress), and read back with ``np.load(mmap_mode="r")``: the pages come
from the operating system's page cache when a sampler touches them and are shared by every process that
maps the file (the ranks of ``rnnlab train --nproc``), so the ids need not fit in any one process's memory.
A resume (``Run.corpus_ids``) finds them without reading or encoding the text again.

Key: the sha256 of (``VERSION``, the corpus file's sha256, the preprocessing mode, the tokenizer's
fingerprint: its kind, its tokens in id order and, for a subword kind, its HuggingFace model). The file's
sha256 is remembered per resolved path, size and mtime in ``digests.json``, so an untouched file is not
hashed again; a file changed in place gets a new digest and so a new entry, and a copy elsewhere maps to
the same one. The ids go in the narrowest unsigned type that holds the vocabulary (``unsigned_dtype``:
uint8 up to 256 tokens, uint16 up to 65,536, else uint32).

Files, in ``engine.paths.corpus_cache_dir() / "ids"``: ``<key>.npy`` and ``<key>.json`` (what it holds: the
corpus, its size, the tokenizer kind, the token count). Each is written to a temp file beside it (the
``.npy`` header last, once the count is known) and renamed into place, so a reader never sees half a file;
a damaged or truncated one is ignored and encoded again.

Several processes (``rnnlab train --nproc``): rank 0 prepares the corpus and hands the others its ids with
``share``/``settle``: a cached corpus travels as its file's name (``SharedIds``) and each rank maps the file
itself; a rank that cannot see the file (another machine without the same ``RNNLAB_HOME``) gets the ids
pickled, as does every rank when rank 0's ids are not cached. Left out: eviction (delete the folder to reclaim
the space), caching the fitted tokenizer (a new run on a cached corpus still fits one: its counting pass)
and texts that come from no file.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.paths import corpus_cache_dir

VERSION = 1  # bump when preprocessing or encoding changes what ids a text gives
CACHE_MIN_CHARS = 16 << 20  # texts this long (16 Mi characters) or longer go through the cache
DIGESTS = "digests.json"
_HASH_CHUNK = 1 << 20

Chunks = Callable[[], Iterator[list[str]]]  # a fresh pass over the preprocessed lines, chunk by chunk


def cache_dir() -> Path:
    return corpus_cache_dir() / "ids"


def unsigned_dtype(vocab_len: int) -> np.dtype:
    """The narrowest unsigned integer type holding ids ``0..vocab_len-1``: 256 → uint8, 257 → uint16,
    65,537 → uint32."""
    for t in (np.uint8, np.uint16, np.uint32):
        if vocab_len - 1 <= np.iinfo(t).max:
            return np.dtype(t)
    raise ValueError(f"a vocabulary of {vocab_len} tokens does not fit uint32 ids")


def tokenizer_fingerprint(tok: Any) -> str:
    """What decides the ids a fitted tokenizer gives a text: its kind, its tokens in id order and, for a
    subword kind, its HuggingFace model (canonical JSON). Not the token counts: those change nothing."""
    hf = tok.to_dict().get("hf")
    spec = {"kind": tok.kind, "tokens": list(tok.vocab.idx_to_token),
            "hf": json.loads(hf).get("model") if isinstance(hf, str) else None}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    """The file's sha256, remembered in ``digests.json`` by resolved path, size and mtime."""
    path = Path(path).resolve()
    st = path.stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    memo_path = cache_dir() / DIGESTS
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
        if not isinstance(memo, dict):
            memo = {}
    except (OSError, ValueError):
        memo = {}
    known = memo.get(str(path))
    if isinstance(known, dict) and all(known.get(k) == v for k, v in stamp.items()) and "sha256" in known:
        return str(known["sha256"])
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_HASH_CHUNK), b""):
            h.update(block)
    digest = h.hexdigest()
    memo[str(path)] = {**stamp, "sha256": digest}
    try:
        _atomic_write(memo_path, (json.dumps(memo, indent=1) + "\n").encode("utf-8"))
    except OSError:
        pass  # the digest is only remembered to save hashing next time
    return digest


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class TokenCache:
    """The cache entry of one corpus file read in one preprocessing mode by one fitted tokenizer."""

    def __init__(self, corpus_path: Path, mode: str, tok: Any) -> None:
        self.corpus_path, self.mode, self.tok = Path(corpus_path).resolve(), mode, tok
        key = {"version": VERSION, "file": file_sha256(self.corpus_path), "mode": mode,
               "tokenizer": tokenizer_fingerprint(tok)}
        self.key = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:32]
        self.path = cache_dir() / f"{self.key}.npy"
        self.meta_path = self.path.with_suffix(".json")
        self.dtype = unsigned_dtype(len(tok.vocab))

    def load(self) -> np.ndarray | None:
        """The cached ids as a read-only memory map, or None when absent or damaged."""
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
            ids = np.load(self.path, mmap_mode="r")
        except (OSError, ValueError, EOFError):
            return None
        if ids.ndim != 1 or ids.dtype != self.dtype or not isinstance(meta, dict) or meta.get("tokens") != len(ids):
            return None
        return ids

    def store(self, chunks: Iterable[list[str]]) -> np.ndarray:
        """Encode the chunks of lines into the cache, one chunk at a time; the ids as a memory map.
        OSError (a full or read-only disk) leaves no file behind."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (0,)}
        try:
            with open(tmp, "wb") as f:
                np.lib.format.write_array_header_1_0(f, header)
                start, n = f.tell(), 0
                for lines in chunks:
                    ids = self.tok.encode_lines(lines)
                    f.write(np.ascontiguousarray(ids, dtype=self.dtype).tobytes())
                    n += len(ids)
                # numpy pads a header to room for any length (GROWTH_AXIS_MAX_DIGITS): the count fits in place
                f.seek(0)
                np.lib.format.write_array_header_1_0(f, {**header, "shape": (n,)})
                if f.tell() != start:
                    raise OSError(f"the .npy header of {n} ids did not fit in place")
                f.flush()
                os.fsync(f.fileno())
            meta = {"corpus": str(self.corpus_path), "bytes": self.corpus_path.stat().st_size, "mode": self.mode,
                    "tokenizer": self.tok.kind, "vocab_len": len(self.tok.vocab), "tokens": n,
                    "dtype": self.dtype.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            _atomic_write(self.meta_path, (json.dumps(meta, indent=1) + "\n").encode("utf-8"))
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        ids = self.load()
        if ids is None:
            raise OSError(f"{self.path} could not be read back after writing it")
        return ids

    def encode(self, chunks: Chunks) -> tuple[np.ndarray, str | None]:
        """The ids from the cache, else encoded into it; when the cache cannot be written, encoded in memory
        with a warning saying so."""
        ids = self.load()
        if ids is not None:
            return ids, None
        try:
            return self.store(chunks()), None
        except OSError as exc:
            why = exc.strerror or str(exc)
            return self.tok.encode_chunks(chunks()), (f"the token cache {self.path.parent} could not be written "
                                                      f"({why}); the ids are held in memory instead")


def for_file(path: Any, n_chars: int, mode: str, tok: Any) -> TokenCache | None:
    """The cache entry for a text of ``n_chars`` characters read from ``path``, or None: a short text (under
    ``CACHE_MIN_CHARS``) or one that comes from no file."""
    if path is None or n_chars < CACHE_MIN_CHARS or not Path(path).is_file():
        return None
    return TokenCache(Path(path), mode, tok)


def lookup(path: Any, mode: str, tok: Any) -> np.ndarray | None:
    """The cached ids of the file at ``path`` (a resume: no text read), or None when not cached."""
    if path is None or not Path(path).is_file():
        return None
    try:
        return TokenCache(Path(path), mode, tok).load()
    except OSError:
        return None


@dataclass(frozen=True)
class SharedIds:
    """A cached corpus's ids as another process opens them: the ``.npy`` file, its length and dtype."""

    path: str
    tokens: int
    dtype: str

    def open(self) -> np.ndarray | None:
        """The memory map, or None when this process cannot see that file (or it is not the one meant)."""
        try:
            ids = np.load(self.path, mmap_mode="r")
        except (OSError, ValueError, EOFError):
            return None
        return ids if ids.ndim == 1 and len(ids) == self.tokens and ids.dtype.name == self.dtype else None


def share(ids: Any) -> Any:
    """What rank 0 broadcasts for ``ids``: a ``SharedIds`` for a memory map of a cache file, else the array."""
    if isinstance(ids, np.memmap) and ids.filename and Path(ids.filename).resolve().parent == cache_dir().resolve():
        return SharedIds(str(ids.filename), len(ids), ids.dtype.name)
    return np.asarray(ids)


def settle(got: Any, world: Any, ids: Any = None) -> np.ndarray:
    """Every rank's ids after rank 0 broadcast ``share(ids)`` (``got``; rank 0 passes its own ``ids`` too):
    the array that came, or the cache file mapped here; when any rank cannot map it, rank 0 sends the array
    to all (a collective: every rank calls this)."""
    if not isinstance(got, SharedIds):
        return np.asarray(got if ids is None else ids)
    import torch
    import torch.distributed as dist

    from engine import distributed

    mine = ids if world.is_main else got.open()
    missing = torch.tensor([float(mine is None)])
    dist.all_reduce(missing, op=dist.ReduceOp.MAX)
    if missing.item() > 0:
        sent = distributed.broadcast(np.asarray(ids) if world.is_main else None, world)
        mine = mine if mine is not None else sent
    return mine  # type: ignore[no-any-return]
