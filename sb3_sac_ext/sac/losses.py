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


# SimbaV2's categorical critic (Lee et al. 2025, https://arxiv.org/abs/2503.15256, Section 4.4; the distributional
# TD loss of C51, Bellemare et al. 2017, https://arxiv.org/abs/1707.06887, Algorithm 1). Shape suffix ``N``: bins.


def expected_value(logits_KBN: th.Tensor, support_N: th.Tensor) -> th.Tensor:
    """
    :param logits_KBN: Logits of each critic's distribution over the bins, shape ``(n_critics, batch, n_bins)``
    :param support_N: The value of each bin, shape ``(n_bins,)``
    :return: The Q-values ``sum_i softmax(logits)_i z_i``, shape ``(n_critics, batch, 1)``
    """
    return (th.softmax(logits_KBN, dim=-1) * support_N).sum(dim=-1, keepdim=True)


def categorical_target(
    next_logits_KBN: th.Tensor,
    log_prob_B1: th.Tensor,
    ent_coef: th.Tensor | float,
    rewards_B1: th.Tensor,
    dones_B1: th.Tensor,
    discounts: th.Tensor | float,
    support_N: th.Tensor,
    minimize: bool = False,
) -> th.Tensor:
    """
    The soft Bellman target as a distribution on the bins: the target critic with the smallest expected value (the
    largest with ``minimize``) gives the next distribution; each bin ``z_i`` moves to
    ``r + gamma (1 - done) (z_i - alpha log pi(a'|s'))`` (``+ alpha log pi`` with ``minimize``), clipped to the
    support, and its probability is split between the two nearest bins in proportion to the distance.

    :param next_logits_KBN: Target critics' logits at ``(s', a')``, ``(n_critics, batch, n_bins)``
    :param log_prob_B1: ``log pi(a'|s')``, ``(batch, 1)``
    :param ent_coef: The temperature alpha
    :param rewards_B1: Rewards, ``(batch, 1)``
    :param dones_B1: Episode ended (not truncated), ``(batch, 1)``
    :param discounts: ``gamma``, or ``gamma ** n`` per sample (``(batch, 1)``)
    :param support_N: The value of each bin, evenly spaced, ``(n_bins,)``
    :param minimize: Whether rewards are costs
    :return: Target probabilities without gradient, ``(batch, n_bins)``
    """
    probs_KBN = th.softmax(next_logits_KBN, dim=-1)
    q_KB = (probs_KBN * support_N).sum(dim=-1)
    critic_B = q_KB.argmax(dim=0) if minimize else q_KB.argmin(dim=0)
    n_bins = support_N.shape[0]
    probs_BN = probs_KBN.gather(0, critic_B.view(1, -1, 1).expand(1, -1, n_bins)).squeeze(0)
    entropy_B1 = ent_coef * log_prob_B1
    next_values_BN = support_N + entropy_B1 if minimize else support_N - entropy_B1
    v_min, v_max = support_N[0], support_N[-1]
    atoms_BN = (rewards_B1 + (1 - dones_B1) * discounts * next_values_BN).clamp(v_min, v_max)
    # Clamped again: float rounding must not put an atom on v_max past the last bin
    position_BN = ((atoms_BN - v_min) / ((v_max - v_min) / (n_bins - 1))).clamp(0, n_bins - 1)
    lower, upper = position_BN.floor(), position_BN.ceil()
    # An atom on a bin (lower == upper) gives it all its probability
    to_lower, to_upper = (
        probs_BN * (upper - position_BN + (lower == upper).to(probs_BN.dtype)),
        probs_BN * (position_BN - lower),
    )
    target_BN = th.zeros_like(probs_BN).scatter_add(1, lower.long(), to_lower)
    return target_BN.scatter_add(1, upper.long(), to_upper).detach()


def categorical_critic_loss(logits_KBN: th.Tensor, target_BN: th.Tensor) -> th.Tensor:
    """
    ``sum_k mean_b CE(target_b, softmax(logits_kb))``: each critic's cross-entropy to the target distribution (as the
    SimbaV2 authors sum their two critics' losses).

    :param logits_KBN: Critics' logits at the taken actions, ``(n_critics, batch, n_bins)``
    :param target_BN: Target probabilities, ``(batch, n_bins)``
    :return: Scalar loss
    """
    return -(target_BN * th.log_softmax(logits_KBN, dim=-1)).sum(dim=-1).mean(dim=-1).sum()
