"""
Learning-rate schedules.

A schedule maps ``progress_remaining`` (1 at the start of training, 0 at the end, SB3's convention)
to a value. Besides plain floats and callables, every learning-rate argument accepts:

- RL Zoo strings: ``"lin_3e-4"`` (linear decay from 3e-4 to 0), and our extensions
  ``"lin_3e-4_1e-5"``, ``"exp_3e-4_1e-5"``, ``"cos_3e-4_1e-5"`` (decay towards a final value);
- the classes below, which are picklable, have a readable ``repr`` and describe themselves as data
  (``to_config()`` / :func:`schedule_from_config`), so they can be stored without pickle.
"""

import math
from collections.abc import Callable
from typing import Any

from sb3_sac_ext.common.errors import InvalidHyperparameterError

ScheduleLike = float | int | str | Callable[[float], float]


class BaseSchedule:
    """A learning-rate schedule: ``schedule(progress_remaining) -> float``."""

    name: str = ""

    def __call__(self, progress_remaining: float) -> float:
        raise NotImplementedError

    def _args(self) -> dict[str, float]:
        raise NotImplementedError

    def to_config(self) -> dict[str, Any]:
        """:return: A JSON-serialisable description ``{"name": ..., "args": {...}}``."""
        return {"name": self.name, "args": self._args()}

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self._args().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._args() == other._args()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(self._args().items())))


