"""Exact oracles for engine.stepper (issue 9, mutation score), through its public face only:
``Stepper(model, never)(x, state)``, ``load`` and ``export``.

Closed form: with one-hot inputs, input weights 20·(a permutation matrix), zero recurrent weights and zero
biases, each tanh layer maps onehot(i) to onehot(π_l(i)) exactly in float32 (tanh 20 rounds to 1). So a
stack of layers sends token x to onehot(π_L(…π_0(x))) and an output layer c·(permutation ρ) puts the
single non-zero logit c at ρ(π_L(…π_0(x))): wrong layer order, a skipped layer or a wrong input term moves
it. Vocabularies too big for the stepper's input table (> 2^22 floats) are checked against the model's
own whole-sequence forward, a second implementation."""

from __future__ import annotations

import torch

from engine.config import MODEL_KINDS, ModelConfig
from engine.models import build_model
from engine.stepper import TABLE_LIMIT, Stepper

V = 6
PERMS = [[1, 2, 3, 4, 5, 0], [5, 4, 3, 2, 1, 0], [2, 0, 1, 5, 3, 4]]  # π_0, π_1, π_2: they do not commute
RHO = [3, 5, 0, 1, 4, 2]
C = 2.5


def permutation_model(kind: str, layers: int, activation: str = "tanh"):
    """A model of `kind` whose layer l maps onehot(i) to onehot(PERMS[l][i]) and whose logits are C at RHO[j]
    for hidden unit j (parameters set by their checkpoint names: W_xh/W_hq for scratch, rnn.*/linear.* else)."""
    model = build_model(ModelConfig(kind=kind, vocab_size=V, num_hiddens=V, num_layers=layers, activation=activation))
    p = dict(model.named_parameters())
    with torch.no_grad():
        for t in p.values():
            t.zero_()
        out = torch.zeros(V, V)
        for j in range(V):
            out[j, RHO[j]] = C
        if kind == "scratch":
            for i in range(V):
                p["W_xh"][i, PERMS[0][i]] = 20.0  # X W_xh: row i is token i's input term
            p["W_hq"].copy_(out)
        else:
            for layer in range(layers):
                for i in range(V):
                    p[f"rnn.weight_ih_l{layer}"][PERMS[layer][i], i] = 20.0  # nn's x W_ih^T
            p["linear.weight"].copy_(out.T)
    return model.eval()


def through(x: int, layers: int) -> list[int]:
    """The hidden unit each layer lights up for token x: π_0(x), π_1(π_0(x)), …"""
    out = []
    for layer in range(layers):
        x = PERMS[layer][x]
        out.append(x)
    return out


def onehots(ids: list[int]) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(ids), V).float()


def test_one_step_of_a_stack_lands_on_the_composed_permutation():
    """For every token, 1-3 stacked tanh layers: the logits are C at ρ(π_L(…π_0(x))), 0 elsewhere, and the
    exported state of layer l is onehot(π_l(…π_0(x)))."""
    x = torch.arange(V)
    for kind, layers in [("scratch", 1), ("rnn", 1), ("rnn", 2), ("rnn", 3)]:
        model = permutation_model(kind, layers)
        step = Stepper(model)
        with torch.inference_mode():
            logits, state = step(x, step.load(model.begin_state(V)))
            H = step.export(state)
        paths = [through(i, layers) for i in range(V)]
        want = torch.zeros(V, V)
        for i, path in enumerate(paths):
            want[i, RHO[path[-1]]] = C
        assert torch.equal(logits, want), (kind, layers)
        H = H if kind != "scratch" else H[None]
        for layer in range(layers):
            assert torch.equal(H[layer], onehots([path[layer] for path in paths])), (kind, layers, layer)


def test_relu_layers_are_not_squashed():
    """With ReLU the layer output is 20·onehot, so the logit at ρ(π_0(x)) is 20·C."""
    model = permutation_model("scratch", 1, activation="relu")
    step = Stepper(model)
    with torch.inference_mode():
        logits, _ = step(torch.tensor([2]), step.load(model.begin_state(1)))
    assert logits.tolist() == [[20 * C if k == RHO[PERMS[0][2]] else 0.0 for k in range(V)]]


