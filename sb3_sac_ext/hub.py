"""
Share models on the Hugging Face Hub, built on ``huggingface_hub`` directly (``pip install "sb3-sac-ext[hub]"``).

Push (:func:`push_to_hub`, ``sb3-sac-ext push``) packages everything in a local folder first, then uploads it in
**one commit** and returns the commit sha. The repository (RL Zoo naming: ``<org>/<algo>-<EnvId>``) holds:

- ``<algo>-<EnvId>.zip``: the model in sb3-sac-ext's pickle-free format (``algo`` is ``sac`` or ``discrete_sac``);
- ``vec_normalize.zip``: the normalisation statistics, when the model's env is wrapped in ``VecNormalize``;
- ``config.json``: hyperparameters, file names, library and Stable-Baselines3 versions;
- ``results.json``: mean and std return, number of episodes, deterministic flag, date;
- ``hyperparams.yml``: the hyperparameters as an RL Zoo YAML entry (``<EnvId>: {...}``);
- ``README.md``: a model card whose metadata the Hub understands (``library_name``, tags, ``model-index``);
- ``replay.mp4`` when ``video=True`` and recording is possible (otherwise skipped with a warning);
- ``sha256sums.json``: the sha256 of every other file, so that a pull verifies every file it downloads.

Pull (:func:`load_from_hub`, ``sb3-sac-ext pull``) downloads through ``huggingface_hub``'s cache, pinned to one
commit, verifies each file against ``sha256sums.json`` and loads the model with the safe loader: no pickle unless
``allow_pickle=True``. Models pushed by Stable-Baselines3 users (``huggingface_sb3`` / RL Zoo, e.g.
``sb3/sac-Pendulum-v1`` holding ``sac-Pendulum-v1.zip``) have no manifest and contain pickles: they load into
:class:`~sb3_sac_ext.SAC` only with ``allow_pickle=True``.

Failures are typed (:mod:`sb3_sac_ext.common.errors`): :class:`HubAuthError` (no token, checked before anything is
sent; or HTTP 401/403), :class:`HubConnectionError` (network down, timeout, HTTP 5xx after a bounded retry),
:class:`HubRepositoryNotFoundError` / :class:`HubRevisionNotFoundError` / :class:`HubFileNotFoundError`, and
:class:`~sb3_sac_ext.common.errors.ChecksumMismatchError`. A push never leaves an empty repository behind: the
repository is created right before the commit, and deleted again if the commit then fails.

Every request has a bounded timeout (:data:`TIMEOUT`); retries are bounded by :data:`RETRIES` and :data:`RETRY_WAIT`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from sb3_sac_ext.common.errors import (
    ChecksumMismatchError,
    HubAuthError,
    HubConnectionError,
    HubDependencyError,
    HubError,
    HubFileNotFoundError,
    HubRepositoryNotFoundError,
    HubRevisionNotFoundError,
    SB3SacExtError,
)

INSTALL_HINT = 'pip install "sb3-sac-ext[hub]"'
MANIFEST_FILE = "sha256sums.json"
MANIFEST_FORMAT = "sb3-sac-ext-sha256sums"
MANIFEST_VERSION = 1
VEC_NORMALIZE_FILE = "vec_normalize.zip"
VIDEO_FILE = "replay.mp4"
LIBRARY_NAME = "sb3-sac-ext"
# Attempts of each Hub call on network errors and HTTP 5xx / 429, and the first wait between them (doubled each time)
RETRIES = 3
RETRY_WAIT = 1.0
# Seconds: connection and read timeout of every request (huggingface_hub's own default is no timeout)
TIMEOUT = 30.0
# Arguments of the algorithms' constructors that are not hyperparameters
_NOT_HYPERPARAMETERS = {
    "self",
    "policy",
    "env",
    "device",
    "verbose",
    "seed",
    "tensorboard_log",
    "_init_setup_model",
    "stats_window_size",
}

T = TypeVar("T")


# ----------------------------------------------------------------------------------------------- helpers


def _hub() -> Any:
    """:return: The ``huggingface_hub`` module, or a clear error naming the extra to install."""
    try:
        import huggingface_hub
    except ImportError as e:
        raise HubDependencyError(f"The Hub tools need huggingface_hub: {INSTALL_HINT} ({e})") from None
    return huggingface_hub


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network-level exceptions of the HTTP client that ``huggingface_hub`` uses (httpx2, httpx or requests)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name, names in (
        ("httpx2", ("TransportError",)),
        ("httpx", ("TransportError",)),
        ("requests", ("ConnectionError", "Timeout")),
    ):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        errors.extend(getattr(module, name) for name in names if isinstance(getattr(module, name, None), type))
    return tuple(errors)


def _status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _is_transient(error: BaseException) -> bool:
    status = _status(error)
    if status is not None:
        return status >= 500 or status in (408, 429)
    return isinstance(error, _transport_errors())


@contextlib.contextmanager
def _bounded_timeout(seconds: float) -> Iterator[None]:
    """
    Give the shared ``huggingface_hub`` HTTP client a timeout while inside the block, when it has none
    (its default). A timeout configured by the user (``huggingface_hub.set_client_factory``) is kept.
    """
    session = None
    previous = None
    with contextlib.suppress(Exception):
        from huggingface_hub.utils import get_session

        session = get_session()
        previous = session.timeout
        if all(getattr(previous, name, 0) is None for name in ("connect", "read", "write", "pool")):
            session.timeout = seconds
        else:
            session = None
    try:
        yield
    finally:
        if session is not None:
            with contextlib.suppress(Exception):
                session.timeout = previous


def _describe(error: BaseException) -> str:
    status = _status(error)
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"HTTP {status}: {first_line}" if status is not None else f"{type(error).__name__}: {first_line}"


def _retry(call: Callable[[], T], what: str, endpoint: str | None) -> T:
    """
    Run ``call`` up to :data:`RETRIES` times while it fails on the network or with HTTP 5xx / 408 / 429, waiting
    :data:`RETRY_WAIT` seconds (doubled each time) in between; other errors are raised at once.

    :raise HubConnectionError: when every attempt failed on the network or with a server error
    """
    wait = RETRY_WAIT
    for attempt in range(1, RETRIES + 1):
        try:
            with _bounded_timeout(TIMEOUT):
                return call()
        except Exception as e:
            if not _is_transient(e):
                raise
            if attempt == RETRIES:
                where = endpoint or "https://huggingface.co"
                raise HubConnectionError(
                    f"{what} failed {RETRIES} times: the Hub at {where} is unreachable or keeps failing ({_describe(e)}). "
                    "Check the network connection and the endpoint, then try again."
                ) from e
            time.sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def _translate(error: BaseException, repo_id: str, revision: str | None, filename: str | None = None) -> BaseException:
    """A ``huggingface_hub`` error as one of our typed errors (or the error itself when it is not a Hub error)."""
    hub_errors = _hub().errors
    if isinstance(error, SB3SacExtError):
        return error
    if isinstance(error, hub_errors.RevisionNotFoundError):
        return HubRevisionNotFoundError(
            f"Revision {revision!r} does not exist in the repository {repo_id!r}: pass an existing commit sha, branch or tag."
        )
    if isinstance(error, hub_errors.RemoteEntryNotFoundError) and filename is not None:
        return HubFileNotFoundError(f"File {filename!r} does not exist in {repo_id!r} at revision {revision or 'main'!r}.")
    if isinstance(error, (hub_errors.RepositoryNotFoundError, hub_errors.RemoteEntryNotFoundError)):
        # GatedRepoError is a RepositoryNotFoundError; 401 without a token is reported as RepoNotFound by the Hub
        return HubRepositoryNotFoundError(
            f"Repository {repo_id!r} does not exist, or it is private and the token cannot read it "
            "(check the repo id, the token, and the endpoint)."
        )
    status = _status(error)
    if status in (401, 403):
        return HubAuthError(
            f"The Hub refused the token for {repo_id!r} (HTTP {status}): use a token with write access to this "
            "namespace (https://huggingface.co/settings/tokens), passed as token=... or the HF_TOKEN variable."
        )
    if (status is not None and status >= 500) or isinstance(error, _transport_errors()):
        return HubConnectionError(f"The Hub request for {repo_id!r} failed: {_describe(error)}")
    if isinstance(error, hub_errors.HfHubHTTPError):
        return HubError(f"The Hub request for {repo_id!r} failed: {_describe(error)}")
    return error


def _call(
    call: Callable[[], T], what: str, repo_id: str, revision: str | None, endpoint: str | None, filename: str | None = None
) -> T:
    """:func:`_retry` + :func:`_translate`."""
    try:
        return _retry(call, what, endpoint)
    except HubError:
        raise
    except Exception as e:
        translated = _translate(e, repo_id, revision, filename)
        if translated is e:
            raise
        raise translated from e


def sha256_file(path: str | os.PathLike) -> str:
    """:return: The hexadecimal sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def algo_name(model: Any) -> str:
    """:return: The RL Zoo name of the model's algorithm: ``sac`` or ``discrete_sac``."""
    from sb3_sac_ext import SAC, DiscreteSAC

    if isinstance(model, DiscreteSAC):
        return "discrete_sac"
    if isinstance(model, SAC):
        return "sac"
    raise TypeError(f"push_to_hub takes an sb3_sac_ext SAC or DiscreteSAC model, not {type(model).__name__}")


