"""TrainState (engine.train_state): checkpoint.json's counters, their JSON form, loading checkpoints that
predate a field, and refusing counters of the wrong type."""

from __future__ import annotations

import json
import math
from dataclasses import fields

import pytest

from engine.train_state import TrainState

# checkpoint.json's names for the trainer's counters, as every checkpoint so far has written them
NAMES = ["epoch", "step", "best_ppl", "spiking", "train_ppl", "val_ppl", "elapsed_s"]


def test_a_fresh_state_is_written_with_nulls_for_what_is_not_known_yet():
    assert TrainState().to_json() == {"epoch": 0, "step": 0, "best_ppl": None, "spiking": False, "train_ppl": None,
                                      "val_ppl": None, "elapsed_s": 0.0}
    assert list(TrainState().to_json()) == NAMES
    assert list(TrainState.JSON_TYPES) == NAMES == [f.name for f in fields(TrainState)]


def test_json_round_trip_keeps_every_field():
    state = TrainState(epoch=3, step=66, best_ppl=7.25, spiking=True, train_ppl=8.5, val_ppl=math.inf, elapsed_s=1.5)
    doc = json.loads(json.dumps({**state.to_json(), "status": "running", "epochs": 10}))
    assert doc["val_ppl"] is None  # an overflowed perplexity has no JSON number
    back = TrainState.from_json(doc)
    assert back == TrainState(epoch=3, step=66, best_ppl=7.25, spiking=True, train_ppl=8.5, val_ppl=None,
                              elapsed_s=1.5)
    assert TrainState.from_json(TrainState(epoch=1, step=2).to_json()).best_ppl == math.inf


def test_an_old_checkpoint_without_the_newer_fields_loads_with_defaults():
    st = TrainState.from_json({"epoch": 4, "step": 40, "train_ppl": 9, "status": "completed"})
    assert st == TrainState(epoch=4, step=40, train_ppl=9.0)
    assert st.best_ppl == math.inf and st.spiking is False and st.elapsed_s == 0.0 and st.val_ppl is None


@pytest.mark.parametrize("field, bad", [("spiking", "no"), ("spiking", 0), ("best_ppl", True), ("elapsed_s", "1 s")])
def test_a_checkpoint_with_a_counter_of_the_wrong_type_is_corrupt(tmp_path, field, bad):
    import torch

    from engine import checkpoint
    from engine.errors import RunError

    state = TrainState(epoch=1, step=2, best_ppl=5.0, spiking=True, train_ppl=6.0, val_ppl=5.0, elapsed_s=0.5)
    checkpoint.save_checkpoint(tmp_path, {"w": torch.ones(1)}, {"state": {}, "param_groups": []},
                               {**state.to_json(), "status": "running"})
    assert TrainState.from_json(checkpoint.load_trainer_state(tmp_path)) == state
    path = tmp_path / checkpoint.CHECKPOINT_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), field: bad}))
    with pytest.raises(RunError, match=f"{field} is .*corrupt"):  # bool("no") would have resumed as spiking
        checkpoint.load_trainer_state(tmp_path)
