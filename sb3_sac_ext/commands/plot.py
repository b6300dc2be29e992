"""
``sb3-sac-ext plot``: learning curves from a log folder (see :mod:`sb3_sac_ext.plotting`).

    sb3-sac-ext plot -f logs --env Pendulum-v1                 # every algorithm under logs/
    sb3-sac-ext plot -f logs --env CartPole-v1 --algo discrete_sac sac_ext -o cartpole.png
"""

import argparse
import sys
from pathlib import Path

from sb3_sac_ext.common.errors import SB3SacExtError
from sb3_sac_ext.plotting import plot_learning_curves

HELP = "plot learning curves from a log folder"
DESCRIPTION = "Plot learning curves from a log folder"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``plot`` to ``parser``."""
    parser.add_argument("-f", "--log-folder", default="logs", help="log folder (default: logs)")
    parser.add_argument("--env", default=None, help="only this env id (default: all)")
    parser.add_argument("--algo", nargs="+", default=None, help="only these algorithm folders (default: all)")
    parser.add_argument("-o", "--output", default=None, help="PNG file (default: <log folder>/learning_curves[_<env>].png)")
    parser.add_argument("--smooth", type=int, default=10, help="moving-average window over training episodes (default: 10)")
    parser.add_argument("--per-run", action="store_true", help="one line per run instead of mean and spread")


def plot(args: argparse.Namespace) -> int:
    """Draw the curves into ``--output``; a missing folder or run is a one-line error (exit status 2)."""
    output = args.output or str(
        Path(args.log_folder) / (f"learning_curves_{args.env}.png" if args.env else "learning_curves.png")
    )
    try:
        path = plot_learning_curves(args.log_folder, output, args.env, args.algo, args.smooth, args.per_run)
    except (SB3SacExtError, ValueError, OSError) as e:
        print(f"sb3-sac-ext plot: error: {e}", file=sys.stderr)
        return 2
    print(f"Saved plot to {path}")
    return 0


def plot_main(argv: list[str] | None = None) -> int:
    """
    ``sb3-sac-ext plot`` as a function.

    :param argv: Arguments after ``plot`` (``None``: ``sys.argv[1:]``)
    :return: Exit status
    """
    parser = argparse.ArgumentParser(prog="sb3-sac-ext plot", description=DESCRIPTION)
    configure(parser)
    return plot(parser.parse_args(sys.argv[1:] if argv is None else argv))
