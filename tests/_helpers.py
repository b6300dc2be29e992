"""
Helpers shared by the algorithm tests: SB3's ``MODEL_LIST`` pattern over our two algorithms, tiny budgets
(as in SB3's own tests) and exact state comparisons.
"""

from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvBox

from sb3_sac_ext import SAC, DiscreteSAC

MODEL_LIST = [SAC, DiscreteSAC]

# Tiny settings: every default test model uses these unless a test needs otherwise. DiscreteSAC's CartPole
# is learned by smaller networks, which keeps its tests as fast as they were.
TINY: dict[str, Any] = dict(
    learning_starts=50,
    buffer_size=1000,
    batch_size=64,
    policy_kwargs=dict(net_arch=[64, 64]),
)
DISCRETE_TINY: dict[str, Any] = dict(
    learning_starts=50,
    buffer_size=1000,
    batch_size=32,
    policy_kwargs=dict(net_arch=[32, 32]),
)
TINY_SETTINGS: dict[type, dict[str, Any]] = {SAC: TINY, DiscreteSAC: DISCRETE_TINY}

# The classic-control task of each algorithm's action space
ENV_IDS: dict[type, str] = {SAC: "Pendulum-v1", DiscreteSAC: "CartPole-v1"}


def env_id(model_class: type) -> str:
    """Pendulum-v1 (Box actions) for SAC, CartPole-v1 (Discrete actions) for DiscreteSAC."""
    return ENV_IDS[model_class]


def make_env(model_class: type, max_episode_steps: int | None = None) -> gym.Env:
    """The algorithm's classic-control env, with shorter episodes when asked."""
    return gym.make(env_id(model_class), max_episode_steps=max_episode_steps)


def identity_env(model_class: type, **kwargs: Any) -> gym.Env:
    """SB3's identity env with the algorithm's action space: ``IdentityEnvBox`` or ``IdentityEnv``."""
    return IdentityEnvBox(**kwargs) if model_class is SAC else IdentityEnv(**kwargs)


def is_discrete(model_class: type) -> bool:
    return model_class is DiscreteSAC


def tiny_model(model_class: type, env: Any = None, **kwargs: Any) -> Any:
    """
    A model with the tiny settings of its algorithm, overridden by ``kwargs`` (``policy`` defaults to
    ``MlpPolicy``, ``env`` to the algorithm's classic-control task).
    """
    policy = kwargs.pop("policy", "MlpPolicy")
    env = env_id(model_class) if env is None else env
    return model_class(policy, env, **{**TINY_SETTINGS[model_class], **kwargs})


def tiny_sac(env: Any = "Pendulum-v1", **kwargs: Any) -> SAC:
    """A SAC model with the tiny settings, overridden by ``kwargs``."""
    return tiny_model(SAC, env, **kwargs)


def sample_observations(model: Any, n: int, seed: int = 0) -> Any:
    """``n`` observations of the model's observation space, stacked as a batch (reproducible)."""
    space = model.observation_space
    space.seed(seed)
    return np.stack([space.sample() for _ in range(n)])


def clone_params(module: th.nn.Module) -> dict[str, th.Tensor]:
    """Detached copies of a module's parameters and buffers, by name."""
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def changed(before: dict[str, th.Tensor], module: th.nn.Module) -> bool:
    """Whether any tensor of ``module``'s state dict differs from the copy ``before``."""
    return any(not th.equal(value, before[name]) for name, value in module.state_dict().items())


def assert_state_dicts_equal(expected: dict[str, Any], actual: dict[str, Any], what: str = "") -> None:
    """Exact (``torch.equal``) comparison of two (possibly nested) state dicts."""
    assert expected.keys() == actual.keys(), f"{what}: keys differ {set(expected) ^ set(actual)}"
    for key, value in expected.items():
        other = actual[key]
        if isinstance(value, th.Tensor):
            assert isinstance(other, th.Tensor), f"{what}.{key}: tensor vs {type(other)}"
            assert value.dtype == other.dtype and value.shape == other.shape, f"{what}.{key}: dtype/shape differ"
            assert th.equal(value.cpu(), other.cpu()), f"{what}.{key}: values differ"
        elif isinstance(value, dict):
            assert isinstance(other, dict), f"{what}.{key}: dict vs {type(other)}"
            assert_state_dicts_equal(value, other, f"{what}.{key}")
        elif isinstance(value, (list, tuple)):
            assert len(value) == len(other), f"{what}.{key}: lengths differ"
            for i, (a, b) in enumerate(zip(value, other, strict=True)):
                if isinstance(a, dict):
                    assert_state_dicts_equal(a, b, f"{what}.{key}[{i}]")
                elif isinstance(a, th.Tensor):
                    assert th.equal(a, b), f"{what}.{key}[{i}]: values differ"
                else:
                    assert a == b, f"{what}.{key}[{i}]: {a!r} != {b!r}"
        else:
            assert value == other, f"{what}.{key}: {value!r} != {other!r}"
