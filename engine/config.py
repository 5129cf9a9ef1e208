"""Every option of a model and of its training, checked when it is made: ``ModelConfig``,
``TrainConfig``, the allowed values of each choice, and the registry of recurrent cells.

Torch-free, so the CLI builds its parser (and ``rnnlab --help``) without importing
torch. Each field carries its help text (and, for a choice, its allowed values) as
dataclass field metadata; the CLI's flags (``tui.cli.train``) and the TUI's form
(``tui.train_view``) are generated from it, so a new option needs no other edit:

* ``help``: one line for ``--help`` and the form's tooltip;
* ``choices``: the allowed values (a select in the form, argparse's ``choices``);
* ``flag``: the CLI flag when it is not the field's name (``--model`` for ``kind``);
* ``fixed_by``: who sets a field that is no user option (the corpus sets ``vocab_size``).

``CELLS`` is the registry of recurrent cells: a name, the module and class that
implement it (``engine.models`` imports the module on first use) and the few facts
a config check needs without torch. Adding a cell is one module under
``engine/models/`` plus one line here. Left out: the models and the training loop
themselves (``engine.models``, ``engine.trainer``).
"""

from __future__ import annotations

import math
from dataclasses import Field, asdict, dataclass, field, fields
from typing import Any

from engine.errors import ConfigError
from engine.jsonfloat import dump_float, float_fields, load_float


@dataclass(frozen=True)
class CellEntry:
    """What the config knows about a kind of recurrent cell without importing it."""

    target: str  # "module:Class" of its engine.models.cell.Cell subclass
    about: str  # a few words for the help text
    one_layer: bool = False  # supports num_layers == 1 only (D2L 8.5's scratch RNN)
    activation: bool = False  # uses the activation option (tanh | relu); other cells ignore it
    identity: bool = False  # supports init identity (one h×h recurrent matrix set to I, biases 0)


CELLS: dict[str, CellEntry] = {
    "scratch": CellEntry("engine.models.scratch:ScratchRNN", "D2L 8.5", one_layer=True, activation=True,
                         identity=True),
    "rnn": CellEntry("engine.models.rnn:RNN", "torch.nn.RNN", activation=True, identity=True),
    "gru": CellEntry("engine.models.gru:GRU", "D2L 9.1"),
    "lstm": CellEntry("engine.models.lstm:LSTM", "D2L 9.2"),
    "mingru": CellEntry("engine.models.mingru:MinGRU", "Feng et al. 2024, a parallel scan"),
}

MODEL_KINDS = tuple(CELLS)
ENCODINGS = ("onehot", "embedding")
ACTIVATIONS = ("tanh", "relu")
# How the recurrent weights start: the cell's own draw, or W_hh = I with zero biases (Le, Jaitly & Hinton 2015's
# IRNN, with relu): the state is copied forward unchanged until training says otherwise (exercise 8.7.2).
INITS = ("default", "identity")
OPTIMIZERS = ("sgd", "adam", "adamw")
CLIPS = ("norm", "value", "off")
# D2L 8.3.4's two samplers, then rnnlab's (engine.samplers, engine.sentences): a sliding window
# with a stride, a more uniform random sampler, random sampling at offset 0, whole sentences padded.
SAMPLERS = ("random", "sequential", "sliding", "uniform", "fixed", "sentences")
CARRIES_STATE = ("sequential",)  # samplers whose row i continues row i of the previous minibatch
PADDED = ("sentences",)  # samplers whose targets Y hold engine.sentences.IGNORE_INDEX at padding
TRUNCATIONS = ("regular", "random", "none")
DEVICES = ("auto", "cpu", "cuda", "mps")
# Arithmetic of the forward pass and the loss (engine.precision): float32 (the book's numbers), or autocast to
# bfloat16 (CPU and CUDA) or float16 (CUDA, with loss scaling); weights, gradients and optimizer state stay float32.
PRECISIONS = ("fp32", "bf16", "fp16")
FP16_OFF_CUDA = ("a CPU has no float16 arithmetic (torch emulates it, slower than fp32) and fp16 needs loss "
                 "scaling; use --precision bf16 (same range as fp32, no scaling) or fp32")
STATIC_SAMPLERS = ("random", "sequential", "fixed")  # every minibatch batch_size × num_steps: a CUDA graph replays


def option(default: Any, help: str, choices: tuple[str, ...] | None = None, **more: Any) -> Any:
    """A dataclass field with its help text (and allowed values) as metadata."""
    meta = {"help": help, **({"choices": choices} if choices else {}), **more}
    return field(default=default, metadata=meta)


