"""
The ``sb3-sac-ext`` command line, kept importable under its first name: the subcommands live in
:mod:`sb3_sac_ext.commands` (one module each). ``python -m sb3_sac_ext.cli`` runs it.
"""

import sys

from sb3_sac_ext.commands import build_parser, main
from sb3_sac_ext.commands.enjoy import enjoy
from sb3_sac_ext.commands.export import export_main
from sb3_sac_ext.commands.plot import plot_main
from sb3_sac_ext.commands.train import train
from sb3_sac_ext.commands.tune import tune_main
from sb3_sac_ext.registry import get_algorithm as _get_algorithm


def get_algorithm(name: str) -> type:
    """
    :param name: Algorithm name (``sac``, ``discrete_sac``) or RL Zoo key
    :return: The algorithm class (:func:`sb3_sac_ext.registry.get_algorithm` returns the whole registry entry)
    """
    return _get_algorithm(name).cls


__all__ = ["build_parser", "enjoy", "export_main", "get_algorithm", "main", "plot_main", "train", "tune_main"]

if __name__ == "__main__":
    sys.exit(main())
