"""SB3's test_run.py adapted to our SAC: every main option trains without error and really updates the networks."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

from _sac_helpers import TINY, clone_params, tiny_sac
from sb3_sac_ext import SAC

N_STEPS = 200


def assert_trained(model: SAC, actor_before: dict, critic_before: dict) -> None:
    """Both networks moved, and the number of updates matches the env steps after learning_starts."""
    actor_after, critic_after = model.actor.state_dict(), model.critic.state_dict()
    assert any(not th.equal(actor_before[k], actor_after[k]) for k in actor_before), "actor did not change"
    assert any(not th.equal(critic_before[k], critic_after[k]) for k in critic_before), "critic did not change"
    assert model._n_updates > 0
    for tensor in [*actor_after.values(), *critic_after.values()]:
        assert th.isfinite(tensor).all()


@pytest.mark.parametrize("action_noise_class", [None, NormalActionNoise, OrnsteinUhlenbeckActionNoise])
def test_run_action_noise(action_noise_class):
    action_noise = None
    if action_noise_class is not None:
        action_noise = action_noise_class(np.zeros(1), 0.1 * np.ones(1))
    model = tiny_sac(action_noise=action_noise, seed=0)
    actor_before, critic_before = clone_params(model.actor), clone_params(model.critic)
    model.learn(N_STEPS)
    assert model.num_timesteps == N_STEPS
    # train_freq=1, gradient_steps=1: one update per step once learning_starts is reached
    assert model._n_updates == N_STEPS - TINY["learning_starts"]
    assert_trained(model, actor_before, critic_before)


@pytest.mark.parametrize("ent_coef", ["auto", "auto_0.1", 0.01])
def test_run_ent_coef(ent_coef):
    model = tiny_sac(ent_coef=ent_coef, seed=0)
    actor_before, critic_before = clone_params(model.actor), clone_params(model.critic)
    model.learn(N_STEPS)
    assert_trained(model, actor_before, critic_before)
    assert (model.ent_coef_optimizer is not None) == isinstance(ent_coef, str)


@pytest.mark.parametrize("use_sde_at_warmup", [False, True])
def test_run_sde(use_sde_at_warmup):
    model = tiny_sac(
        use_sde=True,
        sde_sample_freq=4,
        use_sde_at_warmup=use_sde_at_warmup,
        policy_kwargs=dict(net_arch=[64, 64], log_std_init=-2),
        seed=0,
    )
    assert model.actor.use_sde
    actor_before, critic_before = clone_params(model.actor), clone_params(model.critic)
    model.learn(N_STEPS)
    assert_trained(model, actor_before, critic_before)
    # The gSDE exploration matrix is learned (log_std is a parameter of the actor)
    assert not th.equal(actor_before["log_std"], model.actor.log_std.detach())
    # Stochastic actions differ from the deterministic ones
    obs = model.env.reset()
    action_det, _ = model.predict(obs, deterministic=True)
    model.actor.reset_noise()
    actions = [model.predict(obs, deterministic=False)[0] for _ in range(3)]
    assert any(not np.allclose(action, action_det) for action in actions)


def test_run_multi_env():
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    model = tiny_sac(env, seed=0)
    actor_before, critic_before = clone_params(model.actor), clone_params(model.critic)
    model.learn(N_STEPS)
    assert model.n_envs == 2
    assert model.num_timesteps == N_STEPS
    assert model.replay_buffer.n_envs == 2
    # 100 vectorised steps, two transitions each
    assert model.replay_buffer.pos == N_STEPS // 2
    assert_trained(model, actor_before, critic_before)


@pytest.mark.parametrize("train_freq, gradient_steps", [(4, -1), ((1, "episode"), 8), ((8, "step"), 2)])
def test_run_train_freq(train_freq, gradient_steps):
    model = tiny_sac(train_freq=train_freq, gradient_steps=gradient_steps, seed=0)
    actor_before, critic_before = clone_params(model.actor), clone_params(model.critic)
    # Pendulum episodes last 200 steps: 400 steps give two episodes
    model.learn(400)
    assert_trained(model, actor_before, critic_before)


def test_run_n_steps():
    model = tiny_sac(n_steps=3, seed=0)
    assert isinstance(model.replay_buffer, NStepReplayBuffer)
    assert model.replay_buffer.n_steps == 3
    assert model.replay_buffer.gamma == model.gamma
    actor_before, critic_before = clone_params(model.actor), clone_params(model.critic)
    model.learn(N_STEPS)
    assert_trained(model, actor_before, critic_before)
    # Discounts of the n-step targets are gamma ** k, with k <= n_steps
    data = model.replay_buffer.sample(64)
    assert data.discounts is not None
    assert th.all(data.discounts >= model.gamma**3 - 1e-6) and th.all(data.discounts <= model.gamma + 1e-6)


def test_run_one_step_buffer_is_plain():
    model = tiny_sac(seed=0)
    assert type(model.replay_buffer) is ReplayBuffer


def test_run_optimize_memory_usage():
    model = tiny_sac(optimize_memory_usage=True, replay_buffer_kwargs=dict(handle_timeout_termination=False), seed=0)
    assert model.replay_buffer.optimize_memory_usage
    actor_before, critic_before = clone_params(model.actor), clone_params(model.critic)
    model.learn(N_STEPS)
    assert_trained(model, actor_before, critic_before)


def test_target_update_interval():
    # tau=1 copies the critic into the target at every target update
    model = tiny_sac(tau=1.0, target_update_interval=3, learning_starts=64, seed=0)
    model.learn(70)  # fills the buffer; some updates already done
    model.critic_target.load_state_dict(model.critic.state_dict())
    start = model._n_updates
    target_before = clone_params(model.critic_target)
    steps_until_update = (-start) % 3 or 3
    model.train(gradient_steps=steps_until_update - 1, batch_size=64)
    if steps_until_update > 1:
        # No target update yet: the target still holds the old critic
        assert all(th.equal(target_before[k], v) for k, v in model.critic_target.state_dict().items())
    model.train(gradient_steps=1, batch_size=64)
    # Target update with tau=1: the target is a copy of the critic
    for key, value in model.critic.state_dict().items():
        assert th.equal(value, model.critic_target.state_dict()[key])
    assert not all(th.equal(target_before[k], v) for k, v in model.critic_target.state_dict().items())


def test_critic_target_is_polyak_average():
    model = tiny_sac(tau=0.1, seed=0)
    model.learn(60)
    critic_before = clone_params(model.critic)
    target_before = clone_params(model.critic_target)
    model.train(gradient_steps=1, batch_size=64)
    for key, value in model.critic_target.state_dict().items():
        expected = th.lerp(target_before[key], model.critic.state_dict()[key], 0.1)
        assert th.allclose(value, expected, atol=1e-7), key
    # and the critic itself moved
    assert any(not th.equal(critic_before[k], v) for k, v in model.critic.state_dict().items())


def test_learn_progress_bar_and_reset_num_timesteps():
    model = tiny_sac(seed=0)
    model.learn(60, progress_bar=True)
    assert model.num_timesteps == 60
    model.learn(40, reset_num_timesteps=False)
    assert model.num_timesteps == 100
