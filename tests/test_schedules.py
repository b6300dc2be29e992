"""Learning-rate schedules: values, repr, pickling and their data description."""

import json
import math
import pickle

import pytest

from sb3_sac_ext.common.errors import InvalidHyperparameterError
from sb3_sac_ext.common.schedules import (
    BaseSchedule,
    ConstantSchedule,
    CosineDecay,
    ExponentialDecay,
    LinearDecay,
    make_schedule,
    parse_schedule_string,
    schedule_from_config,
)

# schedule -> values at progress_remaining 1, 0.5, 0
CASES = [
    (LinearDecay(1e-3), (1e-3, 5e-4, 0.0)),
    (LinearDecay(1e-3, 1e-4), (1e-3, 5.5e-4, 1e-4)),
    (ExponentialDecay(1e-3, 1e-5), (1e-3, 1e-4, 1e-5)),
    (CosineDecay(1e-3), (1e-3, 5e-4, 0.0)),
    (CosineDecay(1e-3, 2e-4), (1e-3, 6e-4, 2e-4)),
    (ConstantSchedule(3e-4), (3e-4, 3e-4, 3e-4)),
]


@pytest.mark.parametrize("schedule, values", CASES, ids=repr)
def test_values(schedule, values):
    for progress, expected in zip((1.0, 0.5, 0.0), values, strict=True):
        assert schedule(progress) == pytest.approx(expected, rel=1e-12, abs=1e-18)
        assert isinstance(schedule(progress), float)


def test_cosine_shape():
    schedule = CosineDecay(1.0)
    # Slow at both ends, fastest in the middle
    assert schedule(0.9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.1)))
    assert schedule(0.6) - schedule(0.4) > 1.0 - schedule(0.9)


@pytest.mark.parametrize("schedule, values", CASES, ids=repr)
def test_repr_pickle_and_config(schedule, values):
    text = repr(schedule)
    assert text.startswith(type(schedule).__name__ + "(")
    namespace = {cls.__name__: cls for cls in (LinearDecay, ExponentialDecay, CosineDecay, ConstantSchedule)}
    assert eval(text, namespace) == schedule
    restored = pickle.loads(pickle.dumps(schedule))
    assert restored == schedule and type(restored) is type(schedule)
    config = schedule.to_config()
    # Plain data: survives JSON
    rebuilt = schedule_from_config(json.loads(json.dumps(config)))
    assert rebuilt == schedule
    assert [rebuilt(p) for p in (1.0, 0.5, 0.0)] == [schedule(p) for p in (1.0, 0.5, 0.0)]
    assert hash(rebuilt) == hash(schedule)


def test_equality_distinguishes():
    assert LinearDecay(1e-3) != LinearDecay(1e-3, 1e-5)
    assert LinearDecay(1e-3, 1e-5) != CosineDecay(1e-3, 1e-5)
    assert LinearDecay(1e-3) == LinearDecay(1e-3, 0.0)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3e-4", ConstantSchedule(3e-4)),
        ("lin_3e-4", LinearDecay(3e-4)),
        ("lin_3e-4_1e-5", LinearDecay(3e-4, 1e-5)),
        ("exp_3e-4_1e-5", ExponentialDecay(3e-4, 1e-5)),
        ("cos_3e-4", CosineDecay(3e-4)),
        (" cos_3e-4_1e-6 ", CosineDecay(3e-4, 1e-6)),
    ],
)
def test_parse_strings(text, expected):
    assert parse_schedule_string(text) == expected
    assert make_schedule(text) == expected


@pytest.mark.parametrize("text", ["", "lin", "lin_", "lin_a", "exp_3e-4", "poly_3e-4", "lin_1_2_3", "lin_-1e-3"])
def test_bad_strings(text):
    with pytest.raises(InvalidHyperparameterError, match="my_rate"):
        make_schedule(text, "my_rate")


def test_make_schedule_inputs():
    assert make_schedule(1e-3) == ConstantSchedule(1e-3)
    assert make_schedule(1) == ConstantSchedule(1.0)
    schedule = LinearDecay(1e-3)
    assert make_schedule(schedule) is schedule
    wrapped = make_schedule(lambda progress: 2 * progress)
    assert isinstance(wrapped, BaseSchedule)
    assert wrapped(0.25) == 0.5 and isinstance(wrapped(0.25), float)
    with pytest.raises(TypeError):
        wrapped.to_config()  # an arbitrary callable is not data
    for bad in (True, None, [1e-3], -1e-3, float("inf")):
        with pytest.raises(InvalidHyperparameterError):
            make_schedule(bad)


@pytest.mark.parametrize(
    "config", [{}, {"name": "nope", "args": {}}, {"name": "linear"}, {"name": "linear", "args": []}, "linear"]
)
def test_bad_config(config):
    with pytest.raises(InvalidHyperparameterError):
        schedule_from_config(config)


def test_bad_arguments():
    with pytest.raises(InvalidHyperparameterError):
        ExponentialDecay(1e-3, 0.0)
    with pytest.raises(InvalidHyperparameterError):
        LinearDecay(float("nan"))
    with pytest.raises(InvalidHyperparameterError):
        CosineDecay("abc")  # type: ignore[arg-type]
