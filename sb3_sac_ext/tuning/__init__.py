"""
Hyperparameter search with Optuna: samplers in RL Zoo's signature (:mod:`~sb3_sac_ext.tuning.samplers`, one per
algorithm of :mod:`sb3_sac_ext.registry`), settings, storage, recovery of crashed workers, the objective, the study
runner and its report. The command line is :mod:`sb3_sac_ext.commands.tune`.

Optuna is an optional dependency (``pip install "sb3-sac-ext[tune]"``): it is imported by the functions
that need it, never at import time.
"""

from sb3_sac_ext.tuning.samplers import (
    HYPERPARAMS_CONVERTER,
    HYPERPARAMS_SAMPLER,
    convert_discrete_sac_params,
    convert_sac_params,
    sample_discrete_sac_params,
    sample_sac_params,
)

__all__ = [
    "HYPERPARAMS_CONVERTER",
    "HYPERPARAMS_SAMPLER",
    "convert_discrete_sac_params",
    "convert_sac_params",
    "sample_discrete_sac_params",
    "sample_sac_params",
]
