"""What the subcommands share: the options of ``train`` and ``enjoy``, and one-line errors for user mistakes."""

import argparse
import sys
from collections.abc import Callable

import gymnasium as gym

from sb3_sac_ext.common.errors import SB3SacExtError

# Errors printed as one line (exit status 2) instead of a traceback; also an env's missing package (e.g. Box2D)
USER_ERRORS: tuple[type[BaseException], ...] = (
    SB3SacExtError,
    ValueError,
    FileNotFoundError,
    ImportError,
    gym.error.DependencyNotInstalled,
)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--algo``, ``--env``, ``-f``, ``--seed`` and ``--hyperparams-file`` (``train`` and ``enjoy``)."""
    parser.add_argument("--algo", default="sac", help="algorithm: sac or discrete_sac (default: sac)")
    parser.add_argument("--env", default="Pendulum-v1", help="gymnasium env id (default: Pendulum-v1)")
    parser.add_argument("-f", "--log-folder", default="logs", help="log folder (default: logs)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--hyperparams-file", default=None, help="RL Zoo YAML file (default: the packaged hyperparams/<algo>.yml)"
    )


def run_command(name: str, function: Callable[[], int]) -> int:
    """
    Run a subcommand, reporting user errors in one line.

    :param name: Subcommand name, in the messages
    :param function: The subcommand, returning its exit status
    :return: The exit status: 2 for a user error, 130 when interrupted
    """
    try:
        return int(function())
    except USER_ERRORS as e:
        print(f"sb3-sac-ext {name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sb3-sac-ext {name}: interrupted", file=sys.stderr)
        return 130
