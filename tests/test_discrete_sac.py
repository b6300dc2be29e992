"""DiscreteSAC: SB3's run / save-load / predict / spaces / determinism / identity tests, adapted (tiny budgets)."""

import math
import subprocess
import sys
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv, IdentityEnv, IdentityEnvBox, SimpleMultiObsEnv
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_sac_ext import DiscreteSAC
from sb3_sac_ext.common.errors import UnsupportedSpaceError
from sb3_sac_ext.discrete_sac.policies import CategoricalActor, DiscreteSACPolicy, EnsembleDiscreteCritic

TINY: dict[str, Any] = dict(learning_starts=50, buffer_size=1000, batch_size=32, policy_kwargs=dict(net_arch=[32, 32]))


def tiny_model(env: Any = "CartPole-v1", **kwargs: Any) -> DiscreteSAC:
    policy = kwargs.pop("policy", "MlpPolicy")
    return DiscreteSAC(policy, env, **{**TINY, **kwargs})


def assert_nested_equal(expected: Any, actual: Any, where: str = "") -> None:
    """Exact comparison of (nested) state dicts: tensors with torch.equal, the rest with ==."""
    if isinstance(expected, dict):
        assert set(expected) == set(actual), where
        for key in expected:
            assert_nested_equal(expected[key], actual[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(expected) == len(actual), where
        for i, (a, b) in enumerate(zip(expected, actual, strict=True)):
            assert_nested_equal(a, b, f"{where}[{i}]")
    elif isinstance(expected, th.Tensor):
        assert th.equal(expected, actual), where
    else:
        assert expected == actual, where


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        dict(ent_coef=0.05),
        dict(ent_coef="auto_0.1", target_entropy=0.2),
        dict(policy_delay=2, max_grad_norm=1.0),
        dict(objective="minimize"),
        dict(tau=1.0, target_update_interval=10),
        dict(train_freq=(1, "episode"), gradient_steps=-1),
        dict(n_steps=3),
        dict(policy_kwargs=dict(net_arch=dict(pi=[16], qf=[32]), n_critics=3, share_features_extractor=True)),
        dict(learning_rate="lin_1e-3", qf_learning_rate=1e-3, ent_coef_learning_rate=1e-4),
        dict(precision="bf16"),
    ],
)
def test_run(kwargs):
    # No log dump (it would flush the pending train/ statistics that are checked below)
    model = tiny_model(**kwargs).learn(150, log_interval=None)
    assert model.num_timesteps >= 150  # episode-based train_freq finishes the episode
    assert set(model._train_logs) >= {"train/critic_loss", "train/actor_loss", "train/ent_coef"}
    assert all(bool(th.isfinite(value)) for value in model._train_logs.values())


def test_run_multi_env_and_logger_keys(tmp_path):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = tiny_model(env, verbose=0, tensorboard_log=None, max_grad_norm=0.5)
    model.learn(200, log_interval=1)
    logged = model.logger.name_to_value
    assert model.num_timesteps == 200
    # Pending statistics are flushed at the next dump; check both places
    keys = set(logged) | set(model._train_logs)
    for key in ("train/critic_loss", "train/actor_loss", "train/ent_coef", "train/ent_coef_loss", "train/critic_grad_norm"):
        assert key in keys
    assert "train/critic_learning_rate" in keys


