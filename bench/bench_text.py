"""Text pipeline speed: tokenizing and encoding The Time Machine (d2l mode).

Usage: ``python bench/bench_text.py [--corpus timemachine] [--rounds 7]``

The baseline is D2L 8.2's own path: ``list(line)`` per line, then
``[vocab[token] for line in tokens for token in line]`` through a dict — a
Python list of ints. "Ours" is ``CharTokenizer.encode_corpus`` (one
``np.searchsorted`` over the code points) into an ``int32`` array. Both are
timed in interleaved rounds in one process (the machine is shared: the ratio
means more than the seconds); medians are printed. Then: the id array's dtype
and bytes against the list's, fit + encode times of every tokenizer kind
(subword at vocab_size 1000), and one epoch of each sampler at batch_size 32,
num_steps 35. Target: char encode under 0.2 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RNNLAB_CORPUS_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "corpora"))

import numpy as np  # noqa: E402

from engine.corpus import load_corpus, preprocess  # noqa: E402
from engine.data import SAMPLERS, data_iter  # noqa: E402
from engine.tokenizers import TOKENIZER_KINDS, make_tokenizer  # noqa: E402


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def d2l_char_encode(lines: list[str], token_to_idx: dict[str, int]) -> list[int]:
    """D2L 8.2: tokenize(lines, 'char') then vocab[token] for every token."""
    tokens = [list(line) for line in lines]
    return [token_to_idx.get(token, 0) for line in tokens for token in line]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="timemachine")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()

    corpus = load_corpus(args.corpus, allow_download=False)
    lines = preprocess(corpus.text, "d2l")
    print(f"corpus {corpus.name}: {len(corpus.text)} characters, {len(lines)} lines (d2l mode)")

    # --- char encode: ours vs D2L's list comprehension, interleaved rounds
    char = make_tokenizer("char").fit(lines)
    ours_t, base_t = [], []
    for _ in range(args.rounds):
        dt, ids = timed(lambda: char.encode_corpus(lines))
        ours_t.append(dt)
        dt, ref = timed(lambda: d2l_char_encode(lines, char.vocab.token_to_idx))
        base_t.append(dt)
    assert isinstance(ids, np.ndarray) and ids.tolist() == ref, "encodings differ"
    ours, base = statistics.median(ours_t), statistics.median(base_t)
    print(f"\nchar encode_corpus: {len(ids)} tokens, vocab {len(char.vocab)}")
    print(f"  ours  {ours * 1e3:8.2f} ms   (target < 200 ms: {'ok' if ours < 0.2 else 'MISSED'})")
    print(f"  D2L   {base * 1e3:8.2f} ms   ratio D2L/ours = {base / ours:.1f}x")
    list_bytes = sys.getsizeof(ref)  # pointers only; the small ints are cached
    print(f"  ids: dtype {ids.dtype}, {ids.nbytes} bytes  (a Python list: {list_bytes} bytes of pointers)")

    # --- fit + encode of every kind
    print(f"\n{'kind':<10} {'vocab':>6} {'tokens':>8} {'fit s':>7} {'encode s':>9}")
    for kind in TOKENIZER_KINDS:
        fits, encs = [], []
        for _ in range(max(1, args.rounds // 2)):
            dt_fit, tok = timed(lambda: make_tokenizer(kind, vocab_size=1000).fit(lines))
            dt_enc, kids = timed(lambda: tok.encode_corpus(lines))  # type: ignore[union-attr]
            fits.append(dt_fit)
            encs.append(dt_enc)
        print(
            f"{kind:<10} {len(tok.vocab):>6} {len(kids):>8} "  # type: ignore[union-attr, arg-type]
            f"{statistics.median(fits):>7.3f} {statistics.median(encs):>9.3f}"
        )

    # --- one epoch of minibatches from the char ids
    print("\none epoch, batch_size 32, num_steps 35 (char ids):")
    for sampler in SAMPLERS:
        times, n = [], 0
        for seed in range(args.rounds):
            rng = np.random.default_rng(seed)
            dt, n = timed(lambda: sum(1 for _ in data_iter(ids, 32, 35, sampler, rng=rng)))
            times.append(dt)
        print(f"  {sampler:<10} {n} batches in {statistics.median(times) * 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
