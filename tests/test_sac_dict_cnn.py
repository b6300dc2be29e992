"""SB3's test_dict_env.py, test_cnn.py, test_her.py and n-step tests adapted to SAC."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.buffers import DictReplayBuffer
from stable_baselines3.common.envs import BitFlippingEnv, FakeImageEnv, SimpleMultiObsEnv
from stable_baselines3.common.torch_layers import CombinedExtractor, NatureCNN
from stable_baselines3.her import HerReplayBuffer

from _sac_helpers import assert_state_dicts_equal, clone_params, tiny_sac
from sb3_sac_ext import SAC
from sb3_sac_ext.common.errors import InvalidHyperparameterError


def test_dict_obs_multi_input_policy(tmp_path):
    env = SimpleMultiObsEnv(random_start=True, discrete_actions=False)
    model = tiny_sac(
        env,
        policy="MultiInputPolicy",
        learning_starts=30,
        batch_size=16,
        buffer_size=100,
        policy_kwargs=dict(net_arch=[32], features_extractor_kwargs=dict(cnn_output_dim=8)),
        seed=0,
    )
    assert isinstance(model.replay_buffer, DictReplayBuffer)
    assert isinstance(model.actor.features_extractor, CombinedExtractor)
    actor_before = clone_params(model.actor)
    model.learn(60)
    assert not th.equal(actor_before["mu.weight"], model.actor.mu.weight)

    # Observations from the (image-transposing) VecEnv
    obs = model.get_env().reset()
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (1, *env.action_space.shape)
    model.save(tmp_path / "dict.zip")
    loaded = SAC.load(tmp_path / "dict.zip")
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], action)


def test_predict_channel_last_image_obs():
    """SB3 accepts the env's own (channel-last) image observation in predict and transposes it."""
    env = SimpleMultiObsEnv(random_start=True, discrete_actions=False)
    model = tiny_sac(env, policy="MultiInputPolicy", seed=0)
    obs, _ = env.reset(seed=0)
    assert obs["img"].shape[-1] == 1  # channel-last
    action, _ = model.predict(obs, deterministic=True)
    transposed = {"vec": obs["vec"], "img": np.transpose(obs["img"], (2, 0, 1))}
    np.testing.assert_array_equal(action, model.predict(transposed, deterministic=True)[0])


def test_dict_obs_n_steps_raises():
    env = SimpleMultiObsEnv(random_start=True, discrete_actions=False)
    with pytest.raises(InvalidHyperparameterError, match="n_steps"):
        tiny_sac(env, policy="MultiInputPolicy", n_steps=3)


@pytest.mark.parametrize("share_features_extractor", [False, True])
def test_cnn(tmp_path, share_features_extractor):
    env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1, discrete=False)
    model = tiny_sac(
        env,
        policy="CnnPolicy",
        buffer_size=200,
        batch_size=32,
        learning_starts=30,
        policy_kwargs=dict(
            net_arch=[32], features_extractor_kwargs=dict(features_dim=16), share_features_extractor=share_features_extractor
        ),
        seed=0,
    )
    assert isinstance(model.actor.features_extractor, NatureCNN)
    assert model.actor.features_extractor.features_dim == 16
    assert (model.critic.features_extractor is model.actor.features_extractor) == share_features_extractor
    # The critic target never shares its features extractor
    assert model.critic_target.features_extractor is not model.actor.features_extractor
    cnn_before = clone_params(model.actor.features_extractor)
    critic_cnn_before = clone_params(model.critic.features_extractor)
    model.learn(60)
    # A parameter round trip keeps the critic optimizer's layout (features extractor parameters first)
    params = model.get_parameters()
    model.set_parameters(params, exact_match=True)
    assert_state_dicts_equal(params["critic.optimizer"], model.critic.optimizer.state_dict(), "critic.optimizer")
    # The actor's CNN is trained (by the actor loss); a separate critic CNN by the critic loss
    assert any(not th.equal(v, model.actor.features_extractor.state_dict()[k]) for k, v in cnn_before.items())
    assert any(not th.equal(v, model.critic.features_extractor.state_dict()[k]) for k, v in critic_cnn_before.items())

    obs = model.get_env().reset()
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (1, *env.action_space.shape)
    model.save(tmp_path / "cnn.zip")
    loaded = SAC.load(tmp_path / "cnn.zip")
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], action)


def test_her_continuous_bit_flipping(tmp_path):
    n_bits = 4
    env = BitFlippingEnv(n_bits=n_bits, continuous=True, max_steps=n_bits)
    model = SAC(
        "MultiInputPolicy",
        env,
        replay_buffer_class=HerReplayBuffer,
        replay_buffer_kwargs=dict(n_sampled_goal=2, goal_selection_strategy="future"),
        learning_starts=50,
        buffer_size=1000,
        batch_size=64,
        policy_kwargs=dict(net_arch=[64, 64]),
        seed=0,
    )
    assert isinstance(model.replay_buffer, HerReplayBuffer)
    critic_before = clone_params(model.critic)
    model.learn(150)
    assert model.replay_buffer.size() > 0
    assert any(not th.equal(v, model.critic.state_dict()[k]) for k, v in critic_before.items())
    # Relabelled batches: some sampled transitions are successes with the relabelled goals
    data = model.replay_buffer.sample(256)
    assert th.all((data.rewards == 0) | (data.rewards == -1))
    assert th.any(data.rewards == 0)

    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (n_bits,)
    model.save(tmp_path / "her.zip")
    loaded = SAC.load(tmp_path / "her.zip", env=env)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], action)
    loaded.learn(30)
    assert loaded.num_timesteps == 30


def test_her_replay_buffer_save_load(tmp_path):
    env = BitFlippingEnv(n_bits=4, continuous=True, max_steps=4)
    model = tiny_sac(env, policy="MultiInputPolicy", replay_buffer_class=HerReplayBuffer, learning_starts=30, seed=0)
    model.learn(40)
    model.save_replay_buffer(tmp_path / "her_buffer.pkl")
    loaded = tiny_sac(env, policy="MultiInputPolicy", replay_buffer_class=HerReplayBuffer, learning_starts=30, seed=1)
    loaded.load_replay_buffer(tmp_path / "her_buffer.pkl")
    assert loaded.replay_buffer.size() == model.replay_buffer.size()
    np.testing.assert_array_equal(
        loaded.replay_buffer.observations["observation"], model.replay_buffer.observations["observation"]
    )
    loaded.learn(20, reset_num_timesteps=False)