def test_never_masks_exactly_the_given_tokens():
    """never = {0, 3}: those logits are -inf for every input token, all others keep their closed-form value."""
    model = permutation_model("rnn", 2)
    never = torch.tensor([True, False, False, True, False, False])
    step = Stepper(model, never=never)
    with torch.inference_mode():
        logits, _ = step(torch.arange(V), step.load(model.begin_state(V)))
    for i in range(V):
        peak = RHO[through(i, 2)[-1]]
        want = [-float("inf") if never[k] else (C if k == peak else 0.0) for k in range(V)]
        assert logits[i].tolist() == want


def random_model(kind: str, vocab_size: int, encoding: str = "onehot", layers: int = 1, num_hiddens: int = 16):
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, vocab_size=vocab_size, num_hiddens=num_hiddens, num_layers=layers,
                                    encoding=encoding, embed_size=5))
    with torch.no_grad():  # non-zero biases and weights well away from the init's tiny ones
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return model.eval()


def steps_vs_forward(model, X: torch.Tensor) -> None:
    """Stepping X one column at a time from a random state gives forward's logits and final state."""
    torch.manual_seed(1)
    H0 = model.begin_state(X.shape[0])
    H0 = tuple(torch.randn_like(h) for h in H0) if isinstance(H0, tuple) else torch.randn_like(H0)
    with torch.inference_mode():
        want, want_state = model(X, H0)
        step = Stepper(model)
        state, got = step.load(H0), []
        for t in range(X.shape[1]):
            logits, state = step(X[:, t], state)
            got.append(logits)
        got_state = step.export(state)
    torch.testing.assert_close(torch.stack(got), want, atol=1e-4, rtol=1e-4)
    pairs = zip(want_state, got_state) if isinstance(want_state, tuple) else [(want_state, got_state)]
    for w, g in pairs:
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)


def test_a_vocabulary_too_big_for_the_input_table_steps_like_forward():
    """65,537 tokens × 64 input columns is just over 2^22 floats, so the input term is computed per token:
    one-hot (gather + bias) and embedding (E[x] W + b) still give the forward's logits and state."""
    X = torch.tensor([[3, 65_536, 41_000], [0, 12, 12]])
    steps_vs_forward(random_model("scratch", 65_537, num_hiddens=64), X)
    steps_vs_forward(random_model("lstm", 65_537, encoding="embedding"), X)


def test_the_input_table_is_built_up_to_exactly_16_mib():
    """The documented size rule: a layer-0 input table of 2^22 floats (16 MiB: 65,536 tokens × an LSTM's
    4 · 16 gate columns) is built; one token more and the input term is computed per token instead."""
    assert TABLE_LIMIT == 1 << 22
    built = Stepper(random_model("lstm", 65_536, encoding="embedding"))
    assert built.table is not None and tuple(built.table.shape) == (65_536, 64)
    assert Stepper(random_model("lstm", 65_537, encoding="embedding")).table is None


def test_three_layers_of_every_kind_step_like_forward():
    """Every registered kind with as many layers as it allows (up to 3), one-hot and embedding inputs."""
    X = torch.randint(0, 11, (3, 5), generator=torch.Generator().manual_seed(2))
    for kind in MODEL_KINDS:
        for encoding in ("onehot", "embedding"):
            try:
                model = random_model(kind, 11, encoding=encoding, layers=3)
            except ValueError:  # a one-layer kind (D2L's scratch RNN)
                model = random_model(kind, 11, encoding=encoding, layers=1)
            steps_vs_forward(model, X)


def test_load_and_export_convert_the_model_state_both_ways():
    """load gives one entry per layer (an (H, C) pair for the LSTM) and export puts back the same tensors."""
    for kind in MODEL_KINDS:
        try:
            model = random_model(kind, 7, layers=2)
        except ValueError:
            model = random_model(kind, 7, layers=1)
        torch.manual_seed(3)
        s = model.begin_state(4)
        s = tuple(torch.randn_like(h) for h in s) if isinstance(s, tuple) else torch.randn_like(s)
        step = Stepper(model)
        per_layer = step.load(s)
        assert len(per_layer) == model.cfg.num_layers
        back = step.export(per_layer)
        pairs = zip(s, back) if isinstance(s, tuple) else [(s, back)]
        for a, b in pairs:
            assert a.shape == b.shape and torch.equal(a, b), kind
