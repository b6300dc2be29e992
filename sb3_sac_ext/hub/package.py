"""
Packaging a model for the Hub, locally (nothing is sent): the model file, the normalisation statistics, an
evaluation (``results.json``), the settings (``config.json``, ``hyperparams.yml``), a model card (``README.md``), an
optional replay video, and ``sha256sums.json`` (:mod:`sb3_sac_ext.hub.manifest`).
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import json
import os
import pathlib
import shutil
import sys
import warnings
from typing import Any

import gymnasium
import numpy as np
import stable_baselines3
import torch as th
import yaml
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize, VecVideoRecorder

from sb3_sac_ext.common.errors import SB3SacExtError, UnknownAlgorithmError
from sb3_sac_ext.common.persistence import save_vec_normalize
from sb3_sac_ext.common.persistence.files import write_text
from sb3_sac_ext.config import to_yaml_value
from sb3_sac_ext.experiment import play, video_skip_reason
from sb3_sac_ext.hub.manifest import MANIFEST_FILE, write_manifest
from sb3_sac_ext.hub.transport import hub_module
from sb3_sac_ext.registry import algorithm_of, get_algorithm
from sb3_sac_ext.version import __version__

VEC_NORMALIZE_FILE = "vec_normalize.zip"
VIDEO_FILE = "replay.mp4"
LIBRARY_NAME = "sb3-sac-ext"
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


def algo_name(model: Any) -> str:
    """
    :param model: A model
    :return: The name of the model's algorithm in the registry and in RL Zoo's naming: ``sac`` or ``discrete_sac``
    :raise TypeError: for a model that is not an sb3_sac_ext SAC or DiscreteSAC
    """
    try:
        return algorithm_of(model).name
    except UnknownAlgorithmError:
        raise TypeError(f"push_to_hub takes an sb3_sac_ext SAC or DiscreteSAC model, not {type(model).__name__}") from None


def model_filename(algo: str, env_id: str) -> str:
    """:return: RL Zoo's file name ``<algo>-<EnvId>.zip`` (``/`` of namespaced env ids replaced by ``-``)."""
    return f"{algo}-{env_id.replace('/', '-')}.zip"


def _jsonable(value: Any) -> Any:
    """:return: A hyperparameter as JSON data: schedules and classes as their names, tuples as lists."""
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
    versions = {
        "sb3_sac_ext": __version__,
        "stable_baselines3": stable_baselines3.__version__,
        "torch": th.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }
    with contextlib.suppress(ImportError):
        versions["huggingface_hub"] = hub_module().__version__
    return versions


def _make_eval_env(model: Any, env_id: str, eval_env: Any, render_mode: str | None = None) -> Any:
    """:return: ``eval_env`` or ``env_id``, vectorised, with the model's normalisation statistics (frozen)."""
    if eval_env is None:
        env_kwargs = {"render_mode": render_mode} if render_mode else None
        eval_env = make_vec_env(env_id, n_envs=1, env_kwargs=env_kwargs)
    elif not isinstance(eval_env, VecEnv):
        single = eval_env
        eval_env = DummyVecEnv([lambda: single])
    stats = model.get_vec_normalize_env()
    if stats is not None and not isinstance(eval_env, VecNormalize):
        eval_env = VecNormalize(eval_env, training=False, norm_obs=stats.norm_obs, norm_reward=False, clip_obs=stats.clip_obs)
        eval_env.obs_rms = stats.obs_rms
    return eval_env


def _record_video(model: Any, env_id: str, folder: pathlib.Path, video_length: int) -> pathlib.Path | None:
    """
    Record ``video_length`` steps into ``folder/replay.mp4`` with SB3's ``VecVideoRecorder``, stepping the env with
    the replay loop of the command line (:func:`sb3_sac_ext.experiment.play`: RNN states and episode starts carried).

    :return: The video, or ``None`` (with a warning saying why) when recording is impossible
    """
    reason = video_skip_reason()
    if reason is None:
        try:
            record_folder = folder / "_video"
            env = _make_eval_env(model, env_id, None, render_mode="rgb_array")
            env = VecVideoRecorder(
                env,
                str(record_folder),
                record_video_trigger=lambda step: step == 0,
                video_length=video_length,
                name_prefix="replay",
            )
            play(model, env, video_length + 1, deterministic=True)
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
    pretty = get_algorithm(algo).class_name
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
    Write every file of the Hub repository into ``folder`` (listed in :mod:`sb3_sac_ext.hub`); nothing is sent.

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
    write_text(folder / "config.json", json.dumps(config, indent=2) + "\n")
    write_text(folder / "results.json", json.dumps(results, indent=2) + "\n")
    hyperparams_yaml = _yaml_entry(env_id, hyperparams, model.num_timesteps)
    write_text(folder / "hyperparams.yml", hyperparams_yaml)
    card = _model_card(
        repo_id or f"<user>/{algo}-{env_id}", algo, env_id, model_file, results, hyperparams_yaml, stats is not None
    )
    write_text(folder / "README.md", card)
    if video:
        _record_video(model, env_id, folder, video_length)
    write_manifest(folder)
    return folder