def model_filename(algo: str, env_id: str) -> str:
    """:return: RL Zoo's file name ``<algo>-<EnvId>.zip`` (``/`` of namespaced env ids replaced by ``-``)."""
    return f"{algo}-{env_id.replace('/', '-')}.zip"


# ----------------------------------------------------------------------------------------------- packaging


def _jsonable(value: Any) -> Any:
    """A hyperparameter as JSON data: schedules and classes as their names, tuples as lists."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # TrainFreq(frequency, unit)
        return [_jsonable(item.value if hasattr(item, "value") else item) for item in value]
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if hasattr(value, "value") and hasattr(value, "name"):  # enum
        return _jsonable(value.value)
    return repr(value)


def model_hyperparameters(model: Any) -> dict[str, Any]:
    """
    :param model: A SAC or DiscreteSAC model
    :return: Its constructor arguments (those stored on the model) as JSON data, plus ``policy``
    """
    import inspect

    aliases = {cls: name for name, cls in getattr(model, "policy_aliases", {}).items()}
    params: dict[str, Any] = {"policy": aliases.get(type(model.policy), type(model.policy).__name__)}
    for name in inspect.signature(type(model).__init__).parameters:
        if name in _NOT_HYPERPARAMETERS or not hasattr(model, name):
            continue
        value = getattr(model, name)
        if callable(value) and not isinstance(value, type) and not hasattr(value, "to_config"):
            value = repr(value)
        params[name] = _jsonable(value)
    return params


def _yaml_entry(env_id: str, hyperparams: dict[str, Any], n_timesteps: int) -> str:
    import yaml

    from sb3_sac_ext.config import to_yaml_value

    entry: dict[str, Any] = {"n_timesteps": int(n_timesteps)}
    for key, value in hyperparams.items():
        if value is None or value == {} or value == "stable_baselines3.common.buffers.ReplayBuffer":
            continue  # defaults
        try:
            entry[key] = to_yaml_value(value)
        except SB3SacExtError:
            entry[key] = str(value)
    return yaml.safe_dump({env_id: entry}, sort_keys=False)


def _versions() -> dict[str, str]:
    import gymnasium
    import stable_baselines3
    import torch as th

    from sb3_sac_ext.version import __version__

    versions = {
        "sb3_sac_ext": __version__,
        "stable_baselines3": stable_baselines3.__version__,
        "torch": th.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }
    with contextlib.suppress(ImportError):
        versions["huggingface_hub"] = _hub().__version__
    return versions


def _make_eval_env(model: Any, env_id: str, eval_env: Any, render_mode: str | None = None) -> Any:
    """The evaluation env: ``eval_env`` or ``env_id`` vectorised, with the model's normalisation statistics (frozen)."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecEnv, VecNormalize

    if eval_env is None:
        env_kwargs = {"render_mode": render_mode} if render_mode else None
        eval_env = make_vec_env(env_id, n_envs=1, env_kwargs=env_kwargs)
    elif not isinstance(eval_env, VecEnv):
        from stable_baselines3.common.vec_env import DummyVecEnv

        single = eval_env
        eval_env = DummyVecEnv([lambda: single])
    stats = model.get_vec_normalize_env()
    if stats is not None and not isinstance(eval_env, VecNormalize):
        eval_env = VecNormalize(eval_env, training=False, norm_obs=stats.norm_obs, norm_reward=False, clip_obs=stats.clip_obs)
        eval_env.obs_rms = stats.obs_rms
    return eval_env


