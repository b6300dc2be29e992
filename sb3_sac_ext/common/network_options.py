"""
Checks of the network options of the policies (``policy_kwargs``): DroQ's ``layer_norm`` and ``dropout_rate``, named
as SBX's SAC policies name them so that RL Zoo hyperparameter files move across.
"""

from typing import Any

from sb3_sac_ext.common.batch_renorm import EnsembleBatchRenorm
from sb3_sac_ext.common.errors import InvalidHyperparameterError
from sb3_sac_ext.common.reward_scaling import RewardScaler
from sb3_sac_ext.common.simba import RunningObsNorm

#: Options of the feed-forward policies that the recurrent ones do not have
FEED_FORWARD_OPTIONS = (
    "layer_norm",
    "dropout_rate",
    "batch_norm",
    "batch_norm_actor",
    "batch_norm_momentum",
    "renorm_warmup_steps",
)


def check_batch_norm(
    batch_norm: Any, batch_norm_momentum: Any, renorm_warmup_steps: Any, batch_norm_actor: Any = False
) -> None:
    """
    :raise InvalidHyperparameterError: When ``batch_norm`` or ``batch_norm_actor`` is not a bool,
        ``batch_norm_momentum`` not in [0, 1) or ``renorm_warmup_steps`` not a non-negative integer (SBX's CrossQ
        options)
    """
    for name, value in (("batch_norm", batch_norm), ("batch_norm_actor", batch_norm_actor)):
        if not isinstance(value, bool):
            raise InvalidHyperparameterError(f"{name} must be True or False, got {value!r}")
    if isinstance(batch_norm_momentum, bool) or not isinstance(batch_norm_momentum, int | float):
        raise InvalidHyperparameterError(f"batch_norm_momentum must be a number in [0, 1), got {batch_norm_momentum!r}")
    if not 0.0 <= batch_norm_momentum < 1.0:
        raise InvalidHyperparameterError(
            f"batch_norm_momentum must be in [0, 1) (SBX's convention: the weight of the running average, e.g. 0.99), "
            f"got {batch_norm_momentum!r}"
        )
    if isinstance(renorm_warmup_steps, bool) or not isinstance(renorm_warmup_steps, int) or renorm_warmup_steps < 0:
        raise InvalidHyperparameterError(f"renorm_warmup_steps must be an integer >= 0, got {renorm_warmup_steps!r}")


def check_critic_regularisation(layer_norm: Any, dropout_rate: Any) -> None:
    """
    :param layer_norm: ``policy_kwargs["layer_norm"]``
    :param dropout_rate: ``policy_kwargs["dropout_rate"]``
    :raise InvalidHyperparameterError: When ``layer_norm`` is not a bool or ``dropout_rate`` is not ``None`` or a
        number in [0, 1)
    """
    if not isinstance(layer_norm, bool):
        raise InvalidHyperparameterError(f"layer_norm must be True or False, got {layer_norm!r}")
    if dropout_rate is None:
        return
    if isinstance(dropout_rate, bool) or not isinstance(dropout_rate, int | float) or not 0.0 <= dropout_rate < 1.0:
        raise InvalidHyperparameterError(f"dropout_rate must be None or a number in [0, 1), got {dropout_rate!r}")


def check_simbav2_options(layer_norm: Any, dropout_rate: Any) -> None:
    """
    :raise InvalidHyperparameterError: When ``layer_norm`` or ``dropout_rate`` is set for ``SimbaV2Policy``, whose
        hyperspherical networks have neither
    """
    if layer_norm or dropout_rate:
        raise InvalidHyperparameterError(
            "SimbaV2Policy's networks are normalised on the hypersphere and have no layer_norm or dropout_rate option; "
            "remove them, or use MlpPolicy (DroQ) or SimbaPolicy"
        )


def check_num_bins(num_bins: Any, normalize_reward: Any) -> None:
    """
    :raise InvalidHyperparameterError: When ``num_bins`` (``SimbaV2Policy``'s categorical critic) is neither ``None``
        nor an integer >= 2, or is set without the reward scaling that bounds the returns to its support
    """
    if num_bins is None:
        return
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
        raise InvalidHyperparameterError(
            f"num_bins must be None (a linear Q-head) or an integer >= 2 (the paper uses 101), got {num_bins!r}"
        )
    if normalize_reward is False:  # other non-bools: make_reward_scaler's error names them
        raise InvalidHyperparameterError(
            f"num_bins={num_bins} (SimbaV2Policy's categorical critic, on by default) needs normalize_reward=True: its "
            "support is [-normalized_g_max, normalized_g_max], where the reward scaling keeps the returns. Set "
            "normalize_reward=True, or num_bins=None (a linear Q-head) to train on the raw rewards"
        )


def check_policy_options(policy_class: Any, policy_kwargs: dict[str, Any] | None, recurrent: bool) -> None:
    """
    Reject network options the chosen policy cannot honour, before anything is built.

    :param policy_class: The policy class
    :param policy_kwargs: The ``policy_kwargs`` argument
    :param recurrent: Whether the policy is recurrent
    :raise InvalidHyperparameterError: Naming the option, the policy and the way out
    """
    given = [key for key in FEED_FORWARD_OPTIONS if key in (policy_kwargs or {})]
    if recurrent and given:
        raise InvalidHyperparameterError(
            f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} not supported by the recurrent policy "
            f"{getattr(policy_class, '__name__', policy_class)} (its critics are an RNN and an MLP head); use a "
            "feed-forward policy (MlpPolicy, SimbaPolicy) or remove the option from policy_kwargs"
        )


def check_distributed_statistics(model: Any) -> None:
    """
    Refuse, in data-parallel training, networks whose running statistics (SimBa's observation normalisation,
    CrossQ's batch renormalisation, SimbaV2's reward scaling) each rank would update from its own data: the replicas
    would drift apart.

    :param model: The algorithm, its policy built
    :raise InvalidHyperparameterError: Naming the networks and the fix
    """
    if model._distributed is None:
        return
    for module in model.policy.modules():
        if isinstance(module, RunningObsNorm | EnsembleBatchRenorm | RewardScaler):
            raise InvalidHyperparameterError(
                f"{type(module).__name__} (running statistics of SimbaPolicy/SimbaV2Policy or CrossQ's batch_norm) is "
                "not supported in data-parallel training: each rank would update its own statistics. Train in one "
                "process, or use features_extractor_class=FlattenExtractor (with VecNormalize), no batch_norm or "
                "batch_norm_actor, and SimbaV2Policy's normalize_reward=False (with num_bins=None for SAC)"
            )
