"""Save / load: exact round trip of everything our algorithms learn, and models saved by Stable-Baselines3's SAC."""

import gymnasium as gym
import numpy as np
import pytest
import stable_baselines3 as sb3
import torch as th
from stable_baselines3.common.logger import configure

from _helpers import (
    MODEL_LIST,
    TINY,
    assert_state_dicts_equal,
    changed,
    clone_params,
    make_env,
    sample_observations,
    tiny_model,
    tiny_sac,
)
from sb3_sac_ext import SAC
from sb3_sac_ext.common.schedules import CosineDecay, ExponentialDecay, LinearDecay

OBS = np.random.default_rng(0).uniform(-1, 1, size=(16, 3)).astype(np.float32)


def all_state(model) -> dict:
    """Every state dict and loose tensor the model learns, by name."""
    state = {
        "actor": model.actor.state_dict(),
        "critic": model.critic.state_dict(),
        "critic_target": model.critic_target.state_dict(),
        "policy": model.policy.state_dict(),
        "actor.optimizer": model.actor.optimizer.state_dict(),
        "critic.optimizer": model.critic.optimizer.state_dict(),
    }
    if model.ent_coef_optimizer is not None:
        state["ent_coef_optimizer"] = model.ent_coef_optimizer.state_dict()
        state["log_ent_coef"] = {"value": model.log_ent_coef.detach()}
    else:
        state["ent_coef_tensor"] = {"value": model.ent_coef_tensor}
    return state


@pytest.mark.parametrize("model_class", MODEL_LIST)
@pytest.mark.parametrize("ent_coef", ["auto", 0.05])
def test_save_load_exact(tmp_path, model_class, ent_coef):
    model = tiny_model(
        model_class,
        ent_coef=ent_coef,
        learning_rate=LinearDecay(1e-3, 1e-4),
        qf_learning_rate=ExponentialDecay(1e-3, 1e-5),
        ent_coef_learning_rate=CosineDecay(3e-3),
        seed=0,
    )
    model.learn(120)
    state = all_state(model)
    # The optimizers carry learned moments (the comparison below is not vacuous)
    assert any("exp_avg" in s for s in state["actor.optimizer"]["state"].values())
    assert any("exp_avg" in s for s in state["critic.optimizer"]["state"].values())
    obs = sample_observations(model, 16)
    actions_before, _ = model.predict(obs, deterministic=True)
    path = tmp_path / "model.zip"
    model.save(path)

    loaded = model_class.load(path, env=make_env(model_class))
    assert type(loaded.policy) is type(model.policy)
    assert_state_dicts_equal(state, all_state(loaded), "model")
    for name, optimizer in model.optimizers.items():
        assert_state_dicts_equal(optimizer.state_dict(), loaded.optimizers[name].state_dict(), name)
    expected_optimizers = {"actor", "critic", "ent_coef"} if ent_coef == "auto" else {"actor", "critic"}
    assert set(loaded.optimizers) == expected_optimizers
    assert loaded.num_timesteps == model.num_timesteps == 120
    assert loaded._n_updates == model._n_updates
    assert loaded.lr_schedules == model.lr_schedules
    assert loaded.lr_schedules["actor"] == LinearDecay(1e-3, 1e-4)
    assert loaded.lr_schedules["critic"] == ExponentialDecay(1e-3, 1e-5)
    if ent_coef == "auto":
        assert loaded.lr_schedules["ent_coef"] == CosineDecay(3e-3)
        # The temperature object uses the loaded tensor (same storage as log_ent_coef)
        assert loaded.temperature.log_ent_coef is loaded.log_ent_coef
        assert th.equal(loaded.temperature.value, model.temperature.value)
    else:
        assert loaded.ent_coef_optimizer is None
        assert float(loaded.temperature.value) == pytest.approx(0.05)
    assert loaded.target_entropy == model.target_entropy
    assert loaded.get_params().keys() == model.get_params().keys()
    # Aliases point to the loaded policy's networks
    assert loaded.actor is loaded.policy.actor and loaded.critic is loaded.policy.critic
    assert loaded.critic_target is loaded.policy.critic_target
    actions_after, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actions_before, actions_after)

    # Continue learning from the loaded model
    loaded.learn(60, reset_num_timesteps=False)
    assert loaded.num_timesteps == 180
    assert changed(state["actor"], loaded.actor)
    if model_class is SAC:
        assert not th.equal(state["actor"]["mu.weight"], loaded.actor.state_dict()["mu.weight"])


