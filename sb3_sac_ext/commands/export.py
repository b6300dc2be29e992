"""
``sb3-sac-ext export``: export a saved model (found RL Zoo style, given with ``--model`` or downloaded from the Hub
with ``--repo-id``) to ONNX or TorchScript, with its VecNormalize statistics folded in.

    sb3-sac-ext export --algo sac --env Pendulum-v1 -f logs -o pendulum.onnx
    sb3-sac-ext export --model logs/sac/Pendulum-v1_1/Pendulum-v1.zip -o pendulum.pt
"""

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_sac_ext.common.errors import UnknownAlgorithmError
from sb3_sac_ext.common.persistence import load_vec_normalize
from sb3_sac_ext.experiment import find_model
from sb3_sac_ext.export import export_policy
from sb3_sac_ext.hub import VEC_NORMALIZE_FILE, download_from_hub
from sb3_sac_ext.registry import get_algorithm

HELP = "export a trained policy to ONNX or TorchScript"
DESCRIPTION = "Export a trained policy to ONNX or TorchScript"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``export`` to ``parser``."""
    parser.add_argument("--algo", default="sac", help="Algorithm key (sac, discrete_sac; also the RL Zoo key sac_ext)")
    parser.add_argument("--env", help="Environment id (to find the model in the log folder)")
    parser.add_argument("-f", "--folder", default="logs", help="RL Zoo log folder")
    parser.add_argument("--exp-id", type=int, default=0, help="Experiment id (0: latest)")
    parser.add_argument("--model", help="Path of a saved model .zip (instead of --env/-f)")
    parser.add_argument("-o", "--output", required=True, help="Output file: .onnx or .pt")
    parser.add_argument("--format", choices=["onnx", "torchscript"], help="Format (default: from the suffix)")
    parser.add_argument("--stochastic", action="store_true", help="Export the distribution parameters, not the action")
    parser.add_argument("--opset", type=int, help="ONNX opset version")
    parser.add_argument(
        "--vec-normalize",
        help=(
            "normalisation statistics to fold in: vec_normalize.zip, or a pickled vecnormalize.pkl with "
            "--allow-pickle (default: the file next to the model, if any)"
        ),
    )
    parser.add_argument("--no-vec-normalize", action="store_true", help="Do not fold VecNormalize statistics in")
    parser.add_argument("--channels-last", choices=["auto", "yes", "no"], default="auto", help="Layout of image inputs")
    parser.add_argument("--allow-pickle", action="store_true", help="Allow unpickling items of the model file (trusted files)")
    parser.add_argument("--repo-id", help="Hugging Face Hub repository to download the model from (instead of --env/-f)")
    parser.add_argument("--revision", help="Hub commit sha to pin (with --repo-id)")
    parser.add_argument("--endpoint", help="Hub URL (with --repo-id; default: HF_ENDPOINT or https://huggingface.co)")
    parser.set_defaults(parser=parser)


def export(args: argparse.Namespace) -> int:
    """Find or download the model, load it and export it; prints the written path."""
    parser: argparse.ArgumentParser = args.parser
    try:
        algo_class = get_algorithm(args.algo).cls
    except UnknownAlgorithmError as e:
        parser.error(str(e))
    if args.model is None and args.env is None and args.repo_id is None:
        parser.error("give --env (with -f), --model or --repo-id")
    vec_normalize = args.vec_normalize
    if args.repo_id is not None:
        # Downloaded through huggingface_hub's cache and verified against the repository's sha256 manifest
        download = download_from_hub(args.repo_id, revision=args.revision, endpoint=args.endpoint)
        model_path = download.model
        if vec_normalize is None and download.path(VEC_NORMALIZE_FILE) is not None:
            vec_normalize = str(download.path(VEC_NORMALIZE_FILE))
    else:
        model_path = Path(args.model) if args.model else find_model(args.folder, args.algo, args.env, args.exp_id)
    load_kwargs: dict[str, Any] = {"device": "cpu"}
    if args.allow_pickle:
        load_kwargs["allow_pickle"] = True
    model = algo_class.load(model_path, **load_kwargs)

    normalize = None
    stats_path = Path(vec_normalize) if vec_normalize else _find_vec_normalize(model_path)
    if not args.no_vec_normalize and stats_path is not None:
        normalize = _load_vec_normalize(stats_path, model, allow_pickle=args.allow_pickle)
    out = export_policy(
        model,
        args.output,
        format=args.format,
        deterministic=not args.stochastic,
        opset=args.opset,
        normalize=normalize,
        channels_last={"auto": None, "yes": True, "no": False}[args.channels_last],
    )
    print(f"Exported {model_path} to {out}" + (f" (VecNormalize statistics from {stats_path})" if normalize else ""))
    return 0


def export_main(argv: Sequence[str] | None = None) -> int:
    """
    ``sb3-sac-ext export`` as a function; errors are raised, not printed (``sb3-sac-ext`` prints them in one line).

    :param argv: Arguments after ``export`` (``None``: ``sys.argv[1:]``)
    :return: Exit status
    """
    parser = argparse.ArgumentParser(prog="sb3-sac-ext export", description=DESCRIPTION)
    configure(parser)
    return export(parser.parse_args(argv))


def _find_vec_normalize(model_path: Path) -> Path | None:
    # Ours: vec_normalize.zip (pickle-free) next to the model; RL Zoo: <exp folder>/<env_id>/vecnormalize.pkl
    for candidate in (
        model_path.parent / VEC_NORMALIZE_FILE,
        model_path.parent / model_path.stem / "vecnormalize.pkl",
        model_path.parent / "vecnormalize.pkl",
    ):
        if candidate.is_file():
            return candidate
    return None


class _SpacesEnv(gym.Env):
    """An env that only declares the model's spaces: enough to rebuild ``VecNormalize`` statistics."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space):
        self.observation_space = observation_space
        self.action_space = action_space


def _load_vec_normalize(stats_path: Path, model: Any, allow_pickle: bool) -> Any:
    """Normalisation statistics to fold in; a pickled ``vecnormalize.pkl`` only with ``allow_pickle``."""
    venv = DummyVecEnv([lambda: _SpacesEnv(model.observation_space, model.action_space)])
    return load_vec_normalize(stats_path, venv, allow_pickle=allow_pickle)
