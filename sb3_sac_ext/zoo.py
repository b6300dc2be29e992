"""
RL Zoo integration: :func:`register` adds our algorithms to ``rl_zoo3`` under new keys.

    import sb3_sac_ext.zoo
    sb3_sac_ext.zoo.register()
    # then rl_zoo3's own code: python -m rl_zoo3.train --algo discrete_sac --env CartPole-v1

One RL Zoo key per algorithm, from :mod:`sb3_sac_ext.registry`:

- ``sac_ext``: :class:`sb3_sac_ext.SAC`, hyperparameters from our ``hyperparams/sac.yml``
- ``discrete_sac``: :class:`sb3_sac_ext.DiscreteSAC`, ``hyperparams/discrete_sac.yml``

RL Zoo's ``sac`` (SB3's) is never replaced. Registration fills rl_zoo3's ``ALGOS``, ``HYPERPARAMS_SAMPLER`` and
``HYPERPARAMS_CONVERTER`` dicts, and makes ``ExperimentManager`` default to our YAML files for our keys (rl_zoo3
otherwise looks for ``hyperparams/<algo>.yml`` inside its own package). Nothing happens at import time.
"""

import functools
import inspect
import sys
from pathlib import Path
from typing import Any

from sb3_sac_ext.common.errors import SB3SacExtError
from sb3_sac_ext.config import HYPERPARAMS_DIR
from sb3_sac_ext.registry import ALGORITHMS, Algorithm
from sb3_sac_ext.tuning.samplers import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER

# RL Zoo key -> algorithm (only our keys: RL Zoo's own ``sac`` must keep meaning SB3's SAC)
ZOO_ALGOS: dict[str, Algorithm] = {algorithm.zoo_key: algorithm for algorithm in ALGORITHMS.values()}


def hyperparams_path(zoo_key: str) -> Path:
    """:return: The packaged YAML file used for an RL Zoo key of ours."""
    return HYPERPARAMS_DIR / ZOO_ALGOS[zoo_key].hyperparams_file


def _require_rl_zoo() -> None:
    try:
        import rl_zoo3
        import rl_zoo3.exp_manager
        import rl_zoo3.hyperparams_opt
        import rl_zoo3.utils  # noqa: F401
    except ImportError as e:
        raise SB3SacExtError(f"RL Zoo integration needs rl_zoo3 ({e}): pip install 'sb3-sac-ext[zoo]'") from None


def _patch_experiment_manager() -> None:
    from rl_zoo3.exp_manager import ExperimentManager

    original = ExperimentManager.__init__
    if getattr(original, "_sb3_sac_ext", False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        if bound.arguments.get("algo") in ZOO_ALGOS and not bound.arguments.get("config"):
            bound.arguments["config"] = str(hyperparams_path(bound.arguments["algo"]))
        original(*bound.args, **bound.kwargs)

    __init__._sb3_sac_ext = True  # type: ignore[attr-defined]
    ExperimentManager.__init__ = __init__  # type: ignore[method-assign]


def register() -> None:
    """
    Register ``sac_ext`` and ``discrete_sac`` with rl_zoo3 (idempotent). Call it before building
    rl_zoo3's parsers: ``rl_zoo3.train`` reads ``ALGOS`` for its ``--algo`` choices.
    """
    _require_rl_zoo()
    import rl_zoo3.hyperparams_opt as zoo_opt
    import rl_zoo3.utils as zoo_utils

    for zoo_key, algorithm in ZOO_ALGOS.items():
        zoo_utils.ALGOS[zoo_key] = algorithm.cls
        zoo_opt.HYPERPARAMS_SAMPLER[zoo_key] = HYPERPARAMS_SAMPLER[algorithm.name]
        zoo_opt.HYPERPARAMS_CONVERTER[zoo_key] = HYPERPARAMS_CONVERTER[algorithm.name]
    _patch_experiment_manager()


def zoo_main(entry: str, argv: list[str] | None = None) -> int:
    """
    Register, then run rl_zoo3's ``train`` or ``enjoy`` with ``argv`` (the zoo_scripts entry points).

    :param entry: ``"train"`` or ``"enjoy"``
    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    :return: Exit status
    """
    try:
        register()
    except SB3SacExtError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    if entry == "train":
        from rl_zoo3.train import train

        train()
    else:
        from rl_zoo3.enjoy import enjoy

        enjoy()
    return 0
