"""Training and generation speed: D2L's own loop vs rnnlab's models.

Usage: ``python bench/bench_speed.py [--device cpu|cuda] [--rounds 7]``

The baseline is written the way D2L 8.5/8.6 writes it: ``F.one_hot`` per batch,
a Python loop over time steps with the output layer inside it (scratch), D2L's
``grad_clipping`` over a parameter list, ``d2l.sgd`` / ``torch.optim.SGD`` at
lr 1, ``train_epoch_ch8``'s per-batch ``float()`` of the loss, the sequential
iterator ``seq_data_iter_sequential``, batch 32, 35 steps, the first 10000
characters of The Time Machine (vocab 28) — 8960 tokens an epoch.

"Ours" is ``engine.models`` plus a lean step that mirrors the trainer: loss of
the (num_steps·batch) logits against ``Y.T``, ``clip_grad_norm_``, SGD, the loss
summed on the device. Both start from the same weights and read the same
batches; the script first checks that they give the same perplexity curve, then
times them in interleaved rounds in one process (the machine is shared: only
the ratios mean much) and prints median tokens/s and ratios. Generation:
D2L's ``predict_ch8`` (greedy) vs a greedy loop over ``engine.stepper.Stepper``
(what ``engine.generate`` runs) under ``torch.inference_mode()``, and
``engine.generate`` itself.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.config import ModelConfig  # noqa: E402
from engine.models import RNNLM, build_model, detach_state  # noqa: E402
from engine.stepper import Stepper  # noqa: E402

CONFIGS = [("scratch", 512), ("rnn", 256), ("gru", 256), ("lstm", 256)]
BATCH_SIZE, NUM_STEPS, MAX_TOKENS, PREFIX = 32, 35, 10000, "time traveller "


# ----------------------------------------------------------------- data (D2L 8.2/8.3)
def load_time_machine() -> tuple[list[int], list[str], str]:
    """D2L's ``load_corpus_time_machine(max_tokens=10000)``: char ids, idx_to_token, the whole text."""
    folder = Path(os.environ.get("RNNLAB_CORPUS_DIR", Path(__file__).resolve().parents[2] / "shared" / "corpora"))
    lines = (folder / "timemachine.txt").read_text(encoding="utf-8").split("\n")
    text = "".join(re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in lines)
    counts: dict[str, int] = {}
    for ch in text:
        counts[ch] = counts.get(ch, 0) + 1
    idx_to_token = ["<unk>"] + sorted(counts, key=lambda c: -counts[c])  # sorted() is stable, as D2L's
    token_to_idx = {t: i for i, t in enumerate(idx_to_token)}
    return [token_to_idx[c] for c in text[:MAX_TOKENS]], idx_to_token, text


