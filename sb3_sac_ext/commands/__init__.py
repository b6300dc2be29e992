"""
The ``sb3-sac-ext`` command line, one module per subcommand.

    sb3-sac-ext train                                   # SAC on Pendulum-v1 with hyperparams/sac.yml
    sb3-sac-ext train --algo sac --env Pendulum-v1 -n 5000 -f logs --seed 0
    sb3-sac-ext enjoy --algo sac --env Pendulum-v1 -f logs --n-episodes 5 [--video]
    sb3-sac-ext tune --algo sac --env Pendulum-v1 --n-trials 20 -n 20000
    sb3-sac-ext plot -f logs --env Pendulum-v1
    sb3-sac-ext export --algo sac --env Pendulum-v1 -f logs -o pendulum.onnx
    sb3-sac-ext push --repo-id <org>/sac-Pendulum-v1 --env Pendulum-v1 -f logs
    sb3-sac-ext pull <org>/sac-Pendulum-v1 --revision <commit sha>

Models are stored RL-Zoo style: ``<log folder>/<algo>/<EnvId>_<run id>/<EnvId>.zip``.
Bad input is reported in one line with a non-zero exit status, not a traceback.
"""

import argparse
import sys
from collections.abc import Callable

from sb3_sac_ext.commands import enjoy, export, plot, pull, push, train, tune
from sb3_sac_ext.commands.common import run_command

# Subcommand -> (module, function taking the parsed arguments), in --help order
PARSED: dict[str, tuple[object, Callable[[argparse.Namespace], int]]] = {
    "train": (train, train.train),
    "enjoy": (enjoy, enjoy.enjoy),
    "tune": (tune, tune.tune),
    "plot": (plot, plot.plot),
    "export": (export, export.export),
}
# The Hub's subcommands parse their own arguments (sb3_sac_ext.hub.push_main / pull_main)
HUB: dict[str, tuple[object, Callable[[list[str]], int]]] = {"push": (push, push.push_main), "pull": (pull, pull.pull_main)}


def build_parser() -> argparse.ArgumentParser:
    """:return: The argument parser of ``sb3-sac-ext``, one subparser per subcommand."""
    parser = argparse.ArgumentParser(prog="sb3-sac-ext", description="Soft Actor-Critic for Stable-Baselines3")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join([*PARSED, *HUB]) + "}")
    for name, (module, function) in PARSED.items():
        subparser = subparsers.add_parser(name, help=module.HELP, description=getattr(module, "DESCRIPTION", None))
        module.configure(subparser)
        subparser.set_defaults(func=function)
    for name, (module, _) in HUB.items():
        # Listed for --help; the arguments go to the Hub's own parser (see main)
        subparsers.add_parser(name, help=module.HELP, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sb3-sac-ext``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in HUB:
        return run_command(argv[0], lambda: HUB[argv[0]][1](argv[1:]))
    args = build_parser().parse_args(argv)
    args.argv = argv
    return run_command(args.command, lambda: args.func(args))


__all__ = ["build_parser", "main"]
