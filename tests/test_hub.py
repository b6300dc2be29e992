"""
Hub push and pull (sb3_sac_ext.hub) against real servers on 127.0.0.1, with the real huggingface_hub client.

- Pull path: ``olah`` (a Hub mirror server from PyPI) in offline mode, serving a git repository built by the test.
- Push path (and the failure modes that need precise status codes): ``tests/hub_test_server.py``, a test double of
  the Hub API (no installable server accepts pushes offline).
"""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("huggingface_hub")

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")

import huggingface_hub
from huggingface_hub import constants as hf_constants

from sb3_sac_ext import SAC, DiscreteSAC, hub
from sb3_sac_ext.common.errors import (
    ChecksumMismatchError,
    HubAuthError,
    HubConnectionError,
    HubFileNotFoundError,
    HubRepositoryNotFoundError,
    HubRevisionNotFoundError,
    PickleNotAllowedError,
)

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from hub_test_server import HubTestServer

pytestmark = pytest.mark.timeout(120)

TOKEN = "hf_test_token"
OBS = np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3)


@pytest.fixture(autouse=True)
def hub_settings(tmp_path, monkeypatch):
    """No real token, no Xet, a private cache, short retry waits and timeouts."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "no_token"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(hub, "RETRY_WAIT", 0.05)
    monkeypatch.setattr(hub, "TIMEOUT", 10.0)


@pytest.fixture
def server():
    test_server = HubTestServer(tokens=(TOKEN,))
    test_server.start()
    yield test_server
    test_server.stop()


@pytest.fixture(scope="module")
def sac_model():
    model = SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[32, 32]), learning_starts=100, batch_size=32, seed=0)
    return model.learn(200)


def _predict(model, obs=OBS):
    return model.predict(obs, deterministic=True)[0]


def _push(model, server, repo_id="me/sac-Pendulum-v1", env_id="Pendulum-v1", **kwargs):
    return hub.push_to_hub(model, repo_id, env_id, n_eval_episodes=1, token=TOKEN, endpoint=server.endpoint, **kwargs)


def _pull(server, repo_id="me/sac-Pendulum-v1", cache_dir=None, **kwargs):
    return hub.load_from_hub(repo_id, endpoint=server.endpoint, cache_dir=cache_dir, **kwargs)


# ------------------------------------------------------------------------------------------------ push + pull


def test_round_trip(sac_model, server, tmp_path):
    sha = _push(sac_model, server)
    assert len(sha) == 40 and int(sha, 16) >= 0
    files = server.files("me/sac-Pendulum-v1", sha)
    expected = {"sac-Pendulum-v1.zip", "config.json", "results.json", "hyperparams.yml", "README.md", "sha256sums.json"}
    assert expected <= set(files)
    # one commit after the repository's initial one
    assert [name for _, name, _ in server.requests].count("commit") == 1

    manifest = json.loads(files["sha256sums.json"])
    assert manifest["format"] == hub.MANIFEST_FORMAT and manifest["version"] == 1
    assert set(manifest["files"]) == expected - {"sha256sums.json"}
    import hashlib

    for name, digest in manifest["files"].items():
        assert hashlib.sha256(files[name]).hexdigest() == digest

    card = huggingface_hub.ModelCard(files["README.md"].decode())
    assert card.data.library_name == "sb3-sac-ext"
    assert {"sb3-sac-ext", "reinforcement-learning", "Pendulum-v1"} <= set(card.data.tags)
    results = json.loads(files["results.json"])
    assert card.data.eval_results[0].metric_type == "mean_reward"
    assert card.data.eval_results[0].dataset_type == "Pendulum-v1"
    assert f"{results['mean_reward']:.2f}" in str(card.data.eval_results[0].metric_value)
    assert results["n_eval_episodes"] == 1 and results["deterministic"] is True and "eval_datetime" in results
    config = json.loads(files["config.json"])
    assert config["algo"] == "sac" and config["hyperparameters"]["policy_kwargs"]["net_arch"] == [32, 32]
    assert {"sb3_sac_ext", "stable_baselines3"} <= set(config["versions"])

    # the YAML entry reads back as RL Zoo hyperparameters
    from sb3_sac_ext.config import prepare_model_kwargs

    (tmp_path / "h.yml").write_bytes(files["hyperparams.yml"])
    from sb3_sac_ext.config import get_hyperparams

    kwargs, _ = prepare_model_kwargs(get_hyperparams("sac", "Pendulum-v1", tmp_path / "h.yml"))
    assert kwargs["policy"] == "MlpPolicy" and kwargs["policy_kwargs"]["net_arch"] == [32, 32]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a pinned, verified download warns about nothing
        loaded = _pull(server, revision=sha, cache_dir=tmp_path / "cache")
    assert isinstance(loaded, SAC)
    np.testing.assert_allclose(_predict(loaded), _predict(sac_model))


def test_pull_without_revision_warns(sac_model, server, tmp_path):
    _push(sac_model, server)
    with pytest.warns(UserWarning, match="No revision pins"):
        loaded = _pull(server, cache_dir=tmp_path / "cache")
    np.testing.assert_allclose(_predict(loaded), _predict(sac_model))


def test_discrete_sac_with_vec_normalize(server, tmp_path):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(make_vec_env("CartPole-v1", n_envs=1, seed=0))
    model = DiscreteSAC("MlpPolicy", env, policy_kwargs=dict(net_arch=[32, 32]), learning_starts=50, batch_size=16, seed=0)
    model.learn(100)
    sha = _push(model, server, repo_id="me/discrete_sac-CartPole-v1", env_id="CartPole-v1")
    files = server.files("me/discrete_sac-CartPole-v1", sha)
    assert {"discrete_sac-CartPole-v1.zip", hub.VEC_NORMALIZE_FILE} <= set(files)

    import gymnasium as gym

    loaded = _pull(server, "me/discrete_sac-CartPole-v1", revision=sha, env=gym.make("CartPole-v1"), cache_dir=tmp_path / "c")
    assert isinstance(loaded, DiscreteSAC)
    stats = loaded.get_vec_normalize_env()
    assert stats is not None and not stats.training
    np.testing.assert_allclose(stats.obs_rms.mean, env.obs_rms.mean)
    obs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    np.testing.assert_array_equal(_predict(loaded, obs), _predict(model, obs))


def test_recurrent_model_and_the_cards_usage_code(server, tmp_path):
    """A recurrent DiscreteSAC goes through push and pull, and the model card's usage code runs as written."""
    model = DiscreteSAC(
        "MlpLstmPolicy", "CartPole-v1", learning_starts=40, batch_size=32, seed=0,
        policy_kwargs=dict(net_arch=[16], lstm_hidden_size=8, sequence_length=4),
    )  # fmt: skip
    model.learn(60)
    repo_id = "me/discrete_sac-CartPole-v1"
    sha = _push(model, server, repo_id=repo_id, env_id="CartPole-v1")
    card = server.files(repo_id, sha)["README.md"].decode()
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert "state=state" in code and "<commit sha>" in code
    code = code.replace('revision="<commit sha>"', f'revision="{sha}", endpoint="{server.endpoint}"')
    namespace = {}
    exec(compile(code, "model card", "exec"), namespace)
    loaded, state = namespace["model"], namespace["state"]
    assert isinstance(loaded, DiscreteSAC) and loaded.policy.lstm_hidden_size == 8
    assert state[0].shape == (1, 1, 8)  # the RNN state came back from every predict call
    obs = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    starts = np.ones(3, dtype=bool)
    np.testing.assert_array_equal(
        loaded.predict(obs, episode_start=starts, deterministic=True)[0],
        model.predict(obs, episode_start=starts, deterministic=True)[0],
    )


