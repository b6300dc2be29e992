"""SB3's test_predict.py adapted: shapes, vectorised and single observations, determinism of predictions."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnvBox

from _sac_helpers import tiny_sac


@pytest.fixture(scope="module")
def model():
    model = tiny_sac(seed=0)
    model.learn(60)
    return model


def test_predict_single_and_batch_shapes(model):
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    action, state = model.predict(obs)
    assert state is None
    assert action.shape == env.action_space.shape == (1,)
    assert env.action_space.contains(action.astype(np.float32))

    batch = np.stack([env.observation_space.sample() for _ in range(7)])
    actions, _ = model.predict(batch)
    assert actions.shape == (7, 1)
    assert np.all(actions >= env.action_space.low) and np.all(actions <= env.action_space.high)


def test_predict_vec_env(model):
    vec_env = make_vec_env("Pendulum-v1", n_envs=3, seed=0)
    obs = vec_env.reset()
    actions, _ = model.predict(obs)
    assert actions.shape == (3, 1)
    vec_env.step(actions)


def test_predict_deterministic_is_repeatable(model):
    obs = np.stack([model.observation_space.sample() for _ in range(5)])
    first, _ = model.predict(obs, deterministic=True)
    for _ in range(3):
        np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], first)
    # Stochastic predictions differ from each other
    samples = [model.predict(obs, deterministic=False)[0] for _ in range(3)]
    assert not all(np.array_equal(samples[0], s) for s in samples[1:])
    # A single observation gives the action of the same row of a batch (up to matmul kernel rounding)
    single, _ = model.predict(obs[0], deterministic=True)
    assert single.shape == first[0].shape
    np.testing.assert_allclose(single, first[0], rtol=1e-5, atol=1e-6)


def test_predict_deterministic_is_tanh_of_mean(model):
    obs = np.stack([model.observation_space.sample() for _ in range(4)])
    action, _ = model.predict(obs, deterministic=True)
    with th.no_grad():
        mean, _, _ = model.actor.get_action_dist_params(th.as_tensor(obs))
    low, high = model.action_space.low, model.action_space.high
    expected = low + (th.tanh(mean).numpy() + 1.0) * 0.5 * (high - low)
    np.testing.assert_allclose(action, expected, rtol=1e-5, atol=1e-6)


def test_predict_action_rescaling():
    """Actions are rescaled from [-1, 1] to the Box bounds and never leave them."""
    env = IdentityEnvBox(low=-3, high=5, eps=0.5)
    assert isinstance(env.action_space, spaces.Box)
    model = tiny_sac(env, seed=0)
    obs = np.stack([env.observation_space.sample() for _ in range(100)])
    actions, _ = model.predict(obs)
    assert np.all(actions >= -3) and np.all(actions <= 5)
    # The policy is squashed: the full range is reachable, not only [-1, 1]
    with th.no_grad():
        model.actor.mu.bias.fill_(5.0)
    actions, _ = model.predict(obs, deterministic=True)
    assert np.all(actions > 4.9)


def test_predict_wrong_shape_raises(model):
    with pytest.raises(ValueError):
        model.predict(np.zeros((2, 5), dtype=np.float32))