def _record_video(model: Any, env_id: str, folder: pathlib.Path, video_length: int) -> pathlib.Path | None:
    """Record ``video_length`` steps into ``folder/replay.mp4``; ``None`` (with a warning saying why) when impossible."""
    from sb3_sac_ext.experiment import play as _play
    from sb3_sac_ext.experiment import video_skip_reason as _video_skip_reason

    reason = _video_skip_reason()
    if reason is None:
        try:
            from stable_baselines3.common.vec_env import VecVideoRecorder

            record_folder = folder / "_video"
            env = _make_eval_env(model, env_id, None, render_mode="rgb_array")
            env = VecVideoRecorder(
                env,
                str(record_folder),
                record_video_trigger=lambda step: step == 0,
                video_length=video_length,
                name_prefix="replay",
            )
            _play(model, env, video_length + 1, deterministic=True)
            env.close()
            videos = sorted(record_folder.glob("*.mp4"))
            if videos:
                target = folder / VIDEO_FILE
                shutil.move(str(videos[0]), target)
                shutil.rmtree(record_folder, ignore_errors=True)
                return target
            reason = "no video file was written"
        except Exception as e:  # rendering backends fail in many ways (no display, no pygame, ...)
            reason = f"rendering failed ({type(e).__name__}: {e})"
    warnings.warn(f"Replay video skipped: {reason}. The model is pushed without a video.", UserWarning, stacklevel=3)
    return None


