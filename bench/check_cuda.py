"""CUDA checks for a lent GPU: same numbers as the CPU, and which kernel each model should run.

Usage: ``python bench/check_cuda.py [--rounds 20]`` (exits 1 on a mismatch, 2 without CUDA)

1. **Same numbers.** For every model kind (and, for the cells held in a
   ``torch.nn`` module — rnn/gru/lstm — both code paths: the ``nn`` module's
   cuDNN kernel and rnnlab's hand-written BPTT), a
   CUDA model's logits, final state and gradients against the same model in
   float64 on the CPU: ‖cuda − ref‖ / ‖ref‖ < 1e-4 passes (float32 lands near
   1e-7), with cuDNN held to float32 as rnnlab runs it (``engine.precision``);
   the cuDNN path under torch's default TF32 is printed for comparison, not
   judged. The generation ``Stepper`` on CUDA against the CUDA forward pass.
2. **Which path is faster on this card** — forward + backward of D2L's batch
   (32 × 35, vocab 28) for each kind through each path, CUDA-event timed
   medians; each cell's ``fused`` should pick the faster one.
3. **Greedy generation per token**: the ``Stepper`` loop, and the same step
   captured once as a CUDA graph and replayed per token (an experiment: is
   graph replay worth adding to ``engine.generate`` on GPUs?).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.config import CELLS, MODEL_KINDS, ModelConfig  # noqa: E402
from engine.models import RNNLM, build_model, cell_class  # noqa: E402
from engine.precision import float32_cudnn  # noqa: E402
from engine.stepper import Stepper  # noqa: E402

V, B, T = 28, 32, 35
HIDDENS = {"scratch": 512}  # D2L's sizes: 512 for its scratch RNN, 256 for the others


def hiddens(kind: str) -> int:
    return HIDDENS.get(kind, 256)


def paths(kind: str) -> tuple[str, ...]:
    """The code paths a kind has: both for a cell held in a torch.nn module, else its own."""
    return ("nn", "ours") if cell_class(kind).nn_module is not None else ("default",)


def deep(kind: str) -> int:
    return 1 if CELLS[kind].one_layer else 2


def rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.detach().double().cpu() - ref.detach()).norm() / ref.detach().norm().clamp_min(1e-30))


def use_path(model: RNNLM, path: str) -> None:
    """Force the model's code path: 'nn' (the nn module's cuDNN/oneDNN kernel), 'ours' (the cell's hand-written
    recurrence) or 'default' (what the cell's ``fused`` picks)."""
    model.cell.__dict__.pop("fused", None)
    if path != "default":
        model.cell.fused = (lambda holder: path == "nn")  # type: ignore[method-assign]


def fwd_bwd(model: torch.nn.Module, X: torch.Tensor, state: object) -> tuple[torch.Tensor, object, list]:
    logits, new = model(X, state)
    loss = logits.square().mean() + sum(s.square().mean() for s in (new if isinstance(new, tuple) else (new,)))
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return logits, new, list(grads)


def check_numbers(kind: str, path: str, dev: torch.device, tf32: bool = False, **model_kw: object) -> float:
    torch.manual_seed(0)
    cfg = ModelConfig(kind=kind, vocab_size=V, num_hiddens=64, **model_kw)  # type: ignore[arg-type]
    model = build_model(cfg)
    ref_model = build_model(cfg).double()
    ref_model.load_state_dict(model.state_dict())
    model = model.to(dev)
    X = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(1))
    s0 = model.begin_state(B)
    use_path(model, path)
    with float32_cudnn("cpu" if tf32 else dev):  # tf32: torch's own default for cuDNN
        logits, new, grads = fwd_bwd(model, X.to(dev),
                                     tuple(s.to(dev) for s in s0) if isinstance(s0, tuple) else s0.to(dev))
    # float64 on the CPU: the hand-written path (oneDNN is float32 only)
    use_path(ref_model, "ours" if path != "default" else "default")
    rl, rn, rg = fwd_bwd(ref_model, X, tuple(s.double() for s in s0) if isinstance(s0, tuple) else s0.double())
    errs = [rel(logits, rl)]
    errs += [rel(a, b) for a, b in zip(new if isinstance(new, tuple) else (new,), rn if isinstance(rn, tuple) else (rn,))]
    errs += [rel(a, b) for a, b in zip(grads, rg)]
    return max(errs)


def check_stepper(kind: str, dev: torch.device) -> float:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, vocab_size=V, num_hiddens=64, num_layers=deep(kind)))
    model = model.to(dev).eval()
    X = torch.randint(0, V, (B, T), device=dev)
    with torch.inference_mode():
        want, _ = model(X, model.begin_state(B, dev))
        step = Stepper(model)
        state, outs = step.load(model.begin_state(B, dev)), []
        for t in range(T):
            logits, state = step(X[:, t], state)
            outs.append(logits)
    return rel(torch.stack(outs), want.double().cpu())