def test_save_load_continue_training_matches(tmp_path):
    """A loaded model trains on the same batch exactly like the original (optimizer state is restored)."""
    model = tiny_sac(seed=0)
    model.learn(120)
    model.save(tmp_path / "sac.zip")
    loaded = SAC.load(tmp_path / "sac.zip", env=gym.make("Pendulum-v1"))
    # Same replay data and same random draws for both
    loaded.replay_buffer = model.replay_buffer
    # A freshly loaded model has no logger until learn() (as in SB3)
    loaded.set_logger(configure(None, []))
    for algo in (model, loaded):
        np.random.seed(1)
        th.manual_seed(1)
        algo.train(gradient_steps=3, batch_size=64)
    assert_state_dicts_equal(all_state(model), all_state(loaded), "after training")


def test_save_load_replay_buffer(tmp_path):
    model = tiny_sac(seed=0)
    model.learn(80)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    loaded = tiny_sac(seed=1)
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    assert loaded.replay_buffer.size() == model.replay_buffer.size() == 80
    np.testing.assert_array_equal(loaded.replay_buffer.observations, model.replay_buffer.observations)


def test_get_set_parameters():
    model = tiny_sac(seed=0)
    other = tiny_sac(seed=1)
    params = model.get_parameters()
    assert {"policy", "actor.optimizer", "critic.optimizer", "ent_coef_optimizer"} <= set(params)
    assert not th.equal(params["policy"]["actor.mu.weight"], other.get_parameters()["policy"]["actor.mu.weight"])
    other.set_parameters(params, exact_match=True)
    assert_state_dicts_equal(params["policy"], other.get_parameters()["policy"], "policy")
    np.testing.assert_array_equal(model.predict(OBS, deterministic=True)[0], other.predict(OBS, deterministic=True)[0])

    # Partial update
    actor_weight = th.full_like(params["policy"]["actor.mu.weight"], 0.5)
    other.set_parameters({"policy": {"actor.mu.weight": actor_weight}}, exact_match=False)
    assert th.equal(other.actor.mu.weight.detach(), actor_weight)
    # Missing keys with exact_match=True: torch's strict loading refuses (as in SB3)
    with pytest.raises(RuntimeError, match="Missing key"):
        other.set_parameters({"policy": {"actor.mu.weight": actor_weight}}, exact_match=True)


def test_save_load_policy(tmp_path):
    model = tiny_sac(seed=0)
    model.learn(60)
    model.policy.save(tmp_path / "policy.pkl")
    policy = type(model.policy).load(tmp_path / "policy.pkl")
    np.testing.assert_array_equal(model.predict(OBS, deterministic=True)[0], policy.predict(OBS, deterministic=True)[0])


@pytest.fixture(scope="module")
def sb3_model_path(tmp_path_factory):
    th.manual_seed(0)
    model = sb3.SAC("MlpPolicy", "Pendulum-v1", seed=0, **TINY)
    model.learn(200)
    path = tmp_path_factory.mktemp("sb3") / "sb3_sac.zip"
    model.save(path)
    return model, path