def _model_card(
    repo_id: str, algo: str, env_id: str, model_file: str, results: dict[str, Any], hyperparams_yaml: str, has_stats: bool
) -> str:
    import yaml

    pretty = {"sac": "SAC", "discrete_sac": "DiscreteSAC"}[algo]
    mode = "deterministic" if results["deterministic"] else "stochastic"
    metadata = {
        "library_name": LIBRARY_NAME,
        "tags": [env_id, "deep-reinforcement-learning", "reinforcement-learning", LIBRARY_NAME, "stable-baselines3"],
        "model-index": [
            {
                "name": pretty,
                "results": [
                    {
                        "task": {"type": "reinforcement-learning", "name": "reinforcement-learning"},
                        "dataset": {"name": env_id, "type": env_id},
                        "metrics": [
                            {
                                "type": "mean_reward",
                                "value": f"{results['mean_reward']:.2f} +/- {results['std_reward']:.2f}",
                                "name": "mean_reward",
                                "verified": False,
                            }
                        ],
                    }
                ],
            }
        ],
    }
    stats_line = (
        f"The normalisation statistics are in `{VEC_NORMALIZE_FILE}`; `load_from_hub(..., env=env)` wraps `env` with them.\n"
        if has_stats
        else ""
    )
    return f"""---
{yaml.safe_dump(metadata, sort_keys=False)}---

# {pretty} agent playing {env_id}

A {pretty} agent trained with [sb3-sac-ext](https://pypi.org/project/sb3-sac-ext/) (Soft Actor-Critic for
[Stable-Baselines3](https://github.com/DLR-RM/stable-baselines3)).

Mean return over {results["n_eval_episodes"]} episodes ({mode} actions):
**{results["mean_reward"]:.2f} +/- {results["std_reward"]:.2f}**.

## Usage

The model file `{model_file}` is in sb3-sac-ext's pickle-free format: loading it runs no code from the file, and
every file is checked against `{MANIFEST_FILE}`. Pin the revision (the commit sha) you have reviewed.

```python
# pip install "sb3-sac-ext[hub]"
import gymnasium as gym
import numpy as np
from sb3_sac_ext.hub import load_from_hub

model = load_from_hub("{repo_id}", revision="<commit sha>")
env = gym.make("{env_id}")
obs, _ = env.reset()
state, episode_start = None, np.ones(1, dtype=bool)  # state: the RNN state of recurrent policies, else None
for _ in range(1000):
    action, state = model.predict(obs, state=state, episode_start=episode_start, deterministic=True)
    obs, reward, terminated, truncated, _ = env.step(action)
    episode_start[:] = terminated or truncated
    if episode_start[0]:
        obs, _ = env.reset()
```

or from the command line: `sb3-sac-ext pull {repo_id} --revision <commit sha>`.
{stats_line}
## Hyperparameters

```yaml
{hyperparams_yaml.rstrip()}
```

Library versions are in `config.json`, evaluation results in `results.json`.
"""


def write_manifest(folder: str | os.PathLike) -> dict[str, str]:
    """
    Write ``sha256sums.json``: the sha256 of every file under ``folder`` (paths relative to it, ``/``-separated).

    :return: path -> sha256
    """
    folder = pathlib.Path(folder)
    sums = {
        path.relative_to(folder).as_posix(): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }
    content = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "algorithm": "sha256", "files": sums}
    (folder / MANIFEST_FILE).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
    return sums


