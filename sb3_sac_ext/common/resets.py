"""
Periodic parameter resets (Nikishin et al. 2022, "The Primacy Bias in Deep Reinforcement Learning",
https://arxiv.org/abs/2205.07802, Section 4): at chosen points of a run, re-initialise networks and their optimizer
states, keeping the replay buffer, so that the agent relearns from its data instead of staying fit to its first
experiences.

As SBX's ``param_resets`` argument, the points are environment timesteps (``num_timesteps``), checked at the start of
each ``train()`` call, and the temperature is not reset. ``reset_networks`` chooses the networks (SBX resets both).
"""

from collections.abc import Sequence
from typing import Any

import torch as th
from torch import nn

from sb3_sac_ext.common.errors import InvalidHyperparameterError

#: The networks ``reset_networks`` may name
RESETTABLE = ("actor", "critic")


def check_param_resets(param_resets: Any, reset_networks: Any) -> None:
    """
    :param param_resets: ``None`` or increasing positive timesteps
    :param reset_networks: ``None`` (both) or a non-empty list of ``"actor"`` / ``"critic"``
    :raise InvalidHyperparameterError: Naming the argument and what it takes
    """
    if param_resets is not None:
        if (
            isinstance(param_resets, str | bytes)
            or not isinstance(param_resets, Sequence)
            or not all(isinstance(t, int) and not isinstance(t, bool) and t > 0 for t in param_resets)
            or list(param_resets) != sorted(set(param_resets))
        ):
            raise InvalidHyperparameterError(
                f"param_resets must be None or a list of increasing positive timesteps (as SBX), got {param_resets!r}"
            )
    if reset_networks is not None:
        names = [reset_networks] if isinstance(reset_networks, str) else reset_networks
        if not isinstance(names, Sequence) or not names or any(name not in RESETTABLE for name in names):
            raise InvalidHyperparameterError(
                f"reset_networks must be None (actor and critic) or a list of {list(RESETTABLE)}, got {reset_networks!r}"
            )


def networks_to_reset(reset_networks: Any) -> tuple[str, ...]:
    """:return: The names of the networks a reset re-initialises (``reset_networks=None``: all)"""
    if reset_networks is None:
        return RESETTABLE
    return tuple(
        name for name in RESETTABLE if name in ([reset_networks] if isinstance(reset_networks, str) else reset_networks)
    )


def _reset_modules(network: nn.Module, skip: nn.Module | None) -> set[int]:
    """
    Re-initialise every submodule of ``network`` that has ``reset_parameters`` (each with its own initialisation:
    ``nn.Linear``, ``nn.LayerNorm``, the ensembles, convolutions, RNNs), except inside ``skip``.

    :return: The ids of the parameters re-initialised
    """
    skipped = {id(module) for module in skip.modules()} if skip is not None else set()
    done: set[int] = set()
    for module in network.modules():
        if id(module) in skipped or not callable(getattr(module, "reset_parameters", None)):
            continue
        module.reset_parameters()
        done.update(id(param) for param in module.parameters())
    return done


def uncovered_parameters(network: nn.Module, skip: nn.Module | None = None) -> list[str]:
    """
    :return: Names of the parameters of ``network`` (outside ``skip``) that no submodule's ``reset_parameters``
        re-initialises (such a network cannot be reset honestly)
    """
    skipped = {id(param) for param in skip.parameters()} if skip is not None else set()
    covered: set[int] = set()
    for module in network.modules():
        if callable(getattr(module, "reset_parameters", None)):
            covered.update(id(param) for param in module.parameters())
    return [name for name, param in network.named_parameters() if id(param) not in covered | skipped]


def _zero_optimizer_state(optimizer: th.optim.Optimizer, params: set[int]) -> None:
    """
    Put the state of ``params`` back to a fresh optimizer's: the tensors are zeroed in place (Adam's ``step``,
    ``exp_avg``, ``exp_avg_sq``), which is what a new Adam creates at its first step; the compiled update, which
    holds these tensors, keeps working.
    """
    for group in optimizer.param_groups:
        for param in group["params"]:
            if id(param) not in params:
                continue
            for value in optimizer.state.get(param, {}).values():
                if isinstance(value, th.Tensor):
                    value.zero_()


def apply_reset(model: Any, names: Sequence[str]) -> None:
    """
    Re-initialise the named networks of ``model`` and their optimizer states. Resetting the critic also copies it into
    the target critic (a fresh policy starts with equal critics and targets). A features extractor shared by the actor
    and the critic belongs to the actor. The running observation statistics (buffers) are kept.

    :param model: The algorithm
    :param names: Among ``"actor"``, ``"critic"``
    """
    policy = model.policy
    with th.no_grad():
        for name in names:
            network = getattr(policy, name)
            shared = network.features_extractor if name == "critic" and policy.share_features_extractor else None
            reset = _reset_modules(network, shared)
            _zero_optimizer_state(network.optimizer, reset)
            if name == "critic":
                for target, online in zip(policy.critic_target.parameters(), policy.critic.parameters()):
                    target.copy_(online)


def check_resettable(model: Any) -> None:
    """
    With ``param_resets``, refuse (at construction) settings where a reset cannot be done exactly: recurrent policies,
    data-parallel training (each rank would draw other weights), parameters no module initialiser covers.

    :param model: The algorithm
    :raise InvalidHyperparameterError: Naming the conflict and the fix
    """
    if not getattr(model, "param_resets", None):
        return
    if model._is_recurrent:
        raise InvalidHyperparameterError("param_resets is not supported with recurrent policies; use a feed-forward one")
    if model._distributed is not None:
        raise InvalidHyperparameterError(
            "param_resets is not supported in data-parallel training (each rank would draw other initial weights); "
            "train in one process or remove param_resets"
        )
    for name in networks_to_reset(model.reset_networks):
        network = getattr(model.policy, name)
        shared = network.features_extractor if name == "critic" and model.policy.share_features_extractor else None
        missing = uncovered_parameters(network, shared)
        if missing:
            raise InvalidHyperparameterError(
                f"param_resets cannot re-initialise the {name}'s parameters {missing} (no module initialiser covers "
                f"them, e.g. gSDE's log_std); use reset_networks without {name!r} or remove param_resets"
            )


def reset_if_due(model: Any) -> None:
    """
    Re-initialise the ``reset_networks`` and their optimizer states once ``num_timesteps`` passes the next entry of
    ``param_resets`` (called at the start of each ``train()``). Several entries passed at once make one reset; the
    count done is saved with the model (``_param_resets_done``).

    :param model: The algorithm
    """
    resets = getattr(model, "param_resets", None)
    if not resets:
        return
    due = sum(1 for timestep in resets if model.num_timesteps >= timestep)
    if due <= model._param_resets_done:
        return
    names = networks_to_reset(model.reset_networks)
    apply_reset(model, names)
    model._param_resets_done = due
    model.logger.record("train/param_resets", due)
    if model.verbose >= 1:
        print(f"Reset {', '.join(names)} at timestep {model.num_timesteps}")
