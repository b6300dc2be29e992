"""
What running an experiment needs, shared by the command line, tuning and the Hub tools: RL Zoo's run folders,
vectorised envs built from hyperparameter settings, the logger of a run, and the replay loop of videos.
"""

import importlib
import os
import shutil
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger, make_output_format
from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize

from sb3_sac_ext.common.errors import SB3SacExtError
from sb3_sac_ext.config import get_env_wrapper, normalize_kwargs, parse_python_value


def check_env_id(env_id: str) -> None:
    """
    Raise a one-line error for an env id gymnasium does not know. As in ``gymnasium.make``, ``"module:EnvId"``
    first imports ``module`` (which registers its envs).
    """
    name = env_id
    if ":" in env_id:
        module, _, name = env_id.partition(":")
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise SB3SacExtError(f"unknown environment {env_id!r}: cannot import {module!r} ({e})") from None
    if name not in gym.registry:
        # Env packages that register on import, as RL Zoo's import_envs does (Atari: ale-py; RL Zoo's own envs,
        # e.g. PendulumNoVel-v1; POPGym's memory tasks, e.g. popgym-RepeatFirstEasy-v0)
        for module in ("ale_py", "rl_zoo3.import_envs") + (("popgym",) if name.startswith("popgym") else ()):
            try:
                importlib.import_module(module)
            except ImportError:
                pass
    if name not in gym.registry:
        raise SB3SacExtError(f"unknown environment {env_id!r}: it is not registered with gymnasium")


def run_dir(log_folder: str, algo: str, env_id: str, new: bool) -> Path:
    """
    RL Zoo's run folder ``<log folder>/<algo>/<EnvId>_<n>``: a new one (``n`` = last + 1) or the latest.

    :param log_folder: Root log folder
    :param algo: Algorithm key
    :param env_id: Env id
    :param new: Create the next folder instead of returning the latest
    :return: The folder
    """
    base = Path(log_folder) / algo
    ids = _run_ids(base, env_id)
    if new:
        folder = base / f"{env_id}_{max(ids, default=0) + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    if not ids:
        raise SB3SacExtError(f"no trained model for {algo} on {env_id} under {base}")
    return base / f"{env_id}_{max(ids)}"


def _run_ids(base: Path, env_id: str) -> list[int]:
    """:return: The ``n`` of the run folders ``<base>/<EnvId>_<n>``."""
    ids = []
    for path in base.glob(f"{glob_escape(env_id)}_*"):
        suffix = path.name[len(env_id) + 1 :]
        if suffix.isdigit():
            ids.append(int(suffix))
    return ids


def find_model(log_folder: str | os.PathLike, algo: str, env_id: str, exp_id: int = 0) -> Path:
    """
    Find a model saved the RL Zoo way: ``<log_folder>/<algo>/<env_id>_<exp_id>/<env_id>.zip``.

    :param log_folder: The RL Zoo log folder (``-f``)
    :param algo: Algorithm key (the folder name)
    :param env_id: Environment id
    :param exp_id: Experiment id; ``0``: the latest
    :return: Path of the model file (``best_model.zip`` when the final one is missing)
    :raise FileNotFoundError: When there is no such experiment or model file
    """
    algo_folder = Path(log_folder) / algo
    if exp_id == 0:
        ids = _run_ids(algo_folder, env_id)
        if not ids:
            raise FileNotFoundError(f"No experiment of {algo} on {env_id} in {algo_folder}")
        exp_id = max(ids)
    folder = algo_folder / f"{env_id}_{exp_id}"
    for name in (f"{env_id}.zip", "best_model.zip"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"No {env_id}.zip or best_model.zip in {folder}")


def make_env(
    env_id: str,
    n_envs: int,
    seed: int | None,
    settings: dict[str, Any],
    training: bool = True,
    monitor_dir: str | None = None,
    render_mode: str | None = None,
) -> Any:
    """
    Vectorised env as RL Zoo builds it (``n_envs``, ``env_kwargs``, ``env_wrapper``, ``frame_stack``, ``normalize``).

    :param env_id: Gymnasium env id
    :param n_envs: Number of envs
    :param seed: Seed of the first env
    :param settings: Run settings from :func:`sb3_sac_ext.config.prepare_model_kwargs`
    :param training: False for evaluation: ``VecNormalize`` frozen, rewards not normalised
    :param monitor_dir: Folder of the ``Monitor`` CSV files (episode returns), or None
    :param render_mode: Passed to ``gym.make`` (``"rgb_array"`` to record videos)
    :return: The ``VecEnv``
    """
    env_kwargs = settings.get("env_kwargs") or {}
    if isinstance(env_kwargs, str):
        env_kwargs = parse_python_value(env_kwargs)
    if render_mode is not None:
        env_kwargs = {**env_kwargs, "render_mode": render_mode}
    env = make_vec_env(
        env_id,
        n_envs=n_envs,
        seed=seed,
        env_kwargs=env_kwargs,
        wrapper_class=get_env_wrapper(settings.get("env_wrapper")),
        monitor_dir=monitor_dir,
    )
    if settings.get("frame_stack"):
        env = VecFrameStack(env, int(settings["frame_stack"]))
    norm = normalize_kwargs(settings.get("normalize", False))
    if norm is not None:
        if not training:
            norm = {**norm, "training": False, "norm_reward": False}
        env = VecNormalize(env, **norm)
    return env


def make_logger(folder: Path, verbose: int, tensorboard_log: str | None = None) -> Any:
    """
    SB3 logger writing ``progress.csv`` and TensorBoard events into the run folder (and stdout when verbose).

    :param folder: Run folder
    :param verbose: Also print the logs when > 0
    :param tensorboard_log: Folder of the TensorBoard events (default: the run folder)
    :return: The logger
    """
    formats = [make_output_format("csv", str(folder))]
    if verbose > 0:
        formats.append(make_output_format("stdout", str(folder)))
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        print("TensorBoard logs skipped: tensorboard is not installed (pip install 'sb3-sac-ext[extra]')")
    else:
        formats.append(make_output_format("tensorboard", tensorboard_log or str(folder)))
    return Logger(str(folder), formats)


def video_skip_reason() -> str | None:
    """:return: Why videos cannot be recorded here, or None when they can."""
    try:
        import moviepy  # noqa: F401
    except ImportError:
        return "moviepy is not installed (pip install moviepy)"
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        if shutil.which("ffmpeg") is None:
            return "ffmpeg is not available (pip install imageio-ffmpeg, or install ffmpeg)"
    return None


def play(model: Any, env: Any, n_steps: int, deterministic: bool = True) -> None:
    """
    Reset ``env`` (a VecEnv) and step it ``n_steps`` times with the model's actions, carrying the RNN state of
    recurrent policies and the episode starts from one step to the next (as ``evaluate_policy`` does).

    :param model: The model (any SB3 algorithm)
    :param env: The VecEnv
    :param n_steps: Number of steps
    :param deterministic: Whether to use deterministic actions
    """
    obs = env.reset()
    state, episode_starts = None, np.ones(env.num_envs, dtype=bool)
    for _ in range(n_steps):
        action, state = model.predict(obs, state=state, episode_start=episode_starts, deterministic=deterministic)
        obs, _, episode_starts, _ = env.step(action)
