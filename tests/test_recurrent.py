"""Recurrent policies for SAC and DiscreteSAC: the off-by-one check, predict, save/load, settings."""

import itertools

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.envs import SimpleMultiObsEnv
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.her.her_replay_buffer import HerReplayBuffer

from sb3_sac_ext import SAC, DiscreteSAC
from sb3_sac_ext.common.errors import InvalidHyperparameterError
from sb3_sac_ext.common.recurrent.buffers import RecurrentDictReplayBuffer, RecurrentReplayBuffer

SMALL = dict(net_arch=[16, 16], lstm_hidden_size=8, sequence_length=4, burn_in=2)
ENVS = {SAC: "Pendulum-v1", DiscreteSAC: "CartPole-v1"}


def make_model(algo, n_envs=1, learning_starts=50, **kwargs):
    env = make_vec_env(ENVS[algo], n_envs=n_envs, env_kwargs=dict(max_episode_steps=12), seed=0)
    policy_kwargs = {**SMALL, **kwargs.pop("policy_kwargs", {})}
    return algo(
        "MlpLstmPolicy", env, buffer_size=600, learning_starts=learning_starts, batch_size=32,
        policy_kwargs=policy_kwargs, seed=0, **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize("algo", [SAC, DiscreteSAC])
@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_predict_step_by_step_equals_training_unroll(algo, rnn_type):
    """The off-by-one catcher: the same episode through predict (carrying state) and through the training unroll."""
    model = make_model(algo, learning_starts=10_000, policy_kwargs=dict(rnn_type=rnn_type))
    model.learn(30)  # random weights, a recorded episode of 12 steps (truncated) in the buffer
    buffer = model.replay_buffer
    env_of, start_of, lengths = buffer.segments()
    assert lengths[0] == 12
    data = buffer.get_windows(env_of[:1], start_of[:1], np.zeros(1, int), lengths[:1])
    obs_seq = data.observations  # (1, 13, obs_dim): obs[0..11] and the terminal observation
    policy = model.policy
    with th.no_grad():
        actor_latent, _ = model.actor.unroll(obs_seq)
        critic_latent, _ = model.critic.unroll(obs_seq)
        unroll_actions = policy._actions_from_latent(actor_latent[0], deterministic=True).numpy()
        stored_actions = data.actions[0]
        if algo is SAC:
            unroll_q = model.critic.q_values(critic_latent[0, :-1], stored_actions)
        else:
            unroll_q = model.critic.q_values(critic_latent[0, :-1])

    state, critic_state = None, model.critic.rnn.zero_state(1, model.device)
    for k in range(13):
        obs = obs_seq[0, k].numpy()[None]
        action, state = model.predict(obs, state=state, episode_start=np.array([k == 0]), deterministic=True)
        expected = unroll_actions[k]
        if algo is SAC:
            expected = policy.unscale_action(expected)
        np.testing.assert_allclose(np.asarray(action).reshape(-1), np.asarray(expected).reshape(-1), atol=1e-5)
        with th.no_grad():
            latent, critic_state = model.critic.step(obs_seq[0, k : k + 1], critic_state, th.tensor([float(k == 0)]))
            if k < 12:
                if algo is SAC:
                    q = model.critic.q_values(latent, stored_actions[k : k + 1])
                else:
                    q = model.critic.q_values(latent)
                np.testing.assert_allclose(q[:, 0].numpy(), unroll_q[:, k].numpy(), atol=1e-5)


@pytest.mark.parametrize("algo", [SAC, DiscreteSAC])
def test_learn_logs_save_load_and_evaluate(algo, tmp_path):
    model = make_model(algo, n_envs=4, max_grad_norm=5.0, policy_delay=2, policy_kwargs=dict(rnn_learning_rate=1e-4))
    model.learn(120)
    logs = model._train_logs
    for key in ("train/actor_rnn_grad_norm", "train/critic_rnn_grad_norm", "train/critic_loss", "train/actor_loss"):
        assert key in logs and bool(th.isfinite(logs[key]))
    assert isinstance(model.replay_buffer, RecurrentReplayBuffer)
    assert {group["name"]: group["lr"] for group in model.actor.optimizer.param_groups} == {"mlp": 3e-4, "rnn": 1e-4}
    # Episode starts are written by the algorithm: each env column begins a segment at the first step
    assert model.replay_buffer.episode_starts[0].all()

    obs = model.env.reset()
    starts = np.ones(4, dtype=bool)
    actions, state = model.predict(obs, episode_start=starts, deterministic=True)
    assert state[0].shape == (1, 4, 8) and state[1].shape == (1, 4, 8)
    # episode_start=1 resets the state: same as no state
    random_state = (np.random.randn(1, 4, 8).astype(np.float32), np.random.randn(1, 4, 8).astype(np.float32))
    reset_actions, reset_state = model.predict(obs, state=random_state, episode_start=starts, deterministic=True)
    np.testing.assert_allclose(reset_actions, actions, atol=1e-6)
    np.testing.assert_allclose(reset_state[0], state[0], atol=1e-6)

    model.save(tmp_path / "model.zip")
    model.save_replay_buffer(tmp_path / "buffer.zip")
    loaded = algo.load(tmp_path / "model.zip", env=model.env)
    loaded_actions, loaded_state = loaded.predict(obs, state=state, episode_start=~starts, deterministic=True)
    same_actions, same_state = model.predict(obs, state=state, episode_start=~starts, deterministic=True)
    np.testing.assert_allclose(loaded_actions, same_actions, atol=1e-6)
    np.testing.assert_allclose(loaded_state[1], same_state[1], atol=1e-6)
    assert loaded.policy.lstm_hidden_size == 8 and loaded.policy.rnn_learning_rate == 1e-4
    loaded.load_replay_buffer(tmp_path / "buffer.zip")
    assert loaded.replay_buffer._next_is_start.all()  # loaded data never joins the new transitions
    loaded.learn(40, reset_num_timesteps=False)

    mean, _ = evaluate_policy(model, model.env, n_eval_episodes=4, deterministic=True)
    assert np.isfinite(mean)


@pytest.mark.parametrize("algo", [SAC, DiscreteSAC])
def test_variants_train(algo):
    for kwargs in (dict(shared_lstm=True), dict(sequence_length=None), dict(n_lstm_layers=2, rnn_type="gru")):
        model = make_model(algo, learning_starts=20, policy_kwargs=kwargs)
        model.learn(40)
        assert model._n_updates > 0


def test_dict_observations():
    env = SimpleMultiObsEnv(random_start=True)
    env = gym.wrappers.TimeLimit(env, max_episode_steps=10)
    model = DiscreteSAC("MultiInputLstmPolicy", env, buffer_size=200, learning_starts=20, batch_size=16, policy_kwargs=SMALL)
    assert isinstance(model.replay_buffer, RecurrentDictReplayBuffer)
    model.learn(40)
    _action, state = model.predict(env.reset()[0], deterministic=True)
    assert state[0].shape == (1, 1, 8)


def test_learn_restart_starts_new_segments():
    model = make_model(DiscreteSAC, learning_starts=1000)
    model.learn(5)
    model.learn(5)  # reset_num_timesteps=True: the env is reset
    assert model.replay_buffer.episode_starts[5, 0]
    _env_of, start_of, _lengths = model.replay_buffer.segments()
    assert 5 in start_of.tolist()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(use_sde=True), "use_sde"),
        (dict(n_steps=2), "n_steps"),
        (dict(optimize_memory_usage=True), "optimize_memory_usage"),
        (dict(replay_buffer_class=HerReplayBuffer), "HerReplayBuffer"),
        (dict(policy_kwargs=dict(net_arch=dict(pi=[8], qf=[]))), "hidden layer"),
        (dict(policy_kwargs=dict(rnn_type="rnn")), "rnn_type"),
        (dict(policy_kwargs=dict(sequence_length=0)), "sequence_length"),
        (dict(policy_kwargs=dict(share_features_extractor=True)), "shared_lstm"),
    ],
)
def test_unsupported_settings_raise(kwargs, match):
    with pytest.raises(InvalidHyperparameterError, match=match):
        SAC("MlpLstmPolicy", "Pendulum-v1", buffer_size=1000, **kwargs)


def test_play_carries_state_and_episode_starts():
    """The replay loop of `enjoy --video` and of Hub pushes carries the RNN state and episode starts like evaluate_policy."""
    from sb3_sac_ext.experiment import play

    model = make_model(SAC, n_envs=2)  # Pendulum cut at 12 steps: both envs restart after steps 12 and 24, only there
    calls = []
    predict = model.predict

    def spy(obs, state=None, episode_start=None, deterministic=False):
        action, new_state = predict(obs, state=state, episode_start=episode_start, deterministic=deterministic)
        calls.append((state, np.array(episode_start), new_state))
        return action, new_state

    model.predict = spy
    play(model, model.env, 30)
    assert len(calls) == 30 and calls[0][0] is None
    for (_, _, returned), (passed, _, _) in itertools.pairwise(calls):
        assert passed is returned
    starts = np.array([start for _, start, _ in calls])
    assert starts.shape == (30, 2)
    assert np.flatnonzero(starts.all(axis=1)).tolist() == [0, 12, 24] and starts.sum() == 6