def test_predict():
    model = tiny_model(IdentityEnv(5)).learn(60)
    obs, _ = model.env.envs[0].reset()
    action, state = model.predict(obs, deterministic=True)
    assert state is None
    assert action.shape == () and np.issubdtype(action.dtype, np.integer)
    assert model.action_space.contains(int(action))
    vec_obs = model.env.reset()
    actions, _ = model.predict(vec_obs, deterministic=False)
    assert actions.shape == (1,) and np.issubdtype(actions.dtype, np.integer)
    # Deterministic prediction is the argmax of the logits
    batch = np.arange(5)
    actions, _ = model.predict(batch, deterministic=True)
    obs_tensor, _ = model.policy.obs_to_tensor(batch)
    with th.no_grad():
        expected = model.actor.logits(obs_tensor).argmax(dim=-1).numpy()
    np.testing.assert_array_equal(actions, expected)
    # Stochastic predictions follow the probabilities (a peaked policy is sampled greedily almost always)
    with th.no_grad():
        model.actor.logits_net[-1].bias.copy_(th.tensor([0.0, 0.0, 50.0, 0.0, 0.0]))
        model.actor.logits_net[-1].weight.zero_()
    actions, _ = model.predict(np.zeros(100, dtype=np.int64), deterministic=False)
    assert (actions == 2).all()


@pytest.mark.parametrize(
    "action_space",
    [spaces.Box(-1, 1, shape=(2,)), spaces.MultiDiscrete([2, 3]), spaces.MultiBinary(3)],
)
def test_unsupported_action_spaces(action_space):
    env = IdentityEnv(space=action_space) if not isinstance(action_space, spaces.Box) else IdentityEnvBox()
    with pytest.raises(UnsupportedSpaceError, match=r"gymnasium\.spaces\.Discrete") as error:
        DiscreteSAC("MlpPolicy", env, buffer_size=64, batch_size=8)
    assert isinstance(error.value, ValueError)


def test_discrete_action_space_with_offset_is_rejected():
    env = IdentityEnv(space=spaces.Discrete(3, start=1))
    with pytest.raises(UnsupportedSpaceError, match="starting at 0"):
        DiscreteSAC("MlpPolicy", env, buffer_size=64, batch_size=8)


def test_unsupported_action_space_under_python_O():
    code = (
        "from sb3_sac_ext import DiscreteSAC\n"
        "from sb3_sac_ext.common.errors import UnsupportedSpaceError\n"
        "try:\n"
        "    DiscreteSAC('MlpPolicy', 'Pendulum-v1', buffer_size=64, batch_size=8)\n"
        "except UnsupportedSpaceError as error:\n"
        "    print('raised', error)\n"
    )
    result = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=120)
    assert "raised" in result.stdout and "Discrete" in result.stdout, result.stderr


def test_save_load_exact(tmp_path):
    model = tiny_model(IdentityEnv(4), learning_rate="lin_1e-3", qf_learning_rate=5e-4, seed=1).learn(200)
    path = tmp_path / "dsac.zip"
    model.save(path)
    loaded = DiscreteSAC.load(path, env=IdentityEnv(4))
    assert isinstance(loaded.policy, DiscreteSACPolicy)
    assert loaded.num_timesteps == model.num_timesteps == 200
    assert loaded._n_updates == model._n_updates
    assert_nested_equal(model.policy.state_dict(), loaded.policy.state_dict(), "policy")
    for name, optimizer in model.optimizers.items():
        assert_nested_equal(optimizer.state_dict(), loaded.optimizers[name].state_dict(), name)
    assert set(loaded.optimizers) == {"actor", "critic", "ent_coef"}
    assert th.equal(model.log_ent_coef, loaded.log_ent_coef)
    assert loaded.log_ent_coef is loaded.temperature.log_ent_coef
    assert loaded.target_entropy == model.target_entropy
    for name, schedule in model.lr_schedules.items():
        assert loaded.lr_schedules[name](0.3) == schedule(0.3)
    # Aliases point to the loaded policy's networks
    assert loaded.actor is loaded.policy.actor and loaded.critic_target is loaded.policy.critic_target
    obs = np.arange(4)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    # Training goes on after loading
    loaded.learn(50, reset_num_timesteps=False)
    assert loaded.num_timesteps == 250


def test_save_load_fixed_ent_coef(tmp_path):
    model = tiny_model(ent_coef=0.2).learn(60)
    model.save(tmp_path / "fixed.zip")
    loaded = DiscreteSAC.load(tmp_path / "fixed.zip")
    assert loaded.ent_coef_optimizer is None
    assert float(loaded.temperature.value) == pytest.approx(0.2)


