"""SB3's test_spaces.py adapted: Box observations of various shapes and action dimensions."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from _sac_helpers import tiny_sac


class BoxEnv(gym.Env):
    """Short episodes with Box observations of any shape; reward is -|action| so it can be learned."""

    def __init__(self, obs_shape: tuple[int, ...], action_dim: int = 2, low: float = -1.0, high: float = 1.0):
        self.observation_space = spaces.Box(-1, 1, shape=obs_shape, dtype=np.float32)
        self.action_space = spaces.Box(low, high, shape=(action_dim,), dtype=np.float32)
        self._steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._steps = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        assert self.action_space.contains(np.asarray(action, dtype=np.float32)), action
        self._steps += 1
        reward = -float(np.abs(action).sum())
        return self.observation_space.sample(), reward, False, self._steps >= 20, {}


@pytest.mark.parametrize("obs_shape", [(1,), (5,), (3, 4), (2, 3, 2)])
def test_box_observation_shapes(obs_shape):
    env = BoxEnv(obs_shape)
    model = tiny_sac(env, learning_starts=30, seed=0)
    model.learn(80)
    assert model.replay_buffer.observations.shape[2:] == obs_shape
    obs = env.observation_space.sample()
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (2,)
    actions, _ = model.predict(np.stack([obs, obs]), deterministic=True)
    assert actions.shape == (2, 2)
    np.testing.assert_allclose(actions[0], actions[1], rtol=1e-5, atol=1e-6)  # rows of one matmul may differ by an ulp


@pytest.mark.parametrize("action_dim, low, high", [(1, -2.0, 2.0), (4, -1.0, 1.0), (3, 0.0, 10.0)])
def test_box_action_spaces(action_dim, low, high):
    env = BoxEnv((3,), action_dim=action_dim, low=low, high=high)
    model = tiny_sac(env, learning_starts=30, seed=0)
    assert model.target_entropy == -float(action_dim)
    # The env asserts that every action it receives is in its action space
    model.learn(80)
    actions, _ = model.predict(np.stack([env.observation_space.sample() for _ in range(10)]))
    assert actions.shape == (10, action_dim)
    assert np.all(actions >= low) and np.all(actions <= high)


def test_float64_observations():
    env = BoxEnv((3,))
    env.observation_space = spaces.Box(-1, 1, shape=(3,), dtype=np.float64)
    model = tiny_sac(env, learning_starts=30, seed=0)
    model.learn(60)
    action, _ = model.predict(env.observation_space.sample())
    assert action.shape == (2,)
