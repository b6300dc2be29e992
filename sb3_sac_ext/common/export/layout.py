"""
Observation layout and space descriptions of an exported policy: channel-last images as the env returns them,
the JSON description of spaces stored as metadata, and sampled example inputs.
"""

import copy
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import VecTransposeImage, is_vecenv_wrapped


def transpose_space(space: spaces.Space) -> spaces.Space:
    """Channel-first image space -> the channel-last one the env returns (other spaces unchanged)."""
    if isinstance(space, spaces.Dict):
        return spaces.Dict({key: transpose_space(sub) for key, sub in space.spaces.items()})
    if isinstance(space, spaces.Box) and is_image_space(space):
        return spaces.Box(
            low=np.transpose(space.low, (1, 2, 0)),
            high=np.transpose(space.high, (1, 2, 0)),
            dtype=space.dtype,  # type: ignore[arg-type]
        )
    return space


def detect_channels_last(model: Any, normalize: Any) -> bool:
    """
    :param model: The model; its env tells whether SB3 wrapped it in ``VecTransposeImage``
    :param normalize: ``VecNormalize`` (or None) whose observation space is the env's, for a model without env
    :return: Whether the env returns channel-last images that the model sees channel-first
    """
    env = model.get_env()
    if env is not None:
        return is_vecenv_wrapped(env, VecTransposeImage)
    if normalize is not None:
        obs_space = model.observation_space
        transposed = transpose_space(obs_space)
        return transposed != obs_space and _shapes(normalize.observation_space) == _shapes(transposed)
    return False


def _shapes(space: spaces.Space) -> Any:
    if isinstance(space, spaces.Dict):
        return {key: _shapes(sub) for key, sub in space.spaces.items()}
    return space.shape


def to_model_layout(observation_space: spaces.Space, obs: Any) -> Any:
    """
    Transpose batched channel-last images to the model's channel-first layout (what VecTransposeImage does).

    :param observation_space: The model's observation space
    :param obs: Batched observations as the env returns them
    :return: The observations the model takes
    """
    if isinstance(observation_space, spaces.Dict):
        return {key: to_model_layout(observation_space[key], value) for key, value in obs.items()}
    if is_image_space(observation_space):
        return np.transpose(obs, (0, 3, 1, 2))
    return obs


def space_to_json(space: spaces.Space) -> dict[str, Any]:
    """
    :param space: A gymnasium space
    :return: A JSON-serialisable description (type, shape, dtype, bounds; uniform bounds as one number)
    """
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {key: space_to_json(sub) for key, sub in space.spaces.items()}}
    description: dict[str, Any] = {"type": type(space).__name__, "shape": list(space.shape or ()), "dtype": str(space.dtype)}
    if isinstance(space, spaces.Box):
        for bound in ("low", "high"):
            values = np.asarray(getattr(space, bound))
            uniform = values.size > 0 and bool(np.all(values == values.flat[0]))
            description[bound] = _json_number(values.flat[0]) if uniform else [_json_number(v) for v in values.reshape(-1)]
    elif isinstance(space, spaces.Discrete):
        description.update(n=int(space.n), start=int(space.start))
    elif isinstance(space, spaces.MultiDiscrete):
        description["nvec"] = space.nvec.tolist()
    return description


def _json_number(value: Any) -> float | int | str:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def example_inputs(space: spaces.Space, batch: int, seed: int = 0) -> list[np.ndarray]:
    """
    :param space: Input space (the env layout); a copy is seeded, ``space`` itself is left untouched
    :param batch: Number of observations
    :param seed: Seed of the samples
    :return: ``batch`` sampled observations stacked, one array per input (per key of a Dict space)
    """
    space = copy.deepcopy(space)
    space.seed(seed)
    samples = [space.sample() for _ in range(batch)]
    if isinstance(space, spaces.Dict):
        return [np.stack([sample[key] for sample in samples]) for key in space.spaces]
    return [np.stack(samples)]
