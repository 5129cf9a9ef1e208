"""Same seed, same numbers as before the cells became objects (issue 10).

The literals below are a regression oracle: they were produced by the implementation at commit ccbdac9
(engine/models.py with engine/recurrence.py, engine/gated.py and the old engine/stepper.py), running this
file's configurations with torch 2.13 on a CPU, 1 thread — per-epoch train/validation perplexity of a
tiny seeded training for each kind that existed then (one-hot and embedding input, 1 and 2 layers,
dropout, relu), its greedy sample at each epoch end (engine.stepper), and each model's state-dict keys
and shapes and the sum of its freshly initialised weights (saved runs must still load; the same seed must
draw the same weights). A refactoring that changes the order parameters are created in, an op's
rounding in the forward, backward or generation step, or a key, fails here.
"""

from __future__ import annotations

import pytest
import torch

from engine.config import ModelConfig, TrainConfig
from engine.events import Progress, Sample
from engine.models import build_model
from engine.trainer import train

CASES = {  # name: (ModelConfig options, [(train ppl, val ppl) per epoch], [greedy sample per epoch])
    "scratch": (
        dict(kind="scratch"),
        [(20.54191454919741, 17.703208467432404), (17.68040330803189, 16.788005772994747),
         (16.22825778099824, 13.85505788171774)],
        ["time traveller                              ", "time traveller                              ",
         "time traveller a a a a a a a a a a a a a a a"]),
    "scratch-relu-embedding": (
        dict(kind="scratch", activation="relu", encoding="embedding", embed_size=8),
        [(19.378958291010253, 14.653203469755152), (13.93364576818972, 11.905256850310801),
         (11.976652975819878, 10.542024135283853)],
        ["time travellere                             ", "time travellere the the the the the the the ",
         "time travellere an an an an an an an an an a"]),
    "rnn-2-relu-dropout": (
        dict(kind="rnn", num_layers=2, activation="relu", dropout=0.2),
        [(20.08726443567401, 16.096973321707754), (15.603362896197245, 13.210508650220602),
         (13.533066515742359, 11.318234620331138)],
        ["time traveller                              ", "time traveller the   the   the   the   the  ",
         "time traveller the  a the  a the  a the  a t"]),
    "gru": (
        dict(kind="gru"),
        [(19.46641325191317, 15.907131861063009), (14.533049851319046, 11.799658277129831),
         (11.707547814433516, 9.702646323377559)],
        ["time traveller                              ", "time traveller the the the the the the the t",
         "time traveller the the the the the the the t"]),
    "gru-2-embedding-dropout": (
        dict(kind="gru", num_layers=2, encoding="embedding", embed_size=8, dropout=0.2),
        [(19.772941798113933, 15.94075832695997), (15.365866739159111, 12.32062386872353),
         (12.682802040426383, 10.295427728638447)],
        ["time traveller  o   o   o   a  a  a  a  a  a", "time traveller an an an an an an an an an an",
         "time traveller the the the the the the the t"]),
    "lstm": (
        dict(kind="lstm"),
        [(20.292260805246997, 16.622390311135646), (15.980374568786791, 13.733608922994469),
         (13.389819442984727, 11.397985459578608)],
        ["time traveller                              ", "time traveller te a a a a a a a a a a a a a ",
         "time traveller an an an an an an an an an an"]),
    "lstm-2-dropout-embedding": (
        dict(kind="lstm", num_layers=2, dropout=0.2, encoding="embedding", embed_size=8),
        [(20.709872480939392, 17.288864128919254), (17.10757701873683, 15.353151582644687),
         (14.841663494131915, 12.161503970031612)],
        ["time traveller                              ", "time traveller e e e e e e e e e e e e e e e",
         "time traveller an an an an an an an an an an"]),
}


@pytest.mark.parametrize("name", CASES)
def test_training_gives_the_old_curve_and_samples(name: str, pipeline) -> None:
    kw, want_ppl, want_text = CASES[name]
    mc = ModelConfig(vocab_size=len(pipeline.vocab), num_hiddens=16, **kw)
    tc = TrainConfig(epochs=3, batch_size=8, num_steps=10, max_tokens=3000, sample_every=1, sample_len=30,
                     threads=1, log_interval_s=1e9, seed=1, optimizer="adam", lr=0.01,
                     sampler="sequential" if kw["kind"] == "gru" else "random")
    ppl, text = [], []
    for e in train(pipeline, mc, tc):
        if isinstance(e, Progress) and e.epoch_end:
            ppl.append((e.train_ppl, e.val_ppl))
        elif isinstance(e, Sample):
            text.append(e.text)
    assert ppl == [pytest.approx(p, rel=1e-5) for p in want_ppl]  # equal to the last digit on the machine above
    assert text == want_text


INIT = {  # kind and options: (state-dict keys and shapes, sum of the weights after torch.manual_seed(0))
    "scratch": (dict(encoding="embedding", embed_size=8), [
        ("W_xh", (8, 16)), ("W_hh", (16, 16)), ("b_h", (16,)), ("W_hq", (16, 28)), ("b_q", (28,)),
        ("embedding.weight", (28, 8))], 6.694581560061579),
    "rnn": (dict(num_layers=2), [
        ("rnn.weight_ih_l0", (16, 28)), ("rnn.weight_hh_l0", (16, 16)), ("rnn.bias_ih_l0", (16,)),
        ("rnn.bias_hh_l0", (16,)), ("rnn.weight_ih_l1", (16, 16)), ("rnn.weight_hh_l1", (16, 16)),
        ("rnn.bias_ih_l1", (16,)), ("rnn.bias_hh_l1", (16,)), ("linear.weight", (28, 16)), ("linear.bias", (28,))],
        -2.168555587530136),
    "gru": (dict(num_layers=2, encoding="embedding", embed_size=8), [
        ("embedding.weight", (28, 8)), ("rnn.weight_ih_l0", (48, 8)), ("rnn.weight_hh_l0", (48, 16)),
        ("rnn.bias_ih_l0", (48,)), ("rnn.bias_hh_l0", (48,)), ("rnn.weight_ih_l1", (48, 16)),
        ("rnn.weight_hh_l1", (48, 16)), ("rnn.bias_ih_l1", (48,)), ("rnn.bias_hh_l1", (48,)),
        ("linear.weight", (28, 16)), ("linear.bias", (28,))], -0.39221699320478365),
    "lstm": (dict(num_layers=2), [
        ("rnn.weight_ih_l0", (64, 28)), ("rnn.weight_hh_l0", (64, 16)), ("rnn.bias_ih_l0", (64,)),
        ("rnn.bias_hh_l0", (64,)), ("rnn.weight_ih_l1", (64, 16)), ("rnn.weight_hh_l1", (64, 16)),
        ("rnn.bias_ih_l1", (64,)), ("rnn.bias_hh_l1", (64,)), ("linear.weight", (28, 16)), ("linear.bias", (28,))],
        -10.932958841323853),
}


@pytest.mark.parametrize("kind", INIT)
def test_state_dict_keys_and_initial_weights_are_the_old_ones(kind: str) -> None:
    kw, keys, total = INIT[kind]
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, vocab_size=28, num_hiddens=16, **kw))
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == keys
    assert float(sum(p.detach().double().sum() for p in model.parameters())) == pytest.approx(total, rel=1e-12)
