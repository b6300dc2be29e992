"""Export to ONNX / TorchScript: the exported file reproduces ``predict`` (issue 10)."""

import builtins
import json
import os
import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.envs import FakeImageEnv, IdentityEnv, IdentityEnvBox, SimpleMultiObsEnv
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_sac_ext import SAC
from sb3_sac_ext.commands.export import export_main
from sb3_sac_ext.export import (
    ExportDependencyError,
    ExportFormatError,
    export_policy,
    read_metadata,
    to_model_layout,
)

# torch >= 2.10 marks TorchScript (jit.trace / save / load) as deprecated; it is the .pt format we test
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

try:
    from sb3_sac_ext.discrete_sac import DiscreteSAC
except ImportError:  # pragma: no cover - written in parallel
    DiscreteSAC = None

needs_discrete_sac = pytest.mark.skipif(DiscreteSAC is None, reason="DiscreteSAC not available")


def tiny() -> dict:
    # A fresh dict each time: SB3 writes into policy_kwargs (use_sde)
    return dict(
        policy_kwargs=dict(net_arch=[32, 32]), buffer_size=200, batch_size=16, learning_starts=10, device="cpu", seed=0
    )


class DiscreteObsBoxActionEnv(gym.Env):
    """Discrete observations, Box actions (SB3 has no such test env)."""

    observation_space = spaces.Discrete(5)
    action_space = spaces.Box(-1.5, 2.0, shape=(2,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return int(self.np_random.integers(5)), {}

    def step(self, action):
        return int(self.np_random.integers(5)), 0.0, False, False, {}


def image_env(channel_first: bool = False, discrete: bool = False) -> gym.Env:
    return FakeImageEnv(
        action_dim=2, screen_height=36, screen_width=36, n_channels=3, discrete=discrete, channel_first=channel_first
    )


def env_observations(model, batch: int, seed: int = 0):
    """A batch of observations as the env returns them (channel-last images: before VecTransposeImage)."""
    space = model.get_env().unwrapped.observation_space
    space.seed(seed)
    samples = [space.sample() for _ in range(batch)]
    if isinstance(space, spaces.Dict):
        return {key: np.stack([sample[key] for sample in samples]) for key in space.spaces}
    return np.stack(samples)


def model_obs(model, obs):
    """Env observations -> the model's (VecTransposeImage's transposition, when SB3 wrapped the env in it)."""
    if model.get_env() is not model.get_env().unwrapped:
        return to_model_layout(model.observation_space, obs)
    return obs


def predict(model, obs):
    """``model.predict(deterministic=True)`` on observations as the env returns them."""
    return model.predict(model_obs(model, obs), deterministic=True)[0]


def run_onnx(path, obs):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = dict(obs) if isinstance(obs, dict) else {"obs": obs}
    return session.run(None, feeds)


def run_torchscript(path, obs):
    module = th.jit.load(str(path))
    with th.no_grad():
        if isinstance(obs, dict):
            outputs = module({key: th.as_tensor(value) for key, value in obs.items()})
        else:
            outputs = module(th.as_tensor(obs))
    return [output.numpy() for output in outputs]


RUNNERS = {".onnx": run_onnx, ".pt": run_torchscript}

CASES = {
    "box": lambda: SAC("MlpPolicy", IdentityEnvBox(-2.0, 3.0), **tiny()),
    "discrete_obs": lambda: SAC("MlpPolicy", DiscreteObsBoxActionEnv(), **tiny()),
    "image_channels_last": lambda: SAC("CnnPolicy", image_env(), **tiny()),
    "image_channels_first": lambda: SAC("CnnPolicy", image_env(channel_first=True), **tiny()),
    "dict": lambda: SAC("MultiInputPolicy", SimpleMultiObsEnv(random_start=False, discrete_actions=False), **tiny()),
}
if DiscreteSAC is not None:
    CASES.update(
        {
            "discrete_sac_box_obs": lambda: DiscreteSAC("MlpPolicy", IdentityEnv(4), **tiny()),
            "discrete_sac_image": lambda: DiscreteSAC("CnnPolicy", image_env(discrete=True), **tiny()),
            "discrete_sac_dict": lambda: DiscreteSAC("MultiInputPolicy", SimpleMultiObsEnv(random_start=False), **tiny()),
        }
    )


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
@pytest.mark.parametrize("case", list(CASES))
def test_deterministic_action_matches_predict(tmp_path, case, suffix):
    model = CASES[case]()
    if case == "box":
        model.learn(40)  # briefly trained: weights differ from their initialisation
    path = model.export(tmp_path / f"policy{suffix}", verify=False)
    assert path.is_file()
    for batch in (1, 7):  # the export used batch 2
        obs = env_observations(model, batch, seed=batch)
        expected = predict(model, obs)
        (action,) = RUNNERS[suffix](path, obs)
        assert action.shape == expected.shape
        np.testing.assert_allclose(action, expected, atol=1e-5)
        if isinstance(model.action_space, spaces.Box):
            assert np.all(action >= model.action_space.low) and np.all(action <= model.action_space.high)


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
@pytest.mark.parametrize("case", ["box", "dict", *(["discrete_sac_box_obs"] if DiscreteSAC is not None else [])])
def test_distribution_parameters(tmp_path, case, suffix):
    model = CASES[case]()
    path = export_policy(model, tmp_path / f"policy{suffix}", deterministic=False)
    obs = env_observations(model, 6)
    outputs = RUNNERS[suffix](path, obs)
    obs_tensor, _ = model.policy.obs_to_tensor(model_obs(model, obs))
    with th.no_grad():
        if isinstance(model.action_space, spaces.Box):
            mean, log_std, _ = model.policy.actor.get_action_dist_params(obs_tensor)
            expected = [mean, log_std]
        else:
            expected = [model.policy.actor.logits(obs_tensor)]
    assert len(outputs) == len(expected)
    for output, want in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(output, want.numpy(), atol=1e-5)
    assert read_metadata(path)["output_names"] == (["mean", "log_std"] if len(expected) == 2 else ["logits"])


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_gsde_distribution_parameters(tmp_path, suffix):
    """gSDE: the exported log_std is the per-observation std of SB3's StateDependentNoiseDistribution, also after learn."""
    model = SAC("MlpPolicy", IdentityEnvBox(-2.0, 3.0), use_sde=True, **tiny()).learn(30)
    path = export_policy(model, tmp_path / f"policy{suffix}", deterministic=False)
    obs = env_observations(model, 6)
    mean, log_std = RUNNERS[suffix](path, obs)
    actor = model.policy.actor
    with th.no_grad():
        obs_tensor, _ = model.policy.obs_to_tensor(model_obs(model, obs))
        mean_want, log_std_param, extra = actor.get_action_dist_params(obs_tensor)
        std_want = actor.action_dist.proba_distribution(mean_want, log_std_param, extra["latent_sde"]).distribution.stddev
    np.testing.assert_allclose(mean, mean_want.numpy(), atol=1e-5)
    np.testing.assert_allclose(np.exp(log_std), std_want.numpy(), rtol=1e-4)


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_vec_normalize_folded(tmp_path, suffix):
    venv = VecNormalize(DummyVecEnv([lambda: IdentityEnvBox(-2.0, 3.0)] * 2), clip_obs=1.5)
    model = SAC("MlpPolicy", venv, **tiny()).learn(30)
    venv.training = False
    path = model.export(tmp_path / f"policy{suffix}", normalize=venv)
    raw = np.random.default_rng(0).uniform(-6, 6, size=(9, 1)).astype(np.float32)  # some beyond clip_obs
    expected, _ = model.predict(venv.normalize_obs(raw), deterministic=True)
    (action,) = RUNNERS[suffix](path, raw)
    np.testing.assert_allclose(action, expected, atol=1e-5)
    assert read_metadata(path)["vec_normalize_folded"] is True


def test_metadata(tmp_path):
    model = CASES["image_channels_last"]()
    onnx_path = model.export(tmp_path / "policy.onnx")
    pt_path = model.export(tmp_path / "policy.pt")
    for meta in (read_metadata(onnx_path), read_metadata(pt_path), json.loads((tmp_path / "policy.pt.json").read_text())):
        assert meta["input_names"] == ["obs"] and meta["output_names"] == ["action"]
        assert meta["channels_last"] is True or meta["channels_last"] == "true"
        obs_space = (
            meta["observation_space"] if isinstance(meta["observation_space"], dict) else json.loads(meta["observation_space"])
        )
        assert obs_space["shape"] == [36, 36, 3] and obs_space["dtype"] == "uint8"
        assert "stable_baselines3_version" in meta and "sb3_sac_ext_version" in meta
    assert read_metadata(onnx_path)["exporter"].startswith("torch.onnx.export")
    assert sorted(os.listdir(tmp_path)) == ["policy.onnx", "policy.pt", "policy.pt.json"]  # no temporary file left


STANDALONE = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("sb3_sac_ext", "stable_baselines3", "gymnasium"):
            raise ImportError(f"{name} is blocked")
sys.meta_path.insert(0, Block())
import numpy as np
path, obs_path = sys.argv[1], sys.argv[2]
obs = np.load(obs_path)
if path.endswith(".onnx"):
    import onnxruntime as ort
    action = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"obs": obs})[0]