def test_push_to_existing_repository(sac_model, server, tmp_path):
    first = _push(sac_model, server)
    second = _push(sac_model, server, commit_message="second push")
    assert first != second
    loaded = _pull(server, revision=first, cache_dir=tmp_path / "cache")
    np.testing.assert_allclose(_predict(loaded), _predict(sac_model))
    # a failed commit to a repository that existed before does not delete it
    server.faults["commit"] = 503
    with pytest.raises(HubConnectionError):
        _push(sac_model, server)
    assert "me/sac-Pendulum-v1" in server.repos


def test_repository_invisible_to_lookup_is_never_deleted(sac_model, server):
    api = huggingface_hub.HfApi(endpoint=server.endpoint, token=TOKEN)
    api.create_repo("me/sac-Pendulum-v1", private=True)
    server.faults["info"] = (404, "RepoNotFound")  # the lookup cannot see it, create_repo answers 409
    server.faults["commit"] = 503
    with pytest.raises(HubConnectionError):
        _push(sac_model, server)
    assert "me/sac-Pendulum-v1" in server.repos
    assert "delete" not in [name for _, name, _ in server.requests]


def test_video_or_clear_skip(sac_model, server):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sha = _push(sac_model, server, video=True, video_length=10)
    files = server.files("me/sac-Pendulum-v1", sha)
    skipped = [w for w in caught if "Replay video skipped" in str(w.message)]
    assert (hub.VIDEO_FILE in files) != bool(skipped)
    if hub.VIDEO_FILE in files:
        assert hub.VIDEO_FILE in json.loads(files["sha256sums.json"])["files"]


