"""Small envs for the persistence tests: full state via get_state()/set_state(), and envs that fail."""

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class PointEnv(gym.Env):
    """A point moved by the action; episodes of 30 steps; the whole state is (pos, t) + np_random."""

    def __init__(self, discrete: bool = False, nan_reward_at: int | None = None, raise_at: int | None = None):
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Discrete(4) if discrete else spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.discrete, self.nan_reward_at, self.raise_at = discrete, nan_reward_at, raise_at
        self.pos = np.zeros(2, np.float32)
        self.t = 0
        self.total_steps = 0

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        self.t = 0
        return self.pos.copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.total_steps += 1
        if self.raise_at is not None and self.total_steps >= self.raise_at:
            raise ValueError(f"boom at step {self.total_steps}")
        if self.discrete:
            action = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]][int(action)], np.float32)
        self.pos = np.clip(self.pos + 0.1 * np.asarray(action, np.float32), -1, 1).astype(np.float32)
        self.t += 1
        reward = -float(np.sum(self.pos**2))
        if self.nan_reward_at is not None and self.total_steps == self.nan_reward_at:
            reward = float("nan")
        return self.pos.copy(), reward, False, self.t >= 30, {}

    def get_state(self) -> dict:
        return {"pos": self.pos.copy(), "t": self.t, "total_steps": self.total_steps}

    def set_state(self, state: dict) -> None:
        self.pos, self.t, self.total_steps = np.asarray(state["pos"], np.float32), state["t"], state["total_steps"]


def make_raising_env() -> gym.Env:
    return PointEnv(raise_at=5)
