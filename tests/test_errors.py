"""Clear, typed errors for bad arguments and unsupported spaces of both algorithms, also under ``python -O`` (no asserts)."""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from _helpers import MODEL_LIST, env_id, tiny_model
from sb3_sac_ext import SAC, DiscreteSAC
from sb3_sac_ext.common.errors import InvalidHyperparameterError, SB3SacExtError, UnsupportedSpaceError


class SpaceEnv(gym.Env):
    """An env with a given action space (never stepped in these tests)."""

    def __init__(self, action_space: spaces.Space):
        self.observation_space = spaces.Box(-1, 1, shape=(3,), dtype=np.float32)
        self.action_space = action_space

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


# (constructor keyword arguments, expected error, text the message must contain)
HYPERPARAMETER_CASES = {
    "batch_size_zero": (dict(batch_size=0), "batch_size"),
    "batch_size_negative": (dict(batch_size=-4), "batch_size"),
    "batch_size_float": (dict(batch_size=32.0), "batch_size"),
    "buffer_size_negative": (dict(buffer_size=-1), "buffer_size"),
    "gamma_negative": (dict(gamma=-0.1), "gamma"),
    "gamma_above_one": (dict(gamma=1.01), "gamma"),
    "gamma_nan": (dict(gamma=float("nan")), "gamma"),
    "tau_negative": (dict(tau=-0.01), "tau"),
    "tau_above_one": (dict(tau=1.5), "tau"),
    "train_freq_zero": (dict(train_freq=0), "train_freq"),
    "train_freq_negative_tuple": (dict(train_freq=(-1, "step")), "train_freq"),
    "train_freq_bad_unit": (dict(train_freq=(1, "epoch")), "train_freq"),
    "gradient_steps_float": (dict(gradient_steps=1.5), "gradient_steps"),
    "n_steps_zero": (dict(n_steps=0), "n_steps"),
    "policy_delay_zero": (dict(policy_delay=0), "policy_delay"),
    "target_update_interval_zero": (dict(target_update_interval=0), "target_update_interval"),
    "max_grad_norm_negative": (dict(max_grad_norm=-1.0), "max_grad_norm"),
    "objective_unknown": (dict(objective="maximise"), "objective"),
    "precision_unknown": (dict(precision="fp16"), "precision"),
    "ent_coef_malformed": (dict(ent_coef="auto_x"), "ent_coef"),
    "learning_rate_string": (dict(learning_rate="fast"), "learning_rate"),
    "qf_learning_rate_negative": (dict(qf_learning_rate=-1e-3), "qf_learning_rate"),
}

# Per algorithm: the action spaces it refuses, and text the message must contain
SPACE_CASES = {
    "SAC": {
        "discrete": (spaces.Discrete(3), "Discrete"),
        "multi_discrete": (spaces.MultiDiscrete([2, 3]), "MultiDiscrete"),
        "multi_binary": (spaces.MultiBinary(2), "MultiBinary"),
        "infinite_high": (spaces.Box(low=-1.0, high=np.inf, shape=(2,), dtype=np.float32), "finite"),
        "infinite_low": (spaces.Box(low=-np.inf, high=np.inf, shape=(1,), dtype=np.float32), "finite"),
    },
    "DiscreteSAC": {
        "box": (spaces.Box(-1, 1, shape=(2,), dtype=np.float32), "gymnasium.spaces.Discrete"),
        "multi_discrete": (spaces.MultiDiscrete([2, 3]), "gymnasium.spaces.Discrete"),
        "multi_binary": (spaces.MultiBinary(3), "gymnasium.spaces.Discrete"),
        "discrete_offset": (spaces.Discrete(3, start=1), "starting at 0"),
    },
}
SPACE_IDS = [(algo, case) for algo, cases in SPACE_CASES.items() for case in sorted(cases)]


@pytest.mark.parametrize("model_class", MODEL_LIST)
@pytest.mark.parametrize("case", sorted(HYPERPARAMETER_CASES))
def test_bad_hyperparameter(model_class, case):
    kwargs, needle = HYPERPARAMETER_CASES[case]
    with pytest.raises(InvalidHyperparameterError, match=needle) as info:
        model_class("MlpPolicy", env_id(model_class), **{"buffer_size": 1000, "batch_size": 64, **kwargs})
    assert isinstance(info.value, ValueError) and isinstance(info.value, SB3SacExtError)
    # Code written against SB3, which asserts, catches it too
    assert isinstance(info.value, AssertionError)


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_hyperparameters_checked_before_env_is_built(model_class):
    # No env is needed to report a bad argument
    with pytest.raises(InvalidHyperparameterError, match="gamma"):
        model_class("MlpPolicy", None, gamma=2.0)


