"""
The ``sb3-sac-ext`` command line.

    sb3-sac-ext train                                   # SAC on Pendulum-v1 with hyperparams/sac.yml
    sb3-sac-ext train --algo sac --env Pendulum-v1 -n 5000 -f logs --seed 0
    sb3-sac-ext enjoy --algo sac --env Pendulum-v1 -f logs --n-episodes 5 [--video]
    sb3-sac-ext tune --algo sac --env Pendulum-v1 --n-trials 20 -n 20000     # see: sb3-sac-ext tune --help
    sb3-sac-ext plot -f logs --env Pendulum-v1                              # see: sb3-sac-ext plot --help

Models are stored RL-Zoo style: ``<log folder>/<algo>/<EnvId>_<run id>/<EnvId>.zip``.
Bad input is reported in one line with a non-zero exit status, not a traceback.
"""

import argparse
import sys
from pathlib import Path
from typing import Any

from sb3_sac_ext.common.errors import SB3SacExtError
from sb3_sac_ext.experiment import check_env_id, make_env, make_logger, play, run_dir, video_skip_reason
from sb3_sac_ext.registry import get_algorithm as _registry_get_algorithm


def get_algorithm(name: str) -> type:
    """
    :param name: Algorithm name (``sac``, ``discrete_sac``) or RL Zoo key
    :return: The algorithm class
    """
    return _registry_get_algorithm(name).cls


def train(args: argparse.Namespace) -> int:
    """
    Train, save, evaluate and print the mean return. Under torchrun (or with ``--nproc N``), data-parallel:
    rank 0 alone writes the run folder, logs, evaluates and saves.
    """
    from sb3_sac_ext.common import distributed
    from sb3_sac_ext.config import get_hyperparams, prepare_model_kwargs

    if getattr(args, "dist_timeout", None) is not None:
        import os

        os.environ[distributed.TIMEOUT_ENV] = str(args.dist_timeout)
    if getattr(args, "nproc", 0) > 1 and distributed.env_world_size() <= 1 and not distributed.group_ready():
        # Relaunch this command under torchrun on this machine (one process per rank)
        return distributed.launch(args.nproc, ["sb3_sac_ext.cli", *_without_option(getattr(args, "argv", None), "--nproc")])
    algo_class = get_algorithm(args.algo)
    check_env_id(args.env)
    model_kwargs, settings = prepare_model_kwargs(get_hyperparams(args.algo, args.env, args.hyperparams_file))
    n_timesteps = int(args.n_timesteps if args.n_timesteps > 0 else settings.get("n_timesteps", 1e6))
    rank, owned = 0, False
    if distributed.wanted(model_kwargs.get("distributed", "auto")):
        # Launched by torchrun: form the group now, so that rank 0 alone creates the run folder
        import torch.distributed as dist
        from stable_baselines3.common.utils import get_device

        owned = distributed.init_process_group(distributed.resolve_device(get_device(model_kwargs.get("device", "auto"))))
        rank = dist.get_rank()
        shared = [str(run_dir(args.log_folder, args.algo, args.env, new=True)) if rank == 0 else None]
        dist.broadcast_object_list(shared, src=0)
        folder = Path(shared[0])  # type: ignore[arg-type]
    else:
        folder = run_dir(args.log_folder, args.algo, args.env, new=True)
    try:
        return _train(args, algo_class, model_kwargs, settings, n_timesteps, folder, rank)
    finally:
        if owned and distributed.group_ready():
            import torch.distributed as dist

            dist.destroy_process_group()  # on an error, the other ranks fail at once instead of waiting


