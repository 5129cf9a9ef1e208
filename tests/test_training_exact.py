"""Exact values of the training loop's building blocks (engine.training, engine.throughput), issue 9.

Every expected figure is worked out by hand in the test (parameter counts per kind, bytes per position,
token ranges, the throughput's closed form), never read back from the code under test:

- ``split_ids`` / ``prepare_ids``: the exact train and validation ranges and every refusal's message at
  its boundary (2 validation tokens, num_steps < n, room for batch_size rows, max id < vocab_size, the
  truncation=none graph limit);
- ``bptt_bytes`` and ``memory_estimate`` for each model kind, encoding and optimizer;
- the free memory read from /proc/meminfo, a cgroup v2 limit, or sysconf, on files the test writes, and
  the memory refusal with its MiB figures, at its boundary;
- ``resolve_device``'s choice and messages, ``out_of_memory``'s verdicts, ``perplexity``'s saturation;
- ``Throughput``: rates, epoch ends and ETAs of a table of windows, in closed form.

Left out: CUDA's free memory and device choice (bench/check_cuda.py on a lent GPU).
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from engine.throughput import Throughput
from engine.trainer import loss_limit
from engine.training import (bptt_bytes, check_memory, free_memory, memory_estimate, out_of_memory, perplexity,
                             prepare_ids, resolve_device, split_ids)

try:  # issue 10 moves both configs to engine.config
    from engine.config import ModelConfig, TrainConfig
except ImportError:  # the layout before it
    from engine.models import ModelConfig
    from engine.training import TrainConfig


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"max_tokens": 0, "val_fraction": 0.0, "batch_size": 2, "num_steps": 5, **kw})


# --- the split -----------------------------------------------------------------

@pytest.mark.parametrize("n,kw,train_range,val_range", [
    (100, dict(val_fraction=0.02), (0, 98), (98, 100)),  # round(2.0) = 2 tokens: the fewest allowed
    (100, dict(val_fraction=0.0), (0, 100), (100, 100)),  # no split: every token trains
    (100, dict(val_fraction=0.1, max_tokens=50), (0, 45), (45, 50)),  # cut to 50 first, then 5 held out
    (30, dict(batch_size=5), (0, 30), (30, 30)),  # 30 - 5 = 25 = 5 · 5 positions: room for 5 rows exactly
])
def test_split_ids_takes_the_tail_exactly(n, kw, train_range, val_range):
    """The training part is the head, the validation part the last round(n · val_fraction) tokens."""
    train_ids, val_ids = split_ids(np.arange(n), cfg(**kw))
    assert train_ids.tolist() == list(range(*train_range))
    assert val_ids.tolist() == list(range(*val_range))


@pytest.mark.parametrize("n,kw,message", [
    (100, dict(val_fraction=0.01), "val_fraction 0.01 leaves 1 validation tokens of 100; need 2 or more"),
    (10, dict(num_steps=10), "num_steps must be shorter than the training text (10 >= 10 tokens)"),
    (30, dict(batch_size=6), "batch_size must be at most 5 for num_steps=5 and 30 training tokens (got 6); "
                             "lower batch_size or num_steps, or raise max_tokens"),
    (11, dict(batch_size=2), "batch_size must be at most 1 for num_steps=5 and 11 training tokens (got 2); "
                             "lower batch_size or num_steps, or raise max_tokens"),  # (11 - 5) // 5 = 1
    (8, dict(batch_size=1), "batch_size must be at most 1 for num_steps=5 and 8 training tokens (got 1); "
                            "lower batch_size or num_steps, or raise max_tokens"),  # (8 - 5) // 5 = 0, shown as 1
])
def test_split_ids_refusals_at_their_boundaries(n, kw, message):
    """Each refusal names the option and the figures that broke the rule, word for word."""
    with pytest.raises(ConfigError) as err:
        split_ids(np.arange(n), cfg(**kw))
    assert str(err.value) == message


def test_prepare_ids_checks_shape_and_the_largest_id_in_both_parts():
    """An id array or a pipeline's ids; a 2-D or empty array is refused with its shape; the largest id (here
    only in the validation tail) must be below vocab_size: id 7 with vocab_size 8 passes, with 7 it is
    refused."""
    mc = ModelConfig(kind="rnn", vocab_size=8, num_hiddens=4)
    for bad, shape in ((np.zeros((2, 30), dtype=np.int64), "(2, 30)"), (np.zeros(0, dtype=np.int64), "(0,)")):
        with pytest.raises(ConfigError) as err:
            prepare_ids(bad, mc, cfg())
        assert str(err.value) == f"corpus ids must be a non-empty 1-D array (got shape {shape})"
    ids = np.array([0, 1, 2, 3] * 20 + [7, 7] * 10)  # 100 tokens; the tail 20 (val_fraction 0.2) holds the 7s

    class Pipeline:  # what prepare_ids reads of a TextPipeline: its ids
        def __init__(self, ids: np.ndarray) -> None:
            self.ids = ids

    for data in (ids, Pipeline(ids)):
        train_ids, val_ids = prepare_ids(data, mc, cfg(val_fraction=0.2))
        assert train_ids.tolist() == ids[:80].tolist() and val_ids.tolist() == [7] * 20
    with pytest.raises(ConfigError) as err:
        prepare_ids(ids, ModelConfig(kind="rnn", vocab_size=7, num_hiddens=4), cfg(val_fraction=0.2))
    assert str(err.value) == "vocab_size must be larger than every token id (got 7, max id 7)"


def test_the_detach_false_graph_limit_is_inclusive():
    """rnn, V = 16, H = 64, one layer: 16 one-hot + 3·64 + 3·16 = 256 floats per position, 1 KiB; so
    3072 training tokens need exactly 3 MiB, which bptt_limit_mb=3 allows; 3073 tokens are refused,
    "about 3 MiB"."""
    mc = ModelConfig(kind="rnn", vocab_size=16, num_hiddens=64)
    seq = dict(sampler="sequential", truncation="none", bptt_limit_mb=3)
    ids = np.arange(3073) % 16
    train_ids, _ = prepare_ids(ids[:3072], mc, cfg(**seq))
    assert len(train_ids) == 3072
    with pytest.raises(ConfigError) as err:
        prepare_ids(ids, mc, cfg(**seq))
    assert str(err.value) == ("truncation=none keeps the whole epoch's graph: about 3 MiB for 3073 training tokens "
                              "(bptt_limit_mb=3); lower max_tokens, use --truncation regular, or raise the limit")
    assert len(prepare_ids(ids, mc, cfg(**{**seq, "truncation": "regular"}))[0]) == 3073  # detached: no such limit


def test_the_random_truncation_graph_limit_and_none_for_regular():
    """The same 1 KiB per position; minibatches of 32 × 32 positions are 1 MiB. Random truncation at p = 0.5
    allows for 20 minibatches kept (0.5^20 < 1e-6 < 0.5^19): 20 MiB, which bptt_limit_mb=20 allows and 19
    refuses, naming the positions and p. Regular truncation keeps one minibatch whatever the limit: 2 MiB
    minibatches pass bptt_limit_mb=1."""
    mc = ModelConfig(kind="rnn", vocab_size=16, num_hiddens=64)
    rnd = dict(sampler="sequential", truncation="random", truncation_p=0.5, batch_size=32, num_steps=32)
    ids = np.arange(21000) % 16
    assert len(prepare_ids(ids, mc, cfg(**rnd, bptt_limit_mb=20))[0]) == 21000
    with pytest.raises(ConfigError) as err:
        prepare_ids(ids, mc, cfg(**rnd, bptt_limit_mb=19))
    assert str(err.value) == ("truncation=random keeps graphs of up to 20480 positions (p=0.5): about 20 MiB "
                              "(bptt_limit_mb=19); lower max_tokens, use --truncation regular or a larger "
                              "truncation_p, or raise the limit")
    regular = cfg(sampler="sequential", truncation="regular", batch_size=64, num_steps=32, bptt_limit_mb=1)
    assert len(prepare_ids(ids, mc, regular)[0]) == 21000


# --- memory ----------------------------------------------------------------------

V, H = 10, 8
# Parameters by hand, for V = 10 one-hot inputs (or a 4-wide embedding) and H = 8 hidden units; torch.nn
# layers carry two biases (b_ih, b_hh), and its output layer is H·V + V; scratch has one bias b_h.
OUT = H * V + V  # 90
KINDS = {  # name: (ModelConfig kwargs, parameters, floats of activation per position)
    "scratch": (dict(kind="scratch"), V * H + H * H + H + H * V + V, V + 3 * H + 3 * V),  # 242, 64
    "rnn2": (dict(kind="rnn", num_layers=2), (H * V + H * H + 2 * H) + (H * H + H * H + 2 * H) + OUT,
             V + 3 * H * 2 + 3 * V),  # 394, 88
    "gru": (dict(kind="gru"), 3 * (H * V + H * H + 2 * H) + OUT, V + 10 * H + 3 * V),  # 570, 120
    "lstm": (dict(kind="lstm"), 4 * (H * V + H * H + 2 * H) + OUT, V + 12 * H + 3 * V),  # 730, 136
    "rnn_embedding": (dict(kind="rnn", encoding="embedding", embed_size=4),
                      V * 4 + (H * 4 + H * H + 2 * H) + OUT, 4 + 3 * H + 3 * V),  # 242, 58
}


@pytest.mark.parametrize("name", KINDS)
def test_bptt_bytes_per_kind(name):
    """4 bytes × (input width + per-layer floats (3 for rnn/scratch, 10 GRU, 12 LSTM) × H × layers + 3V)
    per position, times the positions."""
    kw, _, floats = KINDS[name]
    mc = ModelConfig(vocab_size=V, num_hiddens=H, **kw)
    assert bptt_bytes(mc, 7) == 4 * floats * 7
    assert (name, floats) in {("scratch", 64), ("rnn2", 88), ("gru", 120), ("lstm", 136), ("rnn_embedding", 58)}


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("optimizer,k", [("sgd", 0), ("adam", 2), ("adamw", 2)])
@pytest.mark.parametrize("truncation,p,positions", [("regular", 0.5, 10), ("none", 0.5, 100), ("random", 0.9, 60),
                                                     ("random", 0.5, 100), ("random", 1.0, 10)])
def test_memory_estimate_per_kind_optimizer_and_truncation(name, optimizer, k, truncation, p, positions):
    """Weights: 4·P·((2 + k) + (1 + k)) bytes with k floats of optimizer state per parameter; activations:
    one minibatch's 2 × 5 positions (regular), all 100 training tokens (none), or under random truncation
    the segment kept with probability at most 1e-6: 0.1^6 = 1e-6 at p = 0.9, 6 minibatches = 60 positions;
    at p = 0.5, 20 minibatches (0.5^20 < 1e-6 < 0.5^19) = 200 positions, capped at the 100 tokens; at p = 1,
    every boundary is cut."""
    kw, params, floats = KINDS[name]
    assert params in {242, 394, 570, 730}
    mc = ModelConfig(vocab_size=V, num_hiddens=H, **kw)
    tc = cfg(optimizer=optimizer, truncation=truncation, truncation_p=p, sampler="sequential")
    est = memory_estimate(mc, tc, 100)
    assert (est.weights, est.activations) == (4 * params * (3 + 2 * k), 4 * floats * positions)
    assert est.total == est.weights + est.activations


class FakeFiles:
    """The files the free-memory reading opens, from a dict (path -> text; None: the file is missing).
    Installed as the ``open`` of the module that defines ``free_memory``: the parsing and arithmetic run
    for real on a machine the test describes (a container's cgroup v2 limit, a system without /proc)."""

    def __init__(self, files: dict[str, str | None]) -> None:
        self.files = files

    def __call__(self, path, *args, **kwargs):
        if path in self.files and self.files[path] is not None:
            import io

            encoding = kwargs.get("encoding", args[1] if len(args) > 1 else None)
            "".encode(encoding or "utf-8")  # an unknown encoding fails as open() would
            return io.StringIO(self.files[path])
        raise FileNotFoundError(path)


def _install(monkeypatch, files: dict[str, str | None]) -> None:
    monkeypatch.setattr(sys.modules[free_memory.__module__], "open", FakeFiles(files), raising=False)


MEMINFO = "MemTotal:       32000000 kB\nMemFree:         1000000 kB\nMemAvailable:    2000000 kB\nCached: 5 kB\n"
CG = "/sys/fs/cgroup/"


@pytest.mark.parametrize("files,expected", [
    # no cgroup v2 files: MemAvailable, in kB
    ({"/proc/meminfo": MEMINFO}, 2000000 * 1024),
    # cgroup v2 limit 1 GiB with 512 MiB used, 100 MiB of it inactive page cache: 612 MiB left, below MemAvailable
    ({"/proc/meminfo": MEMINFO, CG + "memory.max": "1073741824\n", CG + "memory.current": "536870912\n",
      CG + "memory.stat": "anon 1000\nfile 3\ninactive_file 104857600\nactive_file 7\n"}, 612 * 2**20),
    # no inactive_file line: nothing added back; a line that is not "key value" is skipped
    ({"/proc/meminfo": MEMINFO, CG + "memory.max": "1073741824\n", CG + "memory.current": "536870912\n",
      CG + "memory.stat": "anon 1000\nnot a pair\n"}, 512 * 2**20),
    # a limit above MemAvailable: the smaller one counts
    ({"/proc/meminfo": MEMINFO, CG + "memory.max": str(8 * 2**30), CG + "memory.current": "0",
      CG + "memory.stat": "inactive_file 0\n"}, 2000000 * 1024),
    # memory.max "max": no limit
    ({"/proc/meminfo": MEMINFO, CG + "memory.max": "max\n", CG + "memory.current": "5\n",
      CG + "memory.stat": ""}, 2000000 * 1024),
])
def test_free_memory_from_meminfo_and_a_cgroup_limit(monkeypatch, files, expected):
    """free_memory(cpu) is the smaller of MemAvailable and the room under a cgroup v2 limit (limit − used +
    inactive page cache), each read from the files as the kernel writes them."""
    _install(monkeypatch, files)
    assert free_memory(torch.device("cpu")) == expected


def test_free_memory_without_proc_falls_back_to_sysconf_then_to_unknown(monkeypatch):
    """Without /proc/meminfo (or without its MemAvailable line) the available pages × the page size from
    sysconf; without those either, None — and then nothing is refused for memory. Not a CPU: None."""
    pages, size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    for meminfo in (None, "MemTotal: 5 kB\nMemFree: 1 kB\n"):
        _install(monkeypatch, {"/proc/meminfo": meminfo})
        got = free_memory(torch.device("cpu"))
        assert abs(got - pages * size) <= 64 * 2**20  # free pages move a little between the two readings
    real = os.sysconf

    def no_sysconf(name):
        real(name)  # an unknown name still fails as it would
        raise ValueError(f"unrecognized configuration name {name!r}")

    monkeypatch.setattr(os, "sysconf", no_sysconf)
    _install(monkeypatch, {"/proc/meminfo": None})
    assert free_memory(torch.device("cpu")) is None
    assert free_memory(torch.device("meta")) is None


def _memory(V: int, H: int) -> tuple[int, int]:
    """(weights, activations) in bytes of the scratch RNN with adam and one position per minibatch, by hand:
    P = V·H (W_xh) + H·H (W_hh) + H (b_h) + H·V (W_hq) + V (b_q) parameters at 4·(2 + 2 + 1 + 2) bytes each
    (weight, gradient, Adam's two moments; the snapshot's copy of weight and moments); the activations
    4·(V one-hot + 3·H + 3·V logits/softmax) bytes for the one position."""
    P = V * H + H * H + H + H * V + V
    return 28 * P, 4 * (4 * V + 3 * H)


ADVICE = "lower batch_size, num_steps, num_hiddens or num_layers, or shrink the vocabulary (min_freq / vocab_size)"
GIB8 = {"/proc/meminfo": f"MemTotal: 99999999 kB\nMemAvailable: {8 * 2**20} kB\n"}  # 8 GiB available


@pytest.mark.parametrize("V,graph", [(643072, "10 MiB"), (315392, "5.00 MiB")])
def test_the_memory_refusal_states_the_figures_in_mib(monkeypatch, V, graph):
    """A scratch RNN of 16384 hidden units and V outputs needs hundreds of GiB, with 8 GiB free: the refusal
    gives the total, the weights' part and the free memory in whole MiB with thousands separators, and the
    graph's part — exactly 10 MiB when V = 643072 (4·(4V + 3H) = 10·2²⁰ bytes), so whole MiB from 10 MiB
    up; 5.00 MiB when V = 315392, two decimals below 10 MiB."""
    H = 16384
    weights, act = _memory(V, H)
    assert act == {"10 MiB": 10 * 2**20, "5.00 MiB": 5 * 2**20}[graph]
    _install(monkeypatch, GIB8)
    mc = ModelConfig(kind="scratch", vocab_size=V, num_hiddens=H)
    with pytest.raises(ConfigError) as err:
        check_memory(mc, cfg(optimizer="adam", batch_size=1, num_steps=1), 1000, torch.device("cpu"))
    assert str(err.value) == (
        f"training needs about {(weights + act) / 2**20:,.0f} MiB on cpu ({weights / 2**20:,.0f} MiB for the "
        f"weights, gradients, optimizer state and a copy of the last good epoch; {graph} for one minibatch's "
        f"graph (1 × 1 positions)) but only 8,192 MiB is free; {ADVICE}")
    assert weights > 100 * 2**30  # hundreds of thousands of MiB: the separators show


def test_the_memory_check_at_its_boundary_and_without_detaching(monkeypatch):
    """The scratch RNN of V = 10, H = 8 (242 parameters, 64 floats per position) with SGD needs
    4·242·3 = 2904 bytes of weights and 4·64·(2 × 5) = 2560 of activations, 5464 in all: allowed with
    exactly 5464 bytes free under a cgroup limit, refused with one byte less. Without detaching the graph
    spans all 1000 training tokens (256000 bytes), named as the whole epoch's. With the free memory
    unknown (not a CPU or CUDA device) nothing is refused."""
    mc = ModelConfig(kind="scratch", vocab_size=10, num_hiddens=8)

    def limit(free: int) -> None:
        _install(monkeypatch, {**GIB8, CG + "memory.max": str(free), CG + "memory.current": "0",
                               CG + "memory.stat": "inactive_file 0\n"})

    limit(5464)
    need = check_memory(mc, cfg(), 1000, torch.device("cpu"))
    assert (need.weights, need.activations, need.total) == (2904, 2560, 5464)
    limit(5463)
    with pytest.raises(ConfigError) as err:
        check_memory(mc, cfg(), 1000, torch.device("cpu"))
    assert str(err.value) == (
        "training needs about 0.01 MiB on cpu (0.00 MiB for the weights, gradients, optimizer state and a copy "
        "of the last good epoch; 0.00 MiB for one minibatch's graph (2 × 5 positions)) but only 0.01 MiB is "
        f"free; {ADVICE}")
    full = cfg(sampler="sequential", truncation="none")
    limit(2904 + 256000 - 1)
    with pytest.raises(ConfigError) as err:
        check_memory(mc, full, 1000, torch.device("cpu"))
    assert str(err.value) == (
        "training needs about 0.25 MiB on cpu (0.00 MiB for the weights, gradients, optimizer state and a copy "
        "of the last good epoch; 0.24 MiB for the whole epoch's graph (truncation none)) but only 0.25 MiB is "
        f"free; {ADVICE}")
    limit(1)
    assert check_memory(mc, full, 1000, torch.device("meta")).total == 2904 + 256000


# --- the device, out of memory, perplexity, the loss limit ---------------------------

def test_resolve_device_on_a_machine_without_a_gpu(monkeypatch):
    """Without CUDA or MPS: auto and cpu are the CPU; cuda and mps are refused with what to use instead.
    With an MPS torch build reporting MPS available, auto and mps pick it (the device is only named here).
    Which of CUDA or MPS torch reports is set by the test; what CUDA itself does is bench/check_cuda.py's."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA, even on a GPU one
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError) as err:
        resolve_device("cuda")
    assert str(err.value) == "device cuda is not available (no CUDA GPU or a CPU-only torch build); use device cpu"
    with pytest.raises(ConfigError) as err:
        resolve_device("mps")
    assert str(err.value) == ("device mps is not available (needs Apple silicon and an MPS torch build); "
                              "use device cpu")
    with pytest.raises(ConfigError) as err:
        resolve_device("tpu")
    assert str(err.value) == "device must be one of auto, cpu, cuda, mps (got 'tpu')"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps") and resolve_device("mps") == torch.device("mps")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("exc,oom", [
    (MemoryError(), True),
    (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1073741824 bytes"), True),
    (RuntimeError("CUDA Out Of Memory while running the kernel"), True),  # any case
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
    (ValueError("out of memory"), False),  # only a RuntimeError's message counts
    (KeyboardInterrupt(), False),
])
@pytest.mark.parametrize("old_torch", [False, True])
def test_out_of_memory_verdicts(exc, oom, old_torch, monkeypatch):
    """Out of memory: MemoryError, torch's OutOfMemoryError, or a RuntimeError whose message says
    "out of memory" or "can't allocate memory" in any case; nothing else. The same on a torch without
    torch.OutOfMemoryError (before 2.5, which pyproject allows: only torch.cuda has it)."""
    if old_torch:
        monkeypatch.delattr(torch, "OutOfMemoryError", raising=False)
    assert out_of_memory(exc) is oom


def test_perplexity_saturates_from_700_nats_and_the_divergence_limit():
    """exp(mean loss) below 700 nats, inf from 700 on (exp(709.8) overflows a float); the divergence limit
    is ln(V) + 20 (V at least 2), capped at 700."""
    assert perplexity(0.0) == 1.0 and perplexity(699.0) == math.exp(699.0)
    assert perplexity(700.0) == math.inf and perplexity(800.0) == math.inf
    assert loss_limit(28) == math.log(28) + 20 and loss_limit(2) == math.log(2) + 20
    assert loss_limit(1) == math.log(2) + 20 and loss_limit(0) == math.log(2) + 20
    assert loss_limit(10**400) == 700.0  # ln(1e400) + 20 ≈ 941


# --- throughput ------------------------------------------------------------------

def test_throughput_windows_epochs_and_eta_in_closed_form():
    """A table of windows worked out by hand with PRIOR_S = 2 s: the first epoch's rate is its tokens over
    its seconds (a negative reading counts as 0 s), later epochs add the previous average as 2 s of
    evidence; end_epoch returns the epoch's own average (or the current rate when no time was measured);
    the ETA is tokens_left / rate × max(1, wall / training seconds), never negative."""
    m = Throughput()
    assert m.add(0, 0.0) == 0.0 and m.rate is None and m.eta(100, 1.0) is None  # nothing measured yet
    assert m.add(500, 0.5) == 1000.0  # 500 tokens in 0.5 s
    assert m.add(100, -3.0) == 1200.0  # 600 tokens in 0.5 s
    assert m.eta(1200, 0.25) == 1.0  # 1 s at 1200 tokens/s; less wall time than training time: overhead 1
    assert m.eta(1200, 2.0) == 4.0  # 2 s of wall time per 0.5 s of training: ×4
    assert m.eta(-5, 2.0) == 0.0
    assert m.end_epoch() == 1200.0
    assert m.rate == 1200.0  # (1200·2 + 0) / (2 + 0)
    assert m.add(300, 0.5) == 1080.0  # (1200·2 + 300) / (2 + 0.5)
    assert m.eta(1080, 3.0) == 3.0  # 1 s of tokens at 1080/s; 3 s of wall per 1 s of training so far
    assert m.end_epoch() == 600.0  # the epoch's own 300 tokens in 0.5 s
    assert m.rate == 600.0
    assert m.end_epoch() == 600.0  # an epoch with no reading: the rate as it stands
    fresh = Throughput()
    assert fresh.end_epoch() == 0.0 and fresh.rate == 0.0 and fresh.eta(10, 1.0) is None
    prior = Throughput(previous=1000.0)  # a rate, but no training time yet in this session
    assert prior.rate == 1000.0 and prior.eta(100, 1.0) is None
    assert prior.add(0, 0.5) == 800.0  # (1000·2 + 0) / 2.5
    assert prior.eta(800, 0.5) == 1.0


@pytest.mark.parametrize("name,cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                      ("adamw", torch.optim.AdamW)])
def test_make_optimizer_builds_the_named_one_with_the_lr_over_the_trainable_weights(name, cls):
    """The optimizer named by the option, at the configured learning rate (not torch's default), over the
    parameters that require gradients only (a frozen output layer is left out)."""
    from engine.models import build_model
    from engine.training import make_optimizer

    model = build_model(ModelConfig(kind="rnn", vocab_size=V, num_hiddens=H))
    model.linear.requires_grad_(False)
    opt = make_optimizer(model, cfg(optimizer=name, lr=0.25))
    assert type(opt) is cls and [g["lr"] for g in opt.param_groups] == [0.25]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(trainable) == 4 and [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in trainable]
