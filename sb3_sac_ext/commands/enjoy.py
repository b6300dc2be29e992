"""
``sb3-sac-ext enjoy``: load the latest (or given) model, run it, print the mean return, optionally record a video.

    sb3-sac-ext enjoy --algo sac --env Pendulum-v1 -f logs --n-episodes 5 [--video]
"""

import argparse
from pathlib import Path
from typing import Any

from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecVideoRecorder

from sb3_sac_ext.commands.common import add_common_options
from sb3_sac_ext.common.errors import SB3SacExtError
from sb3_sac_ext.common.persistence import load_vec_normalize
from sb3_sac_ext.config import get_hyperparams, prepare_model_kwargs
from sb3_sac_ext.experiment import check_env_id, make_env, play, run_dir, video_skip_reason
from sb3_sac_ext.registry import get_algorithm

HELP = "run and evaluate a trained model"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``enjoy`` to ``parser``."""
    add_common_options(parser)
    parser.add_argument("--model", default=None, help="model zip (default: the latest run in the log folder)")
    parser.add_argument("--n-episodes", type=int, default=10)
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of the deterministic ones")
    parser.add_argument("--video", action="store_true", help="record a video into <run folder>/videos")
    parser.add_argument("--video-length", type=int, default=500, help="video length in env steps (default: 500)")


def enjoy(args: argparse.Namespace) -> int:
    """Load the latest (or given) model, run it, print the mean return and optionally record a video."""
    algo_class = get_algorithm(args.algo).cls
    check_env_id(args.env)
    model_path = (
        Path(args.model) if args.model else run_dir(args.log_folder, args.algo, args.env, new=False) / f"{args.env}.zip"
    )
    if not model_path.is_file():
        raise SB3SacExtError(f"model file {model_path} does not exist")
    _, settings = prepare_model_kwargs(get_hyperparams(args.algo, args.env, args.hyperparams_file))
    env = make_env(args.env, 1, args.seed, settings, training=False)
    stats_path = model_path.parent / "vec_normalize.zip"
    if stats_path.is_file() and hasattr(env, "obs_rms"):
        stats = load_vec_normalize(stats_path, env.venv)  # type: ignore[attr-defined]
        env.obs_rms = stats.obs_rms  # type: ignore[attr-defined]
    model = algo_class.load(model_path, env=env)
    mean_return, std_return = evaluate_policy(model, env, n_eval_episodes=args.n_episodes, deterministic=not args.stochastic)
    print(f"Mean return over {args.n_episodes} episodes: {mean_return:.2f} +/- {std_return:.2f}")
    if args.video:
        _record_video(args, model, settings, model_path.parent)
    return 0


def _record_video(args: argparse.Namespace, model: Any, settings: dict[str, Any], folder: Path) -> None:
    """Record ``--video-length`` steps of the model into ``<run folder>/videos`` (skipped with a message when impossible)."""
    reason = video_skip_reason()
    if reason is not None:
        print(f"Video skipped: {reason}")
        return
    try:
        env = make_env(args.env, 1, args.seed, settings, training=False, render_mode="rgb_array")
        if getattr(model, "get_vec_normalize_env", lambda: None)() is not None and hasattr(env, "obs_rms"):
            env.obs_rms = model.get_vec_normalize_env().obs_rms  # type: ignore[attr-defined]
        video_folder = folder / "videos"
        env = VecVideoRecorder(
            env,
            str(video_folder),
            record_video_trigger=lambda step: step == 0,
            video_length=args.video_length,
            name_prefix=f"{args.algo}-{args.env}",
        )
        play(model, env, args.video_length + 1, deterministic=not args.stochastic)
        env.close()
    except Exception as e:  # rendering backends fail in many ways (no display, no pygame, ...)
        print(f"Video skipped: rendering failed ({type(e).__name__}: {e})")
        return
    print(f"Saved video to {video_folder}")