@pytest.mark.parametrize("model_class", MODEL_LIST)
@pytest.mark.parametrize("argument", ["learning_rate", "qf_learning_rate", "ent_coef_learning_rate"])
@pytest.mark.parametrize("value", ["lin_", "foo_1e-3", "exp_1e-3", -1.0, float("nan"), [1e-3], True])
def test_bad_learning_rate_raises(model_class, argument, value):
    with pytest.raises(InvalidHyperparameterError, match=argument):
        tiny_model(model_class, **{argument: value})


@pytest.mark.parametrize("model_class", MODEL_LIST)
@pytest.mark.parametrize("ent_coef", ["auto_", "auto_abc", "auto_-0.1", "auto_0", "autox", "fixed", "", -0.5, None])
def test_bad_ent_coef_raises(model_class, ent_coef):
    with pytest.raises(InvalidHyperparameterError, match="ent_coef"):
        tiny_model(model_class, ent_coef=ent_coef)


@pytest.mark.parametrize("model_class", MODEL_LIST)
@pytest.mark.parametrize("target_entropy", ["foo", None])
def test_bad_target_entropy_raises(model_class, target_entropy):
    with pytest.raises(InvalidHyperparameterError, match="target_entropy"):
        tiny_model(model_class, target_entropy=target_entropy)


@pytest.mark.parametrize("model_class", MODEL_LIST)
@pytest.mark.parametrize(
    "bad", [dict(normalize_reward="yes"), dict(normalized_g_max=-1.0), dict(normalized_g_max=float("inf"))]
)
def test_bad_simbav2_reward_scaling_raises(model_class, bad):
    with pytest.raises(InvalidHyperparameterError, match=next(iter(bad))):
        model_class("SimbaV2Policy", env_id(model_class), policy_kwargs=dict(net_arch=[16], **bad))


