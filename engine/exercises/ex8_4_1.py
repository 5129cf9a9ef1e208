"""Exercise 8.4.1: what is the required dimension of the output when an RNN predicts the next token?

The answer is the vocabulary size V: the output layer ``O = H W_hq + b_q`` turns a state of any width
into one logit per token, so softmax(O) is a distribution over the vocabulary. Here language models
are built for the corpus's vocabulary at several hidden widths (and with one-hot or embedded inputs of
several widths), every parameter's shape is listed, a minibatch goes through each, and the logits'
last dimension is checked against V. Widths change the input and recurrent weights only.

Left out: training (shapes do not depend on it).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from engine.config import MODEL_KINDS, option
from engine.exercises.base import Exercise, Progress, Reference, Result, check_stop, need
from engine.exercises.common import CORPUS_HELP, pipeline, positive_ints


@dataclass(frozen=True)
class Settings:
    """Which vocabulary, which cell, and the widths tried."""

    corpus: str = option("timemachine", CORPUS_HELP)
    tokenizer: str = option("char", "char (V = 28 for The Time Machine) or word", ("char", "word"))
    kind: str = option("rnn", "recurrent cell", MODEL_KINDS)
    num_hiddens: tuple[int, ...] = option((16, 256), "hidden widths tried")
    embed_sizes: tuple[int, ...] = option((8, 32), "embedding widths tried (encoding embedding)")
    batch_size: int = option(2, "rows of the minibatch sent through each model")
    num_steps: int = option(5, "time steps of that minibatch")

    def __post_init__(self) -> None:
        need(self.tokenizer in ("char", "word"), f"tokenizer must be char or word (got {self.tokenizer!r})")
        need(self.kind in MODEL_KINDS, f"kind must be one of {', '.join(MODEL_KINDS)} (got {self.kind!r})")
        positive_ints("num_hiddens", self.num_hiddens, 1, 4096)
        positive_ints("embed_sizes", self.embed_sizes, 1, 1024)
        positive_ints("batch_size", (self.batch_size,), 1, 64)
        positive_ints("num_steps", (self.num_steps,), 1, 64)


class OutputShapes(Exercise):
    id = "8.4.1"
    question = ("An RNN predicts the next character of a text. What must the dimension of its output be, "
                "and does it depend on the hidden or embedding width?")
    Settings = Settings
    default = Settings()
    long = Settings(tokenizer="word", num_hiddens=(16, 256, 1024), embed_sizes=(8, 32, 128))
    references = (
        Reference("vocab_size", 28, 0, "default", "The Time Machine, d2l mode, char tokens: exact"),
        Reference("models_with_V_outputs", 1.0, 0, "default", "share of models; exact"),
        Reference("vocab_size", 4580, 0, "long", "word tokens: exact"),
        Reference("models_with_V_outputs", 1.0, 0, "long", "exact"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        import torch

        from engine.config import ModelConfig
        from engine.models.lm import build_model

        V = len(pipeline(s.corpus, "d2l", s.tokenizer).vocab)
        configs = [ModelConfig(kind=s.kind, vocab_size=V, num_hiddens=h) for h in s.num_hiddens]
        configs += [ModelConfig(kind=s.kind, vocab_size=V, num_hiddens=h, encoding="embedding", embed_size=e)
                    for h in s.num_hiddens for e in s.embed_sizes]
        rows, ok = [], 0
        X = torch.zeros((s.batch_size, s.num_steps), dtype=torch.long)
        for i, cfg in enumerate(configs):
            check_stop(stop)
            progress(i, len(configs), f"building {cfg.kind} h={cfg.num_hiddens}")
            torch.manual_seed(0)
            model = build_model(cfg)
            with torch.no_grad():
                logits, _ = model(X, model.begin_state(s.batch_size))
            name = f"{cfg.encoding} h={cfg.num_hiddens}" + (f" e={cfg.embed_size}" if cfg.encoding == "embedding"
                                                            else "")
            for pname, p in model.named_parameters():
                rows.append([name, pname, " × ".join(map(str, p.shape)), p.numel()])
            rows.append([name, "logits (num_steps, batch, ·)", " × ".join(map(str, logits.shape)), ""])
            W_hq, _ = model.output_weights()
            ok += int(logits.shape[-1] == V and W_hq.shape == (cfg.num_hiddens, V))
        progress(len(configs), len(configs), "done")
        share = ok / len(configs)
        widths = ", ".join(map(str, s.num_hiddens))
        explanation = (
            f"The vocabulary has V = {V} tokens. In all {len(configs)} models (hidden widths {widths}, one-hot or "
            f"embedded inputs) the logits end in {V}: {ok} of {len(configs)} output layers map the state to V "
            f"values. The output weight W_hq is num_hiddens × V (nn.Linear stores it transposed, V × num_hiddens), "
            f"so the hidden width sets only its other side; "
            f"the embedding width appears only in the input weights. One-hot inputs make the input weights "
            f"V × num_hiddens too, so V sits at both ends of a one-hot model and at the output end of any model: "
            f"the next-token distribution needs one probability per token.")
        return Result(["model", "parameter", "shape", "numel"], rows, explanation,
                      {"vocab_size": float(V), "models_with_V_outputs": share})


EXERCISE = OutputShapes()
