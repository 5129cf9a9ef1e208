"""Run folders: files written, checkpoints round-trip, listing, deleting, and
clear RunErrors for missing or corrupt folders."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from engine import checkpoint
from engine.errors import RunError
from engine.config import ModelConfig, TrainConfig
from engine.models import build_model
from engine.runs import create_run, delete_run, list_runs, open_run
from engine.trainer import train


@pytest.fixture(scope="module")
def _trained_once(pipeline, tmp_path_factory):
    mc = ModelConfig(kind="gru", vocab_size=len(pipeline.vocab), num_hiddens=16)
    tc = TrainConfig(epochs=2, batch_size=8, num_steps=10, max_tokens=1500, sample_every=1, sample_len=10,
                     threads=1, optimizer="adam", lr=0.01)
    run = create_run(tmp_path_factory.mktemp("runs"), mc, tc, pipeline)
    torch.manual_seed(0)
    model = build_model(mc)
    events = list(train(pipeline, mc, tc, run=run, model=model))
    return run, model, events


@pytest.fixture()
def trained(_trained_once, tmp_path):
    """A fresh copy of one trained run per test (tests may damage it)."""
    import shutil

    run, model, events = _trained_once
    copy = tmp_path / run.name
    shutil.copytree(run.path, copy)
    return open_run(copy), model, events


def test_run_folder_holds_everything(trained, pipeline):
    run, _, events = trained
    names = {p.name for p in run.path.iterdir()}
    assert {"config.json", "tokenizer.json", "metrics.jsonl", "events.jsonl", "samples.log", "model.safetensors",
            "optimizer.safetensors", "checkpoint.json"} <= names
    assert not [n for n in names if n.endswith(".tmp")]  # atomic writes leave no temp files
    cfg = json.loads((run.path / "config.json").read_text())
    assert cfg["model"]["kind"] == "gru" and cfg["train"]["epochs"] == 2
    assert cfg["corpus"]["name"] == "timemachine" and cfg["mode"] == "d2l" and cfg["tokenizer"]["kind"] == "char"
    assert len(run.metrics()) == sum(1 for e in events if type(e).__name__ == "Progress")
    assert run.metrics()[-1]["epoch_end"] and run.metrics()[-1]["type"] == "Progress"
    assert (run.path / "samples.log").read_text().count("\n") == 2
    assert run.tokenizer.vocab.idx_to_token == pipeline.vocab.idx_to_token
    assert run.name.endswith("-gru-timemachine") and run.name[:8].isdigit()


def test_checkpoint_round_trips_logits(trained):
    run, model, _ = trained
    loaded = open_run(run.name, run.path.parent).load_model()
    X = torch.randint(0, model.cfg.vocab_size, (3, 7))
    model.eval()
    with torch.no_grad():
        a, _ = model(X, model.begin_state(3))
        b, _ = loaded(X, loaded.begin_state(3))
    assert torch.equal(a, b)


def test_optimizer_state_round_trips(trained):
    run, _, _ = trained
    _, opt_state, st, rng = run.load_checkpoint()
    assert st["epoch"] == 2 and st["status"] == "completed" and rng is not None
    assert opt_state["param_groups"][0]["lr"] == 0.01
    params = list(open_run(run.path).load_model().parameters())
    assert sorted(opt_state["state"]) == list(range(len(params)))  # one entry per parameter, in order
    for i, p in enumerate(params):
        s = opt_state["state"][i]
        assert int(s["step"]) == st["step"]  # every Adam step of the run was counted
        assert s["exp_avg"].shape == p.shape and s["exp_avg_sq"].shape == p.shape
        assert float(s["exp_avg_sq"].min()) >= 0 and float(s["exp_avg"].abs().max()) > 0
    # that these are the moments the optimizer had: tests/test_oracles.py (a spy on the trainer's optimizer)


def test_list_and_delete(trained, tmp_path):
    run, _, events = trained
    (tmp_path / "not-a-run").mkdir()
    summaries = {s.name: s for s in list_runs(tmp_path)}
    s = summaries[run.name]
    assert (s.corpus, s.model, s.epochs_done, s.epochs, s.status) == ("timemachine", "gru 16x1", 2, 2, "completed")
    fin = events[-1]  # the figures of the saved weights (closed-form values: tests/test_oracles.py)
    assert (s.train_ppl, s.val_ppl) == (fin.train_ppl, fin.val_ppl) and s.device == "cpu"
    last = [e for e in events if type(e).__name__ == "Progress"][-1]
    assert (last.train_ppl, last.val_ppl) == (fin.train_ppl, fin.val_ppl)
    assert summaries["not-a-run"].status == "corrupt" and "config.json" in summaries["not-a-run"].error
    with pytest.raises(RunError, match="not a run folder"):
        delete_run("not-a-run", tmp_path)
    delete_run(run.name, tmp_path)
    assert not run.path.exists()
    assert list_runs(tmp_path / "nowhere") == []


def test_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(RunError, match="no run named 'nope'"):
        open_run("nope", tmp_path)


@pytest.mark.parametrize("damage", ["model", "config", "checkpoint", "torn", "tokenizer"])
def test_corrupt_run_raises_run_error(trained, damage):
    run, _, _ = trained
    p = run.path
    if damage == "model":
        (p / "model.safetensors").write_bytes(b"\x00garbage")
    elif damage == "config":
        (p / "config.json").write_text("{not json")
    elif damage == "checkpoint":
        (p / "checkpoint.json").write_text("[]")
    elif damage == "tokenizer":
        (p / "tokenizer.json").unlink()
    else:  # weights from another step than checkpoint.json says
        doc = json.loads((p / "checkpoint.json").read_text())
        doc["step"] += 1
        (p / "checkpoint.json").write_text(json.dumps(doc))
    with pytest.raises(RunError):
        r = open_run(p)
        r.load_model()
        r.tokenizer


class _Trap:
    """Unpickling this object makes a folder: proof that a pickle's code ran."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.mkdir, (str(self.marker),)


