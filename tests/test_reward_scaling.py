"""SimbaV2's reward scaling (sb3_sac_ext/common/reward_scaling.py): statistics, the scale, the training loop, files."""

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.torch_layers import FlattenExtractor

from sb3_sac_ext import SAC, DiscreteSAC
from sb3_sac_ext.common.errors import InvalidHyperparameterError
from sb3_sac_ext.common.network_options import check_distributed_statistics
from sb3_sac_ext.common.reward_scaling import RewardScaler

SMALL = dict(net_arch=dict(pi=[16], qf=[16]))


def test_statistics_and_scale_against_a_hand_computed_case() -> None:
    gamma = 0.9
    scaler = RewardScaler(g_max=5.0)
    assert scaler.scale(gamma) == 1.0  # nothing seen yet
    rewards = [np.array([1.0, -2.0]), np.array([3.0, 0.5]), np.array([-1.0, 4.0])]
    dones = [np.array([False, False]), np.array([True, False]), np.array([False, False])]
    # The discounted returns by hand: env 0 restarts after its episode ended at the second step
    returns = [1.0, -2.0, 0.9 * 1.0 + 3.0, 0.9 * -2.0 + 0.5, -1.0, 0.9 * (0.9 * -2.0 + 0.5) + 4.0]
    for reward, done in zip(rewards, dones, strict=True):
        scaler.update(reward, done, gamma)
    assert scaler.return_rms.count == 6
    assert float(scaler.return_rms.mean) == pytest.approx(np.mean(returns), rel=1e-12)
    assert float(scaler.return_rms.var) == pytest.approx(np.var(returns), rel=1e-12)
    assert scaler.reward_abs_max == 4.0
    # sigma = max(std(G), max|r| / ((1 - gamma) * g_max)) = max(2.09..., 4 / 0.5 = 8)
    assert scaler.scale(gamma) == pytest.approx(1 / 8.0)
    # Without discounting only the variance bounds sigma; a large g_max leaves the standard deviation
    assert scaler.scale(1.0) == pytest.approx(1 / np.sqrt(np.var(returns) + 1e-8))
    assert RewardScaler(g_max=1e6).scale(gamma) == 1.0
    wide = RewardScaler(g_max=1e6)
    for reward, done in zip(rewards, dones, strict=True):
        wide.update(reward, done, gamma)
    assert wide.scale(gamma) == pytest.approx(1 / np.std(returns))


class ConstantReward(gym.Wrapper):
    """Pendulum whose every reward is -2: every sampled batch has the same rewards."""

    def step(self, action: Any) -> Any:
        obs, _, terminated, truncated, info = self.env.step(action)
        return obs, -2.0, terminated, truncated, info


def test_the_critics_targets_see_the_scaled_rewards_and_the_statistics_are_saved(tmp_path: Any) -> None:
    env = ConstantReward(gym.make("Pendulum-v1"))
    model = SAC("SimbaV2Policy", env, learning_starts=100, batch_size=32, compile=False, policy_kwargs=SMALL, seed=0)
    seen = []
    critic_target = model._critic_target

    def spy(batch: Any, ent_coef: Any) -> Any:
        seen.append(batch.rewards.clone())
        return critic_target(batch, ent_coef)

    model._critic_target = spy  # type: ignore[method-assign]
    model.learn(150)
    scaler = model.policy.reward_scaler
    assert scaler.return_rms.count == 150 and scaler.reward_abs_max == 2.0
    # The scale of the last train() call, from the 150 env steps before it (no episode ended: 200 steps each)
    before = RewardScaler()
    for _ in range(150):
        before.update(np.array([-2.0]), np.array([False]), model.gamma)
    expected = -2.0 * before.scale(model.gamma)
    assert expected > -2.0 / (2.0 / (0.01 * 5.0))  # at most 1 / 40 of the reward (the max|r| bound)
    assert th.allclose(seen[-1], th.full_like(seen[-1], expected), rtol=1e-6)
    assert model.logger.name_to_value["train/reward_scale"] == pytest.approx(before.scale(model.gamma))

    del model._critic_target  # the spy is not saved
    model.save(tmp_path / "model.zip")
    loaded = SAC.load(tmp_path / "model.zip")
    # count, mean, var of G and max|r|, exactly
    assert th.equal(loaded.policy.reward_scaler.get_extra_state(), scaler.get_extra_state())
    assert loaded.policy.reward_scaler.scale(model.gamma) == scaler.scale(model.gamma)


def test_options_are_saved_and_refused_in_data_parallel_training(tmp_path: Any) -> None:
    model = DiscreteSAC("SimbaV2Policy", "CartPole-v1", policy_kwargs=dict(normalize_reward=False, **SMALL))
    assert model.policy.reward_scaler is None
    model.save(tmp_path / "off.zip")
    assert DiscreteSAC.load(tmp_path / "off.zip").policy.reward_scaler is None
    other = SAC("SimbaV2Policy", "Pendulum-v1", policy_kwargs=dict(normalized_g_max=10, **SMALL))
    other.save(tmp_path / "ten.zip")
    assert SAC.load(tmp_path / "ten.zip").policy.reward_scaler.g_max == 10.0
    # Bad values: tests/test_errors.py (run again under python -O by the README's test command)
    # Each rank would scale its rewards by its own statistics: refused, naming the option that turns it off
    flat = SAC("SimbaV2Policy", "Pendulum-v1", policy_kwargs=dict(features_extractor_class=FlattenExtractor, **SMALL))
    flat._distributed = object()  # type: ignore[assignment]
    with pytest.raises(InvalidHyperparameterError, match="normalize_reward=False"):
        check_distributed_statistics(flat)