def package_model(
    model: Any,
    env_id: str,
    folder: str | os.PathLike,
    repo_id: str | None = None,
    eval_env: Any = None,
    n_eval_episodes: int = 10,
    video: bool = False,
    video_length: int = 1000,
    deterministic: bool = True,
) -> pathlib.Path:
    """
    Write every file of the Hub repository into ``folder`` (see the module docstring); nothing is sent.

    :param model: A SAC or DiscreteSAC model
    :param env_id: Gymnasium env id the model was trained on
    :param folder: An empty or new folder
    :param repo_id: Repository id shown in the model card's usage code
    :param eval_env: Env to evaluate on (default: ``gym.make(env_id)``, with the model's normalisation statistics)
    :param n_eval_episodes: Evaluation episodes
    :param video: Record a replay video (skipped with a warning when rendering or ffmpeg is unavailable)
    :param video_length: Steps in the video
    :param deterministic: Evaluate with deterministic actions
    :return: The folder
    """
    from stable_baselines3.common.evaluation import evaluate_policy

    from sb3_sac_ext.common.persistence import save_vec_normalize

    algo = algo_name(model)
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model_file = model_filename(algo, env_id)
    model.save(folder / model_file)
    stats = model.get_vec_normalize_env()
    if stats is not None:
        save_vec_normalize(stats, folder / VEC_NORMALIZE_FILE)

    env = _make_eval_env(model, env_id, eval_env)
    try:
        mean_reward, std_reward = evaluate_policy(model, env, n_eval_episodes=n_eval_episodes, deterministic=deterministic)
    finally:
        if eval_env is None:
            env.close()
    results = {
        "env_id": env_id,
        "mean_reward": float(mean_reward),
        "std_reward": float(std_reward),
        "n_eval_episodes": int(n_eval_episodes),
        "deterministic": bool(deterministic),
        "eval_datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    hyperparams = model_hyperparameters(model)
    config = {
        "library_name": LIBRARY_NAME,
        "algo": algo,
        "env_id": env_id,
        "model_file": model_file,
        "vec_normalize_file": VEC_NORMALIZE_FILE if stats is not None else None,
        "num_timesteps": int(model.num_timesteps),
        "hyperparameters": hyperparams,
        "versions": _versions(),
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    hyperparams_yaml = _yaml_entry(env_id, hyperparams, model.num_timesteps)
    (folder / "hyperparams.yml").write_text(hyperparams_yaml)
    card = _model_card(
        repo_id or f"<user>/{algo}-{env_id}", algo, env_id, model_file, results, hyperparams_yaml, stats is not None
    )
    (folder / "README.md").write_text(card)
    if video:
        _record_video(model, env_id, folder, video_length)
    write_manifest(folder)
    return folder


# ----------------------------------------------------------------------------------------------- push


def _resolve_token(token: str | None) -> str:
    if token:
        return token
    found = _hub().get_token()
    if not found:
        raise HubAuthError(
            "No Hugging Face token: nothing was uploaded. Pass token=..., set the HF_TOKEN environment variable, or run "
            "`hf auth login` (create a token with write access at https://huggingface.co/settings/tokens)."
        )
    return found


def _repo_exists(api: Any, repo_id: str, endpoint: str | None) -> bool:
    hub = _hub()

    def probe() -> bool:
        try:
            api.model_info(repo_id, timeout=TIMEOUT)
        except (hub.errors.RepositoryNotFoundError, hub.errors.RemoteEntryNotFoundError):
            return False
        return True

    return _call(probe, f"Looking up the repository {repo_id!r}", repo_id, None, endpoint)


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    commit_message: str,
    token: str | None = None,
    private: bool = False,
    endpoint: str | None = None,
) -> str:
    """
    Upload every file of ``folder`` to ``repo_id`` in one commit. The repository is created only right before the
    commit when it does not exist, and deleted again if the commit fails (no empty repository is left behind).

    :return: The commit sha
    :raise HubAuthError: without a token (before anything is sent) or when the server refuses it
    :raise HubConnectionError: network down or HTTP 5xx after :data:`RETRIES` attempts
    """
    hub = _hub()
    token = _resolve_token(token)
    folder = pathlib.Path(folder)
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    api = hub.HfApi(endpoint=endpoint, token=token)
    created = False
    if not _repo_exists(api, repo_id, endpoint):

        def create() -> bool:
            try:
                api.create_repo(repo_id, private=private, exist_ok=False, repo_type="model")
            except hub.errors.HfHubHTTPError as e:
                if _status(e) == 409:  # it exists (e.g. private, invisible to model_info): never delete it later
                    return False
                raise
            return True

        created = _call(create, f"Creating the repository {repo_id!r}", repo_id, None, endpoint)

    def commit() -> Any:
        # fresh operations for every attempt: huggingface_hub marks them as used
        operations = [hub.CommitOperationAdd(path.relative_to(folder).as_posix(), str(path)) for path in files]
        return api.create_commit(repo_id, operations, commit_message=commit_message, repo_type="model")

    try:
        info = _call(commit, f"Uploading to {repo_id!r}", repo_id, None, endpoint)
    except BaseException as e:
        if created:
            try:
                with _bounded_timeout(TIMEOUT):
                    api.delete_repo(repo_id, missing_ok=True, repo_type="model")
            except Exception as cleanup_error:
                warnings.warn(
                    f"The commit failed and the repository {repo_id!r} created for it could not be deleted "
                    f"({_describe(cleanup_error)}): delete it on the Hub.",
                    UserWarning,
                    stacklevel=2,
                )
            else:
                if isinstance(e, HubError):
                    e.args = (f"{e.args[0]} The repository created for this push was deleted again.",)
        raise
    return str(info.oid)


def push_to_hub(
    model: Any,
    repo_id: str,
    env_id: str,
    eval_env: Any = None,
    n_eval_episodes: int = 10,
    video: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
    private: bool = False,
    endpoint: str | None = None,
    video_length: int = 1000,
    deterministic: bool = True,
) -> str:
    """
    Evaluate ``model``, package it locally (see the module docstring) and upload everything in one commit.

    :param model: A trained SAC or DiscreteSAC model
    :param repo_id: ``<user or org>/<name>``; RL Zoo's naming is ``<org>/<algo>-<EnvId>``
    :param env_id: Gymnasium env id the model was trained on
    :param eval_env: Env to evaluate on (default: ``gym.make(env_id)`` with the model's normalisation statistics)
    :param n_eval_episodes: Evaluation episodes for ``results.json`` and the model card
    :param video: Record and upload a replay video (skipped with a warning when rendering or ffmpeg is unavailable)
    :param commit_message: Commit message (default: ``"Upload <algo> <EnvId> with sb3-sac-ext"``)
    :param token: Hugging Face token with write access (default: ``HF_TOKEN`` or the saved login)
    :param private: Create the repository as private (when it does not exist yet)
    :param endpoint: Hub URL (default: ``HF_ENDPOINT`` or https://huggingface.co)
    :param video_length: Steps in the video
    :param deterministic: Evaluate with deterministic actions
    :return: The sha of the commit: pass it as ``revision`` to :func:`load_from_hub`
    """
    _hub()
    algo = algo_name(model)
    _resolve_token(token)  # fail before the (slow) evaluation when there is no token
    with tempfile.TemporaryDirectory(prefix="sb3_sac_ext_push_") as folder:
        package_model(model, env_id, folder, repo_id, eval_env, n_eval_episodes, video, video_length, deterministic)
        message = commit_message or f"Upload {algo} {env_id} with {LIBRARY_NAME}"
        return push_folder(folder, repo_id, message, token=token, private=private, endpoint=endpoint)


# ----------------------------------------------------------------------------------------------- pull


@dataclass
class HubDownload:
    """Files downloaded and verified by :func:`download_from_hub` (paths in huggingface_hub's cache)."""

    repo_id: str
    revision: str
    model: pathlib.Path
    files: dict[str, pathlib.Path] = field(default_factory=dict)
    verified: bool = False
    config: dict[str, Any] | None = None

    def path(self, name: str) -> pathlib.Path | None:
        """:return: The local path of the repository file ``name`` when it was downloaded."""
        return self.files.get(name)


def _load_manifest(path: pathlib.Path, repo_id: str) -> dict[str, str]:
    try:
        content = json.loads(path.read_text())
        files = content["files"]
        if content.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError("unknown format")
        if int(content.get("version", 0)) > MANIFEST_VERSION:
            raise ValueError(f"version {content['version']} is newer than this sb3-sac-ext reads ({MANIFEST_VERSION})")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ChecksumMismatchError(
            f"{MANIFEST_FILE} of {repo_id!r} cannot be read ({e}): the files cannot be verified"
        ) from None
    return {str(key): str(value) for key, value in files.items()}


def _verify(path: pathlib.Path, name: str, manifest: dict[str, str], repo_id: str, revision: str) -> None:
    if name not in manifest:
        raise ChecksumMismatchError(
            f"{name} of {repo_id!r}@{revision} is not listed in {MANIFEST_FILE}: it cannot be verified"
        )
    actual = sha256_file(path)
    if actual != manifest[name]:
        raise ChecksumMismatchError(
            f"{name} of {repo_id!r}@{revision} does not match {MANIFEST_FILE}: sha256 {actual}, expected {manifest[name]}. "
            f"The file was altered or damaged (local copy: {path}); it was not loaded. If the repository is trusted, "
            "download again with force_download=True."
        )


def download_from_hub(
    repo_id: str,
    filename: str | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    extra_files: tuple[str, ...] = (),
) -> HubDownload:
    """
    Download the model file (and the normalisation statistics, ``config.json``, ``results.json``, ``extra_files``)
    through ``huggingface_hub``'s cache, all from one commit, and verify each against ``sha256sums.json``.

    :param repo_id: ``<user or org>/<name>``
    :param filename: Model file (default: ``config.json``'s ``model_file``, else ``<repo name>.zip``, else the only zip)
    :param revision: Commit sha (recommended), branch or tag; a ``UserWarning`` says when none pins the download
    :param endpoint: Hub URL (default: ``HF_ENDPOINT`` or https://huggingface.co)
    :param token: Token for private repositories
    :param cache_dir: huggingface_hub cache folder
    :param force_download: Download again even when cached
    :param extra_files: Other repository files to download and verify
    :return: The local paths
    :raise HubRepositoryNotFoundError, HubRevisionNotFoundError, HubFileNotFoundError: distinct messages
    :raise ChecksumMismatchError: a file does not match the manifest
    """
    hub = _hub()
    if revision is None:
        warnings.warn(
            f"No revision pins the download of {repo_id!r}: the latest commit of 'main' is used, and it may change. "
            "Pass revision=<commit sha> (printed by push_to_hub) for a reproducible, reviewed download.",
            UserWarning,
            stacklevel=2,
        )
    api = hub.HfApi(endpoint=endpoint, token=token)
    info = _call(
        lambda: api.model_info(repo_id, revision=revision, timeout=TIMEOUT),
        f"Looking up {repo_id!r}",
        repo_id,
        revision,
        endpoint,
    )
    commit = info.sha or revision or "main"
    names = {sibling.rfilename for sibling in (info.siblings or [])}

    def fetch(name: str) -> pathlib.Path:
        if info.siblings is not None and name not in names:
            raise HubFileNotFoundError(f"File {name!r} does not exist in {repo_id!r} at revision {commit}.")
        return pathlib.Path(
            _call(
                lambda: hub.hf_hub_download(
                    repo_id,
                    name,
                    revision=commit,
                    endpoint=endpoint,
                    token=token,
                    cache_dir=cache_dir,
                    force_download=force_download,
                    etag_timeout=TIMEOUT,
                ),
                f"Downloading {name} from {repo_id!r}",
                repo_id,
                commit,
                endpoint,
                filename=name,
            )
        )

    files: dict[str, pathlib.Path] = {}
    manifest: dict[str, str] | None = None
    if MANIFEST_FILE in names or info.siblings is None:  # file list unknown: try the manifest anyway
        with contextlib.suppress(HubFileNotFoundError):
            files[MANIFEST_FILE] = fetch(MANIFEST_FILE)
            manifest = _load_manifest(files[MANIFEST_FILE], repo_id)
    if manifest is None:
        warnings.warn(
            f"{repo_id!r} has no {MANIFEST_FILE} (it was not pushed by {LIBRARY_NAME}): the downloaded files cannot be "
            "verified beyond what the Hub reports.",
            UserWarning,
            stacklevel=2,
        )

    def get(name: str) -> pathlib.Path:
        path = fetch(name)
        if manifest is not None:
            _verify(path, name, manifest, repo_id, commit)
        files[name] = path
        return path

    if info.siblings is None and manifest is not None:
        names = set(manifest)
    config = None
    if "config.json" in names:
        try:
            config = json.loads(get("config.json").read_text())
        except json.JSONDecodeError:
            config = None
    if filename is None:
        filename = _default_filename(repo_id, names, config)
    model_path = get(filename)
    if isinstance(config, dict) and config.get("vec_normalize_file") in names:
        get(config["vec_normalize_file"])
    for name in ("results.json", *extra_files):
        if name in names or name in extra_files:
            get(name)
    return HubDownload(repo_id, commit, model_path, files, verified=manifest is not None, config=config)


def _default_filename(repo_id: str, names: set[str], config: Any) -> str:
    if isinstance(config, dict) and isinstance(config.get("model_file"), str):
        return config["model_file"]
    rl_zoo_name = repo_id.split("/")[-1] + ".zip"
    if rl_zoo_name in names:
        return rl_zoo_name
    zips = sorted(name for name in names if name.endswith(".zip") and name != VEC_NORMALIZE_FILE)
    if len(zips) == 1:
        return zips[0]
    raise HubFileNotFoundError(
        f"Cannot tell which file of {repo_id!r} is the model (no config.json, no {rl_zoo_name}, zips: {zips}): "
        "pass filename=..."
    )


def _algorithm_class(algo: Any, download: HubDownload) -> type:
    import sb3_sac_ext

    classes = {"sac": sb3_sac_ext.SAC, "discrete_sac": sb3_sac_ext.DiscreteSAC}
    if isinstance(algo, type):
        return algo
    if algo is None and isinstance(download.config, dict):
        algo = download.config.get("algo")
    if algo is None:
        stem = download.model.name.split("-")[0].lower()
        algo = stem if stem in classes else "sac"
    if algo not in classes:
        raise ValueError(f"unknown algorithm {algo!r}: pass algo='sac', 'discrete_sac' or the class")
    return classes[algo]


def load_from_hub(
    repo_id: str,
    filename: str | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
    algo: Any = None,
    env: Any = None,
    allow_pickle: bool = False,
    token: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    device: Any = "auto",
    custom_objects: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """
    Download (see :func:`download_from_hub`), verify and load a model with the safe loader.

    :param repo_id: ``<user or org>/<name>``
    :param filename: Model file (default: from ``config.json``, else ``<repo name>.zip``)
    :param revision: Commit sha (recommended), branch or tag; a ``UserWarning`` says when none pins the download
    :param endpoint: Hub URL (default: ``HF_ENDPOINT`` or https://huggingface.co)
    :param algo: ``"sac"``, ``"discrete_sac"`` or the class (default: from ``config.json`` or the file name)
    :param env: Env to attach; when the repository holds normalisation statistics, a ``VecEnv`` built from it is
        wrapped in a frozen ``VecNormalize`` with them
    :param allow_pickle: Allow unpickling (Stable-Baselines3 zips need it); only for repositories you trust
    :param token: Token for private repositories
    :param cache_dir: huggingface_hub cache folder
    :param force_download: Download again even when cached
    :param device: Torch device
    :param custom_objects: As in ``SAC.load``
    :param kwargs: Passed to ``load``
    :return: The model
    """
    download = download_from_hub(repo_id, filename, revision, endpoint, token, cache_dir, force_download)
    cls = _algorithm_class(algo, download)
    stats_name = download.config.get("vec_normalize_file") if isinstance(download.config, dict) else None
    if env is not None and stats_name and download.path(stats_name) is not None:
        from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

        from sb3_sac_ext.common.persistence import load_vec_normalize

        venv = env if isinstance(env, VecEnv) else DummyVecEnv([lambda: env])
        env = load_vec_normalize(download.path(stats_name), venv, allow_pickle=allow_pickle)  # type: ignore[arg-type]
        env.training = False
        env.norm_reward = False
    return cls.load(download.model, env=env, device=device, custom_objects=custom_objects, allow_pickle=allow_pickle, **kwargs)


# ----------------------------------------------------------------------------------------------- command line


def _error_exit(command: str, error: BaseException) -> int:
    print(f"sb3-sac-ext {command}: error: {error}", file=sys.stderr)
    return 2


def _attach_local_stats(model: Any, folder: pathlib.Path, env_id: str, allow_pickle: bool) -> None:
    """Attach the normalisation statistics saved next to a model (``vec_normalize.zip``, or SB3's ``vecnormalize.pkl``)."""
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_sac_ext.common.persistence import load_vec_normalize

    for name in (VEC_NORMALIZE_FILE, "vecnormalize.pkl"):
        if (folder / name).is_file():
            stats = load_vec_normalize(folder / name, make_vec_env(env_id, n_envs=1), allow_pickle=allow_pickle)
            stats.training = False
            model.set_env(stats)
            return


def push_main(argv: list[str] | None = None) -> int:
    """``sb3-sac-ext push``: evaluate a trained model and upload it to the Hub; prints the commit sha."""
    parser = argparse.ArgumentParser(
        prog="sb3-sac-ext push",
        description="Push a trained model to the Hugging Face Hub in one commit (token: --token, HF_TOKEN or hf auth login).",
    )
    parser.add_argument("--repo-id", required=True, help="<user or org>/<name>, RL Zoo style: <org>/<algo>-<EnvId>")
    parser.add_argument("--algo", default="sac", help="algorithm: sac or discrete_sac (default: sac)")
    parser.add_argument("--env", default="Pendulum-v1", help="gymnasium env id (default: Pendulum-v1)")
    parser.add_argument("--model", default=None, help="model zip (default: the latest run in the log folder)")
    parser.add_argument("-f", "--log-folder", default="logs", help="log folder (default: logs)")
    parser.add_argument("--n-eval-episodes", type=int, default=10)
    parser.add_argument("--video", action="store_true", help="record and upload a replay video")
    parser.add_argument("--video-length", type=int, default=1000)
    parser.add_argument("--commit-message", default=None)
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or https://huggingface.co)")
    parser.add_argument("--token", default=None, help="token with write access (default: HF_TOKEN or the saved login)")
    parser.add_argument("--allow-pickle", action="store_true", help="read a pickled vecnormalize.pkl next to the model")
    args = parser.parse_args(argv)
    try:
        from sb3_sac_ext.experiment import run_dir
        from sb3_sac_ext.registry import get_algorithm

        algo_class = get_algorithm(args.algo).cls
        model_path = (
            pathlib.Path(args.model)
            if args.model
            else run_dir(args.log_folder, args.algo, args.env, new=False) / f"{args.env}.zip"
        )
        if not model_path.is_file():
            raise HubError(f"model file {model_path} does not exist")
        model = algo_class.load(model_path, device="cpu")
        _attach_local_stats(model, model_path.parent, args.env, args.allow_pickle)
        sha = push_to_hub(
            model,
            args.repo_id,
            args.env,
            n_eval_episodes=args.n_eval_episodes,
            video=args.video,
            commit_message=args.commit_message,
            token=args.token,
            private=args.private,
            endpoint=args.endpoint,
            video_length=args.video_length,
        )
    except (SB3SacExtError, ValueError, OSError, ImportError, TypeError) as e:
        return _error_exit("push", e)
    print(f"Pushed {model_path} to {args.repo_id} at commit {sha}")
    print(f"Pull it with: sb3-sac-ext pull {args.repo_id} --revision {sha}")
    return 0


def pull_main(argv: list[str] | None = None) -> int:
    """``sb3-sac-ext pull``: download, verify and load a model; optionally save it in the pickle-free format."""
    parser = argparse.ArgumentParser(
        prog="sb3-sac-ext pull", description="Download a model from the Hugging Face Hub, verify it and load it safely."
    )
    parser.add_argument("repo_id", help="<user or org>/<name>")
    parser.add_argument("--revision", default=None, help="commit sha to pin (recommended), branch or tag")
    parser.add_argument("--filename", default=None, help="model file (default: from config.json, else <repo name>.zip)")
    parser.add_argument("--algo", default=None, help="sac or discrete_sac (default: from config.json or the file name)")
    parser.add_argument(
        "--allow-pickle", action="store_true", help="allow unpickling (Stable-Baselines3 zips): trusted repos only"
    )
    parser.add_argument("-o", "--output", default=None, help="also save the model to this path, in the pickle-free format")
    parser.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or https://huggingface.co)")
    parser.add_argument("--token", default=None, help="token for private repositories")
    parser.add_argument("--cache-dir", default=None, help="huggingface_hub cache folder")
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            model = load_from_hub(
                args.repo_id,
                filename=args.filename,
                revision=args.revision,
                endpoint=args.endpoint,
                algo=args.algo,
                allow_pickle=args.allow_pickle,
                token=args.token,
                cache_dir=args.cache_dir,
                device="cpu",
            )
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
        if args.output:
            model.save(args.output)
    except (SB3SacExtError, ValueError, OSError, ImportError) as e:
        return _error_exit("pull", e)
    print(f"Loaded {type(model).__name__} from {args.repo_id} (revision {args.revision or 'main'})")
    if args.output:
        print(f"Saved it to {args.output}")
    return 0
