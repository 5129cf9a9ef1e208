"""Exercise 8.5.1: one-hot encoding is the same as giving every token its own embedding.

For a one-hot row e_x, ``e_x W = W[x]``: the product picks row x. So a layer fed one-hot vectors is an
embedding table with one learned vector per token, and training it is training that table. Shown
numerically on a language model of the corpus's vocabulary, three ways to form layer 0's input term:

* ``one-hot · W``: ``F.one_hot(X) @ W_xh + b`` — the book's code;
* ``W[x]``: the gather rnnlab's model uses (``RNNLM.input_term``);
* ``nn.Embedding``: a separate embedding module whose weight is a copy of W_xh.

The rest of the model (recurrence, output layer, loss on random targets) is the same. Forward values
are compared bit for bit (e_x W adds only exact zeros, so they are equal), gradients of every parameter
up to the order of summation (the one-hot matmul and the gather's scatter add a token's rows in another
order), in float32 and float64.

Left out: training (equal gradients at every step give equal training, given the same seed).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from engine.config import MODEL_KINDS, option
from engine.exercises.base import Exercise, Progress, Reference, Result, check_stop, need
from engine.exercises.common import CORPUS_HELP, integer, pipeline

PATHS = ("one-hot · W", "W[x]", "nn.Embedding")


@dataclass(frozen=True)
class Settings:
    """The model and the minibatch the three input terms are compared on."""

    corpus: str = option("timemachine", CORPUS_HELP)
    kind: str = option("rnn", "recurrent cell", MODEL_KINDS)
    num_hiddens: int = option(32, "hidden units")
    batch_size: int = option(8, "rows of the minibatch")
    num_steps: int = option(35, "time steps of the minibatch")
    seed: int = option(0, "seeds the weights, the minibatch and the targets")

    def __post_init__(self) -> None:
        need(self.kind in MODEL_KINDS, f"kind must be one of {', '.join(MODEL_KINDS)} (got {self.kind!r})")
        integer("num_hiddens", self.num_hiddens, 1, 4096)
        integer("batch_size", self.batch_size, 1, 512)
        integer("num_steps", self.num_steps, 1, 1000)
        integer("seed", self.seed, 0, 2**31 - 1)


def compare(s: Settings, dtype_name: str, V: int) -> dict[str, dict[str, float]]:
    """For each path after the first: max |difference| from ``one-hot · W`` of the logits, the loss and
    each parameter's gradient (the embedding's weight standing for W_xh)."""
    import torch
    from torch.nn import functional as F

    from engine.config import ModelConfig
    from engine.models.lm import build_model

    dtype = torch.float64 if dtype_name == "float64" else torch.float32
    torch.manual_seed(s.seed)
    model = build_model(ModelConfig(kind=s.kind, vocab_size=V, num_hiddens=s.num_hiddens)).to(dtype)
    model.train(False)
    g = torch.Generator().manual_seed(s.seed)
    X = torch.randint(0, V, (s.batch_size, s.num_steps), generator=g)
    Y = torch.randint(0, V, (s.batch_size, s.num_steps), generator=g)
    cell = model.cell
    W0 = cell.input_weights(model, 0)[0]  # (V, gates·h): a view of the parameter holding W_xh
    W_name = next(n for n, p in model.named_parameters() if p.data_ptr() == W0.data_ptr())
    state = model.begin_state(s.batch_size)
    state = tuple(t.to(dtype) for t in state) if isinstance(state, tuple) else state.to(dtype)
    results = {}
    for path in PATHS:
        model.zero_grad()
        W, b = cell.input_weights(model, 0)
        emb = None
        if path == "one-hot · W":
            A0 = F.one_hot(X.T, V).to(dtype) @ W + b
        elif path == "W[x]":
            A0 = model.input_term(X, W, b)
        else:
            emb = torch.nn.Embedding(V, W.shape[1]).to(dtype)
            with torch.no_grad():
                emb.weight.copy_(W)
            A0 = emb(X.T) + b
        Hs, _ = cell.forward(model, A0, state, False)
        logits = model.output(Hs)
        loss = F.cross_entropy(logits.reshape(-1, V), Y.T.reshape(-1))
        loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        if emb is not None:  # the embedding holds W_xh's rows (nn.RNN stores W_xh transposed, scratch as is)
            shape = model.get_parameter(W_name).shape
            grads[W_name] = emb.weight.grad.detach().clone() if emb.weight.grad.shape == shape \
                else emb.weight.grad.detach().T.clone()
        results[path] = {"logits": logits.detach(), "loss": loss.detach(), **grads}
    base = results[PATHS[0]]
    out = {}
    for path in PATHS[1:]:
        r = results[path]
        diffs = {}
        for key, ref in base.items():
            scale = float(ref.abs().max()) or 1.0
            diffs[key] = (float((r[key] - ref).abs().max()), float((r[key] - ref).abs().max()) / scale)
        out[path] = diffs
    return out


class OneHotIsEmbedding(Exercise):
    id = "8.5.1"
    question = ("Show that one-hot encoding is the same as giving every token a separate embedding: "
                "the outputs and the gradients are identical.")
    Settings = Settings
    default = Settings()
    long = Settings(num_hiddens=256, batch_size=32)
    references = (
        Reference("max_forward_diff", 0.0, 0.0, "default", "logits and loss, both dtypes: bit-identical"),
        Reference("max_grad_rel_diff_float64", 0.0, 1e-14, "default", "summation order only; seen ≤ 4e-16 (rnn, scratch, gru, lstm)"),
        Reference("max_grad_rel_diff_float32", 0.0, 1e-6, "default", "summation order only; seen ≤ 2.7e-7"),
        Reference("max_forward_diff", 0.0, 0.0, "long", "bit-identical"),
        Reference("max_grad_rel_diff_float64", 0.0, 1e-14, "long", "summation order only"),
        Reference("max_grad_rel_diff_float32", 0.0, 1e-6, "long", "summation order only"),
    )

    def compute(self, s: Settings, progress: Progress, stop: threading.Event | None) -> Result:
        V = len(pipeline(s.corpus).vocab)
        rows, figures = [], {"max_forward_diff": 0.0}
        for i, dtype in enumerate(("float32", "float64")):
            check_stop(stop)
            progress(i, 2, f"comparing in {dtype}")
            worst_grad = 0.0
            for path, diffs in compare(s, dtype, V).items():
                for key, (absolute, relative) in diffs.items():
                    rows.append([dtype, path, key, absolute, relative])
                    if key in ("logits", "loss"):
                        figures["max_forward_diff"] = max(figures["max_forward_diff"], absolute)
                    else:
                        worst_grad = max(worst_grad, relative)
            figures[f"max_grad_rel_diff_{dtype}"] = worst_grad
        progress(2, 2, "done")
        fwd = figures["max_forward_diff"]
        explanation = (
            f"V = {V}. Against one-hot · W, the gather W[x] and a separate nn.Embedding holding W's rows give "
            + ("bit-identical logits and loss (largest difference 0)" if fwd == 0 else
               f"logits and loss within {fwd:.2g}")
            + f" in float32 and float64: multiplying e_x by W adds only exact zeros to row x. Gradients agree to "
            f"{figures['max_grad_rel_diff_float32']:.2g} of their size in float32 and "
            f"{figures['max_grad_rel_diff_float64']:.2g} in float64 — rounding from adding a token's rows in "
            f"another order, nothing else. So a one-hot input layer is an embedding table with one learned vector "
            f"per token (width num_hiddens); the gather just skips multiplying by {V - 1} zeros per token.")
        return Result(["dtype", "against one-hot · W", "quantity", "max |diff|", "relative"], rows, explanation,
                      figures)


EXERCISE = OneHotIsEmbedding()
