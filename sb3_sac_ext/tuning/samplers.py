"""
Search spaces for ``SAC`` and ``DiscreteSAC`` in RL Zoo's sampler signature.

``sample_<algo>_params(trial, n_actions, n_envs, additional_args)`` suggests values on the Optuna trial
and returns constructor arguments. ``convert_<algo>_params(params)`` turns the raw trial parameters
(``trial.params``, e.g. ``one_minus_gamma``, ``batch_size_pow``, ``net_arch: "small"``) back into
constructor arguments, as RL Zoo's ``HYPERPARAMS_CONVERTER`` does (used to rebuild a trial's hyperparameters
from the study).

Besides RL Zoo's SAC space, the search covers our extensions: per-network learning rates
(``qf_learning_rate``, ``ent_coef_learning_rate``), ``n_steps``, ``policy_delay`` and, for DiscreteSAC,
``target_entropy_scale``.

``additional_args["pinned"]`` (an optional collection of hyperparameter names) lists values fixed on the
command line: they are not suggested, so they neither waste the search nor show up in importances.
"""

from typing import Any

from sb3_sac_ext.registry import ALGORITHMS

NET_ARCHS: dict[str, list[int]] = {
    "tiny": [32, 32],
    "small": [64, 64],
    "medium": [256, 256],
    "big": [400, 300],
}

# trial parameter name -> hyperparameter(s) it sets (to skip pinned ones)
_SETS = {
    "one_minus_gamma": ("gamma",),
    "batch_size_pow": ("batch_size",),
    "learning_rate": ("learning_rate",),
    "qf_learning_rate": ("qf_learning_rate",),
    "ent_coef_learning_rate": ("ent_coef_learning_rate",),
    "train_freq": ("train_freq", "gradient_steps"),
    "tau": ("tau",),
    "net_arch": ("policy_kwargs",),
    "n_steps": ("n_steps",),
    "policy_delay": ("policy_delay",),
    "target_entropy_scale": ("target_entropy_scale",),
}


def _free(name: str, additional_args: dict[str, Any]) -> bool:
    pinned = set(additional_args.get("pinned", ()))
    return not any(key in pinned for key in _SETS[name])


def _sample_common(trial: Any, additional_args: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if _free("one_minus_gamma", additional_args):
        params["one_minus_gamma"] = trial.suggest_float("one_minus_gamma", 0.0001, 0.03, log=True)
    if _free("batch_size_pow", additional_args):
        # 2**5=32 to 2**10=1024
        params["batch_size_pow"] = trial.suggest_int("batch_size_pow", 5, 10)
    if _free("learning_rate", additional_args):
        params["learning_rate"] = trial.suggest_float("learning_rate", 1e-5, 0.002, log=True)
    if _free("qf_learning_rate", additional_args):
        params["qf_learning_rate"] = trial.suggest_float("qf_learning_rate", 1e-5, 0.003, log=True)
    if _free("ent_coef_learning_rate", additional_args):
        params["ent_coef_learning_rate"] = trial.suggest_float("ent_coef_learning_rate", 1e-5, 0.003, log=True)
    if _free("train_freq", additional_args):
        params["train_freq"] = trial.suggest_int("train_freq", 1, 10)
    if _free("tau", additional_args):
        params["tau"] = trial.suggest_float("tau", 0.001, 0.08, log=True)
    if _free("net_arch", additional_args):
        params["net_arch"] = trial.suggest_categorical("net_arch", list(NET_ARCHS))
    if _free("n_steps", additional_args):
        params["n_steps"] = trial.suggest_categorical("n_steps", [1, 3, 5])
    if _free("policy_delay", additional_args):
        params["policy_delay"] = trial.suggest_categorical("policy_delay", [1, 2])
    return params


def convert_sac_params(params: dict[str, Any]) -> dict[str, Any]:
    """
    Raw trial parameters -> ``SAC`` constructor arguments (parameters absent from ``params`` are left out).

    :param params: ``trial.params``
    :return: Constructor arguments
    """
    hyperparams: dict[str, Any] = {}
    for key, value in params.items():
        if key == "one_minus_gamma":
            hyperparams["gamma"] = 1 - value
        elif key == "batch_size_pow":
            hyperparams["batch_size"] = 2**value
        elif key == "train_freq":
            # Update-to-data ratio of 1 (for n_envs=1), as RL Zoo's converter
            hyperparams["train_freq"] = value
            hyperparams["gradient_steps"] = value
        elif key == "net_arch":
            hyperparams["policy_kwargs"] = {"net_arch": list(NET_ARCHS[value])}
        else:
            hyperparams[key] = value
    return hyperparams


def convert_discrete_sac_params(params: dict[str, Any]) -> dict[str, Any]:
    """
    Raw trial parameters -> ``DiscreteSAC`` constructor arguments.

    :param params: ``trial.params``
    :return: Constructor arguments
    """
    return convert_sac_params(params)


def sample_sac_params(trial: Any, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """
    Sampler for ``SAC`` hyperparameters (RL Zoo's SAC space plus our extensions).

    :param trial: The Optuna trial
    :param n_actions: Action dimension (unused; part of RL Zoo's signature)
    :param n_envs: Number of envs (unused)
    :param additional_args: RL Zoo's extra arguments; ``pinned`` lists hyperparameters fixed by the user
    :return: Constructor arguments
    """
    return convert_sac_params(_sample_common(trial, additional_args))


def sample_discrete_sac_params(trial: Any, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """
    Sampler for ``DiscreteSAC`` hyperparameters: the SAC space plus ``target_entropy_scale``.

    :param trial: The Optuna trial
    :param n_actions: Number of discrete actions (unused)
    :param n_envs: Number of envs (unused)
    :param additional_args: RL Zoo's extra arguments; ``pinned`` lists hyperparameters fixed by the user
    :return: Constructor arguments
    """
    params = _sample_common(trial, additional_args)
    if _free("target_entropy_scale", additional_args):
        params["target_entropy_scale"] = trial.suggest_float("target_entropy_scale", 0.1, 0.98)
    return convert_discrete_sac_params(params)


# Algorithm name (sb3_sac_ext.registry) -> (sampler, converter); every registered algorithm needs an entry
_SEARCH_SPACES = {
    "sac": (sample_sac_params, convert_sac_params),
    "discrete_sac": (sample_discrete_sac_params, convert_discrete_sac_params),
}
HYPERPARAMS_SAMPLER = {name: _SEARCH_SPACES[name][0] for name in ALGORITHMS}
HYPERPARAMS_CONVERTER = {name: _SEARCH_SPACES[name][1] for name in ALGORITHMS}
