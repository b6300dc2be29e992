"""
The ``sb3-sac-ext`` command line.

    sb3-sac-ext train                                   # SAC on Pendulum-v1 with hyperparams/sac.yml
    sb3-sac-ext train --algo sac --env Pendulum-v1 -n 5000 -f logs --seed 0
    sb3-sac-ext enjoy --algo sac --env Pendulum-v1 -f logs --n-episodes 5

Models are stored RL-Zoo style: ``<log folder>/<algo>/<EnvId>_<run id>/<EnvId>.zip``.
Bad input is reported in one line with a non-zero exit status, not a traceback.
"""

import argparse
import sys
from pathlib import Path
from typing import Any

from sb3_sac_ext.common.errors import SB3SacExtError


def get_algorithm(name: str) -> type:
    """
    :param name: Algorithm key: ``sac`` or ``discrete_sac``
    :return: The algorithm class
    """
    import sb3_sac_ext

    algorithms = {"sac": "SAC", "discrete_sac": "DiscreteSAC"}
    if name not in algorithms or not hasattr(sb3_sac_ext, algorithms[name]):
        available = [key for key, cls in algorithms.items() if hasattr(sb3_sac_ext, cls)]
        raise SB3SacExtError(f"unknown algorithm {name!r}; choose one of {available}")
    return getattr(sb3_sac_ext, algorithms[name])


def check_env_id(env_id: str) -> None:
    """Raise a one-line error for an env id gymnasium does not know."""
    import gymnasium as gym

    if env_id not in gym.registry:
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
    ids = []
    for path in base.glob(f"{env_id}_*"):
        suffix = path.name[len(env_id) + 1 :]
        if suffix.isdigit():
            ids.append(int(suffix))
    if new:
        folder = base / f"{env_id}_{max(ids, default=0) + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    if not ids:
        raise SB3SacExtError(f"no trained model for {algo} on {env_id} under {base}")
    return base / f"{env_id}_{max(ids)}"


