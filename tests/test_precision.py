"""engine.precision: cuDNN kept off TF32 while rnnlab computes on CUDA, the flag restored after,
nested and across threads; CPU work leaves it alone. (The flag is a plain setting, so this runs
without a GPU; bench/check_cuda.py measures what it changes on one.)"""

from __future__ import annotations

import threading

import pytest
import torch

from engine.precision import float32_cudnn


@pytest.fixture(autouse=True)
def tf32_on():
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True  # torch's default
    yield
    torch.backends.cudnn.allow_tf32 = before


def test_cuda_work_turns_tf32_off_and_back_on():
    with float32_cudnn("cuda"):
        inside = torch.backends.cudnn.allow_tf32
        with float32_cudnn(torch.device("cuda", 0)):  # nested: still off after the inner one ends
            pass
        after_inner = torch.backends.cudnn.allow_tf32
    assert (inside, after_inner, torch.backends.cudnn.allow_tf32) == (False, False, True)


def test_cpu_work_leaves_the_flag_alone():
    with float32_cudnn("cpu"):
        assert torch.backends.cudnn.allow_tf32 is True


def test_a_user_setting_of_false_is_kept():
    torch.backends.cudnn.allow_tf32 = False
    with float32_cudnn("cuda"):
        pass
    assert torch.backends.cudnn.allow_tf32 is False


def test_concurrent_users_restore_only_when_the_last_leaves():
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with float32_cudnn("cuda"):
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second():
        first_in.wait(5)
        with float32_cudnn("cuda"):
            second_in.set()
            first_out.wait(5)
            seen["while other left"] = torch.backends.cudnn.allow_tf32

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == {"while other left": False}
    assert torch.backends.cudnn.allow_tf32 is True


def _cpu_training(epochs: int = 2):
    from engine import trainer
    from engine.config import ModelConfig, TrainConfig

    ids = torch.randint(0, 5, (400,), generator=torch.Generator().manual_seed(0)).numpy()
    return trainer.train(ids, ModelConfig(kind="rnn", vocab_size=5, num_hiddens=4),
                         TrainConfig(epochs=epochs, batch_size=2, num_steps=5, sample_every=0, device="cpu",
                                     threads=1, log_interval_s=1e9, log_every_steps=10))


@pytest.mark.parametrize("setting", [True, False])
def test_cpu_training_leaves_the_users_flag_between_events(setting):
    """Training on the CPU leaves cuDNN's flag alone: whatever the user set stays in force while the
    generator is suspended at each event, and after it ends. (That training on CUDA holds it off needs a
    GPU; nothing here fakes one.)"""
    torch.backends.cudnn.allow_tf32 = setting
    seen = [torch.backends.cudnn.allow_tf32 for _ in _cpu_training()]
    assert len(seen) > 5 and seen == [setting] * len(seen)
    assert torch.backends.cudnn.allow_tf32 is setting


def test_a_suspended_cpu_training_neither_holds_nor_restores_a_cuda_users_flag():
    events = _cpu_training()
    next(events)  # training has started and is suspended at its first event
    with float32_cudnn("cuda"):  # a CUDA user (generation, say) comes and goes meanwhile
        inside = [torch.backends.cudnn.allow_tf32 for _, _ in zip(range(3), events)]
    after = [torch.backends.cudnn.allow_tf32 for _ in events]
    assert inside == [False] * 3 and after == [True] * len(after) and len(after) > 3
    # The other order: the CUDA user was there first and leaves while training is suspended.
    with float32_cudnn("cuda"):
        events = _cpu_training()
        inside = [torch.backends.cudnn.allow_tf32 for _, _ in zip(range(3), events)]
    after = [torch.backends.cudnn.allow_tf32 for _ in events]
    assert inside == [False] * 3 and after == [True] * len(after) and torch.backends.cudnn.allow_tf32 is True


# --- mixed precision and CUDA graphs (issue 14) --------------------------------------------------------------

import dataclasses  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402