def _check_rate(name: str, value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as e:
        raise InvalidHyperparameterError(f"{name} must be a number, got {value!r}") from e
    if not math.isfinite(value) or value < 0:
        raise InvalidHyperparameterError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


class ConstantSchedule(BaseSchedule):
    """
    Constant value.

    :param value: The value returned at every stage of training
    """

    name = "constant"

    def __init__(self, value: float):
        self.value = _check_rate("value", value)

    def __call__(self, progress_remaining: float) -> float:
        return self.value

    def _args(self) -> dict[str, float]:
        return {"value": self.value}


class LinearDecay(BaseSchedule):
    """
    Linear interpolation from ``initial`` (start of training) to ``final`` (end of training).
    ``LinearDecay(3e-4)`` is RL Zoo's ``"lin_3e-4"``.

    :param initial: Value at ``progress_remaining = 1``
    :param final: Value at ``progress_remaining = 0``
    """

    name = "linear"

    def __init__(self, initial: float, final: float = 0.0):
        self.initial = _check_rate("initial", initial)
        self.final = _check_rate("final", final)

    def __call__(self, progress_remaining: float) -> float:
        return self.final + progress_remaining * (self.initial - self.final)

    def _args(self) -> dict[str, float]:
        return {"initial": self.initial, "final": self.final}


class ExponentialDecay(BaseSchedule):
    """
    Geometric interpolation from ``initial`` to ``final``: the value is multiplied by the same
    factor for each equal slice of training.

    :param initial: Value at ``progress_remaining = 1`` (> 0)
    :param final: Value at ``progress_remaining = 0`` (> 0)
    """

    name = "exponential"

    def __init__(self, initial: float, final: float):
        self.initial = _check_rate("initial", initial)
        self.final = _check_rate("final", final)
        if self.initial <= 0 or self.final <= 0:
            raise InvalidHyperparameterError(
                f"ExponentialDecay needs initial > 0 and final > 0, got initial={initial!r}, final={final!r}"
            )

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * (self.final / self.initial) ** (1.0 - progress_remaining)

    def _args(self) -> dict[str, float]:
        return {"initial": self.initial, "final": self.final}


class CosineDecay(BaseSchedule):
    """
    Cosine annealing from ``initial`` to ``final`` (Loshchilov & Hutter, https://arxiv.org/abs/1608.03983).

    :param initial: Value at ``progress_remaining = 1``
    :param final: Value at ``progress_remaining = 0``
    """

    name = "cosine"

    def __init__(self, initial: float, final: float = 0.0):
        self.initial = _check_rate("initial", initial)
        self.final = _check_rate("final", final)

    def __call__(self, progress_remaining: float) -> float:
        return self.final + 0.5 * (self.initial - self.final) * (1.0 + math.cos(math.pi * (1.0 - progress_remaining)))

    def _args(self) -> dict[str, float]:
        return {"initial": self.initial, "final": self.final}


SCHEDULES: dict[str, type[BaseSchedule]] = {
    cls.name: cls for cls in (ConstantSchedule, LinearDecay, ExponentialDecay, CosineDecay)
}
_STRING_PREFIXES = {"lin": LinearDecay, "exp": ExponentialDecay, "cos": CosineDecay}


def schedule_from_config(config: dict[str, Any]) -> BaseSchedule:
    """
    Rebuild a schedule from ``BaseSchedule.to_config()`` output.

    :param config: ``{"name": ..., "args": {...}}``
    :return: The schedule
    """
    if not isinstance(config, dict) or config.get("name") not in SCHEDULES or not isinstance(config.get("args"), dict):
        raise InvalidHyperparameterError(
            f"Unknown schedule description {config!r}: expected {{'name': one of {sorted(SCHEDULES)}, 'args': {{...}}}}"
        )
    return SCHEDULES[config["name"]](**config["args"])


def parse_schedule_string(value: str, name: str = "learning_rate") -> BaseSchedule:
    """
    Parse ``"3e-4"``, ``"lin_3e-4"`` (RL Zoo), ``"lin_3e-4_1e-5"``, ``"exp_3e-4_1e-5"`` or ``"cos_3e-4"``.

    :param value: The string
    :param name: Name of the argument, for error messages
    :return: The schedule
    """
    text = value.strip()
    parts = text.split("_")
    try:
        if len(parts) == 1:
            return ConstantSchedule(float(parts[0]))
        kind = _STRING_PREFIXES.get(parts[0])
        if kind is not None and len(parts) in (2, 3):
            numbers = [float(part) for part in parts[1:]]
            if kind is ExponentialDecay and len(numbers) == 2:
                return ExponentialDecay(*numbers)
            if kind is not ExponentialDecay:
                return kind(*numbers)
    except ValueError:
        pass
    raise InvalidHyperparameterError(
        f"{name}={value!r} is not a valid schedule string. Use a number ('3e-4'), 'lin_<initial>' "
        "(RL Zoo), 'lin_<initial>_<final>', 'exp_<initial>_<final>' or 'cos_<initial>[_<final>]'."
    )


class _CallableSchedule(BaseSchedule):
    """Wraps a user callable so that its output is always a float (like SB3's ``FloatSchedule``)."""

    name = "callable"

    def __init__(self, function: Callable[[float], float]):
        self.function = function

    def __call__(self, progress_remaining: float) -> float:
        return float(self.function(progress_remaining))

    def _args(self) -> dict[str, Any]:
        return {"function": self.function}

    def to_config(self) -> dict[str, Any]:
        raise TypeError(f"{self.function!r} is an arbitrary callable and cannot be described as data")


def make_schedule(value: ScheduleLike, name: str = "learning_rate") -> BaseSchedule:
    """
    Turn any accepted learning-rate description into a schedule.

    :param value: A float, a string (see :func:`parse_schedule_string`), a :class:`BaseSchedule`
        or any callable of ``progress_remaining``
    :param name: Name of the argument, for error messages
    :return: The schedule
    """
    if isinstance(value, BaseSchedule):
        return value
    if isinstance(value, bool):
        raise InvalidHyperparameterError(f"{name} must be a number, a schedule string or a callable, got {value!r}")
    if isinstance(value, (int, float)):
        try:
            return ConstantSchedule(value)
        except InvalidHyperparameterError as e:
            raise InvalidHyperparameterError(f"{name}: {e}") from None
    if isinstance(value, str):
        return parse_schedule_string(value, name)
    if callable(value):
        return _CallableSchedule(value)
    raise InvalidHyperparameterError(
        f"{name} must be a number, a schedule string such as 'lin_3e-4', or a callable of progress_remaining; "
        f"got {type(value).__name__}"
    )