def cuda_ms(fn, rounds: int) -> float:  # type: ignore[no-untyped-def]
    for _ in range(3):
        fn()
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def time_paths(kind: str, dev: torch.device, rounds: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, vocab_size=V, num_hiddens=hiddens(kind))).to(dev)
    X = torch.randint(0, V, (B, T), device=dev)
    s0 = model.begin_state(B, dev)
    out = {}
    for path in paths(kind):
        use_path(model, path)
        out["ours" if path == "default" else path] = cuda_ms(lambda: fwd_bwd(model, X, s0), rounds)
    use_path(model, "default")
    return out


def time_generation(kind: str, dev: torch.device, n: int = 300) -> dict[str, float]:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, vocab_size=V, num_hiddens=hiddens(kind))).to(dev).eval()
    res = {}
    with torch.inference_mode():
        step = Stepper(model)

        def loop() -> None:
            state, x, out = step.load(model.begin_state(1, dev)), torch.zeros(1, dtype=torch.long, device=dev), []
            for _ in range(n):
                logits, state = step(x, state)
                x = logits.argmax(dim=1)
                out.append(x)
            torch.cat(out).tolist()

        res["stepper"] = n / cuda_ms(loop, 5) * 1e3
        try:  # one step (with its argmax) captured as a CUDA graph, replayed per token
            x = torch.zeros(1, dtype=torch.long, device=dev)
            state = step.load(model.begin_state(1, dev))
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    step(x, state)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                logits, new = step(x, state)
                x.copy_(logits.argmax(dim=1))
                for old, fresh in zip(state, new):
                    for o, f in zip(old if isinstance(old, tuple) else (old,), fresh if isinstance(fresh, tuple) else (fresh,)):
                        o.copy_(f)

            def replay() -> None:
                out = []
                for _ in range(n):
                    graph.replay()
                    out.append(x.clone())
                torch.cat(out).tolist()

            res["graph"] = n / cuda_ms(replay, 5) * 1e3
        except Exception as e:  # noqa: BLE001 - an experiment: report, don't stop
            print(f"  {kind}: CUDA graph capture failed: {type(e).__name__}: {e}")
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=20)
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU here (torch.cuda.is_available() is False)")
        return 2
    dev = torch.device("cuda")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(dev)}, cuDNN {torch.backends.cudnn.version()}, "
          f"cudnn.allow_tf32 {torch.backends.cudnn.allow_tf32}, matmul tf32 {torch.backends.cuda.matmul.allow_tf32}")
    failed = False
    print("1. same numbers (max relative error vs float64 on the CPU: logits, states, gradients)")
    for kind in MODEL_KINDS:
        for path in paths(kind):
            err = check_numbers(kind, path, dev)
            err_deep = check_numbers(kind, path, dev, num_layers=deep(kind), activation="relu", encoding="embedding")
            failed |= not max(err, err_deep) < 1e-4
            line = f"  {kind:<8}{path:<8}{err:.1e}  (2 layers, relu, embedding: {err_deep:.1e})"
            if path == "nn":
                line += (f"  cuDNN with torch's default TF32: {check_numbers(kind, path, dev, tf32=True):.1e}"
                         f" / {check_numbers(kind, path, dev, tf32=True, num_layers=2, activation='relu', encoding='embedding'):.1e}")
            print(line)
        err = check_stepper(kind, dev)
        failed |= not err < 1e-4
        print(f"  {kind:<8}stepper {err:.1e}  (vs the CUDA forward pass)")
    print(f"2. forward+backward ms per batch ({B}×{T}), median of {args.rounds}; default path per the cell's fused")
    for kind in MODEL_KINDS:
        t = time_paths(kind, dev, args.rounds)
        model = build_model(ModelConfig(kind=kind, vocab_size=V, num_hiddens=8)).to(dev)
        default = "nn" if model.cell.fused(model) else "ours"
        best = min(t, key=t.__getitem__)
        print(f"  {kind:<8}" + "  ".join(f"{k} {v:.2f}" for k, v in t.items()) +
              f"  default {default}{'' if default == best else '  <-- slower than ' + best}")
    print("3. greedy generation on CUDA, tokens/s (300 tokens)")
    for kind in MODEL_KINDS:
        g = time_generation(kind, dev)
        print(f"  {kind:<8}" + "  ".join(f"{k} {v:,.0f}" for k, v in g.items()))
    print("CUDA numbers:", "MISMATCH" if failed else "all within tolerance")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