def test_load_sb3_zip(sb3_model_path):
    sb3_model, path = sb3_model_path
    loaded = SAC.load(path, env=gym.make("Pendulum-v1"), allow_pickle=True)
    assert type(loaded) is SAC
    assert type(loaded.critic).__name__ == "EnsembleContinuousCritic"
    np.testing.assert_array_equal(sb3_model.predict(OBS, deterministic=True)[0], loaded.predict(OBS, deterministic=True)[0])
    obs = th.as_tensor(OBS)
    actions = th.as_tensor(np.random.default_rng(1).uniform(-1, 1, size=(16, 1)).astype(np.float32))
    with th.no_grad():
        for network in ("critic", "critic_target"):
            expected = getattr(sb3_model, network)(obs, actions)
            actual = getattr(loaded, network)(obs, actions)
            assert len(actual) == len(expected) == 2
            for q_expected, q_actual in zip(expected, actual, strict=True):
                assert th.allclose(q_expected, q_actual, atol=1e-5), network
    assert th.equal(loaded.log_ent_coef.detach(), sb3_model.log_ent_coef.detach())
    assert loaded.num_timesteps == sb3_model.num_timesteps
    # SB3's optimizer state (fused=None) does not downgrade our fused Adam
    for optimizer in loaded.optimizers.values():
        assert all(group["fused"] for group in optimizer.param_groups)

    # The critic's Adam moments are mapped member by member onto the ensemble layout
    sb3_state = sb3_model.critic.optimizer.state_dict()["state"]
    ours = loaded.critic.optimizer.state_dict()["state"]
    n_layers = len(loaded.critic.qf.weights)
    for member in range(2):
        for layer in range(n_layers):
            sb3_weight_index = member * 2 * n_layers + 2 * layer
            assert th.equal(ours[layer]["exp_avg"][member], sb3_state[sb3_weight_index]["exp_avg"])
            assert th.equal(ours[n_layers + layer]["exp_avg_sq"][member, 0], sb3_state[sb3_weight_index + 1]["exp_avg_sq"])

    # and it keeps learning
    actor_before = clone_params(loaded.actor)
    loaded.learn(100, reset_num_timesteps=False)
    assert loaded.num_timesteps == sb3_model.num_timesteps + 100
    assert not th.equal(actor_before["mu.weight"], loaded.actor.mu.weight.detach())
    for tensor in loaded.policy.state_dict().values():
        assert th.isfinite(tensor).all()


def test_set_parameters_from_sb3(sb3_model_path):
    sb3_model, _ = sb3_model_path
    model = tiny_sac(seed=3)
    model.set_parameters(sb3_model.get_parameters(), exact_match=True)
    np.testing.assert_array_equal(sb3_model.predict(OBS, deterministic=True)[0], model.predict(OBS, deterministic=True)[0])


def test_get_params_after_loading_sb3_zip(tmp_path):
    sb3_model = sb3.SAC("MlpPolicy", "Pendulum-v1", learning_rate=1e-3, gamma=0.9, buffer_size=500, batch_size=32)
    sb3_model.save(tmp_path / "sb3.zip")
    loaded = SAC.load(tmp_path / "sb3.zip", allow_pickle=True)
    params = loaded.get_params()
    assert (params["learning_rate"], params["gamma"], params["buffer_size"]) == (1e-3, 0.9, 500)


def test_custom_objects_replace_only_saved_attributes(tmp_path):
    # As SB3's load: a custom object replaces an attribute the file holds; a key the file lacks is ignored
    model = tiny_sac(seed=0)
    model.save(tmp_path / "model.zip")
    loaded = SAC.load(tmp_path / "model.zip", custom_objects=dict(learning_rate=2e-5, dummy=1.0))
    assert loaded.learning_rate == 2e-5
    assert not hasattr(loaded, "dummy")


def test_set_parameters_incomplete_raises_as_sb3():
    model = tiny_sac(seed=0)
    model.learn(60)
    params = model.get_parameters()
    # An object missing: ValueError naming the expected objects
    with pytest.raises(ValueError, match="do not match"):
        model.set_parameters({k: v for k, v in params.items() if k != "ent_coef_optimizer"}, exact_match=True)
    # Each state dict missing its last entry: torch's strict loading refuses the policy first, as with SB3
    truncated = {name: dict(list(state.items())[:-1]) for name, state in params.items()}
    with pytest.raises(RuntimeError, match="Missing key"):
        model.set_parameters(truncated, exact_match=True)
    # A complete policy with an optimizer state that lacks an entry: ValueError naming it, not KeyError
    broken = {**params, "critic.optimizer": {"state": params["critic.optimizer"]["state"]}}
    with pytest.raises(ValueError, match=r"critic\.optimizer"):
        model.set_parameters(broken, exact_match=True)
    # Nothing was half-loaded into the optimizers: the complete dict still loads
    model.set_parameters(params, exact_match=True)


