"""
``sb3-sac-ext tune``: hyperparameter search with Optuna (RL Zoo's option names where it has them).

    sb3-sac-ext tune --algo sac --env Pendulum-v1 --n-trials 50 -n 20000 --n-seeds 2
    sb3-sac-ext tune --algo discrete_sac --env CartPole-v1 --storage postgresql://user@host/db --study-name cartpole
"""

import argparse
import sys
from typing import Any

import yaml

from sb3_sac_ext.commands.common import run_command
from sb3_sac_ext.common.errors import SB3SacExtError
from sb3_sac_ext.tuning.config import PRUNERS, SAMPLERS, TuneConfig
from sb3_sac_ext.tuning.study import run_tuning

HELP = "search hyperparameters with Optuna"
DESCRIPTION = (
    "Search hyperparameters with Optuna. The study lives in --storage (default: a journal file under "
    "the log folder): run the same command again to resume it, or start several workers on one database."
)


def parse_pinned(items: list[str]) -> dict[str, Any]:
    """
    Parse ``--hyperparams key:value ...`` (values in YAML syntax, RL Zoo strings such as ``"dict(net_arch=[64])"`` kept).

    :param items: ``key:value`` strings
    :return: The pinned hyperparameters
    """
    pinned: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition(":")
        if not sep or not key.strip() or not key.strip().isidentifier() or not text.strip():
            raise SB3SacExtError(f"malformed --hyperparams {item!r}: expected key:value, e.g. learning_rate:0.001")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise SB3SacExtError(f"malformed --hyperparams {item!r}: {str(e).splitlines()[0]}") from None
        pinned[key.strip()] = value
    return pinned


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``tune`` to ``parser``."""
    parser.add_argument("--algo", default="sac", help="sac or discrete_sac (default: sac)")
    parser.add_argument("--env", default="Pendulum-v1", help="gymnasium env id (default: Pendulum-v1)")
    parser.add_argument(
        "--n-trials", type=int, default=10, help="trials of the whole study, all workers together (default: 10)"
    )
    parser.add_argument("-n", "--n-timesteps", type=int, default=-1, help="env steps per trial and seed (default: YAML entry)")
    parser.add_argument("-f", "--log-folder", default="logs", help="log folder (default: logs)")
    parser.add_argument("--n-seeds", type=int, default=1, help="seeds per trial; the trial's value is their mean (default: 1)")
    parser.add_argument("--n-evaluations", type=int, default=4, help="evaluations per trial, the pruner's steps (default: 4)")
    parser.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation (default: 5)")
    parser.add_argument("--sampler", default="tpe", choices=SAMPLERS, help="Optuna sampler (default: tpe)")
    parser.add_argument("--pruner", default="median", choices=PRUNERS, help="Optuna pruner (default: median)")
    parser.add_argument("--n-startup-trials", type=int, default=5, help="random trials before the sampler and pruner act")
    parser.add_argument(
        "--storage",
        default=None,
        help="journal file (*.log), sqlite:///file.db or postgresql://user:password@host:port/db "
        "(default: <log folder>/<algo>/tune/optuna_journal.log)",
    )
    parser.add_argument("--study-name", default=None, help="study name (default: <algo>_<env>)")
    parser.add_argument("--n-jobs", type=int, default=1, help="trials in parallel threads in this worker (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler and the trials (default: 0)")
    parser.add_argument(
        "--hyperparams", "-params", nargs="+", default=[], metavar="KEY:VALUE", help="pin values, e.g. gamma:0.98 n_envs:2"
    )
    parser.add_argument("--hyperparams-file", default=None, help="YAML whose entry is the starting point (default: packaged)")
    parser.add_argument("--heartbeat-interval", type=int, default=30, help="seconds between heartbeats (database storage)")
    parser.add_argument("--device", default="auto", help="torch device (default: auto)")
    parser.add_argument("--progress", "-P", action="store_true", help="show a progress bar over the study's trials")
    parser.add_argument("--no-optim-plots", dest="plots", action="store_false", help="do not write the PNG plots")
    parser.add_argument("--create-only", action="store_true", help="create the study and stop (run once before many workers)")


def tune(args: argparse.Namespace) -> int:
    """Run (or resume) the study; see :func:`sb3_sac_ext.tuning.study.run_tuning` for the exit status."""
    config = TuneConfig(
        algo=args.algo,
        env_id=args.env,
        n_trials=args.n_trials,
        n_timesteps=args.n_timesteps,
        log_folder=args.log_folder,
        n_seeds=args.n_seeds,
        n_evaluations=args.n_evaluations,
        eval_episodes=args.eval_episodes,
        sampler=args.sampler,
        pruner=args.pruner,
        storage=args.storage,
        study_name=args.study_name,
        n_jobs=args.n_jobs,
        seed=args.seed,
        hyperparams=parse_pinned(args.hyperparams),
        hyperparams_file=args.hyperparams_file,
        progress=args.progress,
        n_startup_trials=args.n_startup_trials,
        heartbeat_interval=args.heartbeat_interval,
        device=args.device,
        create_only=args.create_only,
        plots=args.plots,
    )
    return run_tuning(config)


def tune_main(argv: list[str] | None = None) -> int:
    """
    ``sb3-sac-ext tune`` as a function.

    :param argv: Arguments after ``tune`` (``None``: ``sys.argv[1:]``)
    :return: Exit status (2 with a one-line message for bad input, 130 when interrupted)
    """
    parser = argparse.ArgumentParser(prog="sb3-sac-ext tune", description=DESCRIPTION)
    configure(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return run_command("tune", lambda: tune(args))
