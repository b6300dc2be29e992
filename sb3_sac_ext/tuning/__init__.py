"""
Hyperparameter search with Optuna: samplers in RL Zoo's signature, the objective and the study runner.

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