@pytest.mark.parametrize(
    "bad, needle",
    [
        (dict(num_bins=1), "num_bins must be"),
        (dict(num_bins="101"), "num_bins must be"),
        (dict(num_bins=True), "num_bins must be"),
        (dict(num_bins=101, normalize_reward=False), "needs normalize_reward=True"),
        (dict(normalize_reward=False), "needs normalize_reward=True"),  # the categorical critic is the default
        (dict(normalize_reward="yes"), "normalize_reward must be True or False"),  # not the num_bins conflict
    ],
)
def test_bad_simbav2_categorical_critic_raises(bad, needle):
    with pytest.raises(InvalidHyperparameterError, match=needle):
        SAC("SimbaV2Policy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16], **bad))
    with pytest.raises(InvalidHyperparameterError, match="SAC's SimbaV2Policy only"):
        DiscreteSAC("SimbaV2Policy", "CartPole-v1", policy_kwargs=dict(net_arch=[16], num_bins=101))


@pytest.mark.parametrize("algo, case", SPACE_IDS, ids=[f"{algo}-{case}" for algo, case in SPACE_IDS])
def test_unsupported_action_space(algo, case):
    model_class = SAC if algo == "SAC" else DiscreteSAC
    action_space, needle = SPACE_CASES[algo][case]
    with pytest.raises(UnsupportedSpaceError, match=re.escape(needle)) as info:
        model_class("MlpPolicy", SpaceEnv(action_space), buffer_size=1000)
    assert isinstance(info.value, ValueError) and isinstance(info.value, AssertionError)
    assert algo in str(info.value)


def test_sb3_assert_handlers_catch_our_errors():
    # SB3's own test: SAC on CartPole raises AssertionError (ours: UnsupportedSpaceError, also under python -O)
    with pytest.raises(AssertionError, match="Discrete"):
        SAC("MlpPolicy", "CartPole-v1")


@pytest.mark.parametrize("model_class", MODEL_LIST)
@pytest.mark.parametrize(
    "case",
    [
        # SB3 samples with replacement: a buffer smaller than a batch is valid (SB3's own tests use 250 < 256)
        dict(buffer_size=20, batch_size=64),
        dict(buffer_size=0),
        dict(gamma=0.0),
        dict(learning_starts=-1),
        dict(gradient_steps=-2),
    ],
    ids=["buffer_smaller_than_batch", "buffer_size_zero", "gamma_zero", "learning_starts_negative", "gradient_steps_negative"],
)
def test_settings_sb3_accepts_train(model_class, case):
    model = model_class(
        "MlpPolicy", env_id(model_class), **{"learning_starts": 30, "policy_kwargs": dict(net_arch=[16]), **case}
    )
    model.learn(80)
    assert model._n_updates > 0
    assert all(th.isfinite(tensor).all() for tensor in model.policy.state_dict().values())


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_tau_zero_freezes_target_and_gradient_steps_zero_only_collects(model_class):
    env = env_id(model_class)
    model = model_class("MlpPolicy", env, tau=0.0, learning_starts=30, policy_kwargs=dict(net_arch=[16]), seed=0)
    target = {k: v.clone() for k, v in model.critic_target.state_dict().items()}
    critic = {k: v.clone() for k, v in model.critic.state_dict().items()}
    model.learn(80)
    assert model._n_updates > 0
    assert all(th.equal(target[k], v) for k, v in model.critic_target.state_dict().items())
    assert not all(th.equal(critic[k], v) for k, v in model.critic.state_dict().items())

    collector = model_class("MlpPolicy", env, gradient_steps=0, learning_starts=10, policy_kwargs=dict(net_arch=[16]), seed=0)
    weights = {k: v.clone() for k, v in collector.policy.state_dict().items()}
    collector.learn(60)
    assert collector.replay_buffer.size() == 60 and collector._n_updates == 0
    assert all(th.equal(weights[k], v) for k, v in collector.policy.state_dict().items())


def test_discrete_hint():
    with pytest.raises(UnsupportedSpaceError, match="DiscreteSAC"):
        SAC("MlpPolicy", "CartPole-v1", buffer_size=1000)


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_valid_edge_values_accepted(model_class):
    model = model_class(
        "MlpPolicy", env_id(model_class), gamma=1.0, tau=1.0, buffer_size=64, batch_size=64, train_freq=(1, "episode")
    )
    assert model.gamma == 1.0 and model.tau == 1.0


_SCRIPT = """
import json, sys
sys.path.insert(0, {tests_dir!r})
from test_errors import HYPERPARAMETER_CASES, SPACE_CASES, SpaceEnv
from _helpers import MODEL_LIST, env_id

from sb3_sac_ext.common.errors import InvalidHyperparameterError, UnsupportedSpaceError

results = {{"asserts_enabled": __debug__}}
for model_class in MODEL_LIST:
    algo = model_class.__name__
    for name, (kwargs, needle) in HYPERPARAMETER_CASES.items():
        key = algo + "-" + name
        try:
            model_class("MlpPolicy", env_id(model_class), **{{"buffer_size": 1000, "batch_size": 64, **kwargs}})
            results[key] = "no error"
        except InvalidHyperparameterError as e:
            results[key] = "ok" if needle in str(e) and isinstance(e, AssertionError) else "message lacks " + needle
        except Exception as e:
            results[key] = type(e).__name__
    for name, (space, needle) in SPACE_CASES[algo].items():
        key = algo + "-" + name
        try:
            model_class("MlpPolicy", SpaceEnv(space), buffer_size=1000)
            results[key] = "no error"
        except UnsupportedSpaceError as e:
            results[key] = "ok" if needle in str(e) and isinstance(e, AssertionError) else "message lacks " + needle
        except Exception as e:
            results[key] = type(e).__name__
print(json.dumps(results))
"""


# The README's test command runs this file under `python -O` itself (all of it, these cases included); this
# subprocess check repeats that for a plain `python -m pytest -m slow` run
@pytest.mark.slow
def test_errors_hold_under_python_O(tmp_path):
    tests_dir = str(Path(__file__).parent)
    script = tmp_path / "check_errors.py"
    script.write_text(textwrap.dedent(_SCRIPT.format(tests_dir=tests_dir)))
    completed = subprocess.run(
        [sys.executable, "-O", str(script)], capture_output=True, text=True, timeout=240, cwd=str(tmp_path)
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(completed.stdout.strip().splitlines()[-1])
    assert results.pop("asserts_enabled") is False
    expected = {f"{cls.__name__}-{name}" for cls in MODEL_LIST for name in HYPERPARAMETER_CASES}
    expected |= {f"{algo}-{case}" for algo, case in SPACE_IDS}
    assert set(results) == expected
    assert {name: outcome for name, outcome in results.items() if outcome != "ok"} == {}