def test_loading_reads_safetensors_and_never_unpickles(trained, tmp_path):
    from safetensors.torch import load_file

    run, model, _ = trained
    p = run.path
    # What the run loads is what safetensors itself reads from the files: the trained weights, Adam's moments.
    on_disk = load_file(str(p / "model.safetensors"))
    loaded = open_run(p).load_model().state_dict()
    assert on_disk.keys() == loaded.keys() == model.state_dict().keys()
    assert all(torch.equal(loaded[k], on_disk[k]) and torch.equal(on_disk[k], v) for k, v in model.state_dict().items())
    _, opt_state, _, rng = open_run(p).load_checkpoint()
    opt_on_disk = load_file(str(p / "optimizer.safetensors"))
    assert torch.equal(rng, opt_on_disk.pop("rng.torch"))
    assert len(opt_on_disk) == 3 * len(on_disk)  # exp_avg, exp_avg_sq and step (a tensor) per parameter
    for key, t in opt_on_disk.items():
        _, idx, name = key.split(".", 2)
        assert torch.equal(opt_state["state"][int(idx)][name], t)
    # A pickle (torch.save's format, with code in it) next to the files, as an old run's model.pt /
    # optimizer.pt, is ignored; in place of either file it is refused. Its code never runs. (torch.load
    # given a *.safetensors path reads it as safetensors; a file object or a .pt name unpickles.)
    beside = tmp_path / "beside"
    shutil.copytree(p, beside)
    for name in ("model.pt", "optimizer.pt", "checkpoint.pt"):
        torch.save({"rnn.weight_ih_l0": _Trap(tmp_path / f"unpickled-{name}")}, beside / name)
    try:
        loaded = open_run(beside).load_model().state_dict()
        open_run(beside).load_checkpoint()
    finally:  # the code that ran is the failure to report, whatever error followed it
        ran = sorted(m.name for m in tmp_path.glob("unpickled-*"))
        assert not ran, f"loading a run unpickled {ran}"
    assert all(torch.equal(loaded[k], v) for k, v in on_disk.items())
    for name, load in (("model.safetensors", lambda r: r.load_model()),
                       ("optimizer.safetensors", lambda r: r.load_checkpoint())):
        bad = tmp_path / f"bad-{name}"
        shutil.copytree(p, bad)
        torch.save({"rnn.weight_ih_l0": _Trap(tmp_path / f"unpickled-{name}"), "linear.bias": torch.zeros(3)},
                   bad / name)
        try:
            load(open_run(bad))
            error = "no error"
        except RunError as exc:
            error = str(exc)
        ran = sorted(m.name for m in tmp_path.glob("unpickled-*"))
        assert not ran, f"loading a run unpickled {ran}"
        assert f"{name} is not a readable safetensors file" in error