def _without_option(argv: list[str] | None, option: str) -> list[str]:
    """``argv`` (default: ``sys.argv[1:]``) without ``option VALUE`` / ``option=VALUE``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == option:
            skip = True
        elif not item.startswith(f"{option}="):
            kept.append(item)
    return kept


def _train(
    args: argparse.Namespace, algo_class: type, model_kwargs: dict, settings: dict, n_timesteps: int, folder: Path, rank: int
) -> int:
    """The body of :func:`train`; with ``rank > 0`` (data-parallel training) nothing is written, printed or evaluated."""
    from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    main_process = rank == 0
    monitor_dir = str(folder) if main_process else None
    env = make_env(args.env, int(settings.get("n_envs", 1)), args.seed, settings, monitor_dir=monitor_dir)
    policy = model_kwargs.pop("policy", "MlpPolicy")
    model = algo_class(policy, env, seed=args.seed, verbose=args.verbose if main_process else 0, **model_kwargs)
    if main_process:
        model.set_logger(make_logger(folder, args.verbose, args.tensorboard_log))
    callbacks = []
    if args.eval_freq > 0 and main_process:
        eval_env = make_env(args.env, 1, None if args.seed is None else args.seed + 1000, settings, training=False)
        callbacks.append(
            EvalCallback(
                eval_env,
                eval_freq=max(args.eval_freq // env.num_envs, 1),
                n_eval_episodes=args.eval_episodes,
                best_model_save_path=str(folder),
                log_path=str(folder),
            )
        )
    if args.save_freq > 0 and main_process:
        callbacks.append(
            CheckpointCallback(max(args.save_freq // env.num_envs, 1), str(folder / "checkpoints"), name_prefix="rl_model")
        )
    if main_process:
        print(f"Training {args.algo} on {args.env} for {n_timesteps} steps; logs and model in {folder}")
    model.learn(n_timesteps, callback=callbacks, progress_bar=args.progress)
    if not main_process:
        return 0
    model_path = folder / f"{args.env}.zip"
    model.save(model_path)
    if model.get_vec_normalize_env() is not None:
        from sb3_sac_ext.common.persistence import save_vec_normalize

        save_vec_normalize(model.get_vec_normalize_env(), folder / "vec_normalize.zip")
    eval_env = make_env(args.env, 1, None if args.seed is None else args.seed + 2000, settings, training=False)
    if model.get_vec_normalize_env() is not None:
        eval_env.obs_rms = model.get_vec_normalize_env().obs_rms
    mean_return, std_return = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True)
    print(f"Saved model to {model_path}")
    print(f"Mean return over {args.eval_episodes} episodes: {mean_return:.2f} +/- {std_return:.2f}")
    return 0


def enjoy(args: argparse.Namespace) -> int:
    """Load the latest (or given) model, run it, print the mean return and optionally record a video."""
    from stable_baselines3.common.evaluation import evaluate_policy

    from sb3_sac_ext.config import get_hyperparams, prepare_model_kwargs

    algo_class = get_algorithm(args.algo)
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
        from sb3_sac_ext.common.persistence import load_vec_normalize

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
    from stable_baselines3.common.vec_env import VecVideoRecorder

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


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algo", default="sac", help="algorithm: sac or discrete_sac (default: sac)")
    parser.add_argument("--env", default="Pendulum-v1", help="gymnasium env id (default: Pendulum-v1)")
    parser.add_argument("-f", "--log-folder", default="logs", help="log folder (default: logs)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--hyperparams-file", default=None, help="RL Zoo YAML file (default: the packaged hyperparams/<algo>.yml)"
    )


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
    train_parser.add_argument(
        "--nproc", type=int, default=0, help="data-parallel training: launch N processes on this machine with torchrun"
    )
    train_parser.add_argument(
        "--dist-timeout", type=float, default=None, help="data-parallel training: collective timeout in seconds (default: 600)"
    )
    train_parser.set_defaults(func=train)

    enjoy_parser = commands.add_parser("enjoy", help="run and evaluate a trained model")
    _common(enjoy_parser)
    enjoy_parser.add_argument("--model", default=None, help="model zip (default: the latest run in the log folder)")
    enjoy_parser.add_argument("--n-episodes", type=int, default=10)
    enjoy_parser.add_argument("--stochastic", action="store_true", help="sample actions instead of the deterministic ones")
    enjoy_parser.add_argument("--video", action="store_true", help="record a video into <run folder>/videos")
    enjoy_parser.add_argument("--video-length", type=int, default=500, help="video length in env steps (default: 500)")
    enjoy_parser.set_defaults(func=enjoy)

    # Subcommands with their own parsers: listed here for --help, parsed by their modules
    commands.add_parser("export", help="export a trained policy to ONNX or TorchScript (see: sb3-sac-ext export --help)")
    commands.add_parser("tune", help="search hyperparameters with Optuna (see: sb3-sac-ext tune --help)")
    commands.add_parser("plot", help="plot learning curves from a log folder (see: sb3-sac-ext plot --help)")
    return parser


# Subcommand -> "module:function" taking the remaining argv and returning an exit status
DELEGATED = {
    "export": "sb3_sac_ext.export:export_main",
    "tune": "sb3_sac_ext.tuning.command:tune_main",
    "plot": "sb3_sac_ext.plotting:plot_main",
    "push": "sb3_sac_ext.hub:push_main",
    "pull": "sb3_sac_ext.hub:pull_main",
}


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors printed as one line (exit status 2) instead of a traceback; also an env's missing package (e.g. Box2D)."""
    import gymnasium as gym

    return (SB3SacExtError, ValueError, FileNotFoundError, ImportError, gym.error.DependencyNotInstalled)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sb3-sac-ext``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        import importlib

        module_name, function_name = DELEGATED[argv[0]].split(":")
        try:
            return int(getattr(importlib.import_module(module_name), function_name)(argv[1:]))
        except _user_errors() as e:
            print(f"sb3-sac-ext {argv[0]}: error: {e}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return int(args.func(args))
    except _user_errors() as e:
        print(f"sb3-sac-ext {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sb3-sac-ext {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