def test_deterministic_training():
    def weights(seed: int) -> dict[str, th.Tensor]:
        model = tiny_model(seed=seed).learn(200)
        return {k: v.clone() for k, v in model.policy.state_dict().items()}

    first, second = weights(3), weights(3)
    assert_nested_equal(first, second)
    other = weights(4)
    assert any(not th.equal(first[k], other[k]) for k in first)


def test_identity():
    # SB3's test_identity for discrete actions: reach 90% of the maximum reward on IdentityEnv(10)
    env = IdentityEnv(10)
    model = DiscreteSAC(
        "MlpPolicy",
        env,
        learning_rate=3e-3,
        learning_starts=100,
        buffer_size=1000,
        batch_size=64,
        gamma=0.5,
        target_entropy_scale=0.3,
        policy_kwargs=dict(net_arch=[32]),
        seed=0,
    )
    model.learn(1000)
    evaluate_policy(model, env, n_eval_episodes=10, reward_threshold=90, warn=False)


def test_cnn():
    env = FakeImageEnv(screen_height=40, screen_width=40, n_channels=2, discrete=True)
    model = DiscreteSAC(
        "CnnPolicy",
        env,
        learning_starts=20,
        buffer_size=50,
        batch_size=8,
        policy_kwargs=dict(net_arch=[16], features_extractor_kwargs=dict(features_dim=32)),
    )
    model.learn(40)
    # The critic has its own NatureCNN (share_features_extractor=False by default), the target a copy of it
    assert model.critic.features_extractor is not model.actor.features_extractor
    # Observations as the (transposed, channel-first) training env gives them
    actions, _ = model.predict(model.env.reset(), deterministic=True)
    assert actions.shape == (1,) and env.action_space.contains(int(actions[0]))


def test_frame_stack_atari_like():
    from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

    env = VecFrameStack(DummyVecEnv([lambda: FakeImageEnv(screen_height=40, screen_width=40, discrete=True)]), n_stack=4)
    model = DiscreteSAC(
        "CnnPolicy", env, learning_starts=20, buffer_size=50, batch_size=8, tau=1.0, target_update_interval=4,
        policy_kwargs=dict(net_arch=[16], features_extractor_kwargs=dict(features_dim=32)),
    )  # fmt: skip
    model.learn(40)
    assert model.observation_space.shape == (4, 40, 40)  # transposed to channel first by SB3


def test_dict_obs():
    env = SimpleMultiObsEnv(random_start=False)
    model = DiscreteSAC("MultiInputPolicy", env, **{**TINY, "learning_starts": 30})
    model.learn(60)
    actions, _ = model.predict(model.env.reset(), deterministic=True)
    assert actions.shape == (1,) and env.action_space.contains(int(actions[0]))


def test_callbacks(tmp_path):
    eval_env = Monitor(gym.make("CartPole-v1"))
    checkpoint = CheckpointCallback(save_freq=50, save_path=str(tmp_path / "ckpt"), name_prefix="dsac")
    evaluation = EvalCallback(eval_env, eval_freq=50, n_eval_episodes=2, best_model_save_path=str(tmp_path / "best"))
    tiny_model().learn(100, callback=[checkpoint, evaluation])
    assert (tmp_path / "ckpt" / "dsac_100_steps.zip").exists()
    assert (tmp_path / "best" / "best_model.zip").exists()
    DiscreteSAC.load(tmp_path / "best" / "best_model.zip")


def _fresh_model(**kwargs: Any) -> DiscreteSAC:
    model = tiny_model(IdentityEnv(3), learning_starts=64, buffer_size=64, batch_size=16, seed=0, **kwargs)
    model.learn(64)  # fills the buffer, no gradient step yet
    assert model._n_updates == 0
    return model