def test_save_moves_tensors_to_cpu(tmp_path):
    model = build_model(ModelConfig(kind="rnn", vocab_size=5, num_hiddens=4))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    checkpoint.save_checkpoint(tmp_path, state, {"state": {}, "param_groups": []}, {"epoch": 1, "step": 3})
    loaded = checkpoint.load_model_state(tmp_path)
    assert all(t.device.type == "cpu" and torch.equal(t, state[k]) for k, t in loaded.items())


def test_failed_checkpoint_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import safetensors.torch as st_torch
    import torch

    from engine import checkpoint
    from engine.errors import RunError

    good = {"w": torch.ones(3)}
    checkpoint.save_checkpoint(tmp_path, good, {"state": {}, "param_groups": []}, {"epoch": 1, "step": 10})
    calls = []

    def full_disk(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:  # the optimizer file: the model's temp file is already written
            raise OSError(28, "No space left on device")
        return st_torch.save_file(tensors, path, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    with pytest.raises(RunError, match="No space left on device.*previous checkpoint is kept"):
        checkpoint.save_checkpoint(tmp_path, {"w": torch.zeros(3)}, {"state": {}, "param_groups": []},
                                   {"epoch": 2, "step": 20})
    assert checkpoint.load_trainer_state(tmp_path)["step"] == 10
    assert torch.equal(checkpoint.load_model_state(tmp_path)["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [checkpoint.MODEL_FILE, checkpoint.OPTIMIZER_FILE, checkpoint.CHECKPOINT_FILE])  # no temp files left


def test_create_run_refuses_a_config_that_cannot_train_and_leaves_no_folder(tmp_path, corpus_dir):
    from engine.corpus import load_corpus
    from engine.errors import ConfigError
    from engine.config import ModelConfig, TrainConfig
    from engine.runs import create_run, list_runs
    from engine.pipeline import build_pipeline

    pipe = build_pipeline(load_corpus(str(corpus_dir / "timemachine.txt")), tokenizer="word", min_freq=10)
    mc = ModelConfig(kind="gru", vocab_size=len(pipe.vocab), num_hiddens=8)
    with pytest.raises(ConfigError, match="batch_size"):
        create_run(tmp_path, mc, TrainConfig(batch_size=900, max_tokens=2000), pipe)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            create_run(tmp_path, mc, TrainConfig(device="cuda"), pipe)
    assert list_runs(tmp_path) == [] and not any(tmp_path.iterdir())
    # the fitted tokenizer's settings are recorded, whatever a caller passes
    run = create_run(tmp_path, mc, TrainConfig(max_tokens=0), pipe, tokenizer_settings={"min_freq": 0, "vocab_size": 1000})
    assert run.config["tokenizer"]["min_freq"] == 10 and run.config["tokenizer"]["kind"] == "word"


@pytest.mark.parametrize("field, value", [("epoch", None), ("train_ppl", "x"), ("status", 3), ("step", 1.5)])
def test_checkpoint_json_with_wrong_types_is_listed_as_corrupt(tmp_path, field, value):
    from engine import checkpoint
    from engine.errors import RunError

    checkpoint.save_checkpoint(tmp_path, {"w": torch.ones(1)}, {"state": {}, "param_groups": []},
                               {"epoch": 1, "step": 2, "train_ppl": 3.5, "status": "completed"})
    doc = json.loads((tmp_path / checkpoint.CHECKPOINT_FILE).read_text())
    doc[field] = value
    (tmp_path / checkpoint.CHECKPOINT_FILE).write_text(json.dumps(doc))
    with pytest.raises(RunError, match=f"{field}.*corrupt"):
        checkpoint.load_trainer_state(tmp_path)