import engine.graphs  # noqa: E402
import engine.trainer  # noqa: E402
import engine.training  # noqa: E402
from engine.config import ModelConfig, TrainConfig  # noqa: E402
from engine.errors import ConfigError  # noqa: E402
from engine.events import Diverged, Finished, Progress  # noqa: E402
from engine.models import build_model  # noqa: E402
from engine.precision import check_device  # noqa: E402
from engine.runs import create_run, open_run  # noqa: E402
from engine.stepper import Stepper  # noqa: E402
from tui.cli import main  # noqa: E402

# bf16 against fp32 on the CPU, measured here (torch 2.13, 2 cores): a GRU of 64 units with an embedding, 20
# epochs of D2L's 10,000 characters (validation perplexity about 9.2), seeds 0-11: bf16 moved the final training
# perplexity by at most 0.030% and the validation perplexity by at most 0.17% (median 0.02%). The tolerances
# are about 7× and 3× those; weights rounded to bf16 after every step (16-bit master weights, the classic
# mixed-precision mistake) moved them by 0.71% and 0.65% on seed 0, past both. (One-hot inputs leave the GRU on
# the letter-frequency plateau for ~20 epochs, and when it leaves is chaotic: there bf16 moved the 20-epoch
# figure by up to 2.5%, as a change of seed does, so that regime measures nothing.)
BF16_TRAIN_TOLERANCE, BF16_VAL_TOLERANCE = 0.002, 0.005


def _final(events) -> Finished:
    events = list(events)
    assert isinstance(events[-1], Finished) and events[-1].reason == "completed"
    return events[-1]


def test_bf16_perplexity_is_within_a_measured_tolerance_of_fp32(pipeline):
    model_cfg = ModelConfig(kind="gru", vocab_size=len(pipeline.vocab), num_hiddens=64, encoding="embedding")
    runs = {p: _final(engine.trainer.train(pipeline, model_cfg, TrainConfig(
        epochs=20, seed=0, device="cpu", threads=1, sample_every=0, precision=p))) for p in ("fp32", "bf16")}
    fp32, bf16 = runs["fp32"], runs["bf16"]
    assert abs(bf16.train_ppl - fp32.train_ppl) / fp32.train_ppl < BF16_TRAIN_TOLERANCE
    assert abs(bf16.val_ppl - fp32.val_ppl) / fp32.val_ppl < BF16_VAL_TOLERANCE
    assert bf16.val_ppl != fp32.val_ppl  # bf16 did round something
    assert fp32.val_ppl < 10.5  # it learned: a uniform guess is 28, the letter frequencies about 17