def test_hard_target_updates():
    model = _fresh_model(tau=1.0, target_update_interval=3)

    def target_equals_critic() -> bool:
        return all(th.equal(a, b) for a, b in zip(model.critic.parameters(), model.critic_target.parameters(), strict=True))

    assert target_equals_critic()
    model.train(gradient_steps=2, batch_size=16)
    assert not target_equals_critic()
    # The interval is counted over the whole run, across train() calls: the 3rd update copies the weights
    model.train(gradient_steps=1, batch_size=16)
    assert target_equals_critic()
    model.train(gradient_steps=1, batch_size=16)
    assert not target_equals_critic()


def test_soft_target_update_is_polyak():
    model = _fresh_model(tau=0.25)
    target_before = [p.clone() for p in model.critic_target.parameters()]
    model.train(gradient_steps=1, batch_size=16)
    for before, online, target in zip(target_before, model.critic.parameters(), model.critic_target.parameters(), strict=True):
        th.testing.assert_close(target, 0.75 * before + 0.25 * online)


def test_policy_delay():
    model = _fresh_model(policy_delay=2)
    steps: list[str] = []
    original = model._optimizer_steps

    def counting(pairs: list[tuple[str, th.Tensor]]) -> None:
        steps.extend(name for name, _ in pairs)
        original(pairs)

    model._optimizer_steps = counting  # type: ignore[method-assign]
    model.train(gradient_steps=1, batch_size=16)
    model.train(gradient_steps=3, batch_size=16)
    assert steps == ["critic", "actor", "ent_coef", "critic", "critic", "actor", "ent_coef", "critic"]


def test_max_grad_norm_clips():
    model = _fresh_model(max_grad_norm=1e-3, learning_rate=1.0)
    before = [p.clone() for p in model.actor.parameters()]
    model.train(gradient_steps=1, batch_size=16)
    # Adam normalises the step, but the logged norm is the one before clipping
    assert "train/actor_grad_norm" in model._train_logs and "train/critic_grad_norm" in model._train_logs
    assert any(not th.equal(a, b) for a, b in zip(before, model.actor.parameters(), strict=True))


def test_minimize_learns_to_avoid_costs():
    # Costs = rewards of IdentityEnv: minimising them means never matching the state
    env = IdentityEnv(4)
    model = DiscreteSAC(
        "MlpPolicy", env, objective="minimize", learning_rate=3e-3, learning_starts=100, buffer_size=1000,
        batch_size=64, gamma=0.5, target_entropy_scale=0.3, policy_kwargs=dict(net_arch=[32]), seed=0,
    )  # fmt: skip
    model.learn(600)
    mean_cost, _ = evaluate_policy(model, env, n_eval_episodes=5, warn=False)
    assert mean_cost <= 10


def test_sklearn_clone_and_params():
    from sklearn.base import clone

    model = tiny_model(IdentityEnv(3), target_entropy_scale=0.5, policy_delay=2)
    params = model.get_params()
    assert params["target_entropy_scale"] == 0.5 and params["policy_delay"] == 2
    copy = clone(model)
    assert isinstance(copy, DiscreteSAC) and copy is not model
    assert copy.get_params()["target_entropy_scale"] == 0.5
    assert copy.target_entropy == pytest.approx(0.5 * math.log(3))
    model.set_params(gamma=0.9, policy_delay=1)
    assert model.gamma == 0.9 and model.policy_delay == 1


def test_policy_classes():
    model = tiny_model(IdentityEnv(3))
    assert isinstance(model.actor, CategoricalActor)
    assert isinstance(model.critic, EnsembleDiscreteCritic)
    q_KBA = model.critic.q_values(model.policy.obs_to_tensor(np.arange(3))[0])
    assert q_KBA.shape == (2, 3, 3)
    # One optimizer per network; the target is never optimised
    assert not any(p.requires_grad for p in model.critic_target.parameters())
