"""SB3's test_run.py for our algorithms: every main option trains without error and really updates the networks."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

from _helpers import MODEL_LIST, TINY, clone_params, env_id, make_env, tiny_model, tiny_sac
from sb3_sac_ext import DiscreteSAC

N_STEPS = 200


def assert_trained(model, actor_before: dict, critic_before: dict) -> None:
    """Both networks moved, updates were made, and the weights and pending train/ statistics are finite."""
    actor_after, critic_after = model.actor.state_dict(), model.critic.state_dict()
    assert any(not th.equal(actor_before[k], actor_after[k]) for k in actor_before), "actor did not change"
    assert any(not th.equal(critic_before[k], critic_after[k]) for k in critic_before), "critic did not change"
    assert model._n_updates > 0
    for tensor in [*actor_after.values(), *critic_after.values()]:
        assert th.isfinite(tensor).all()
    assert all(bool(th.isfinite(value)) for value in model._train_logs.values())


def learn_and_check(model, total_timesteps: int = N_STEPS, **learn_kwargs):
    actor_before, critic_before = clone_params(model.actor), clone_params(model.critic)
    model.learn(total_timesteps, **learn_kwargs)
    assert_trained(model, actor_before, critic_before)
    return model


@pytest.mark.parametrize("action_noise_class", [None, NormalActionNoise, OrnsteinUhlenbeckActionNoise])
def test_run_action_noise(action_noise_class):
    action_noise = None
    if action_noise_class is not None:
        action_noise = action_noise_class(np.zeros(1), 0.1 * np.ones(1))
    model = learn_and_check(tiny_sac(action_noise=action_noise, seed=0))
    assert model.num_timesteps == N_STEPS
    # train_freq=1, gradient_steps=1: one update per step once learning_starts is reached
    assert model._n_updates == N_STEPS - TINY["learning_starts"]


@pytest.mark.parametrize("model_class", MODEL_LIST)
@pytest.mark.parametrize("ent_coef", ["auto", "auto_0.1", 0.01])
def test_run_ent_coef(model_class, ent_coef):
    # No log dump: it would flush the pending train/ statistics that are checked
    model = learn_and_check(tiny_model(model_class, ent_coef=ent_coef, seed=0), log_interval=None)
    assert (model.ent_coef_optimizer is not None) == isinstance(ent_coef, str)
    assert set(model._train_logs) >= {"train/critic_loss", "train/actor_loss", "train/ent_coef"}


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
    log_std_before = model.actor.log_std.detach().clone()
    learn_and_check(model)
    # The gSDE exploration matrix is learned (log_std is a parameter of the actor)
    assert not th.equal(log_std_before, model.actor.log_std.detach())
    # Stochastic actions differ from the deterministic ones
    obs = model.env.reset()
    action_det, _ = model.predict(obs, deterministic=True)
    model.actor.reset_noise()
    actions = [model.predict(obs, deterministic=False)[0] for _ in range(3)]
    assert any(not np.allclose(action, action_det) for action in actions)


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_run_multi_env_and_logger_keys(model_class):
    env = make_vec_env(env_id(model_class), n_envs=2, seed=0)
    model = learn_and_check(tiny_model(model_class, env, max_grad_norm=0.5, seed=0), log_interval=1)
    assert model.n_envs == 2
    assert model.num_timesteps == N_STEPS
    assert model.replay_buffer.n_envs == 2
    # 100 vectorised steps, two transitions each
    assert model.replay_buffer.pos == N_STEPS // 2
    # Pending statistics are flushed at the next dump; check both places
    keys = set(model.logger.name_to_value) | set(model._train_logs)
    for key in ("train/critic_loss", "train/actor_loss", "train/ent_coef", "train/ent_coef_loss", "train/critic_grad_norm"):
        assert key in keys
    assert "train/critic_learning_rate" in keys


@pytest.mark.parametrize("model_class", MODEL_LIST)
@pytest.mark.parametrize("train_freq, gradient_steps", [(4, -1), ((1, "episode"), 8), ((1, "episode"), -1), ((8, "step"), 2)])
def test_run_train_freq(model_class, train_freq, gradient_steps):
    # Episodes of at most 50 steps: several episodes within the budget
    model = tiny_model(
        model_class, make_env(model_class, max_episode_steps=50), train_freq=train_freq, gradient_steps=gradient_steps, seed=0
    )
    learn_and_check(model, log_interval=None)
    assert model.num_timesteps >= N_STEPS  # an episode-based train_freq finishes the episode


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_run_n_steps(model_class):
    model = tiny_model(model_class, n_steps=3, seed=0)
    assert isinstance(model.replay_buffer, NStepReplayBuffer)
    assert model.replay_buffer.n_steps == 3
    assert model.replay_buffer.gamma == model.gamma
    learn_and_check(model)
    # Discounts of the n-step targets are gamma ** k, with k <= n_steps
    data = model.replay_buffer.sample(64)
    assert data.discounts is not None
    assert th.all(data.discounts >= model.gamma**3 - 1e-6) and th.all(data.discounts <= model.gamma + 1e-6)


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_run_one_step_buffer_is_plain(model_class):
    model = tiny_model(model_class, seed=0)
    assert type(model.replay_buffer) is ReplayBuffer


def test_run_optimize_memory_usage():
    model = tiny_sac(optimize_memory_usage=True, replay_buffer_kwargs=dict(handle_timeout_termination=False), seed=0)
    assert model.replay_buffer.optimize_memory_usage
    learn_and_check(model)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(ent_coef="auto_0.1", target_entropy=0.2),
        dict(policy_delay=2, max_grad_norm=1.0),
        dict(tau=1.0, target_update_interval=10),
        dict(policy_kwargs=dict(net_arch=dict(pi=[16], qf=[32]), n_critics=3, share_features_extractor=True)),
        dict(learning_rate="lin_1e-3", qf_learning_rate=1e-3, ent_coef_learning_rate=1e-4),
        dict(precision="bf16"),
    ],
    ids=["target_entropy", "policy_delay_clipping", "hard_target", "policy_kwargs", "learning_rates", "bf16"],
)
def test_run_discrete_options(kwargs):
    # SAC's counterparts of these options have their own tests in test_features.py and test_policies.py
    model = learn_and_check(tiny_model(DiscreteSAC, **kwargs), 150, log_interval=None)
    assert model.num_timesteps == 150
    assert set(model._train_logs) >= {"train/critic_loss", "train/actor_loss", "train/ent_coef"}


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_learn_progress_bar_and_reset_num_timesteps(model_class):
    model = tiny_model(model_class, seed=0)
    model.learn(60, progress_bar=True)
    assert model.num_timesteps == 60
    model.learn(40, reset_num_timesteps=False)
    assert model.num_timesteps == 100