@pytest.mark.parametrize("precision, want", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_the_output_layer_runs_in_the_precision_for_training_and_evaluation(precision, want, pipeline):
    cfg = ModelConfig(kind="lstm", vocab_size=len(pipeline.vocab), num_hiddens=16, num_layers=2, encoding="embedding")
    torch.manual_seed(0)
    model, seen = build_model(cfg), set()
    model.linear.register_forward_hook(lambda m, i, out: seen.add((m.training, out.dtype)))
    _final(engine.trainer.train(pipeline, cfg, TrainConfig(epochs=1, max_tokens=3000, device="cpu", threads=1,
                                                           sample_every=0, precision=precision), model=model))
    assert seen == {(True, want), (False, want)}  # training's minibatches and the validation pass
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # weights stay float32


@pytest.fixture
def fp16_on_the_cpu(monkeypatch):
    """fp16 is refused off CUDA, but torch has float16 autocast and a GradScaler on the CPU too: with the
    refusal lifted the trainer's loss-scaling path runs here. The scaler starts at 2^24 (torch's default is
    2^16), so the first steps' gradients overflow float16 and are skipped."""
    monkeypatch.setattr(engine.training, "check_device", lambda cfg, device: None)
    scalers: list[torch.amp.GradScaler] = []

    def scaler(precision, device):
        if precision != "fp16":
            return None
        scalers.append(torch.amp.GradScaler(device.type, init_scale=2.0**24))
        return scalers[-1]

    monkeypatch.setattr(engine.trainer, "grad_scaler", scaler)
    return scalers


def test_fp16_clips_the_unscaled_gradient_and_an_overflow_is_no_divergence(fp16_on_the_cpu, pipeline):
    model_cfg = ModelConfig(kind="gru", vocab_size=len(pipeline.vocab), num_hiddens=32)

    def run(precision):
        cfg = TrainConfig(epochs=3, seed=0, device="auto", threads=1, sample_every=0, precision=precision,
                          log_interval_s=1e9, log_every_steps=1)
        return list(engine.trainer.train(pipeline, model_cfg, cfg))

    fp16, fp32 = run("fp16"), run("fp32")
    assert not any(isinstance(e, Diverged) for e in fp16) and _final(fp16).val_ppl < 20
    assert fp16_on_the_cpu[0].get_scale() < 2.0**24  # steps overflowed and were skipped
    norms16 = [e.grad_norm for e in fp16 if isinstance(e, Progress) and not e.epoch_end]
    norms32 = [e.grad_norm for e in fp32 if isinstance(e, Progress) and not e.epoch_end]
    assert len(norms16) == len(norms32) > 20
    assert 0.0 in norms16  # a skipped step counts with norm 0
    # clipping sees the unscaled gradient: the norms are fp32's, not 2^k times them
    assert 0 < max(norms16) < 3 * max(norms32)


def test_fp16s_loss_scale_is_checkpointed_and_resumed(fp16_on_the_cpu, pipeline, tmp_path):
    # a resume that started again at the initial scale would skip a run of steps to find it again
    model_cfg = ModelConfig(kind="gru", vocab_size=len(pipeline.vocab), num_hiddens=16)
    cfg = TrainConfig(epochs=1, seed=0, device="auto", threads=1, sample_every=0, precision="fp16", max_tokens=3000)
    run = create_run(tmp_path, model_cfg, cfg, pipeline)
    _final(list(engine.trainer.train(pipeline, model_cfg, cfg, run=run)))
    first = fp16_on_the_cpu[0]
    saved = json.loads((run.path / "checkpoint.json").read_text())["grad_scaler"]
    assert saved["scale"] == first.get_scale() < 2.0**24  # overflowing steps halved it
    assert saved["_growth_tracker"] == first.state_dict()["_growth_tracker"]
    # resumed with nothing left to train: the new scaler holds the saved scale, not the initial 2^24
    _final(list(engine.trainer.train(pipeline, model_cfg, cfg, run=open_run(run.path))))
    assert len(fp16_on_the_cpu) == 2 and fp16_on_the_cpu[1].get_scale() == saved["scale"]


def test_fp16_and_cuda_graphs_are_refused_off_cuda_naming_the_option():
    with pytest.raises(ConfigError, match=r"precision fp16 needs a CUDA GPU \(device is cpu\).*--precision bf16"):
        TrainConfig(precision="fp16", device="cpu")
    with pytest.raises(ConfigError, match=r"cuda_graphs needs a CUDA GPU \(device is cpu\); leave out --cuda-graphs"):
        TrainConfig(cuda_graphs=True, device="cpu")
    # device auto: refused once it resolves to the CPU (prepare_ids calls check_device)
    with pytest.raises(ConfigError, match=r"precision fp16 needs a CUDA GPU \(device is auto, which is cpu\)"):
        check_device(TrainConfig(precision="fp16"), torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"cuda_graphs needs a CUDA GPU \(device is auto, which is cpu\)"):
        check_device(TrainConfig(cuda_graphs=True), torch.device("cpu"))
    check_device(TrainConfig(precision="bf16"), torch.device("cpu"))  # bf16 runs on the CPU
    with pytest.raises(ConfigError, match="precision bf16 runs on the CPU or a CUDA GPU, not on mps"):
        TrainConfig(precision="bf16", device="mps")
    with pytest.raises(ConfigError, match="cuda_graphs needs minibatches of one shape.*got sampler sentences"):
        TrainConfig(cuda_graphs=True, sampler="sentences")
    with pytest.raises(ConfigError, match="cuda_graphs cannot replay precision fp16"):
        TrainConfig(cuda_graphs=True, precision="fp16")
    with pytest.raises(ConfigError, match=r"cuda_graphs with several processes \(world_size 2\)"):
        TrainConfig(cuda_graphs=True, world_size=2)
    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16, fp16"):
        TrainConfig(precision="fp8")


TINY = ["--corpus", "timemachine", "--model", "gru", "--num-hiddens", "8", "--epochs", "1", "--batch-size", "4",
        "--num-steps", "5", "--max-tokens", "500", "--threads", "1", "--sample-every", "0"]


@pytest.mark.parametrize("flags, needle", [
    (["--precision", "fp16", "--device", "cpu"], "precision fp16 needs a CUDA GPU (device is cpu)"),
    (["--cuda-graphs", "--device", "cpu"], "cuda_graphs needs a CUDA GPU (device is cpu); leave out --cuda-graphs"),
])
def test_the_cli_refuses_them_on_the_cpu_with_exit_2(flags, needle, tmp_path, capsys):
    rc = main(["train", *TINY, *flags, "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and needle in " ".join(err.split()) and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # no run folder


def test_precision_round_trips_through_config_json_and_old_runs_load_as_fp32(tmp_path, pipeline, capsys):
    cfg = TrainConfig(precision="bf16", cuda_graphs=True, sampler="sequential")
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert main(["train", *TINY, "--precision", "bf16", "--device", "cpu", "--runs-dir", str(tmp_path)]) == 0
    (path,) = tmp_path.iterdir()
    doc = json.loads((path / "config.json").read_text())
    assert (doc["train"]["precision"], doc["train"]["cuda_graphs"]) == ("bf16", False)
    assert open_run(path).train_config.precision == "bf16"
    # a run saved before the options existed: fp32 without graphs, the book's numbers, and it resumes
    del doc["train"]["precision"], doc["train"]["cuda_graphs"]
    (path / "config.json").write_text(json.dumps(doc))
    old = open_run(path).train_config
    assert (old.precision, old.cuda_graphs) == ("fp32", False)
    assert main(["train", "--resume", path.name, "--epochs", "2", "--runs-dir", str(tmp_path)]) == 0
    assert "epoch 2" in capsys.readouterr().out


def test_generation_refuses_cuda_graphs_off_cuda(pipeline):
    from engine.generate import generate

    model = build_model(ModelConfig(vocab_size=len(pipeline.vocab), num_hiddens=8))
    with pytest.raises(ConfigError, match=r"cuda_graphs needs the model on a CUDA GPU \(it is on cpu\)"):
        generate(model, pipeline.tokenizer, "time", 5, graphs=True)


# CUDA graphs cannot be captured on the CPU; what can go wrong around the capture — the minibatch and state
# copied into the static tensors, the warm-up's weights, optimizer state and RNG put back, the outputs used
# by the trainer — is checked by "replaying" with a plain call of the captured step.


def replay_by_calling(step, restore):
    for _ in range(engine.graphs.WARMUP):
        step()
    restore()
    return step


@pytest.fixture
def graphs_on_the_cpu(monkeypatch):
    """The trainer's graph path on the CPU: the CUDA refusal lifted and the capture replaced by a plain call.
    Returns the count of captures and replays."""
    real_check = engine.training.check_device
    monkeypatch.setattr(engine.training, "check_device",
                        lambda cfg, device: real_check(dataclasses.replace(cfg, cuda_graphs=False), device))
    calls = {"captures": 0, "replays": 0}

    def capture(step, restore):
        calls["captures"] += 1
        replay = replay_by_calling(step, restore)

        def counted():
            calls["replays"] += 1
            return replay()

        return counted

    monkeypatch.setattr(engine.graphs, "capture_cuda", capture)
    return calls


@pytest.mark.parametrize("sampler, optimizer, layers", [("sequential", "sgd", 1), ("random", "adam", 2),
                                                        ("fixed", "adamw", 2)])
def test_the_replayed_training_step_gives_the_eager_trainers_numbers(sampler, optimizer, layers, pipeline,
                                                                      graphs_on_the_cpu):
    model_cfg = ModelConfig(kind="gru", vocab_size=len(pipeline.vocab), num_hiddens=16, num_layers=layers,
                            dropout=0.3 if layers > 1 else 0.0)  # dropout: the warm-up's draws are put back
    eager_cfg = TrainConfig(epochs=2, sampler=sampler, optimizer=optimizer, lr=1.0 if optimizer == "sgd" else 0.01,
                            batch_size=8, num_steps=10, max_tokens=4000, device="cpu", threads=1, sample_every=0,
                            log_interval_s=1e9,
                            log_every_steps=7)
    graph_cfg = dataclasses.replace(eager_cfg)
    object.__setattr__(graph_cfg, "cuda_graphs", True)  # TrainConfig refuses it on the CPU (tested above)

    def run(cfg):
        torch.manual_seed(0)
        model = build_model(model_cfg)
        events = [(type(e).__name__, e.epoch, getattr(e, "step", None), getattr(e, "train_ppl", None),
                   getattr(e, "val_ppl", None), getattr(e, "grad_norm", None), getattr(e, "clip_fraction", None))
                  for e in engine.trainer.train(pipeline, model_cfg, cfg, model=model)]
        return events, model.state_dict()

    (eager, eager_w), (graphed, graphed_w) = run(eager_cfg), run(graph_cfg)
    steps = eager[-1][2]
    assert graphs_on_the_cpu == {"captures": 1, "replays": steps} and steps > 10
    assert graphed == eager
    assert all(torch.equal(graphed_w[k], eager_w[k]) for k in eager_w)


@pytest.mark.parametrize("kind, layers", [("scratch", 1), ("gru", 2), ("lstm", 2)])
def test_the_replayed_token_step_gives_the_steppers_tokens(kind, layers):
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, vocab_size=28, num_hiddens=16, num_layers=layers)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)  # larger than an initial draw, so the state wanders rather than settling

    def greedy(step, n=40):
        x, state, out = torch.tensor([3]), step.load(model.begin_state(1)), []
        for _ in range(n):
            logits, state = step(x, state)
            x = logits.argmax(dim=1)
            out.append((int(x), float(logits.max())))
        return out, step.export(state)

    with torch.inference_mode():
        want, want_state = greedy(Stepper(model))
        got, got_state = greedy(engine.graphs.GraphedStepper(Stepper(model), torch.device("cpu"),
                                                              capture=replay_by_calling))
    assert got == want and len({v for _, v in want}) > 20  # the state moves on every step
    for a, b in zip(*(s if isinstance(s, tuple) else (s,) for s in (got_state, want_state))):
        assert torch.equal(a, b)


def test_a_step_that_cannot_be_captured_is_a_run_error_naming_the_option(pipeline, graphs_on_the_cpu, monkeypatch):
    from engine.errors import RunError

    def cannot(step, restore):
        raise RuntimeError("operation not permitted when stream is capturing\nCUDA kernel errors might be ...")

    monkeypatch.setattr(engine.graphs, "capture_cuda", cannot)
    cfg = TrainConfig(epochs=1, max_tokens=2000, batch_size=4, num_steps=5, device="cpu", sample_every=0)
    object.__setattr__(cfg, "cuda_graphs", True)
    model_cfg = ModelConfig(vocab_size=len(pipeline.vocab), num_hiddens=8)
    with pytest.raises(RunError, match=r"^cuda_graphs: the training step could not be captured as a CUDA graph "
                                       r"\(operation not permitted when stream is capturing\); leave out --cuda-graphs$"):
        list(engine.trainer.train(pipeline, model_cfg, cfg))
