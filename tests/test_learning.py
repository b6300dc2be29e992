"""Learning checks on Pendulum-v1 (slow: run with ``pytest -m slow``)."""

import gymnasium as gym
import pytest
from gymnasium.wrappers import TransformReward
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_sac_ext import SAC

# RL Zoo's Pendulum settings (learning_rate 1e-3), the rest SB3's defaults
PENDULUM = dict(learning_rate=1e-3, seed=0, verbose=0)


@pytest.mark.slow
def test_pendulum_learns():
    model = SAC("MlpPolicy", "Pendulum-v1", **PENDULUM)
    model.learn(20_000)
    mean_return, std_return = evaluate_policy(model, Monitor(gym.make("Pendulum-v1")), n_eval_episodes=10, deterministic=True)
    print(f"\nSAC Pendulum-v1 20k steps: mean return {mean_return:.1f} +/- {std_return:.1f}")
    assert mean_return >= -250, mean_return


@pytest.mark.slow
def test_pendulum_costs_minimize_learns():
    """Same task given as costs (negated rewards): objective="minimize" must learn it."""
    cost_env = TransformReward(gym.make("Pendulum-v1"), lambda reward: -reward)
    model = SAC("MlpPolicy", cost_env, objective="minimize", **PENDULUM)
    model.learn(15_000)
    cost_eval_env = Monitor(TransformReward(gym.make("Pendulum-v1"), lambda reward: -reward))
    mean_cost, _ = evaluate_policy(model, cost_eval_env, n_eval_episodes=10)
    mean_return, std_return = evaluate_policy(model, Monitor(gym.make("Pendulum-v1")), n_eval_episodes=10, deterministic=True)
    print(
        f"\nSAC minimize, Pendulum-v1 costs 15k steps: mean cost {mean_cost:.1f}, "
        f"return {mean_return:.1f} +/- {std_return:.1f}"
    )
    assert mean_cost == pytest.approx(-mean_return, abs=100)  # same task, other seeds
    assert mean_return >= -300, mean_return