def seq_data_iter_sequential(corpus: list[int], batch_size: int, num_steps: int, rng: random.Random
                             ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """D2L's sequential partitioning, with the offset drawn from ``rng``."""
    offset = rng.randint(0, num_steps)
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    Xs = torch.tensor(corpus[offset: offset + num_tokens]).reshape(batch_size, -1)
    Ys = torch.tensor(corpus[offset + 1: offset + 1 + num_tokens]).reshape(batch_size, -1)
    for i in range(0, Xs.shape[1] // num_steps * num_steps, num_steps):
        yield Xs[:, i: i + num_steps], Ys[:, i: i + num_steps]


# ----------------------------------------------------------------- D2L's models and loop
class D2LScratch:
    """``RNNModelScratch`` with ``rnn``/``init_rnn_state`` from D2L 8.5."""

    def __init__(self, params: list[torch.Tensor], vocab_size: int, relu: bool = False) -> None:
        self.params, self.vocab_size, self.relu = params, vocab_size, relu

    def __call__(self, X: torch.Tensor, state: tuple[torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor]]:
        inputs = F.one_hot(X.T, self.vocab_size).type(torch.float32)
        W_xh, W_hh, b_h, W_hq, b_q = self.params
        H, = state
        outputs = []
        for X_t in inputs:
            H = torch.tanh(torch.mm(X_t, W_xh) + torch.mm(H, W_hh) + b_h)
            Y = torch.mm(H, W_hq) + b_q
            outputs.append(Y)
        return torch.cat(outputs, dim=0), (H,)

    def begin_state(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor]:
        return (torch.zeros((batch_size, self.params[1].shape[0]), device=device),)


class D2LRNNModel(nn.Module):
    """D2L 8.6's ``RNNModel``: one-hot input, an ``nn`` RNN layer, a linear output layer."""

    def __init__(self, rnn_layer: nn.RNNBase, vocab_size: int) -> None:
        super().__init__()
        self.rnn, self.vocab_size = rnn_layer, vocab_size
        self.num_hiddens = rnn_layer.hidden_size
        self.linear = nn.Linear(self.num_hiddens, vocab_size)

    def forward(self, inputs: torch.Tensor, state):  # type: ignore[no-untyped-def]
        X = F.one_hot(inputs.T.long(), self.vocab_size).to(torch.float32)
        Y, state = self.rnn(X, state)
        return self.linear(Y.reshape((-1, Y.shape[-1]))), state

    def begin_state(self, batch_size: int, device: torch.device):  # type: ignore[no-untyped-def]
        shape = (self.rnn.num_layers, batch_size, self.num_hiddens)
        if isinstance(self.rnn, nn.LSTM):
            return torch.zeros(shape, device=device), torch.zeros(shape, device=device)
        return torch.zeros(shape, device=device)


def grad_clipping(net, theta: float) -> None:  # type: ignore[no-untyped-def]
    """D2L 8.5.4, verbatim."""
    params = [p for p in net.parameters() if p.requires_grad] if isinstance(net, nn.Module) else net.params
    norm = torch.sqrt(sum(torch.sum((p.grad ** 2)) for p in params))
    if norm > theta:
        for param in params:
            param.grad[:] *= theta / norm


def d2l_epoch(net, batches: Iterator, updater, device: torch.device) -> float:  # type: ignore[no-untyped-def]
    """``train_epoch_ch8`` (sequential: state detached in place between batches)."""
    state, total, count = None, 0.0, 0
    loss = nn.CrossEntropyLoss()
    for X, Y in batches:
        if state is None:
            state = net.begin_state(batch_size=X.shape[0], device=device)
        elif isinstance(net, nn.Module) and not isinstance(state, tuple):
            state.detach_()
        else:
            for s in state:
                s.detach_()
        y = Y.T.reshape(-1)
        X, y = X.to(device), y.to(device)
        y_hat, state = net(X, state)
        l = loss(y_hat, y.long()).mean()
        if isinstance(updater, torch.optim.Optimizer):
            updater.zero_grad()
            l.backward()
            grad_clipping(net, 1)
            updater.step()
        else:
            l.backward()
            grad_clipping(net, 1)
            with torch.no_grad():  # d2l.sgd(params, lr=1, batch_size=1)
                for param in net.params:
                    param -= 1.0 * param.grad / 1
                    param.grad.zero_()
        with warnings.catch_warnings():  # float() of a tensor that requires grad, as D2L's Accumulator does
            warnings.simplefilter("ignore")
            total, count = total + float(l * y.numel()), count + y.numel()
    return math.exp(total / count)


def predict_ch8(prefix: str, num_preds: int, net, vocab: dict[str, int], idx_to_token: list[str],  # type: ignore[no-untyped-def]
                device: torch.device) -> str:
    """D2L 8.5.3, verbatim (greedy)."""
    state = net.begin_state(batch_size=1, device=device)
    outputs = [vocab[prefix[0]]]
    get_input = lambda: torch.tensor([outputs[-1]], device=device).reshape((1, 1))  # noqa: E731
    for y in prefix[1:]:
        _, state = net(get_input(), state)
        outputs.append(vocab[y])
    for _ in range(num_preds):
        y, state = net(get_input(), state)
        outputs.append(int(y.argmax(dim=1).reshape(1)))
    return "".join([idx_to_token[i] for i in outputs])


# ----------------------------------------------------------------- ours
def lean_epoch(model: RNNLM, batches: Iterator, opt: torch.optim.Optimizer, device: torch.device) -> float:
    """What ``engine.trainer`` does per batch, without events, validation or checkpoints."""
    params = [p for p in model.parameters() if p.requires_grad]
    state, total, count = None, torch.zeros((), device=device), 0
    for X, Y in batches:
        X, Y = X.to(device), Y.to(device)
        state = model.begin_state(X.shape[0], device) if state is None else detach_state(state)
        logits, state = model(X, state)
        l = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y.T.reshape(-1))
        opt.zero_grad(set_to_none=True)
        l.backward()
        nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()
        total, count = total + l.detach() * Y.numel(), count + Y.numel()
    return math.exp(total.item() / count)


@torch.inference_mode()
def greedy_step(model: RNNLM, prefix: str, num_preds: int, vocab: dict[str, int], idx_to_token: list[str],
                device: torch.device) -> str:
    """Greedy decoding that keeps the state: one ``Stepper`` step per token, no host sync until the end."""
    step = Stepper(model)
    ids = torch.tensor([vocab[c] for c in prefix], device=device)
    state = step.load(model.begin_state(1, device))
    for x in ids[:-1].unbind(0):
        _, state = step(x.reshape(1), state)
    x, out = ids[-1:], []
    for _ in range(num_preds):
        logits, state = step(x, state)
        x = logits.argmax(dim=1)
        out.append(x)
    return prefix + "".join(idx_to_token[i] for i in torch.cat(out).tolist())


# ----------------------------------------------------------------- harness
def make_pair(kind: str, num_hiddens: int, vocab_size: int, device: torch.device, seed: int):  # type: ignore[no-untyped-def]
    """Our model and D2L's, holding the same initial weights."""
    torch.manual_seed(seed)
    ours = build_model(ModelConfig(kind=kind, vocab_size=vocab_size, num_hiddens=num_hiddens)).to(device)
    if ours.cell.d2l_scratch:
        params = [p.detach().clone().requires_grad_(True) for p in ours.parameters()]
        base = D2LScratch(params, vocab_size)
        base_opt = None
    else:  # D2L 8.6 wraps the cell's own torch.nn module (nn.RNN, nn.GRU, nn.LSTM)
        assert ours.cell.nn_module is not None, f"D2L has no {kind} model to compare with"
        layer = ours.cell.nn_module(vocab_size, num_hiddens)
        base = D2LRNNModel(layer, vocab_size).to(device)
        base.load_state_dict(ours.state_dict())
        base_opt = torch.optim.SGD(base.parameters(), lr=1.0)
    opt = torch.optim.SGD(ours.parameters(), lr=1.0)
    return ours, opt, base, base_opt


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def bench_config(kind: str, num_hiddens: int, corpus: list[int], idx_to_token: list[str], text: str,
                 device: torch.device,
                 args: argparse.Namespace) -> dict[str, float]:
    V = len(idx_to_token)
    vocab = {t: i for i, t in enumerate(idx_to_token)}
    tokens = sum(X.numel() for X, _ in seq_data_iter_sequential(corpus, BATCH_SIZE, NUM_STEPS, random.Random(0)))
    # 1. Same numbers: same weights, same batches, compare the perplexity curves.
    ours, opt, base, base_opt = make_pair(kind, num_hiddens, V, device, seed=args.seed)
    ppl_base = [d2l_epoch(base, seq_data_iter_sequential(corpus, BATCH_SIZE, NUM_STEPS, random.Random(e)),
                          base_opt, device) for e in range(args.check_epochs)]
    ppl_ours = [lean_epoch(ours, seq_data_iter_sequential(corpus, BATCH_SIZE, NUM_STEPS, random.Random(e)),
                           opt, device) for e in range(args.check_epochs)]
    max_rel = max(abs(a - b) / b for a, b in zip(ppl_ours, ppl_base))
    # 2. Training speed, interleaved rounds (order alternates), same batches for both.
    rng_seed = iter(range(10**6))
    run_base = lambda: [d2l_epoch(base, seq_data_iter_sequential(corpus, BATCH_SIZE, NUM_STEPS,  # noqa: E731
                        random.Random(next(rng_seed))), base_opt, device) for _ in range(args.epochs)]
    run_ours = lambda: [lean_epoch(ours, seq_data_iter_sequential(corpus, BATCH_SIZE, NUM_STEPS,  # noqa: E731
                        random.Random(next(rng_seed))), opt, device) for _ in range(args.epochs)]
    t_base, t_ours = interleave([run_base, run_ours], args.rounds,
                                lambda fn: tokens * args.epochs / timed(fn, device))
    # 3. Greedy generation, both from our current weights.
    with torch.no_grad():
        if ours.cell.d2l_scratch:
            for b, o in zip(base.params, ours.parameters()):
                b.copy_(o)
        else:
            base.load_state_dict(ours.state_dict())
    n = args.gen_tokens
    text_base = predict_ch8(PREFIX, n, base, vocab, idx_to_token, device)
    text_ours = greedy_step(ours, PREFIX, n, vocab, idx_to_token, device)
    contestants = [lambda: predict_ch8(PREFIX, n, base, vocab, idx_to_token, device),
                   lambda: greedy_step(ours, PREFIX, n, vocab, idx_to_token, device)]
    tokenizer = char_tokenizer(text)
    if tokenizer is not None:
        from engine.generate import generate
        contestants.append(lambda: "".join(generate(ours, tokenizer, PREFIX, n, alpha=math.inf)))
    g = interleave(contestants, args.rounds, lambda fn: n / timed(fn, device))
    g_base, g_ours = g[0], g[1]
    # 4. engine.trainer's own throughput (its Progress events), interleaved with the baseline.
    t_trainer, t_base2 = trainer_speed(kind, num_hiddens, corpus, V, device, args, run_base, tokens)
    med = statistics.median
    out = {"train_base": med(t_base), "train_ours": med(t_ours),
           "train_ratio": med(o / b for o, b in zip(t_ours, t_base)), "max_rel_ppl": max_rel,
           "gen_base": med(g_base), "gen_ours": med(g_ours),
           "gen_ratio": med(o / b for o, b in zip(g_ours, g_base)), "same_text": float(text_base == text_ours)}
    if len(g) > 2:
        out.update(gen_engine=med(g[2]), gen_engine_ratio=med(o / b for o, b in zip(g[2], g_base)))
    if t_trainer:
        out.update(train_trainer=med(t_trainer), trainer_ratio=med(o / b for o, b in zip(t_trainer, t_base2)))
    return out


def interleave(fns: list[Callable[[], object]], rounds: int, measure: Callable[[Callable[[], object]], float]
               ) -> list[list[float]]:
    """``rounds`` measurements of each function, the order rotating every round."""
    results: list[list[float]] = [[] for _ in fns]
    for r in range(rounds):
        order = list(range(len(fns)))
        order = order[r % len(fns):] + order[:r % len(fns)]
        for i in order:
            results[i].append(measure(fns[i]))
    return results


def char_tokenizer(text: str):  # type: ignore[no-untyped-def]
    """engine.tokenizers' char tokenizer fitted on the text, if that module is there (None otherwise)."""
    try:
        from engine.tokenizers import make_tokenizer
    except ImportError:
        return None
    return make_tokenizer("char").fit([text])


def trainer_speed(kind: str, num_hiddens: int, corpus: list[int], V: int, device: torch.device,
                  args: argparse.Namespace, run_base: Callable[[], object], tokens: int
                  ) -> tuple[list[float], list[float]]:
    """tokens/s that ``engine.trainer.train`` reports at each epoch end, next to baseline rounds."""
    try:
        import numpy as np
        from engine.config import TrainConfig
        from engine.trainer import train
    except ImportError:
        return [], []
    cfg = TrainConfig(epochs=args.epochs + 1, sampler="sequential", val_fraction=0.0, max_tokens=len(corpus),
                      seed=args.seed, device=args.device, threads=args.threads, sample_every=0,
                      log_interval_s=1e9, checkpoint_interval_s=1e9)
    model_cfg = ModelConfig(kind=kind, vocab_size=V, num_hiddens=num_hiddens)
    ids = np.array(corpus, dtype=np.int32)

    def run_trainer() -> float:
        speeds = [e.tokens_per_s for e in train(ids, model_cfg, cfg)
                  if type(e).__name__ == "Progress" and getattr(e, "epoch_end", False)]
        return statistics.median(speeds[1:])  # the first epoch includes the warm-up

    res = interleave([lambda: tokens * args.epochs / timed(run_base, device), run_trainer],
                     args.rounds, lambda fn: fn())  # type: ignore[arg-type,return-value]
    return res[1], res[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (D2L figures: 2)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds per config")
    p.add_argument("--epochs", type=int, default=2, help="epochs per timing round")
    p.add_argument("--check-epochs", type=int, default=10, help="epochs for the same-numbers check")
    p.add_argument("--gen-tokens", type=int, default=500, help="characters per generation round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", default=None, help="kinds to run (default: all four)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA GPU is available on this machine (torch.cuda.is_available() is False)")
        return 1
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    corpus, idx_to_token, text = load_time_machine()
    print(f"torch {torch.__version__} on {name}; {len(corpus)} tokens, vocab {len(idx_to_token)}, "
          f"batch {BATCH_SIZE}, {NUM_STEPS} steps; {args.rounds} rounds × {args.epochs} epochs")
    print(f"{'model':<12}{'D2L tok/s':>11}{'ours tok/s':>12}{'ratio':>7}{'ppl Δrel':>10}"
          f"{'D2L gen/s':>11}{'ours gen/s':>12}{'ratio':>7}  same text")
    failed = False
    for kind, h in CONFIGS:
        if args.only and kind not in args.only:
            continue
        r = bench_config(kind, h, corpus, idx_to_token, text, device, args)
        same = r["max_rel_ppl"] < 1e-3
        failed |= not same or not r["same_text"]
        print(f"{kind + ' ' + str(h):<12}{r['train_base']:>11,.0f}{r['train_ours']:>12,.0f}{r['train_ratio']:>6.2f}×"
              f"{r['max_rel_ppl']:>10.1e}{r['gen_base']:>11,.0f}{r['gen_ours']:>12,.0f}{r['gen_ratio']:>6.2f}×"
              f"  {'yes' if r['same_text'] else 'NO'}", flush=True)
        extra = []
        if "train_trainer" in r:
            extra.append(f"engine.trainer {r['train_trainer']:,.0f} tok/s ({r['trainer_ratio']:.2f}× D2L)")
        if "gen_engine" in r:
            extra.append(f"engine.generate greedy {r['gen_engine']:,.0f} chars/s ({r['gen_engine_ratio']:.2f}× D2L)")
        if extra:
            print(" " * 12 + "; ".join(extra), flush=True)
    print("same numbers: " + ("perplexity curves agree within 1e-3 relative and greedy text is identical"
                              if not failed else "MISMATCH (see the ppl Δrel / same text columns)"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
