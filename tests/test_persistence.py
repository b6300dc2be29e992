"""Safe persistence (issue 5): pickle-free format, refusal of pickles, damaged files, non-finite values."""

import base64
import hashlib
import io
import json
import os
import pickle
import zipfile

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from sb3_sac_ext import SAC
from sb3_sac_ext.common import persistence
from sb3_sac_ext.common.errors import (
    ChecksumMismatchError,
    CorruptedFileError,
    FormatVersionError,
    MissingMemberError,
    ModelFileError,
    NonFiniteError,
    PickleNotAllowedError,
    UntrustedImportError,
    WrongAlgorithmError,
)
from sb3_sac_ext.common.schedules import ConstantSchedule, LinearDecay

try:
    from sb3_sac_ext import DiscreteSAC
except ImportError:  # pragma: no cover - written concurrently
    try:
        from sb3_sac_ext.discrete_sac import DiscreteSAC
    except ImportError:
        DiscreteSAC = None

from _persistence_envs import PointEnv

MODELS = [SAC] + ([DiscreteSAC] if DiscreteSAC is not None else [])


class _Tiny(dict):
    """Tiny settings; a fresh policy_kwargs each time (SB3 adds ``use_sde`` to the dict it is given)."""

    def keys(self):
        return ["buffer_size", "batch_size", "learning_starts", "policy_kwargs", "seed"]

    def __getitem__(self, key):
        return dict(buffer_size=1000, batch_size=32, learning_starts=30, policy_kwargs=dict(net_arch=[32, 32]), seed=0)[key]


TINY = _Tiny()


def make_env(cls, **kwargs):
    return PointEnv(discrete=cls is not SAC, **kwargs)


_TRAINED = {}


def trained(cls, tmp_path_factory):
    """One tiny trained model per class, saved once (module cache)."""
    if cls not in _TRAINED:
        model = cls("MlpPolicy", make_env(cls), **TINY)
        model.learn(80)
        path = tmp_path_factory.mktemp(cls.__name__) / "model.zip"
        model.save(path)
        _TRAINED[cls] = (model, path)
    return _TRAINED[cls]


@pytest.fixture(params=MODELS, ids=lambda c: c.__name__)
def saved(request, tmp_path_factory):
    return (request.param, *trained(request.param, tmp_path_factory))


class Payload:
    """Unpickling this creates the marker file."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def payload(tmp_path):
    marker = tmp_path / "PWNED"
    Payload.marker = str(marker)
    yield marker
    assert not marker.exists(), "a pickle was executed"


def assert_nested_equal(a, b, where=""):
    if isinstance(a, th.Tensor):
        assert isinstance(b, th.Tensor) and a.dtype == b.dtype and th.equal(a.cpu(), b.cpu()), where
    elif isinstance(a, dict):
        assert type(b) is dict or isinstance(b, dict), where
        assert list(a.keys()) == list(b.keys()), f"{where}: {list(a)} != {list(b)}"
        for key in a:
            assert_nested_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: {a!r} != {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_nested_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b and type(a) is type(b), f"{where}: {a!r} != {b!r}"


def rewrite_zip(src, dst, replace=None, drop=(), fix_manifest=True):
    """Copy a zip, replacing/dropping members; optionally recompute the manifest's sha256 to reach deeper checks."""
    replace = dict(replace or {})
    with zipfile.ZipFile(src) as zin:
        members = {name: zin.read(name) for name in zin.namelist() if name not in drop}
    members.update(replace)
    if fix_manifest and "manifest.json" in members and "manifest.json" not in replace:
        manifest = json.loads(members["manifest.json"])
        manifest["members"] = {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in members.items()
            if name != "manifest.json"
        }
        members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(dst, "w") as zout:
        for name, data in members.items():
            zout.writestr(name, data)
    return dst


# ---------------------------------------------------------------------------------------------- round trip


