"""The JSON spellings of inf and nan (engine.jsonfloat), and the files that use them: a config's and an
event's floats come back as floats, their text fields as text."""

from __future__ import annotations

import json
import math

import pytest

from engine.config import TrainConfig
from engine.events import Diverged, Finished, Sample, event_from_dict
from engine.jsonfloat import dump_float, finite_or_none, float_fields, load_float


def through_json(d: dict) -> dict:
    return json.loads(json.dumps(d, allow_nan=False))  # what a strict JSON reader would accept


@pytest.mark.parametrize("value, text", [(math.inf, "inf"), (-math.inf, "-inf")])
def test_infinities_are_written_as_strings_and_read_back(value, text):
    assert dump_float(value) == text
    assert load_float(json.loads(json.dumps(dump_float(value)))) == value
    assert finite_or_none(value) is None


def test_nan_and_finite_values():
    assert dump_float(math.nan) == "nan" and math.isnan(load_float("nan")) and finite_or_none(math.nan) is None
    for kept in (0.5, 3, None, "x", "Infinity", True):  # finite numbers and other strings pass through
        assert dump_float(kept) is kept and load_float(kept) is kept and finite_or_none(kept) is kept


def test_only_float_fields_are_read_back_as_floats():
    assert float_fields(Finished) == {"train_ppl", "val_ppl"}
    assert float_fields(Sample) == frozenset()
    cfg = TrainConfig(sample_prefix="nan", sample_alpha=math.inf)  # a prompt that reads like a float
    back = TrainConfig.from_dict(through_json(cfg.to_dict()))
    assert back == cfg and back.sample_prefix == "nan" and back.sample_alpha == math.inf
    for ev in (Sample(epoch=1, prefix="inf", text="inf"), Diverged(epoch=1, step=3, lr=1.0, loss=-math.inf,
                                                                     message="nan")):
        assert event_from_dict(through_json(ev.to_dict())) == ev
