"""A short memory task that a recurrent policy solves and a feed-forward one cannot."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_sac_ext import DiscreteSAC


class TMaze(gym.Env):
    """
    T-maze with a corridor of ``corridor`` steps: the first observation shows a cue (+1 or -1), the corridor shows
    nothing but a "walking" flag, the junction shows a "junction" flag. At the junction, action 0 (left) is right
    for cue +1 and action 1 (right) for cue -1: reward +1, else -1; the episode ends there. Memoryless policies
    score 0 on average.
    """

    observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)  # [cue, in corridor, at junction]
    action_space = spaces.Discrete(2)

    def __init__(self, corridor: int = 5):
        self.corridor = corridor

    def _obs(self) -> np.ndarray:
        if self.t == 0:
            return np.array([self.cue, 0.0, 0.0], np.float32)
        return np.array([0.0, float(self.t < self.corridor), float(self.t == self.corridor)], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.cue = float(self.np_random.choice([-1.0, 1.0]))
        return self._obs(), {}

    def step(self, action):
        if self.t < self.corridor:
            self.t += 1
            return self._obs(), 0.0, False, False, {}
        correct = (int(action) == 0) == (self.cue > 0)
        return self._obs(), 1.0 if correct else -1.0, True, False, {}


def _train(policy: str, seed: int, steps: int = 3000) -> float:
    policy_kwargs = dict(net_arch=[32, 32])
    if "Lstm" in policy:
        policy_kwargs.update(lstm_hidden_size=32, sequence_length=None)
    model = DiscreteSAC(
        policy, TMaze(), learning_rate=3e-3, buffer_size=10_000, learning_starts=300, batch_size=64, gamma=0.95,
        train_freq=2, policy_kwargs=policy_kwargs, seed=seed,
    )  # fmt: skip
    model.learn(steps)
    mean, _ = evaluate_policy(model, model.env, n_eval_episodes=100, deterministic=True)
    return mean


@pytest.mark.slow
def test_recurrent_policy_solves_tmaze_and_mlp_cannot():
    assert _train("MlpLstmPolicy", seed=0) >= 0.9
    assert _train("MlpPolicy", seed=0, steps=1500) <= 0.5