# ------------------------------------------------------------------------------------------------ failure modes


def test_no_token_fails_before_any_request(sac_model, server):
    with pytest.raises(HubAuthError, match="No Hugging Face token: nothing was uploaded"):
        hub.push_to_hub(sac_model, "me/sac-Pendulum-v1", "Pendulum-v1", n_eval_episodes=1, endpoint=server.endpoint)
    assert server.requests == []


def test_refused_token(sac_model, server):
    with pytest.raises(HubAuthError, match="refused the token"):
        hub.push_to_hub(
            sac_model, "me/sac-Pendulum-v1", "Pendulum-v1", n_eval_episodes=1, token="hf_wrong", endpoint=server.endpoint
        )
    assert server.repos == {}


@pytest.mark.parametrize("status", [503, 500])
def test_server_error_on_commit_leaves_no_repository(sac_model, server, status):
    server.faults["commit"] = status
    with pytest.raises(HubConnectionError, match=f"failed {hub.RETRIES} times.*HTTP {status}.*deleted again"):
        _push(sac_model, server)
    assert [name for _, name, _ in server.requests].count("commit") == hub.RETRIES
    assert [name for _, name, _ in server.requests].count("create") == 1
    assert server.repos == {}  # created right before the commit, deleted after it failed


def test_server_error_on_create(sac_model, server):
    server.faults["create"] = 503
    with pytest.raises(HubConnectionError):
        _push(sac_model, server)
    assert server.repos == {} and "commit" not in [name for _, name, _ in server.requests]


def test_network_down(sac_model, tmp_path):
    stopped = HubTestServer()
    endpoint = stopped.start()
    stopped.stop()
    start = time.monotonic()
    with pytest.raises(HubConnectionError, match="unreachable"):
        hub.push_to_hub(sac_model, "me/sac-Pendulum-v1", "Pendulum-v1", n_eval_episodes=1, token=TOKEN, endpoint=endpoint)
    with pytest.raises(HubConnectionError, match="unreachable"):
        hub.load_from_hub("me/sac-Pendulum-v1", revision="0" * 40, endpoint=endpoint, cache_dir=tmp_path)
    assert time.monotonic() - start < 20


def test_missing_repository_revision_file(sac_model, server, tmp_path):
    sha = _push(sac_model, server)
    with pytest.raises(HubRepositoryNotFoundError, match=r"Repository 'me/nothing' does not exist"):
        _pull(server, "me/nothing", revision=sha, cache_dir=tmp_path)
    with pytest.raises(HubRevisionNotFoundError, match=r"Revision '0{40}' does not exist"):
        _pull(server, revision="0" * 40, cache_dir=tmp_path)
    with pytest.raises(HubFileNotFoundError, match=r"File 'other\.zip' does not exist"):
        _pull(server, filename="other.zip", revision=sha, cache_dir=tmp_path)
    assert not issubclass(HubRepositoryNotFoundError, HubRevisionNotFoundError)


def test_tampered_file_is_refused(sac_model, server, tmp_path):
    sha = _push(sac_model, server)
    data = bytearray(server.files("me/sac-Pendulum-v1", sha)["sac-Pendulum-v1.zip"])
    data[-30] ^= 0xFF
    server.tamper("me/sac-Pendulum-v1", "sac-Pendulum-v1.zip", bytes(data))
    with pytest.raises(ChecksumMismatchError, match=r"sac-Pendulum-v1\.zip .*does not match sha256sums\.json"):
        _pull(server, revision=sha, cache_dir=tmp_path)


