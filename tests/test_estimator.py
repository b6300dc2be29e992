"""The scikit-learn-style surface: fit, score, get_params, set_params, sklearn.base.clone."""

import inspect
import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sklearn.base import clone
from stable_baselines3.common.envs import IdentityEnv
from stable_baselines3.common.monitor import Monitor

from _helpers import MODEL_LIST, TINY_SETTINGS, changed, clone_params, make_env, tiny_model
from sb3_sac_ext import SAC, DiscreteSAC
from sb3_sac_ext.common.errors import InvalidHyperparameterError
from sb3_sac_ext.common.schedules import LinearDecay

NEW_ARGS = ("qf_learning_rate", "ent_coef_learning_rate", "max_grad_norm", "policy_delay", "objective", "precision")


def make_model(model_class: type = SAC, **kwargs):
    env = Monitor(make_env(model_class, max_episode_steps=20))
    return tiny_model(model_class, env, seed=0, **{"learning_starts": 30, **kwargs})


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_fit_returns_self_and_trains(model_class):
    model = make_model(model_class)
    actor_before = clone_params(model.actor)
    assert model.fit(60) is model
    assert model.num_timesteps == 60
    assert changed(actor_before, model.actor)
    # learn() keyword arguments pass through
    assert model.fit(20, reset_num_timesteps=False) is model
    assert model.num_timesteps == 80


def test_score():
    model = make_model()
    score = model.score(n_eval_episodes=2)
    assert type(score) is float
    # Pendulum rewards are in [-16.3, 0]: 20-step episodes return in [-330, 0]
    assert -330 <= score <= 0
    other = model.score(env=Monitor(gym.make("Pendulum-v1", max_episode_steps=10)), n_eval_episodes=1)
    assert type(other) is float and -170 <= other <= 0
    assert type(model.score(env="Pendulum-v1", n_eval_episodes=1)) is float


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_get_params(model_class):
    schedule = LinearDecay(1e-3)
    model = make_model(model_class, learning_rate=schedule, policy_delay=2, max_grad_norm=5.0, objective="minimize")
    params = model.get_params()
    assert params["learning_rate"] is schedule
    assert params["policy_delay"] == 2 and params["max_grad_norm"] == 5.0 and params["objective"] == "minimize"
    assert params["batch_size"] == TINY_SETTINGS[model_class]["batch_size"] and params["policy"] == "MlpPolicy"
    for name in NEW_ARGS:
        assert name in params
    # Exactly the constructor's arguments, and never weights
    constructor = set(inspect.signature(model_class.__init__).parameters) - {"self", "_init_setup_model"}
    assert set(params) == constructor
    assert not any(isinstance(value, (th.Tensor, np.ndarray, th.nn.Module)) for value in params.values())
    assert model.get_params(deep=False) == params


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_set_params_hot(model_class):
    model = make_model(model_class)
    model.fit(40)
    weights = clone_params(model.actor)
    assert model.set_params(learning_rate=1e-2, qf_learning_rate="lin_1e-3", gamma=0.9, policy_delay=2) is model
    assert model.get_params()["learning_rate"] == 1e-2
    assert model.gamma == 0.9 and model.policy_delay == 2
    assert model.lr_schedules["actor"](0.3) == pytest.approx(1e-2)
    assert model.lr_schedules["critic"](0.5) == pytest.approx(5e-4)
    # Weights are kept, and the new rates are used by the next update
    for name, value in weights.items():
        assert th.equal(value, model.actor.state_dict()[name])
    model._current_progress_remaining = 0.5
    model.train(gradient_steps=1, batch_size=32)
    assert model.actor.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2)
    assert model.critic.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)


def test_set_params_rebuilds_for_structural_change():
    model = make_model()
    model.fit(40)
    assert model.set_params(policy_kwargs=dict(net_arch=[8])) is model
    assert model.num_timesteps == 0
    assert model.actor.mu.in_features == 8
    assert model.get_params()["policy_kwargs"] == dict(net_arch=[8])


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_set_params_invalid(model_class):
    model = make_model(model_class)
    with pytest.raises(ValueError, match="bogus"):
        model.set_params(bogus=1)
    with pytest.raises(InvalidHyperparameterError, match="gamma"):
        model.set_params(gamma=1.5)
    # A rejected change leaves the model as it was
    assert model.gamma == 0.99 and model.get_params()["gamma"] == 0.99


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_sklearn_clone(model_class):
    model = make_model(model_class, learning_rate=LinearDecay(1e-3), max_grad_norm=2.0)
    model.fit(40)
    copy = clone(model)
    assert type(copy) is model_class and copy is not model
    assert copy.num_timesteps == 0 and copy._n_updates == 0
    params, copy_params = model.get_params(), copy.get_params()
    assert params.keys() == copy_params.keys()
    for name, value in params.items():
        if name != "env":  # the env is deep-copied
            assert copy_params[name] == value, name
    # Untrained: different weights from the trained model
    assert changed(clone_params(model.actor), copy.actor)
    copy.fit(40)
    assert copy.num_timesteps == 40


def test_target_entropy_scale_params_and_clone():
    model = tiny_model(DiscreteSAC, IdentityEnv(3), target_entropy_scale=0.5, policy_delay=2)
    params = model.get_params()
    assert params["target_entropy_scale"] == 0.5 and params["policy_delay"] == 2
    copy = clone(model)
    assert isinstance(copy, DiscreteSAC) and copy is not model
    assert copy.get_params()["target_entropy_scale"] == 0.5
    assert copy.target_entropy == pytest.approx(0.5 * math.log(3))
    model.set_params(gamma=0.9, policy_delay=1)
    assert model.gamma == 0.9 and model.policy_delay == 1