def user_options(cls: type) -> list[Field]:
    """The fields a user sets (CLI flags, form rows): all but those fixed by something else."""
    return [f for f in fields(cls) if "fixed_by" not in f.metadata]


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)} (got {value!r})")


def _at_least(name: str, value: Any, low: float, what: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
        raise ConfigError(f"{name} must be {what or f'at least {low}'} (got {value!r})")


_KIND_HELP = "recurrent cell: " + ", ".join(f"{k} ({c.about})" for k, c in CELLS.items())
_ACTIVATION_HELP = "nonlinearity of the " + "/".join(k for k, c in CELLS.items() if c.activation) + " cells"


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model's architecture."""

    kind: str = option("gru", _KIND_HELP, MODEL_KINDS, flag="--model")
    vocab_size: int = option(28, "len(vocab): size of one-hot inputs and of the output layer", fixed_by="corpus")
    num_hiddens: int = option(256, "hidden units per layer")
    num_layers: int = option(1, "stacked recurrent layers (D2L 8.6.2)")
    dropout: float = option(0.0, "dropout between stacked layers (num_layers > 1)")
    encoding: str = option("onehot", "input encoding: onehot (D2L) | embedding (exercise 8.5.2)", ENCODINGS)
    embed_size: int = option(32, "embedding width (encoding embedding)")
    activation: str = option("tanh", _ACTIVATION_HELP, ACTIVATIONS)
    init: str = option("default", "recurrent weights at the start: default (the cell's own draw) | identity "
                                  "(W_hh = I and biases 0 in every layer: with activation relu, Le et al. 2015's "
                                  "IRNN; " + "/".join(k for k, c in CELLS.items() if c.identity) + " cells)", INITS)

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ConfigError(f"model kind must be one of {', '.join(MODEL_KINDS)} (got {self.kind!r})")
        _choice("encoding", self.encoding, ENCODINGS)
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("init", self.init, INITS)
        if self.init == "identity" and not CELLS[self.kind].identity:
            plain = " or ".join(k for k, c in CELLS.items() if c.identity)
            raise ConfigError(f"init identity needs a plain RNN cell ({plain}), not {self.kind}: its recurrent "
                              "weights feed gates, so W_hh = I would not copy the state forward; use init default")
        if self.vocab_size < 2:
            raise ConfigError(f"vocab_size must be at least 2 (got {self.vocab_size})")
        if not 1 <= self.num_hiddens <= 16384:
            raise ConfigError(f"num_hiddens must be in 1..16384 (got {self.num_hiddens})")
        if not 1 <= self.num_layers <= 16:
            raise ConfigError(f"num_layers must be in 1..16 (got {self.num_layers})")
        if CELLS[self.kind].one_layer and self.num_layers != 1:
            raise ConfigError(f"num_layers must be 1 for the {self.kind} RNN (got {self.num_layers}); "
                              "use rnn for deep RNNs")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1) (got {self.dropout})")
        if self.dropout > 0.0 and self.num_layers == 1:
            # torch.nn applies dropout only between stacked layers: with one layer it would do nothing.
            raise ConfigError(f"dropout must be 0 when num_layers is 1 (got {self.dropout}); it acts between layers")
        if not 1 <= self.embed_size <= 4096:
            raise ConfigError(f"embed_size must be in 1..4096 (got {self.embed_size})")

    @property
    def input_size(self) -> int:
        return self.vocab_size if self.encoding == "onehot" else self.embed_size