# ------------------------------------------------------------------------------------------------ SB3 / RL Zoo repositories


def test_sb3_zip_from_hub_needs_allow_pickle(server, tmp_path):
    from stable_baselines3 import SAC as SB3SAC

    sb3_model = SB3SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[32, 32]), seed=0)
    sb3_model.save(tmp_path / "sac-Pendulum-v1.zip")
    api = huggingface_hub.HfApi(endpoint=server.endpoint, token=TOKEN)
    api.create_repo("sb3/sac-Pendulum-v1")
    info = api.create_commit(
        "sb3/sac-Pendulum-v1",
        [huggingface_hub.CommitOperationAdd("sac-Pendulum-v1.zip", str(tmp_path / "sac-Pendulum-v1.zip"))],
        commit_message="SB3 upload (huggingface_sb3 layout)",
    )
    with (
        pytest.warns(UserWarning, match="no sha256sums.json"),
        pytest.raises(PickleNotAllowedError, match="allow_pickle=True"),
    ):
        _pull(server, "sb3/sac-Pendulum-v1", revision=info.oid, cache_dir=tmp_path / "c")
    with pytest.warns(UserWarning, match="no sha256sums.json"):
        loaded = _pull(server, "sb3/sac-Pendulum-v1", revision=info.oid, allow_pickle=True, cache_dir=tmp_path / "c")
    assert isinstance(loaded, SAC)
    np.testing.assert_allclose(_predict(loaded), _predict(sb3_model), atol=1e-6)


# ------------------------------------------------------------------------------------------------ command line


