"""
``sb3-sac-ext train``: train a model from ``hyperparams/<algo>.yml``, save it RL-Zoo style, evaluate it.

    sb3-sac-ext train --algo sac --env Pendulum-v1 -n 5000 -f logs --seed 0
    sb3-sac-ext train --nproc 2 ...          # data-parallel, relaunched under torchrun
"""

import argparse
import os
import sys
from pathlib import Path

from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import get_device

from sb3_sac_ext.commands.common import add_common_options
from sb3_sac_ext.common import distributed
from sb3_sac_ext.common.persistence import save_vec_normalize
from sb3_sac_ext.config import get_hyperparams, prepare_model_kwargs
from sb3_sac_ext.experiment import check_env_id, make_env, make_logger, run_dir
from sb3_sac_ext.registry import get_algorithm

HELP = "train a model from hyperparams/<algo>.yml"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``train`` to ``parser``."""
    add_common_options(parser)
    parser.add_argument("-n", "--n-timesteps", type=int, default=-1, help="env steps (default: from the YAML entry)")
    parser.add_argument("--eval-freq", type=int, default=-1, help="evaluate every N steps (default: off)")
    parser.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes (default: 10)")
    parser.add_argument("--save-freq", type=int, default=-1, help="checkpoint every N steps (default: off)")
    parser.add_argument("--tensorboard-log", "-tb", default=None, help="TensorBoard log folder")
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    parser.add_argument(
        "--nproc", type=int, default=0, help="data-parallel training: launch N processes on this machine with torchrun"
    )
    parser.add_argument(
        "--dist-timeout", type=float, default=None, help="data-parallel training: collective timeout in seconds (default: 600)"
    )


def train(args: argparse.Namespace) -> int:
    """
    Train, save, evaluate and print the mean return. Under torchrun (or with ``--nproc N``), data-parallel:
    rank 0 alone writes the run folder, logs, evaluates and saves.
    """
    if getattr(args, "dist_timeout", None) is not None:
        os.environ[distributed.TIMEOUT_ENV] = str(args.dist_timeout)
    if getattr(args, "nproc", 0) > 1 and distributed.env_world_size() <= 1 and not distributed.group_ready():
        # Relaunch this command under torchrun on this machine (one process per rank)
        argv = _without_option(getattr(args, "argv", None), "--nproc")
        return distributed.launch(args.nproc, ["sb3_sac_ext.commands", *argv])
    algo_class = get_algorithm(args.algo).cls
    check_env_id(args.env)
    model_kwargs, settings = prepare_model_kwargs(get_hyperparams(args.algo, args.env, args.hyperparams_file))
    n_timesteps = int(args.n_timesteps if args.n_timesteps > 0 else settings.get("n_timesteps", 1e6))
    rank, owned = 0, False
    if distributed.wanted(model_kwargs.get("distributed", "auto")):
        # Launched by torchrun: form the group now, so that rank 0 alone creates the run folder.
        # torch.distributed is imported here only, for the cost of its import
        import torch.distributed as dist

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
        save_vec_normalize(model.get_vec_normalize_env(), folder / "vec_normalize.zip")
    eval_env = make_env(args.env, 1, None if args.seed is None else args.seed + 2000, settings, training=False)
    if model.get_vec_normalize_env() is not None:
        eval_env.obs_rms = model.get_vec_normalize_env().obs_rms
    mean_return, std_return = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True)
    print(f"Saved model to {model_path}")
    print(f"Mean return over {args.eval_episodes} episodes: {mean_return:.2f} +/- {std_return:.2f}")
    return 0