@dataclass(frozen=True)
class TrainConfig:
    """How to train: D2L's defaults for the optimizer and data, rnnlab's for the rest."""

    optimizer: str = option("sgd", "sgd (D2L) | adam | adamw (torch's default weight decay 0.01)", OPTIMIZERS)
    lr: float = option(1.0, "learning rate (D2L: 1 with plain SGD)")
    # sgd/adam: L2, λ·w added to the (clipped) gradient inside the step; adamw: decoupled, w ← w − lr·λ·w
    weight_decay: float = option(0.0, "weight decay λ: sgd and adam add λ·w to the gradient; adamw shrinks w by "
                                      "lr·λ each step (0 = adamw's own 0.01: adamw without decay is adam)")
    epochs: int = option(50, "passes over the training tokens (D2L: 500)")
    batch_size: int = option(32, "subsequences per minibatch")
    num_steps: int = option(35, "time steps per subsequence (truncated BPTT length)")
    clip: str = option("norm", "gradient clipping: by global norm (D2L) | by value | off", CLIPS)
    clip_theta: float = option(1.0, "clipping bound θ: the norm bound (clip norm) or the value bound (clip value)")
    sampler: str = option("random", "random | sequential minibatches (D2L 8.3.4); sliding (windows every "
                                    "stride tokens) | uniform (random, every subsequence used) | fixed (random "
                                    "at offset 0) | sentences (whole sentences, padded; raw mode only)",
                          SAMPLERS)
    stride: int = option(0, "with --sampler sliding: tokens between window starts, 1..num_steps "
                            "(0 = num_steps // 2, windows overlapping by half)")
    # the ids of the tokens that end a sentence (engine.sentences.with_sentence_ends), for --sampler sentences
    sentence_end_ids: tuple[int, ...] = option((), "token ids that end a sentence", fixed_by="corpus")
    # where the graph is cut between sequential minibatches (engine.truncation)
    truncation: str = option("regular", "BPTT between sequential minibatches: regular (cut at every one, D2L) | "
                                        "random (cut with probability truncation_p, reweighted: unbiased) | "
                                        "none (one graph and one step per epoch)", TRUNCATIONS)
    truncation_p: float = option(0.5, "with --truncation random: probability of cutting at each minibatch "
                                      "boundary (mean segment 1/p minibatches)")
    val_fraction: float = option(0.1, "held-out tail of the (max_tokens-cut) corpus for validation (0 = none)")
    max_tokens: int = option(10000, "use only the first N tokens (D2L: 10000; 0 = all)")
    seed: int = option(0, "seeds weights, minibatch order and sampling: same seed + config → same curve")
    device: str = option("auto", "auto (cuda, then mps, then cpu) | cpu | cuda | mps", DEVICES)
    threads: int = option(0, "CPU threads for torch (0 = torch's default)")
    precision: str = option("fp32", "forward pass and loss in fp32 (the book's numbers) | bf16 (autocast; CPU "
                                    "and CUDA) | fp16 (autocast with loss scaling; CUDA only); weights stay fp32",
                            PRECISIONS)
    cuda_graphs: bool = option(False, "replay each training step (forward, backward, clipping, optimizer) and "
                                      "each generated token from a captured CUDA graph: fewer kernel launches "
                                      "(CUDA only; samplers random, sequential or fixed with truncation regular)")
    sample_every: int = option(10, "epochs between samples, and the last epoch samples too; 0 = no samples, "
                                   "not even at the last epoch")
    sample_prefix: str = option("time traveller", "prompt of the samples (D2L's)")
    sample_len: int = option(50, "tokens generated per sample (D2L: 50)")
    sample_alpha: float = option(math.inf, "sampling exponent α for samples (inf = greedy, D2L's predict)")
    log_interval_s: float = option(0.25, "at least this many seconds between progress updates within an epoch")
    log_every_steps: int = option(0, "also update progress every N steps (0 = by time only)")
    checkpoint_interval_s: float = option(30.0, "seconds between checkpoints (one is always saved at the end)")
    spike_factor: float = option(2.0, "a spike when perplexity exceeds this × its best so far")
    bptt_limit_mb: int = option(2048, "with --truncation none|random: refuse when the graph kept would need "
                                      "more MiB")
    # processes that train together (engine.distributed): each takes batch_size subsequences per step
    world_size: int = option(1, "processes training together: the effective batch is batch_size × world_size",
                             fixed_by="launcher")

    def __post_init__(self) -> None:
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("clip", self.clip, CLIPS)
        _choice("sampler", self.sampler, SAMPLERS)
        ends = self.sentence_end_ids
        if not isinstance(ends, (tuple, list)) or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ends):
            raise ConfigError(f"sentence_end_ids must be a list of token ids (got {ends!r})")
        object.__setattr__(self, "sentence_end_ids", tuple(ends))  # a JSON list comes back a tuple
        _choice("truncation", self.truncation, TRUNCATIONS)
        _choice("device", self.device, DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number (got {self.lr!r})")
        if isinstance(self.weight_decay, bool) or not (isinstance(self.weight_decay, (int, float))
                                                       and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be zero or a positive number (got {self.weight_decay!r})")
        for name in ("epochs", "batch_size", "num_steps"):
            _at_least(name, getattr(self, name), 1, "a positive integer")
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or not 0 <= self.stride <= self.num_steps:
            raise ConfigError(f"stride must be an integer in 0..num_steps ({self.num_steps}) (got {self.stride!r}); "
                              "0 means num_steps // 2, and a stride past num_steps would skip tokens")
        if not (self.clip_theta > 0 and math.isfinite(self.clip_theta)):
            raise ConfigError(f"clip_theta must be a positive number (got {self.clip_theta!r})")
        if not 0.0 <= self.val_fraction <= 0.5:
            raise ConfigError(f"val_fraction must be in [0, 0.5] (got {self.val_fraction!r})")
        for name in ("max_tokens", "seed", "threads", "sample_every", "sample_len", "log_every_steps"):
            _at_least(name, getattr(self, name), 0, "zero or a positive integer")
        for name in ("log_interval_s", "checkpoint_interval_s"):
            _at_least(name, getattr(self, name), 0, "zero or more seconds")
        _at_least("sample_alpha", self.sample_alpha, 0, "zero or more (inf = greedy)")
        if not self.spike_factor > 1:
            raise ConfigError(f"spike_factor must be greater than 1 (got {self.spike_factor!r})")
        _at_least("bptt_limit_mb", self.bptt_limit_mb, 1, "a positive number of MiB")
        _at_least("world_size", self.world_size, 1, "a positive integer")
        if isinstance(self.truncation_p, bool) or not (isinstance(self.truncation_p, (int, float))
                                                       and 0 < self.truncation_p <= 1):
            raise ConfigError(f"truncation_p must be in (0, 1] (got {self.truncation_p!r}); 1 cuts at every "
                              "boundary, as --truncation regular")
        if self.truncation != "regular" and self.sampler != "sequential":
            raise ConfigError(
                f"truncation={self.truncation!r} needs sampler='sequential': only it carries the state from one "
                f"minibatch to the next ({self.sampler} sampling starts every minibatch from a fresh state)"
            )
        self._check_fast_paths()

    def _check_fast_paths(self) -> None:
        """What ``precision`` and ``cuda_graphs`` allow, as far as the options alone tell (the device ``auto``
        resolves to is checked when training starts: ``engine.precision.check_device``)."""
        if self.precision == "fp16" and self.device in ("cpu", "mps"):
            raise ConfigError(f"precision fp16 needs a CUDA GPU (device is {self.device}): {FP16_OFF_CUDA}")
        if self.precision == "bf16" and self.device == "mps":
            raise ConfigError("precision bf16 runs on the CPU or a CUDA GPU, not on mps; use --precision fp32")
        if not isinstance(self.cuda_graphs, bool):
            raise ConfigError(f"cuda_graphs must be true or false (got {self.cuda_graphs!r})")
        if not self.cuda_graphs:
            return
        if self.device in ("cpu", "mps"):
            raise ConfigError(f"cuda_graphs needs a CUDA GPU (device is {self.device}); leave out --cuda-graphs")
        if self.precision == "fp16":
            raise ConfigError("cuda_graphs cannot replay precision fp16: its loss scaler decides on the CPU whether "
                              "to skip each step; use --precision bf16 or fp32 with --cuda-graphs")
        if self.sampler not in STATIC_SAMPLERS or self.truncation != "regular":
            raise ConfigError(f"cuda_graphs needs minibatches of one shape and one optimizer step each: sampler "
                              f"{' | '.join(STATIC_SAMPLERS)} with truncation regular (got sampler {self.sampler}, "
                              f"truncation {self.truncation}); leave out --cuda-graphs")
        if self.world_size > 1:
            raise ConfigError(f"cuda_graphs with several processes (world_size {self.world_size}) is not supported; "
                              "leave out --cuda-graphs or --nproc")

    @property
    def carries_state(self) -> bool:
        """Whether the trainer carries the state from one minibatch to the next (else a fresh one each)."""
        return self.sampler in CARRIES_STATE

    @property
    def pads(self) -> bool:
        """Whether the sampler pads its minibatches (then Y's padding targets are negative, to be ignored)."""
        return self.sampler in PADDED

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: an infinite sample_alpha is written as the string 'inf' (``engine.jsonfloat``), tuples as
        lists (what JSON gives back)."""
        return {k: list(v) if isinstance(v, tuple) else dump_float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known, floats = {f.name for f in fields(cls)}, float_fields(cls)
        if "detach" in d and "truncation" not in d:  # runs saved before truncation replaced detach
            d = {**d, "truncation": "regular" if d["detach"] else "none"}
        return cls(**{k: (load_float(v) if k in floats else v) for k, v in d.items() if k in known})
