"""
``sb3-sac-ext push`` and ``sb3-sac-ext pull``: their arguments (:func:`add_push_arguments`, :func:`add_pull_arguments`)
and what they do with the parsed arguments (:func:`push_command`, :func:`pull_command`, which print and return the
exit status), for the command line to call; :func:`push_main` and :func:`pull_main` parse an argv themselves.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import warnings
from typing import Any

from stable_baselines3.common.env_util import make_vec_env

from sb3_sac_ext.common.errors import HubError, SB3SacExtError
from sb3_sac_ext.common.persistence import load_vec_normalize
from sb3_sac_ext.experiment import run_dir
from sb3_sac_ext.hub.package import VEC_NORMALIZE_FILE
from sb3_sac_ext.hub.pull import load_from_hub
from sb3_sac_ext.hub.push import push_to_hub
from sb3_sac_ext.registry import get_algorithm

PUSH_DESCRIPTION = "Push a trained model to the Hugging Face Hub in one commit (token: --token, HF_TOKEN or hf auth login)."
PULL_DESCRIPTION = "Download a model from the Hugging Face Hub, verify it and load it safely."


def _error_exit(command: str, error: BaseException) -> int:
    print(f"sb3-sac-ext {command}: error: {error}", file=sys.stderr)
    return 2


def _attach_local_stats(model: Any, folder: pathlib.Path, env_id: str, allow_pickle: bool) -> None:
    """Attach the normalisation statistics saved next to a model (``vec_normalize.zip``, or SB3's ``vecnormalize.pkl``)."""
    for name in (VEC_NORMALIZE_FILE, "vecnormalize.pkl"):
        if (folder / name).is_file():
            stats = load_vec_normalize(folder / name, make_vec_env(env_id, n_envs=1), allow_pickle=allow_pickle)
            stats.training = False
            model.set_env(stats)
            return


def add_push_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """
    :param parser: The parser (or subparser) of ``push``
    :return: The same parser, with the arguments of ``push``
    """
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
    return parser


def push_command(args: argparse.Namespace) -> int:
    """
    ``sb3-sac-ext push``: evaluate a trained model and upload it to the Hub; prints the commit sha.

    :param args: The arguments of :func:`add_push_arguments`, parsed
    :return: The exit status (2 with a one-line error on stderr)
    """
    try:
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


def add_pull_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """
    :param parser: The parser (or subparser) of ``pull``
    :return: The same parser, with the arguments of ``pull``
    """
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
    return parser


def pull_command(args: argparse.Namespace) -> int:
    """
    ``sb3-sac-ext pull``: download, verify and load a model; optionally save it in the pickle-free format.

    :param args: The arguments of :func:`add_pull_arguments`, parsed
    :return: The exit status (2 with a one-line error on stderr)
    """
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


def push_main(argv: list[str] | None = None) -> int:
    """
    :param argv: The arguments after ``sb3-sac-ext push`` (default: ``sys.argv[1:]``)
    :return: The exit status of :func:`push_command`
    """
    parser = argparse.ArgumentParser(prog="sb3-sac-ext push", description=PUSH_DESCRIPTION)
    return push_command(add_push_arguments(parser).parse_args(argv))


def pull_main(argv: list[str] | None = None) -> int:
    """
    :param argv: The arguments after ``sb3-sac-ext pull`` (default: ``sys.argv[1:]``)
    :return: The exit status of :func:`pull_command`
    """
    parser = argparse.ArgumentParser(prog="sb3-sac-ext pull", description=PULL_DESCRIPTION)
    return pull_command(add_pull_arguments(parser).parse_args(argv))
