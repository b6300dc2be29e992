"""SB3's test_predict.py for our algorithms: shapes, vectorised and single observations, determinism of predictions."""

import functools

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnvBox

from _helpers import MODEL_LIST, env_id, make_env, sample_observations, tiny_model, tiny_sac
from sb3_sac_ext import SAC, DiscreteSAC


@functools.cache
def trained(model_class: type):
    """One briefly trained model per algorithm, shared by the tests of this module."""
    model = tiny_model(model_class, seed=0)
    model.learn(60)
    return model


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_predict_single_and_batch_shapes(model_class):
    model = trained(model_class)
    env = make_env(model_class)
    obs, _ = env.reset(seed=0)
    action, state = model.predict(obs)
    assert state is None
    assert action.shape == env.action_space.shape
    if model_class is DiscreteSAC:
        assert np.issubdtype(action.dtype, np.integer)
        assert env.action_space.contains(int(action))
    else:
        assert action.shape == (1,)
        assert env.action_space.contains(action.astype(np.float32))

    batch = np.stack([env.observation_space.sample() for _ in range(7)])
    actions, _ = model.predict(batch)
    assert actions.shape == (7, *env.action_space.shape)
    assert all(env.action_space.contains(a.astype(env.action_space.dtype)) for a in actions)


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_predict_vec_env(model_class):
    vec_env = make_vec_env(env_id(model_class), n_envs=3, seed=0)
    obs = vec_env.reset()
    for deterministic in (True, False):
        actions, _ = trained(model_class).predict(obs, deterministic=deterministic)
        assert actions.shape == (3, *vec_env.action_space.shape)
        assert np.issubdtype(actions.dtype, np.integer) == (model_class is DiscreteSAC)
        vec_env.step(actions)


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_predict_deterministic_is_repeatable(model_class):
    model = trained(model_class)
    # Enough observations that stochastic draws of a two-action policy cannot all coincide by chance
    obs = sample_observations(model, 20)
    first, _ = model.predict(obs, deterministic=True)
    for _ in range(3):
        np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], first)
    # Stochastic predictions differ from each other
    samples = [model.predict(obs, deterministic=False)[0] for _ in range(3)]
    assert not all(np.array_equal(samples[0], s) for s in samples[1:])
    # A single observation gives the action of the same row of a batch (up to matmul kernel rounding)
    single, _ = model.predict(obs[0], deterministic=True)
    assert single.shape == first[0].shape
    np.testing.assert_allclose(single, first[0], rtol=1e-5, atol=1e-6)


def test_predict_deterministic_is_tanh_of_mean():
    model = trained(SAC)
    obs = sample_observations(model, 4)
    action, _ = model.predict(obs, deterministic=True)
    with th.no_grad():
        mean, _, _ = model.actor.get_action_dist_params(th.as_tensor(obs))
    low, high = model.action_space.low, model.action_space.high
    expected = low + (th.tanh(mean).numpy() + 1.0) * 0.5 * (high - low)
    np.testing.assert_allclose(action, expected, rtol=1e-5, atol=1e-6)


def test_predict_deterministic_is_argmax_of_logits():
    model = trained(DiscreteSAC)
    obs = sample_observations(model, 8)
    actions, _ = model.predict(obs, deterministic=True)
    obs_tensor, _ = model.policy.obs_to_tensor(obs)
    with th.no_grad():
        expected = model.actor.logits(obs_tensor).argmax(dim=-1).numpy()
    np.testing.assert_array_equal(actions, expected)


def test_predict_stochastic_follows_probabilities():
    # A peaked policy is sampled greedily almost always (own model: the weights are overwritten)
    model = tiny_model(DiscreteSAC, seed=0)
    with th.no_grad():
        model.actor.logits_net[-1].bias.copy_(th.tensor([0.0, 50.0]))
        model.actor.logits_net[-1].weight.zero_()
    actions, _ = model.predict(sample_observations(model, 100), deterministic=False)
    assert (actions == 1).all()


def test_predict_action_rescaling():
    """Actions are rescaled from [-1, 1] to the Box bounds and never leave them."""
    env = IdentityEnvBox(low=-3, high=5, eps=0.5)
    assert isinstance(env.action_space, spaces.Box)
    model = tiny_sac(env, seed=0)
    obs = np.stack([env.observation_space.sample() for _ in range(100)])
    actions, _ = model.predict(obs)
    assert np.all(actions >= -3) and np.all(actions <= 5)
    # The policy is squashed: the full range is reachable, not only [-1, 1]
    with th.no_grad():
        model.actor.mu.bias.fill_(5.0)
    actions, _ = model.predict(obs, deterministic=True)
    assert np.all(actions > 4.9)


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_predict_wrong_shape_raises(model_class):
    with pytest.raises(ValueError):
        trained(model_class).predict(np.zeros((2, 5), dtype=np.float32))
