"""The generation stepper: token by token it gives the full forward pass's logits and
states, for every kind, encoding and depth; the never-mask and the per-token fallback."""

from __future__ import annotations

import pytest
import torch

from engine import stepper as stepper_module
from engine.config import CELLS, ENCODINGS, MODEL_KINDS, ModelConfig
from engine.models import RNNLM, build_model
from engine.stepper import Stepper

V, H, B, T = 7, 12, 3, 6
CASES = [(k, e, n) for k in MODEL_KINDS for e in ENCODINGS for n in (1, 2) if not (CELLS[k].one_layer and n == 2)]


def small(kind: str, **kw: object) -> RNNLM:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, vocab_size=V, num_hiddens=H, **kw))  # type: ignore[arg-type]
    with torch.no_grad():  # non-zero biases, so a bias folded in the wrong place shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model.eval()


def run(step: Stepper, model: RNNLM, X: torch.Tensor, H0: object) -> tuple[torch.Tensor, object]:
    with torch.inference_mode():
        state, outs = step.load(H0), []  # type: ignore[arg-type]
        for t in range(X.shape[1]):
            logits, state = step(X[:, t], state)
            outs.append(logits)
        return torch.stack(outs), step.export(state)


def random_state(model: RNNLM) -> object:
    torch.manual_seed(3)
    s = model.begin_state(B)
    return tuple(torch.randn_like(x) for x in s) if isinstance(s, tuple) else torch.randn_like(s)


@pytest.mark.parametrize("kind,encoding,layers", CASES)
def test_stepper_equals_forward(kind: str, encoding: str, layers: int) -> None:
    model = small(kind, encoding=encoding, num_layers=layers, embed_size=5)
    X = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(1))
    H0 = random_state(model)
    with torch.no_grad():
        want, want_state = model(X, H0)
    got, got_state = run(Stepper(model), model, X, H0)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    pairs = zip(want_state, got_state) if isinstance(want_state, tuple) else [(want_state, got_state)]
    for w, g in pairs:
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_never_mask_sets_minus_inf_and_leaves_the_rest(kind: str = "gru") -> None:
    model = small(kind)
    never = torch.zeros(V, dtype=torch.bool)
    never[[0, 4]] = True
    X = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(2))
    plain, _ = run(Stepper(model), model, X, model.begin_state(B))
    masked, _ = run(Stepper(model, never=never), model, X, model.begin_state(B))
    assert torch.isneginf(masked[..., never]).all()
    assert torch.equal(masked[..., ~never], plain[..., ~never])


@pytest.mark.parametrize("kind,encoding", [("lstm", "embedding"), ("gru", "onehot"), ("scratch", "onehot"),
                                           ("mingru", "embedding")])
def test_big_input_tables_fall_back_to_per_token_input(monkeypatch: pytest.MonkeyPatch, kind: str,
                                                        encoding: str) -> None:
    model = small(kind, encoding=encoding, embed_size=5)
    X = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(4))
    width = model.cell.gates * H  # test_models checks gates against the weights' shapes
    monkeypatch.setattr(stepper_module, "TABLE_LIMIT", width * V - 1)  # just too small for this table
    step = Stepper(model)
    assert step.table is None
    got, _ = run(step, model, X, model.begin_state(B))
    with torch.no_grad():
        want, _ = model(X, model.begin_state(B))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_stepper_does_not_change_the_model() -> None:
    model = small("rnn", num_layers=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run(Stepper(model, never=torch.ones(V, dtype=torch.bool)), model, torch.zeros(B, T, dtype=torch.long),
        model.begin_state(B))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
