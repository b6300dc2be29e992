"""
Observation spaces (SB3's test_spaces.py, test_dict_env.py, test_cnn.py, test_her.py): Box observations of various
shapes, Box action dimensions, Dict and image observations, frame stacking, HER.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer
from stable_baselines3.common.envs import BitFlippingEnv, FakeImageEnv, SimpleMultiObsEnv
from stable_baselines3.common.torch_layers import CombinedExtractor, NatureCNN
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack
from stable_baselines3.her import HerReplayBuffer

from _helpers import MODEL_LIST, assert_state_dicts_equal, changed, clone_params, is_discrete, tiny_model, tiny_sac
from sb3_sac_ext import SAC
from sb3_sac_ext.common.errors import InvalidHyperparameterError


class BoxEnv(gym.Env):
    """Short episodes with Box observations of any shape; reward is -|action| so it can be learned."""

    def __init__(self, obs_shape: tuple[int, ...], action_dim: int = 2, low: float = -1.0, high: float = 1.0):
        self.observation_space = spaces.Box(-1, 1, shape=obs_shape, dtype=np.float32)
        self.action_space = spaces.Box(low, high, shape=(action_dim,), dtype=np.float32)
        self._steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._steps = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        assert self.action_space.contains(np.asarray(action, dtype=np.float32)), action
        self._steps += 1
        reward = -float(np.abs(action).sum())
        return self.observation_space.sample(), reward, False, self._steps >= 20, {}


@pytest.mark.parametrize("obs_shape", [(1,), (5,), (3, 4), (2, 3, 2)])
def test_box_observation_shapes(obs_shape):
    env = BoxEnv(obs_shape)
    model = tiny_sac(env, learning_starts=30, seed=0)
    model.learn(80)
    assert model.replay_buffer.observations.shape[2:] == obs_shape
    obs = env.observation_space.sample()
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (2,)
    actions, _ = model.predict(np.stack([obs, obs]), deterministic=True)
    assert actions.shape == (2, 2)
    np.testing.assert_allclose(actions[0], actions[1], rtol=1e-5, atol=1e-6)  # rows of one matmul may differ by an ulp


@pytest.mark.parametrize("action_dim, low, high", [(1, -2.0, 2.0), (4, -1.0, 1.0), (3, 0.0, 10.0)])
def test_box_action_spaces(action_dim, low, high):
    env = BoxEnv((3,), action_dim=action_dim, low=low, high=high)
    model = tiny_sac(env, learning_starts=30, seed=0)
    assert model.target_entropy == -float(action_dim)
    # The env asserts that every action it receives is in its action space
    model.learn(80)
    actions, _ = model.predict(np.stack([env.observation_space.sample() for _ in range(10)]))
    assert actions.shape == (10, action_dim)
    assert np.all(actions >= low) and np.all(actions <= high)


def test_float64_observations():
    env = BoxEnv((3,))
    env.observation_space = spaces.Box(-1, 1, shape=(3,), dtype=np.float64)
    model = tiny_sac(env, learning_starts=30, seed=0)
    model.learn(60)
    action, _ = model.predict(env.observation_space.sample())
    assert action.shape == (2,)


def assert_valid_actions(model, env: gym.Env, obs) -> np.ndarray:
    """Deterministic actions for a batch of one VecEnv observation, inside the env's action space."""
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (1, *env.action_space.shape)
    assert env.action_space.contains(action[0].astype(env.action_space.dtype))
    return action


def assert_save_load_predicts_the_same(model, path, obs, action: np.ndarray) -> None:
    model.save(path)
    loaded = type(model).load(path)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], action)


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_dict_obs_multi_input_policy(tmp_path, model_class):
    env = SimpleMultiObsEnv(random_start=True, discrete_actions=is_discrete(model_class))
    model = tiny_model(
        model_class,
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
    assert changed(actor_before, model.actor)

    # Observations from the (image-transposing) VecEnv
    obs = model.get_env().reset()
    action = assert_valid_actions(model, env, obs)
    assert_save_load_predicts_the_same(model, tmp_path / "dict.zip", obs, action)


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_predict_channel_last_image_obs(model_class):
    """SB3 accepts the env's own (channel-last) image observation in predict and transposes it."""
    env = SimpleMultiObsEnv(random_start=True, discrete_actions=is_discrete(model_class))
    model = tiny_model(model_class, env, policy="MultiInputPolicy", seed=0)
    obs, _ = env.reset(seed=0)
    assert obs["img"].shape[-1] == 1  # channel-last
    action, _ = model.predict(obs, deterministic=True)
    transposed = {"vec": obs["vec"], "img": np.transpose(obs["img"], (2, 0, 1))}
    np.testing.assert_array_equal(action, model.predict(transposed, deterministic=True)[0])


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_dict_obs_n_steps_raises(model_class):
    env = SimpleMultiObsEnv(random_start=True, discrete_actions=is_discrete(model_class))
    with pytest.raises(InvalidHyperparameterError, match="n_steps"):
        tiny_model(model_class, env, policy="MultiInputPolicy", n_steps=3)


@pytest.mark.parametrize("model_class", MODEL_LIST)
@pytest.mark.parametrize("share_features_extractor", [False, True])
def test_cnn(tmp_path, model_class, share_features_extractor):
    env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=2, discrete=is_discrete(model_class))
    model = tiny_model(
        model_class,
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
    assert changed(cnn_before, model.actor.features_extractor)
    assert changed(critic_cnn_before, model.critic.features_extractor)

    # Observations as the (transposed, channel-first) training env gives them
    obs = model.get_env().reset()
    action = assert_valid_actions(model, env, obs)
    assert_save_load_predicts_the_same(model, tmp_path / "cnn.zip", obs, action)


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_frame_stack_atari_like(model_class):
    discrete = is_discrete(model_class)
    env = VecFrameStack(DummyVecEnv([lambda: FakeImageEnv(screen_height=40, screen_width=40, discrete=discrete)]), n_stack=4)
    model = model_class(
        "CnnPolicy", env, learning_starts=20, buffer_size=50, batch_size=8, tau=1.0, target_update_interval=4,
        policy_kwargs=dict(net_arch=[16], features_extractor_kwargs=dict(features_dim=32)),
    )  # fmt: skip
    model.learn(40)
    assert model.observation_space.shape == (4, 40, 40)  # transposed to channel first by SB3
    assert model._n_updates > 0


def test_her_continuous_bit_flipping(tmp_path):
    n_bits = 4
    env = BitFlippingEnv(n_bits=n_bits, continuous=True, max_steps=n_bits)
    model = tiny_sac(
        env,
        policy="MultiInputPolicy",
        replay_buffer_class=HerReplayBuffer,
        replay_buffer_kwargs=dict(n_sampled_goal=2, goal_selection_strategy="future"),
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