@pytest.mark.parametrize("policy", ["MlpPolicy", "MultiInputPolicy"])
def test_policy_file_loads_into_sb3_policy_class(tmp_path, policy):
    # SB3's "Advanced saving and loading" example: model.policy.save(path), then SB3's own policy class loads it
    from stable_baselines3.common.envs import SimpleMultiObsEnv
    from stable_baselines3.sac import policies as sb3_policies

    env = gym.make("Pendulum-v1") if policy == "MlpPolicy" else SimpleMultiObsEnv(random_start=False, discrete_actions=False)
    model = SAC(policy, env, seed=0, **{**TINY, "learning_starts": 30})
    model.learn(80)
    model.policy.save(tmp_path / "policy.pth")
    sb3_policy = getattr(sb3_policies, policy).load(tmp_path / "policy.pth")
    assert type(sb3_policy) is getattr(sb3_policies, policy)
    ours = type(model.policy).load(tmp_path / "policy.pth")

    obs = env.observation_space.sample()
    batch = {k: np.stack([env.observation_space[k].sample() for _ in range(8)]) for k in obs} if isinstance(obs, dict) else OBS
    expected = model.predict(batch, deterministic=True)[0]
    np.testing.assert_array_equal(sb3_policy.predict(batch, deterministic=True)[0], expected)
    np.testing.assert_array_equal(ours.predict(batch, deterministic=True)[0], expected)
    obs_tensor = model.policy.obs_to_tensor(batch)[0]
    actions = th.as_tensor(expected)
    with th.no_grad():
        for network in ("critic", "critic_target"):
            expected_q = getattr(model.policy, network)(obs_tensor, actions)
            for q_sb3, q_ours in zip(getattr(sb3_policy, network)(obs_tensor, actions), expected_q, strict=True):
                # The ensemble's batched matmul and SB3's per-critic Linear layers round differently (ulps)
                assert th.allclose(q_sb3, q_ours, atol=1e-5), network
    assert_state_dicts_equal(model.policy.state_dict(), ours.state_dict(), "policy")


def test_sb3_docs_advanced_saving_example(tmp_path, monkeypatch):
    # SB3's documentation example "Advanced Saving and Loading", with the import of SAC changed and short budgets
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.sac.policies import MlpPolicy

    monkeypatch.chdir(tmp_path)
    model = SAC("MlpPolicy", "Pendulum-v1", verbose=0, learning_rate=1e-3, learning_starts=50, buffer_size=1000)
    model.learn(total_timesteps=200)
    model.save("sac_pendulum")
    loaded_model = SAC.load("sac_pendulum")
    assert loaded_model.replay_buffer.size() == 0
    model.save_replay_buffer("sac_replay_buffer")
    loaded_model.load_replay_buffer("sac_replay_buffer")
    assert loaded_model.replay_buffer.size() == 200
    loaded_model.set_env(model.get_env())
    loaded_model.learn(100, reset_num_timesteps=False)

    policy = model.policy
    policy.save("sac_policy_pendulum")
    env = model.get_env()
    mean_reward, _ = evaluate_policy(policy, env, n_eval_episodes=1, deterministic=True)
    saved_policy = MlpPolicy.load("sac_policy_pendulum")
    mean_reward_loaded, _ = evaluate_policy(saved_policy, env, n_eval_episodes=1, deterministic=True)
    assert np.isfinite(mean_reward) and np.isfinite(mean_reward_loaded)
