"""
Input checks shared by SAC and DiscreteSAC: constructor arguments, action spaces, and the observations and
rewards that reach ``predict`` and the replay buffer.

They raise typed errors (:class:`~sb3_sac_ext.common.errors.InvalidHyperparameterError`,
:class:`~sb3_sac_ext.common.errors.UnsupportedSpaceError`, :class:`~sb3_sac_ext.common.errors.NonFiniteError`,
all ``ValueError``; ``TypeError`` for a wrong kind of observation) naming what is wrong and what is accepted, and
never use ``assert``, so they also hold under ``python -O``.
"""

import numbers
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space

from sb3_sac_ext.common.errors import InvalidHyperparameterError, NonFiniteError, UnsupportedSpaceError
from sb3_sac_ext.common.precision import PRECISIONS

OBJECTIVES = ("maximize", "minimize")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int) -> None:
    """Raise unless ``value`` is an integer ``>= minimum``."""
    if not _is_int(value) or value < minimum:
        raise InvalidHyperparameterError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_unit_interval(name: str, value: Any) -> None:
    """Raise unless ``0 <= value <= 1`` (SB3 accepts both ends: ``tau=0`` freezes the target, ``gamma=0`` is myopic)."""
    if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
        raise InvalidHyperparameterError(f"{name} must be a number in [0, 1], got {value!r}")


def check_train_freq(train_freq: Any) -> None:
    """Raise unless ``train_freq`` is a positive int or a tuple ``(positive int, "step" | "episode")``."""
    accepted = "Use a positive integer (steps) or a tuple such as (1, 'step') or (2, 'episode')."
    if hasattr(train_freq, "frequency") and hasattr(train_freq, "unit"):  # already a TrainFreq (loaded model)
        train_freq = (train_freq.frequency, train_freq.unit.value)
    if isinstance(train_freq, (tuple, list)):
        if len(train_freq) != 2 or train_freq[1] not in ("step", "episode"):
            raise InvalidHyperparameterError(f"train_freq={train_freq!r} is not valid. {accepted}")
        frequency = train_freq[0]
    else:
        frequency = train_freq
    if not _is_int(frequency) or frequency <= 0:
        raise InvalidHyperparameterError(f"train_freq must be > 0, got {train_freq!r}. {accepted}")


def check_common_args(
    *,
    buffer_size: Any,
    learning_starts: Any,
    batch_size: Any,
    tau: Any,
    gamma: Any,
    train_freq: Any,
    gradient_steps: Any,
    n_steps: Any,
    target_update_interval: Any,
    policy_delay: Any,
    max_grad_norm: Any,
    objective: Any,
    precision: Any,
) -> None:
    """
    Validate the constructor arguments SAC and DiscreteSAC share; see the class docstrings.

    Only what SB3 rejects, or what cannot run, is rejected: SB3 accepts ``buffer_size < batch_size`` (it samples
    with replacement), ``buffer_size=0`` (a buffer of one transition), ``tau=0`` (a frozen target), ``gamma=0``,
    ``gradient_steps=0`` (collect without training), any negative ``gradient_steps`` (as many as env steps
    collected) and any ``learning_starts``, and its users rely on that.
    """
    check_int("batch_size", batch_size, 1)
    check_int("buffer_size", buffer_size, 0)
    # Any integer, as in SB3: a negative value trains from the first step, like 0
    check_int("learning_starts", learning_starts, -(2**63))
    check_unit_interval("gamma", gamma)
    check_unit_interval("tau", tau)
    check_train_freq(train_freq)
    if not _is_int(gradient_steps):
        raise InvalidHyperparameterError(
            f"gradient_steps must be an integer (-1: as many as env steps collected, 0: no training), got {gradient_steps!r}"
        )
    check_int("n_steps", n_steps, 1)
    check_int("target_update_interval", target_update_interval, 1)
    check_int("policy_delay", policy_delay, 1)
    if max_grad_norm is not None and (not _is_number(max_grad_norm) or not 0 < float(max_grad_norm) < float("inf")):
        raise InvalidHyperparameterError(f"max_grad_norm must be None (no clipping) or a number > 0, got {max_grad_norm!r}")
    if objective not in OBJECTIVES:
        raise InvalidHyperparameterError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if precision not in PRECISIONS:
        raise InvalidHyperparameterError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def check_action_space(action_space: spaces.Space, supported: tuple[type[spaces.Space], ...], algo: str) -> None:
    """
    Raise :class:`UnsupportedSpaceError` unless ``action_space`` is one of ``supported``;
    Box spaces must have finite bounds.
    """
    if not isinstance(action_space, supported):
        names = ", ".join(f"gymnasium.spaces.{cls.__name__}" for cls in supported)
        hint = " Use DiscreteSAC for Discrete actions." if isinstance(action_space, spaces.Discrete) else ""
        if isinstance(action_space, (spaces.Box, spaces.MultiDiscrete, spaces.MultiBinary)) and spaces.Discrete in supported:
            hint = " Use SAC for Box actions." if isinstance(action_space, spaces.Box) else ""
        raise UnsupportedSpaceError(f"{algo} does not support the action space {action_space}; supported: {names}.{hint}")
    if isinstance(action_space, spaces.Box) and not (
        np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))
    ):
        raise UnsupportedSpaceError(
            f"{algo} needs finite action bounds to rescale its tanh-squashed actions, got {action_space}. "
            "Wrap the env to give the action space finite low and high values (e.g. gymnasium.wrappers.RescaleAction "
            "on a bounded space, or clip the action space)."
        )