def test_round_trip_is_exact(saved, tmp_path):
    cls, model, path = saved
    loaded = cls.load(path, env=make_env(cls))
    assert_nested_equal(model.get_parameters(), loaded.get_parameters(), "params")
    for name in model.optimizers:
        assert_nested_equal(model.optimizers[name].state_dict(), loaded.optimizers[name].state_dict(), name)
    assert th.equal(model.temperature.value, loaded.temperature.value)
    assert loaded.num_timesteps == model.num_timesteps and loaded._n_updates == model._n_updates
    assert loaded.lr_schedule == model.lr_schedule and loaded.lr_schedules == model.lr_schedules
    assert loaded.observation_space == model.observation_space and loaded.action_space == model.action_space
    obs = np.stack([model.observation_space.sample() for _ in range(8)])
    assert np.array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    # path handling like SB3: ".zip" appended when missing; file-like objects work
    model.save(tmp_path / "noext")
    assert (tmp_path / "noext.zip").is_file()
    cls.load(tmp_path / "noext")
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    assert_nested_equal(model.get_parameters(), cls.load(buffer).get_parameters())
    # set_parameters(path) reads our format
    fresh = cls("MlpPolicy", make_env(cls), **{**TINY, "seed": 1})
    fresh.set_parameters(str(path))
    assert_nested_equal(model.get_parameters(), fresh.get_parameters())


def test_no_pickle_on_default_path(saved, tmp_path, monkeypatch):
    cls, model, _ = saved

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used on the default path")

    original_th_load = th.load

    def th_load(*args, **kwargs):
        if not kwargs.get("weights_only", False):
            raise AssertionError("torch.load(weights_only=False) on the default path")
        return original_th_load(*args, **kwargs)

    for module, name in ((pickle, "load"), (pickle, "loads"), (cloudpickle, "load"), (cloudpickle, "loads")):
        monkeypatch.setattr(module, name, forbidden)
    monkeypatch.setattr(th, "load", th_load)
    model.save(tmp_path / "m.zip")
    model.save_replay_buffer(tmp_path / "rb.zip")
    loaded = cls.load(tmp_path / "m.zip", env=make_env(cls))
    loaded.load_replay_buffer(tmp_path / "rb.zip")
    assert np.array_equal(loaded.replay_buffer.observations, model.replay_buffer.observations)
    assert loaded.replay_buffer.pos == model.replay_buffer.pos and loaded.replay_buffer.full == model.replay_buffer.full
    ckpt = persistence.save_checkpoint(loaded, tmp_path / "ckpt")
    persistence.load_checkpoint(ckpt, env=make_env(cls))


def test_spaces_and_values_as_json():
    values = {
        "box": spaces.Box(low=np.array([-1.0, 0.0]), high=np.array([2.0, np.inf]), dtype=np.float64),
        "box_int": spaces.Box(0, 255, (3, 4), np.uint8),
        "discrete": spaces.Discrete(5, start=2),
        "multi_discrete": spaces.MultiDiscrete([3, 4]),
        "multi_binary": spaces.MultiBinary(6),
        "dict": spaces.Dict({"a": spaces.Discrete(2), "b": spaces.Box(-1, 1, (2,))}),
        "nested": {1: (1.5, float("nan")), "x": [np.int64(3), np.float32(0.1)]},
        "schedule": LinearDecay(3e-4, 1e-5),
        "activation": th.nn.ReLU,
        "optimizer": th.optim.Adam,
    }
    text = json.dumps(persistence.Encoder()(values))
    decoded = persistence.Decoder("test")(json.loads(text))
    for key in ("box", "box_int", "discrete", "multi_discrete", "multi_binary", "dict"):
        assert decoded[key] == values[key] and decoded[key].dtype == values[key].dtype, key
    assert decoded["schedule"] == values["schedule"] and decoded["activation"] is th.nn.ReLU
    assert decoded["nested"][1][0] == 1.5 and np.isnan(decoded["nested"][1][1])
    assert type(decoded["nested"]["x"][0]) is np.int64 and decoded["nested"]["x"][1] == np.float32(0.1)


def test_lambda_schedule_is_saved_as_constant_with_warning(tmp_path):
    model = SAC("MlpPolicy", make_env(SAC), learning_rate=lambda p: 1e-3 * p, **TINY)
    with pytest.warns(UserWarning, match="callable"):
        model.save(tmp_path / "m.zip")
    loaded = SAC.load(tmp_path / "m.zip")
    assert isinstance(loaded.lr_schedule, ConstantSchedule) and loaded.lr_schedule.value == pytest.approx(1e-3)


def test_untrusted_import_refused(saved, tmp_path, payload):
    cls, _, path = saved
    with zipfile.ZipFile(path) as z:
        data = json.loads(z.read("data.json"))
    data["policy_kwargs"]["activation_fn"] = {"::import": "os:system"}
    bad = rewrite_zip(path, tmp_path / "bad.zip", {"data.json": json.dumps(data).encode()})
    with pytest.raises(UntrustedImportError, match=r"os:system.*allow_pickle=True"):
        cls.load(bad)


