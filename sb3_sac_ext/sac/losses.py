"""
The math of SAC as pure functions on tensors (Haarnoja et al. 2018, https://arxiv.org/abs/1812.05905).

Shape suffixes: ``K`` critics, ``B`` batch. With ``minimize`` the rewards are costs: the pessimistic critic is the
largest one and the entropy bonus becomes a penalty (``Q + alpha log pi`` is minimised).
The temperature loss is shared with DiscreteSAC: :func:`sb3_sac_ext.common.entropy.temperature_loss`.
"""

import torch as th
from torch.nn import functional as F


def soft_value(q_KB1: th.Tensor, log_prob_B1: th.Tensor, ent_coef: th.Tensor | float, minimize: bool = False) -> th.Tensor:
    """
    Soft state value of sampled actions ``V(s) = min_k Q_k(s, a) - alpha log pi(a|s)``, ``a ~ pi(.|s)`` (eq. 3,
    with the clipped double-Q minimum of TD3/SAC v2). With ``minimize``: ``max_k Q_k(s, a) + alpha log pi(a|s)``.

    :param q_KB1: Q-values of every critic, shape ``(n_critics, batch, 1)``
    :param log_prob_B1: ``log pi(a|s)``, shape ``(batch, 1)``
    :param ent_coef: The temperature alpha
    :param minimize: Whether rewards are costs
    :return: ``v_B1``, shape ``(batch, 1)``
    """
    if q_KB1.dim() != 3 or q_KB1.shape[1:] != log_prob_B1.shape:
        raise ValueError(
            f"Expected q_KB1 (K, B, 1) and log_prob_B1 (B, 1), got {tuple(q_KB1.shape)}, {tuple(log_prob_B1.shape)}"
        )
    if minimize:
        return q_KB1.max(dim=0).values + ent_coef * log_prob_B1
    return q_KB1.min(dim=0).values - ent_coef * log_prob_B1


def critic_target(rewards_B1: th.Tensor, dones_B1: th.Tensor, discounts: th.Tensor | float, next_v_B1: th.Tensor) -> th.Tensor:
    """
    Soft Bellman target ``y = r + gamma * (1 - done) * V(s')`` (eq. 2 and 3).

    :param rewards_B1: Rewards, shape ``(batch, 1)``
    :param dones_B1: Episode ended (not truncated), shape ``(batch, 1)``
    :param discounts: ``gamma``, or ``gamma ** n`` per sample for n-step returns (shape ``(batch, 1)``)
    :param next_v_B1: Soft value of the next state from the target critics, shape ``(batch, 1)``
    :return: ``y_B1``, shape ``(batch, 1)``
    """
    return rewards_B1 + (1 - dones_B1) * discounts * next_v_B1


def critic_loss(q_KB1: th.Tensor, target_B1: th.Tensor) -> th.Tensor:
    """
    ``0.5 * sum_k mean_b (Q_k(s_b, a_b) - y_b)^2`` (eq. 5 for each critic), SB3's scaling.

    :param q_KB1: Q-values of the taken actions for every critic, shape ``(n_critics, batch, 1)``
    :param target_B1: Targets without gradient, shape ``(batch, 1)``
    :return: Scalar loss
    """
    return 0.5 * q_KB1.shape[0] * F.mse_loss(q_KB1, target_B1.expand_as(q_KB1))


def actor_loss(q_KB1: th.Tensor, log_prob_B1: th.Tensor, ent_coef: th.Tensor | float, minimize: bool = False) -> th.Tensor:
    """
    Policy loss ``J_pi = E_s[alpha log pi(a|s) - min_k Q_k(s, a)]`` with ``a`` reparameterised (eq. 7 and 11);
    with ``minimize``, ``E_s[max_k Q_k(s, a) + alpha log pi(a|s)]``. ``q_KB1`` carries a gradient into the action
    only (the critics' weights are not trained by this loss).

    :param q_KB1: Q-values of the policy's actions, shape ``(n_critics, batch, 1)``
    :param log_prob_B1: ``log pi(a|s)`` with gradient, shape ``(batch, 1)``
    :param ent_coef: The temperature alpha (no gradient)
    :param minimize: Whether rewards are costs
    :return: Scalar loss
    """
    if minimize:
        return (q_KB1.max(dim=0).values + ent_coef * log_prob_B1).mean()
    return (ent_coef * log_prob_B1 - q_KB1.min(dim=0).values).mean()
