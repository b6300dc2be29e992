"""SB3's test_identity.py and test_deterministic.py adapted: SAC learns the identity, and seeding is exact."""

import numpy as np
import torch as th
from stable_baselines3.common.envs import IdentityEnvBox
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.noise import NormalActionNoise

from _sac_helpers import assert_state_dicts_equal, tiny_sac
from sb3_sac_ext import SAC


def test_identity_continuous():
    """
    Reward 1 per step when the action is within 0.5 of the observation, 100 steps per episode.
    A random policy scores about 45-50; SB3's own test asks 90 after 700 steps, we ask 85 after 500
    (smaller batch to keep the suite fast).
    """
    env = IdentityEnvBox(eps=0.5)
    model = SAC(
        "MlpPolicy",
        env,
        gamma=0.95,
        batch_size=64,
        learning_starts=100,
        policy_kwargs=dict(net_arch=[64, 64]),
        seed=0,
    )
    random_return, _ = evaluate_policy(model, env, n_eval_episodes=5, deterministic=False, warn=False)
    model.learn(500)
    mean_return, _ = evaluate_policy(model, env, n_eval_episodes=20, deterministic=True, warn=False)
    print(f"identity: untrained {random_return:.1f}, trained {mean_return:.1f}")
    assert mean_return >= 85, mean_return
    obs, _ = env.reset()
    assert np.shape(model.predict(obs)[0]) == np.shape(obs)


def _trained(seed: int, **kwargs) -> SAC:
    model = tiny_sac(seed=seed, **kwargs)
    model.learn(150)
    return model


def test_same_seed_same_weights():
    noise = dict(action_noise=NormalActionNoise(np.zeros(1), 0.1 * np.ones(1)))
    first, second = _trained(3, **noise), _trained(3, **noise)
    assert_state_dicts_equal(first.policy.state_dict(), second.policy.state_dict(), "policy")
    assert_state_dicts_equal(first.critic.optimizer.state_dict(), second.critic.optimizer.state_dict(), "critic.optimizer")
    assert th.equal(first.log_ent_coef, second.log_ent_coef)
    np.testing.assert_array_equal(first.replay_buffer.actions, second.replay_buffer.actions)
    # Seeded stochastic predictions are reproducible too
    obs = np.stack([first.observation_space.sample() for _ in range(4)])
    first.set_random_seed(7)
    first_actions, _ = first.predict(obs)
    second.set_random_seed(7)
    np.testing.assert_array_equal(first_actions, second.predict(obs)[0])


def test_different_seed_different_weights():
    first, second = _trained(3), _trained(4)
    assert not th.equal(first.actor.mu.weight, second.actor.mu.weight)