def test_cli_push_and_pull(sac_model, server, tmp_path, capsys):
    from sb3_sac_ext.cli import main

    sac_model.save(tmp_path / "model.zip")
    common = ["--endpoint", server.endpoint]
    assert (
        main(
            [
                "push",
                "--repo-id",
                "me/sac-Pendulum-v1",
                "--model",
                str(tmp_path / "model.zip"),
                "--n-eval-episodes",
                "1",
                "--token",
                TOKEN,
                *common,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    sha = out.split("at commit ")[1].split()[0]
    assert len(sha) == 40
    output = tmp_path / "pulled.zip"
    assert (
        main(["pull", "me/sac-Pendulum-v1", "--revision", sha, "-o", str(output), "--cache-dir", str(tmp_path / "c"), *common])
        == 0
    )
    np.testing.assert_allclose(_predict(SAC.load(output)), _predict(sac_model))
    assert main(["pull", "me/none", "--revision", sha, "--cache-dir", str(tmp_path / "c"), *common]) == 2
    assert "Repository 'me/none' does not exist" in capsys.readouterr().err
    assert main(["push", "--repo-id", "me/x", "--model", str(tmp_path / "model.zip"), *common]) == 2
    assert "No Hugging Face token" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ olah (pull path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def olah(tmp_path):
    """olah, offline, serving the git repositories under ``<tmp>/mirrors/models/<org>/<name>``."""
    pytest.importorskip("olah", reason="olah is not installed (pip install olah)")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    port = _free_port()
    mirrors = tmp_path / "mirrors"
    (mirrors / "models").mkdir(parents=True)
    config = tmp_path / "olah.toml"
    config.write_text(
        f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{tmp_path / "olah_repos"}"\n'
        f'mirrors-path = ["{mirrors}"]\nmirror-netloc = "127.0.0.1:{port}"\nmirror-lfs-netloc = "127.0.0.1:{port}"\n'
        "[accessibility]\noffline = true\n"
    )
    log = open(tmp_path / "olah.log", "wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from olah.server import main; main()",
            "-c",
            str(config),
            "--log-path",
            str(tmp_path / "logs"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"olah did not start: {(tmp_path / 'olah.log').read_text()[-2000:]}")
        time.sleep(0.1)
    yield endpoint, mirrors
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    log.close()


def _git(folder, *args) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    return subprocess.run(
        ["git", *args], cwd=folder, check=True, capture_output=True, text=True, env=env, timeout=30
    ).stdout.strip()


def test_pull_from_olah_mirror(sac_model, olah, tmp_path):
    endpoint, mirrors = olah
    repo = mirrors / "models" / "me" / "sac-Pendulum-v1"
    hub.package_model(sac_model, "Pendulum-v1", repo, repo_id="me/sac-Pendulum-v1", n_eval_episodes=1)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "sb3-sac-ext model")
    sha = _git(repo, "rev-parse", "HEAD")

    loaded = hub.load_from_hub("me/sac-Pendulum-v1", revision=sha, endpoint=endpoint, cache_dir=tmp_path / "cache")
    np.testing.assert_allclose(_predict(loaded), _predict(sac_model))
    with pytest.raises(HubFileNotFoundError):
        hub.load_from_hub(
            "me/sac-Pendulum-v1", filename="nope.zip", revision=sha, endpoint=endpoint, cache_dir=tmp_path / "c2"
        )

    # a later commit replaces the model but keeps the old manifest: refused
    zip_path = repo / "sac-Pendulum-v1.zip"
    data = bytearray(zip_path.read_bytes())
    data[-30] ^= 0xFF
    zip_path.write_bytes(bytes(data))
    _git(repo, "commit", "-qam", "tampered")
    tampered = _git(repo, "rev-parse", "HEAD")
    with pytest.raises(ChecksumMismatchError, match="does not match"):
        hub.load_from_hub("me/sac-Pendulum-v1", revision=tampered, endpoint=endpoint, cache_dir=tmp_path / "cache")


def test_cli_push_reads_local_normalisation_statistics(server, tmp_path, capsys):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_sac_ext.cli import main

    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=1, seed=0))
    model = SAC("MlpPolicy", env, policy_kwargs=dict(net_arch=[32, 32]), seed=0)
    model.save(tmp_path / "Pendulum-v1.zip")
    env.save(str(tmp_path / "vecnormalize.pkl"))  # as SB3 / RL Zoo write it: a pickle
    args = ["push", "--repo-id", "me/sac-Pendulum-v1", "--model", str(tmp_path / "Pendulum-v1.zip"), "--n-eval-episodes", "1"]
    args += ["--token", TOKEN, "--endpoint", server.endpoint]
    assert main(args) == 2
    assert "allow_pickle" in capsys.readouterr().err and server.repos == {}
    assert main([*args, "--allow-pickle"]) == 0
    assert hub.VEC_NORMALIZE_FILE in server.files("me/sac-Pendulum-v1")


def test_cli_export_from_hub_repository(sac_model, server, tmp_path):
    """``sb3-sac-ext export --repo-id``: download (verified), export, and the file acts as predict does."""
    ort = pytest.importorskip("onnxruntime")
    from sb3_sac_ext.cli import main

    sha = _push(sac_model, server)
    out = tmp_path / "actor.onnx"
    argv = ["export", "--repo-id", "me/sac-Pendulum-v1", "--revision", sha, "--endpoint", server.endpoint, "-o", str(out)]
    assert main(argv) == 0
    session = ort.InferenceSession(str(out))
    obs = np.asarray(OBS, dtype=np.float32).reshape(-1, 3)
    np.testing.assert_allclose(session.run(None, {"obs": obs})[0], sac_model.predict(obs, deterministic=True)[0], atol=1e-5)


# ------------------------------------------------------------------------------------------------ package layout


def test_settings_set_on_the_package_reach_the_requests(monkeypatch):
    monkeypatch.setattr(hub, "TIMEOUT", 3.5)
    monkeypatch.setattr(hub, "RETRIES", 2)
    assert hub.transport.TIMEOUT == hub.TIMEOUT == 3.5 and hub.transport.RETRIES == 2


def test_commands_take_parsed_arguments(server, tmp_path, capsys):
    import argparse

    args = hub.add_pull_arguments(argparse.ArgumentParser()).parse_args(
        ["me/none", "--revision", "main", "--endpoint", server.endpoint, "--cache-dir", str(tmp_path)]
    )
    assert hub.pull_command(args) == 2
    assert "Repository 'me/none' does not exist" in capsys.readouterr().err
    args = hub.add_push_arguments(argparse.ArgumentParser()).parse_args(
        ["--repo-id", "me/x", "--model", str(tmp_path / "missing.zip"), "--endpoint", server.endpoint]
    )
    assert hub.push_command(args) == 2
    assert "does not exist" in capsys.readouterr().err