def _nonfinite_kind(array: Any) -> str | None:
    array = np.asarray(array)
    if array.dtype.kind not in "fc":
        return None
    if np.isnan(array).any():
        return "NaN"
    if not np.isfinite(array).all():
        return "inf"
    return None


def check_finite(value: Any, quantity: str, context: str) -> None:
    """
    Raise :class:`NonFiniteError` if ``value`` (array, or dict of arrays) holds NaN or inf.

    :param value: The value
    :param quantity: What it is (``"reward"``), for the message
    :param context: Where it was seen (the step), for the message
    """
    if isinstance(value, dict):
        for key, item in value.items():
            check_finite(item, f"{quantity}[{key!r}]", context)
        return
    kind = _nonfinite_kind(value)
    if kind is not None:
        raise NonFiniteError(f"{context}: the {quantity} contains {kind}")


def check_transition(new_obs: Any, reward: Any, infos: Any, num_timesteps: int) -> None:
    """
    The checks of ``_store_transition``, before the transition reaches the replay buffer.

    :param new_obs: The observations after the step
    :param reward: The rewards
    :param infos: The infos (their ``terminal_observation`` is checked too)
    :param num_timesteps: The step, for the message
    """
    context = f"step {num_timesteps} (num_timesteps)"
    check_finite(reward, "reward", context)
    check_finite(new_obs, "observation", context)
    for info in infos or ():
        terminal = info.get("terminal_observation") if isinstance(info, dict) else None
        if terminal is not None:
            check_finite(terminal, "terminal observation", context)


def check_predict_observation(observation: Any, space: spaces.Space) -> None:
    """
    Validate what ``predict`` receives: a tuple ``(obs, info)``, strings, wrong shapes and NaN/inf
    raise ``TypeError`` / ``ValueError`` / :class:`NonFiniteError` giving the expected shape.

    :param observation: What ``predict`` received
    :param space: The model's observation space
    """
    if isinstance(observation, tuple):
        hint = (
            " (the output of env.reset() is (obs, info): pass obs only)"
            if len(observation) == 2 and isinstance(observation[1], dict)
            else ""
        )
        raise TypeError(f"predict() got a tuple{hint}; expected an observation of shape {_expected(space)}")
    if isinstance(space, spaces.Dict):
        if not isinstance(observation, dict):
            raise TypeError(
                f"predict() expects a dict observation with keys {list(space.spaces)}, got {type(observation).__name__}"
            )
        for key, sub in space.spaces.items():
            if key not in observation:
                raise ValueError(f"predict(): observation lacks the key {key!r}; expected keys {list(space.spaces)}")
            _check_array(observation[key], sub, f"observation[{key!r}]")
        return
    _check_array(observation, space, "observation")


def _expected(space: spaces.Space) -> str:
    shape = getattr(space, "shape", None)
    return f"{shape} or (n_envs, *{shape})" if shape is not None else str(space)


def _box_shape_accepted(shape: tuple[int, ...], space: spaces.Box) -> bool:
    """Single or batched observation; images also channel-last, which SB3's ``predict`` transposes itself."""
    shapes = [space.shape]
    if is_image_space(space, check_channels=False) and len(space.shape) == 3:
        channels, height, width = space.shape
        shapes.append((height, width, channels))
    return any(shape == expected or shape[1:] == expected for expected in shapes)


def _check_array(observation: Any, space: spaces.Space, what: str) -> None:
    try:
        array = np.asarray(observation)
    except (ValueError, TypeError) as e:
        raise ValueError(f"predict(): the {what} is not an array ({e}); expected shape {_expected(space)}") from None
    if array.dtype.kind in "USOV":
        raise TypeError(f"predict(): the {what} has dtype {array.dtype}; expected numbers of shape {_expected(space)}")
    if isinstance(space, spaces.Box) and not _box_shape_accepted(array.shape, space):
        raise ValueError(f"predict(): the {what} has shape {array.shape}; expected {_expected(space)}")
    kind = _nonfinite_kind(array)
    if kind is not None:
        raise NonFiniteError(f"predict(): the {what} contains {kind}")
