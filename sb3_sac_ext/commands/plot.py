"""
``sb3-sac-ext plot``: learning curves from a log folder, or the training speed of ``benchmarks/throughput.py --out``
(see :mod:`sb3_sac_ext.plotting`).

    sb3-sac-ext plot -f logs --env Pendulum-v1                 # every algorithm under logs/
    sb3-sac-ext plot -f logs --env CartPole-v1 --algo discrete_sac sac_ext -o cartpole.png
    sb3-sac-ext plot --speed speed.json                        # bars, into speed.png
"""

import argparse
import sys
from pathlib import Path

from sb3_sac_ext.common.errors import SB3SacExtError
from sb3_sac_ext.plotting import plot_learning_curves, plot_speed

HELP = "plot learning curves from a log folder, or a speed benchmark's results"
DESCRIPTION = "Plot learning curves from a log folder, or the training speed of benchmarks/throughput.py --out"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``plot`` to ``parser``."""
    parser.add_argument("-f", "--log-folder", default="logs", help="log folder (default: logs)")
    parser.add_argument("--env", default=None, help="only this env id (default: all)")
    parser.add_argument("--algo", nargs="+", default=None, help="only these algorithm folders (default: all)")
    parser.add_argument("-o", "--output", default=None, help="PNG file (default: <log folder>/learning_curves[_<env>].png)")
    parser.add_argument("--smooth", type=int, default=10, help="moving-average window over training episodes (default: 10)")
    parser.add_argument("--per-run", action="store_true", help="one line per run instead of mean and spread")
    parser.add_argument(
        "--speed",
        metavar="FILE.json",
        default=None,
        help="draw the updates/s ratios of benchmarks/throughput.py --out FILE.json as bars instead "
        "(-f, --env, --algo unused; default output: FILE.png next to it)",
    )


def plot(args: argparse.Namespace) -> int:
    """
    Draw the curves (or with ``--speed``, the speed bars) into ``--output``; a missing folder, run or results file is a
    one-line error (exit status 2).
    """
    try:
        if args.speed:
            path = plot_speed(args.speed, args.output or str(Path(args.speed).with_suffix(".png")))
        else:
            output = args.output or str(
                Path(args.log_folder) / (f"learning_curves_{args.env}.png" if args.env else "learning_curves.png")
            )
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