def make_env(env_id: str, n_envs: int, seed: int | None, settings: dict[str, Any], training: bool = True) -> Any:
    """Vectorised env as RL Zoo builds it (``n_envs``, ``env_kwargs``, ``frame_stack``, ``normalize``)."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize

    from sb3_sac_ext.config import normalize_kwargs

    env = make_vec_env(env_id, n_envs=n_envs, seed=seed, env_kwargs=settings.get("env_kwargs"))
    if settings.get("frame_stack"):
        env = VecFrameStack(env, int(settings["frame_stack"]))
    norm = normalize_kwargs(settings.get("normalize", False))
    if norm is not None:
        if not training:
            norm = {**norm, "training": False, "norm_reward": False}
        env = VecNormalize(env, **norm)
    return env


def train(args: argparse.Namespace) -> int:
    """Train, save, evaluate and print the mean return."""
    from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    from sb3_sac_ext.config import get_hyperparams, prepare_model_kwargs

    algo_class = get_algorithm(args.algo)
    check_env_id(args.env)
    model_kwargs, settings = prepare_model_kwargs(get_hyperparams(args.algo, args.env, args.hyperparams_file))
    n_timesteps = int(args.n_timesteps if args.n_timesteps > 0 else settings.get("n_timesteps", 1e6))
    folder = run_dir(args.log_folder, args.algo, args.env, new=True)
    env = make_env(args.env, int(settings.get("n_envs", 1)), args.seed, settings)
    policy = model_kwargs.pop("policy", "MlpPolicy")
    model = algo_class(policy, env, seed=args.seed, verbose=args.verbose, tensorboard_log=args.tensorboard_log, **model_kwargs)
    callbacks = []
    if args.eval_freq > 0:
        eval_env = make_env(args.env, 1, None if args.seed is None else args.seed + 1000, settings, training=False)
        callbacks.append(
            EvalCallback(eval_env, eval_freq=args.eval_freq, n_eval_episodes=args.eval_episodes, best_model_save_path=str(folder))
        )
    if args.save_freq > 0:
        callbacks.append(CheckpointCallback(args.save_freq, str(folder / "checkpoints"), name_prefix="rl_model"))
    print(f"Training {args.algo} on {args.env} for {n_timesteps} steps; logs and model in {folder}")
    model.learn(n_timesteps, callback=callbacks, progress_bar=args.progress)
    model_path = folder / f"{args.env}.zip"
    model.save(model_path)
    if model.get_vec_normalize_env() is not None:
        model.get_vec_normalize_env().save(str(folder / "vecnormalize.pkl"))
    eval_env = make_env(args.env, 1, None if args.seed is None else args.seed + 2000, settings, training=False)
    if model.get_vec_normalize_env() is not None:
        eval_env.obs_rms = model.get_vec_normalize_env().obs_rms
    mean_return, std_return = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True)
    print(f"Saved model to {model_path}")
    print(f"Mean return over {args.eval_episodes} episodes: {mean_return:.2f} +/- {std_return:.2f}")
    return 0


def enjoy(args: argparse.Namespace) -> int:
    """Load the latest (or given) model, run it and print the mean return."""
    from stable_baselines3.common.evaluation import evaluate_policy

    from sb3_sac_ext.config import get_hyperparams, prepare_model_kwargs

    algo_class = get_algorithm(args.algo)
    check_env_id(args.env)
    model_path = Path(args.model) if args.model else run_dir(args.log_folder, args.algo, args.env, new=False) / f"{args.env}.zip"
    if not model_path.is_file():
        raise SB3SacExtError(f"model file {model_path} does not exist")
    _, settings = prepare_model_kwargs(get_hyperparams(args.algo, args.env, args.hyperparams_file))
    env = make_env(args.env, 1, args.seed, settings, training=False)
    model = algo_class.load(model_path, env=env)
    mean_return, std_return = evaluate_policy(model, env, n_eval_episodes=args.n_episodes, deterministic=not args.stochastic)
    print(f"Mean return over {args.n_episodes} episodes: {mean_return:.2f} +/- {std_return:.2f}")
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algo", default="sac", help="algorithm: sac or discrete_sac (default: sac)")
    parser.add_argument("--env", default="Pendulum-v1", help="gymnasium env id (default: Pendulum-v1)")
    parser.add_argument("-f", "--log-folder", default="logs", help="log folder (default: logs)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--hyperparams-file", default=None, help="RL Zoo YAML file (default: the packaged hyperparams/<algo>.yml)")


def build_parser() -> argparse.ArgumentParser:
    """:return: The argument parser of ``sb3-sac-ext``."""
    parser = argparse.ArgumentParser(prog="sb3-sac-ext", description="Soft Actor-Critic for Stable-Baselines3")
    commands = parser.add_subparsers(dest="command", required=True)

    train_parser = commands.add_parser("train", help="train a model from hyperparams/<algo>.yml")
    _common(train_parser)
    train_parser.add_argument("-n", "--n-timesteps", type=int, default=-1, help="env steps (default: from the YAML entry)")
    train_parser.add_argument("--eval-freq", type=int, default=-1, help="evaluate every N steps (default: off)")
    train_parser.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes (default: 10)")
    train_parser.add_argument("--save-freq", type=int, default=-1, help="checkpoint every N steps (default: off)")
    train_parser.add_argument("--tensorboard-log", "-tb", default=None, help="TensorBoard log folder")
    train_parser.add_argument("--verbose", type=int, default=0)
    train_parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    train_parser.set_defaults(func=train)

    enjoy_parser = commands.add_parser("enjoy", help="run and evaluate a trained model")
    _common(enjoy_parser)
    enjoy_parser.add_argument("--model", default=None, help="model zip (default: the latest run in the log folder)")
    enjoy_parser.add_argument("--n-episodes", type=int, default=10)
    enjoy_parser.add_argument("--stochastic", action="store_true", help="sample actions instead of the deterministic ones")
    enjoy_parser.set_defaults(func=enjoy)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sb3-sac-ext``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (SB3SacExtError, ValueError, FileNotFoundError, ImportError) as e:
        print(f"sb3-sac-ext {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sb3-sac-ext {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