else:
    import torch
    action = torch.jit.load(path)(torch.as_tensor(obs))[0].numpy()
print(json.dumps(action.tolist()))
"""


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_runs_without_the_library(tmp_path, suffix):
    model = CASES["box"]()
    path = model.export(tmp_path / f"policy{suffix}")
    obs = env_observations(model, 4)
    np.save(tmp_path / "obs.npy", obs)
    # -I: isolated mode (no PYTHONPATH, no cwd on sys.path); the script also blocks the libraries' imports
    result = subprocess.run(
        [sys.executable, "-I", "-c", textwrap.dedent(STANDALONE), str(path), str(tmp_path / "obs.npy")],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    expected = predict(model, obs)
    np.testing.assert_allclose(np.array(json.loads(result.stdout)), expected, atol=1e-5)


def test_unknown_suffix(tmp_path):
    model = CASES["box"]()
    with pytest.raises(ExportFormatError, match=r"\.onnx.*\.pt") as error:
        model.export(tmp_path / "policy.tflite")
    assert isinstance(error.value, ValueError)
    with pytest.raises(ExportFormatError):
        model.export(tmp_path / "policy.onnx", format="tflite")
    assert not list(tmp_path.iterdir())


def test_missing_dependency(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def failing_import(name, *args, **kwargs):
        if name.split(".")[0] == "onnx":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "onnx", raising=False)
    monkeypatch.setattr(builtins, "__import__", failing_import)
    monkeypatch.setattr("importlib.import_module", lambda name, *a: failing_import(name))
    model = CASES["box"]()
    with pytest.raises(ExportDependencyError, match=r'pip install "sb3-sac-ext\[export\]"') as error:
        model.export(tmp_path / "policy.onnx")
    assert isinstance(error.value, ImportError)
    # TorchScript needs only torch
    model.export(tmp_path / "policy.pt")


def test_export_main(tmp_path, capsys):
    env_id = "IdentityEnvBox-v0"
    model = CASES["box"]()
    for exp_id in (1, 2):
        folder = tmp_path / "logs" / "sac" / f"{env_id}_{exp_id}"
        folder.mkdir(parents=True)
        model.save(folder / f"{env_id}.zip")
    output = tmp_path / "actor.onnx"
    assert export_main(["--algo", "sac", "--env", env_id, "-f", str(tmp_path / "logs"), "--output", str(output)]) == 0
    assert f"{env_id}_2" in capsys.readouterr().out
    obs = env_observations(model, 3)
    np.testing.assert_allclose(run_onnx(output, obs)[0], predict(model, obs), atol=1e-5)
    output_pt = tmp_path / "actor.pt"
    assert export_main(["--model", str(folder / f"{env_id}.zip"), "-o", str(output_pt)]) == 0
    np.testing.assert_allclose(run_torchscript(output_pt, obs)[0], predict(model, obs), atol=1e-5)
    with pytest.raises(FileNotFoundError):
        export_main(["--env", "Missing-v0", "-f", str(tmp_path / "logs"), "-o", str(output)])


def test_dynamo_exporter_fallback(tmp_path, monkeypatch):
    """When torch drops ``dynamo=False``, the torch.export-based exporter (onnxscript) is used, batch still dynamic."""
    pytest.importorskip("onnxscript")
    real_export = th.onnx.export

    def export_without_legacy(*args, dynamo=True, **kwargs):
        if not dynamo:
            raise TypeError("dynamo=False is no longer supported")
        return real_export(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(th.onnx, "export", export_without_legacy)
    model = CASES["box"]()
    path = model.export(tmp_path / "policy.onnx")
    assert read_metadata(path)["exporter"] == "torch.onnx.export(dynamo=True)"
    obs = env_observations(model, 7)
    np.testing.assert_allclose(run_onnx(path, obs)[0], predict(model, obs), atol=1e-5)


# ----------------------------------------------------------------------------------------------- recurrent policies


def tiny_recurrent(rnn_type: str = "lstm") -> dict:
    kwargs = tiny()
    kwargs["policy_kwargs"] = dict(net_arch=[32], lstm_hidden_size=16, n_lstm_layers=2, rnn_type=rnn_type)
    return kwargs


RECURRENT_CASES = {
    "sac_lstm": lambda: SAC("MlpLstmPolicy", IdentityEnvBox(-2.0, 3.0), **tiny_recurrent()),
    "sac_gru": lambda: SAC("MlpLstmPolicy", IdentityEnvBox(-2.0, 3.0), **tiny_recurrent("gru")),
}
if DiscreteSAC is not None:
    RECURRENT_CASES["discrete_sac_lstm"] = lambda: DiscreteSAC("MlpLstmPolicy", IdentityEnv(4), **tiny_recurrent())

# 6 steps, 3 envs (the export used batch 2): every episode starts at step 0, env 1 starts a new one at step 3
N_ENVS, N_STEPS = 3, 6


def episode_starts(t: int) -> np.ndarray:
    starts = np.zeros(N_ENVS, dtype=np.float32)
    if t == 0:
        starts[:] = 1.0
    elif t == 3:
        starts[1] = 1.0
    return starts


def rollout_predict(model):
    """``model.predict(obs, state, episode_start, deterministic=True)`` step by step: obs, actions and states."""
    state, steps = None, []
    for t in range(N_STEPS):
        obs = env_observations(model, N_ENVS, seed=10 + t)
        action, state = model.predict(obs, state=state, episode_start=episode_starts(t), deterministic=True)
        steps.append((obs, action, state))
    return steps


@pytest.mark.parametrize("case", list(RECURRENT_CASES))
def test_recurrent_matches_predict(tmp_path, case):
    model = RECURRENT_CASES[case]()
    gru = model.policy.rnn_type == "gru"
    state_names = ["h"] if gru else ["h", "c"]
    shape = (model.policy.n_lstm_layers, N_ENVS, model.policy.lstm_hidden_size)
    expected = rollout_predict(model)
    onnx_path = model.export(tmp_path / "policy.onnx")  # verified against predict over a sequence at export
    pt_path = model.export(tmp_path / "policy.pt")
    meta = read_metadata(onnx_path)
    assert meta["input_names"] == ["obs", *state_names, "episode_start"]
    assert meta["output_names"] == ["action", *(f"{name}_out" for name in state_names)]
    assert meta["recurrent"] is True and meta["rnn_type"] == model.policy.rnn_type
    assert meta["state_names"] == state_names and meta["state_shape"] == [shape[0], "batch", shape[2]]
    assert read_metadata(pt_path)["state_names"] == state_names

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    module = th.jit.load(str(pt_path))
    onnx_state = [np.zeros(shape, dtype=np.float32) for _ in state_names]
    pt_state = [th.zeros(shape) for _ in state_names]
    for t, (obs, action, state) in enumerate(expected):
        starts = episode_starts(t)
        onnx_action, *onnx_state = session.run(
            None, {"obs": obs, **dict(zip(state_names, onnx_state, strict=True)), "episode_start": starts}
        )
        with th.no_grad():
            pt_action, *pt_state = module(th.as_tensor(obs), *pt_state, th.as_tensor(starts))
        for got_action, got_state in ((onnx_action, onnx_state), (pt_action.numpy(), [s.numpy() for s in pt_state])):
            assert got_action.shape == action.shape
            np.testing.assert_allclose(got_action, action, atol=1e-5)
            for got, want in zip(got_state, state, strict=False):  # GRU: predict's zero c has no counterpart
                np.testing.assert_allclose(got, want, atol=1e-5)
    if gru:
        np.testing.assert_array_equal(expected[-1][2][1], 0.0)

    # Distribution parameters: the state outputs follow them (checked against the actor at export)
    dist_path = export_policy(model, tmp_path / "dist.onnx", deterministic=False)
    base = ["mean", "log_std"] if isinstance(model.action_space, spaces.Box) else ["logits"]
    assert read_metadata(dist_path)["output_names"] == [*base, *(f"{name}_out" for name in state_names)]


STANDALONE_RECURRENT = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("sb3_sac_ext", "stable_baselines3", "gymnasium"):
            raise ImportError(f"{name} is blocked")
sys.meta_path.insert(0, Block())
import numpy as np
path, data_path = sys.argv[1], sys.argv[2]
data = np.load(data_path)
obs_seq, starts_seq = data["obs"], data["starts"]
h = np.zeros(tuple(data["shape"]), dtype=np.float32)
c = np.zeros_like(h)
actions = []
if path.endswith(".onnx"):
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for obs, starts in zip(obs_seq, starts_seq):
        action, h, c = session.run(None, {"obs": obs, "h": h, "c": c, "episode_start": starts})
        actions.append(action.tolist())
else:
    import torch
    module = torch.jit.load(path)
    h, c = torch.as_tensor(h), torch.as_tensor(c)
    with torch.no_grad():
        for obs, starts in zip(obs_seq, starts_seq):
            action, h, c = module(torch.as_tensor(obs), h, c, torch.as_tensor(starts))
            actions.append(action.numpy().tolist())
    h = h.numpy()
print(json.dumps({"actions": actions, "h": np.asarray(h).tolist()}))
"""


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_recurrent_runs_without_the_library(tmp_path, suffix):
    model = RECURRENT_CASES["sac_lstm"]()
    path = model.export(tmp_path / f"policy{suffix}")
    expected = rollout_predict(model)
    shape = (model.policy.n_lstm_layers, N_ENVS, model.policy.lstm_hidden_size)
    np.savez(
        tmp_path / "data.npz",
        obs=np.stack([obs for obs, _, _ in expected]),
        starts=np.stack([episode_starts(t) for t in range(N_STEPS)]),
        shape=np.array(shape),
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", textwrap.dedent(STANDALONE_RECURRENT), str(path), str(tmp_path / "data.npz")],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    output = json.loads(result.stdout)
    np.testing.assert_allclose(np.array(output["actions"]), np.stack([a for _, a, _ in expected]), atol=1e-5)
    np.testing.assert_allclose(np.array(output["h"]), expected[-1][2][0], atol=1e-5)