# ---------------------------------------------------------------------------------------------- pickles


def sb3_sac_zip(tmp_path):
    from stable_baselines3 import SAC as SB3SAC

    sb3 = SB3SAC("MlpPolicy", PointEnv(), buffer_size=100, policy_kwargs=dict(net_arch=[32, 32]), seed=0)
    sb3.save(tmp_path / "sb3_sac.zip")
    return sb3, tmp_path / "sb3_sac.zip"


def test_sb3_zip_needs_allow_pickle(tmp_path):
    sb3, path = sb3_sac_zip(tmp_path)
    with pytest.raises(PickleNotAllowedError, match=r"policy_class.*allow_pickle=True") as info:
        SAC.load(path)
    assert str(path) in str(info.value)
    model = SAC.load(path, allow_pickle=True)
    obs = np.stack([sb3.observation_space.sample() for _ in range(8)])
    assert np.allclose(sb3.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0], atol=1e-6)


def test_payloads_never_run(saved, tmp_path, payload):
    cls, model, path = saved
    evil = base64.b64encode(cloudpickle.dumps(Payload())).decode()
    # 1. SB3-style zip with a :serialized: item
    if cls is SAC:
        _, sb3_path = sb3_sac_zip(tmp_path)
        with zipfile.ZipFile(sb3_path) as z:
            data = json.loads(z.read("data"))
        data["action_noise"] = {":type:": "x", ":serialized:": evil}
        bad = rewrite_zip(sb3_path, tmp_path / "sb3_evil.zip", {"data": json.dumps(data).encode()})
        with pytest.raises(PickleNotAllowedError, match="action_noise"):
            SAC.load(bad)
    # 2. our settings with a :serialized: item (manifest re-hashed, so only the content check stops it)
    with zipfile.ZipFile(path) as z:
        data = json.loads(z.read("data.json"))
    data["action_noise"] = {":type:": "x", ":serialized:": evil}
    bad = rewrite_zip(path, tmp_path / "evil_data.zip", {"data.json": json.dumps(data).encode()})
    with pytest.raises(PickleNotAllowedError, match="action_noise"):
        cls.load(bad)
    # 3. weights: a torch.save pickle in place of the safetensors member
    pth = io.BytesIO()
    th.save({"x": Payload()}, pth)
    bad = rewrite_zip(path, tmp_path / "evil_weights.zip", {"tensors.safetensors": pth.getvalue()})
    with pytest.raises(CorruptedFileError, match="safetensors"):
        cls.load(bad)
    # 3b. SB3 layout (no manifest), no :serialized: data but a malicious .pth: weights_only refuses it
    sb3_like = tmp_path / "evil_pth.zip"
    with zipfile.ZipFile(sb3_like, "w") as z:
        z.writestr("data", json.dumps({"verbose": 0}))
        z.writestr("policy.pth", pth.getvalue())
    with pytest.raises(ModelFileError):
        cls.load(sb3_like)
    # 4. replay buffer: SB3's pickled format, and an object array in ours
    with open(tmp_path / "rb.pkl", "wb") as f:
        pickle.dump(Payload(), f)
    with pytest.raises(PickleNotAllowedError, match="allow_pickle=True"):
        model.load_replay_buffer(tmp_path / "rb.pkl")
    model.save_replay_buffer(tmp_path / "rb.zip")
    obj = io.BytesIO()
    np.save(obj, np.array([Payload()], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(tmp_path / "rb.zip") as z:
        first_array = next(n for n in z.namelist() if n.endswith(".npy"))
    bad = rewrite_zip(tmp_path / "rb.zip", tmp_path / "rb_evil.zip", {first_array: obj.getvalue()})
    with pytest.raises(PickleNotAllowedError):
        model.load_replay_buffer(bad)
    # 5. normalisation statistics: SB3's VecNormalize.save is a pickle
    from stable_baselines3.common.vec_env import DummyVecEnv

    with open(tmp_path / "vecnorm.pkl", "wb") as f:
        pickle.dump(Payload(), f)
    with pytest.raises(PickleNotAllowedError):
        persistence.load_vec_normalize(tmp_path / "vecnorm.pkl", DummyVecEnv([PointEnv]))


def test_vec_normalize_round_trip(tmp_path):
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    venv = VecNormalize(DummyVecEnv([PointEnv]), gamma=0.9, clip_obs=5.0)
    venv.reset()
    for _ in range(20):
        venv.step(np.array([venv.action_space.sample()]))
    persistence.save_vec_normalize(venv, tmp_path / "vn")
    loaded = persistence.load_vec_normalize(tmp_path / "vn", DummyVecEnv([PointEnv]))
    assert np.array_equal(loaded.obs_rms.mean, venv.obs_rms.mean) and np.array_equal(loaded.obs_rms.var, venv.obs_rms.var)
    assert loaded.obs_rms.count == venv.obs_rms.count and loaded.ret_rms.count == venv.ret_rms.count
    assert loaded.gamma == 0.9 and loaded.clip_obs == 5.0


# ---------------------------------------------------------------------------------------------- damaged files


def damaged_files(path, tmp_path):
    raw = path.read_bytes()
    cases = {}

    def put(name, data, error):
        target = tmp_path / f"{name}.zip"
        target.write_bytes(data)
        cases[name] = (target, error)

    put("empty", b"", CorruptedFileError)
    put("random", np.random.default_rng(0).bytes(4096), CorruptedFileError)
    for fraction in (0.1, 0.5, 0.9, 0.99):
        put(f"truncated_{int(fraction * 100)}", raw[: int(len(raw) * fraction)], CorruptedFileError)
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("tensors.safetensors")
        start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    flipped = bytearray(raw)
    flipped[start + info.compress_size // 2] ^= 0xFF
    put("flipped_byte", bytes(flipped), ChecksumMismatchError)
    cases["missing_member"] = (
        rewrite_zip(path, tmp_path / "missing.zip", drop=("tensors.safetensors",), fix_manifest=False),
        MissingMemberError,
    )
    cases["bad_manifest_json"] = (
        rewrite_zip(path, tmp_path / "badjson.zip", {"manifest.json": b"{not json"}),
        CorruptedFileError,
    )
    cases["bad_data_json"] = (rewrite_zip(path, tmp_path / "baddata.zip", {"data.json": b"[1, 2"}), CorruptedFileError)
    # altered member, manifest not updated: sha256 mismatch
    cases["altered_member"] = (
        rewrite_zip(path, tmp_path / "altered.zip", {"data.json": b"{}"}, fix_manifest=False),
        ChecksumMismatchError,
    )
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
    manifest["format_version"] = persistence.FORMAT_VERSION + 1
    cases["newer_version"] = (
        rewrite_zip(path, tmp_path / "newer.zip", {"manifest.json": json.dumps(manifest).encode()}),
        FormatVersionError,
    )
    return cases


def test_damaged_files_raise_one_typed_error(saved, tmp_path):
    cls, _, path = saved
    for name, (target, error) in damaged_files(path, tmp_path).items():
        with pytest.raises(error) as info:
            cls.load(target)
        message = str(info.value)
        assert str(target) in message, f"{name}: {message}"
        assert isinstance(info.value, ValueError), name
        if name == "newer_version":
            assert "upgrade sb3-sac-ext" in message


def test_wrong_algorithm(saved, tmp_path):
    cls, _, path = saved
    other = next((c for c in MODELS if c is not cls), None)
    if other is not None:
        with pytest.raises(WrongAlgorithmError, match=f"holds a {cls.__name__} model, not {other.__name__}"):
            other.load(path)
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
    manifest["algorithm"] = "SomethingElse"
    fake = rewrite_zip(path, tmp_path / "other.zip", {"manifest.json": json.dumps(manifest).encode()})
    with pytest.raises(WrongAlgorithmError, match=f"holds a SomethingElse model, not {cls.__name__}"):
        cls.load(fake)
    from stable_baselines3 import PPO

    PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=32, policy_kwargs=dict(net_arch=[8])).save(tmp_path / "ppo.zip")
    for allow_pickle in (False, True):
        with pytest.raises(WrongAlgorithmError, match=f"PPO.*not {cls.__name__}"):
            cls.load(tmp_path / "ppo.zip", allow_pickle=allow_pickle)
    # a replay buffer file is not a model
    _TRAINED[cls][0].save_replay_buffer(tmp_path / "rb.zip")
    with pytest.raises(WrongAlgorithmError, match="holds a replay buffer, not a model"):
        cls.load(tmp_path / "rb.zip")


def test_damaged_replay_buffer(saved, tmp_path):
    _cls, model, _ = saved
    model.save_replay_buffer(tmp_path / "rb.zip")
    raw = (tmp_path / "rb.zip").read_bytes()
    for name, data in (("empty", b""), ("truncated", raw[: len(raw) // 2]), ("random", os.urandom(1000))):
        (tmp_path / f"{name}.zip").write_bytes(data)
        with pytest.raises(CorruptedFileError, match=name):
            model.load_replay_buffer(tmp_path / f"{name}.zip")


# ---------------------------------------------------------------------------------------------- bad input


def test_predict_bad_input(saved):
    _cls, model, _ = saved
    obs = model.observation_space.sample()
    with pytest.raises(TypeError, match=r"\(obs, info\).*\(2,\)"):
        model.predict((obs, {}))
    with pytest.raises(TypeError, match=r"\(2,\)"):
        model.predict(np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"shape \(3,\); expected \(2,\)"):
        model.predict(np.zeros(3, np.float32))
    for value in (np.nan, np.inf):
        bad = obs.copy()
        bad[0] = value
        with pytest.raises(NonFiniteError):
            model.predict(bad)


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_nan_reward_stops_training_before_the_buffer(cls):
    model = cls("MlpPolicy", make_env(cls, nan_reward_at=45), **TINY)
    with pytest.raises(NonFiniteError, match=r"step 45.*reward contains NaN"):
        model.learn(100)
    assert np.isfinite(model.replay_buffer.rewards).all()
    assert all(th.isfinite(p).all() for p in model.policy.parameters())


def test_nan_loss_leaves_weights_unchanged(saved):
    cls, model, path = saved
    model = cls.load(path, env=make_env(cls))
    model.replay_buffer = _TRAINED[cls][0].replay_buffer
    from stable_baselines3.common.logger import configure

    model.set_logger(configure(None, []))
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    temperature = model.temperature.value.clone()
    saved_rewards = model.replay_buffer.rewards.copy()
    try:
        model.replay_buffer.rewards[:] = np.nan
        with pytest.raises(NonFiniteError, match="loss"):
            model.train(gradient_steps=3, batch_size=32)
    finally:
        model.replay_buffer.rewards[:] = saved_rewards
    after = model.policy.state_dict()
    for key, value in before.items():
        assert th.isfinite(after[key]).all(), key
        if "critic_target" not in key:  # the target moves towards the (unchanged) online critic
            assert th.equal(value, after[key]), key
    assert th.equal(temperature, model.temperature.value)
    model.train(gradient_steps=2, batch_size=32)  # recovers once the data is fine


# ---------------------------------------------------------------------------------------------- package layout


# Names that files, pickles and user code may hold as "sb3_sac_ext.common.persistence:<name>"
OLD_PATHS = [
    "SafeSubprocVecEnv",
    "SafeCheckpointCallback",
    "Encoder",
    "Decoder",
    "ContainerWriter",
    "Container",
    "save_model",
    "load_model",
    "read_parameters",
    "save_replay_buffer",
    "load_replay_buffer",
    "save_vec_normalize",
    "load_vec_normalize",
    "save_checkpoint",
    "load_checkpoint",
    "list_checkpoints",
    "get_rng_state",
    "set_rng_state",
    "check_finite",
    "check_transition",
    "check_predict_observation",
    "atomic_write",
    "resolve_import",
    "_read_path",
    "_is_our_format",
]


@pytest.mark.parametrize("name", OLD_PATHS)
def test_old_import_paths_resolve(name):
    found = persistence.resolve_import(f"sb3_sac_ext.common.persistence:{name}")
    assert found is getattr(persistence, name)
    # its new home is trusted too, so that files saved from now on load
    path = f"{found.__module__}:{found.__qualname__}"
    assert path.startswith("sb3_sac_ext.common.") and persistence.resolve_import(path) is found


def test_sha256_file_and_space_schema(saved):
    _, model, path = saved
    assert persistence.sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    # the one space schema is the one model files hold
    with zipfile.ZipFile(path) as z:
        data = json.loads(z.read("data.json"))
    assert data["observation_space"]["::space"] == persistence.space_to_json(model.observation_space)
    assert persistence.space_from_json(data["action_space"]["::space"]) == model.action_space
