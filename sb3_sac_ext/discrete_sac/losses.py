"""
The math of discrete SAC as pure functions on tensors (Christodoulou 2019, https://arxiv.org/abs/1910.07207,
section 4): with a finite action set, the policy's distribution pi(.|s) is a vector, so every expectation over
actions is computed exactly as a sum (no sampling, no reparameterisation).

Shape suffixes: ``K`` critics, ``B`` batch, ``A`` actions. The temperature loss is shared with SAC
(:func:`sb3_sac_ext.common.entropy.temperature_loss`), fed with :func:`negative_entropy`.
"""

import torch as th
from torch.nn import functional as F


def soft_state_value(
    q_KBA: th.Tensor, probs_BA: th.Tensor, log_probs_BA: th.Tensor, ent_coef: th.Tensor | float, minimize: bool = False
) -> th.Tensor:
    """
    Soft state value ``V(s) = pi(s)^T [min_k Q_k(s) - alpha log pi(s)]`` (the paper's soft value for discrete
    actions, pessimistic over the critics). With ``minimize`` (rewards are costs) it is
    ``pi(s)^T [max_k Q_k(s) + alpha log pi(s)]``.

    :param q_KBA: Q-values of every critic for every action, shape ``(n_critics, batch, n_actions)``
    :param probs_BA: ``pi(a|s)``, shape ``(batch, n_actions)``
    :param log_probs_BA: ``log pi(a|s)``, shape ``(batch, n_actions)``
    :param ent_coef: The temperature alpha
    :param minimize: Whether rewards are costs
    :return: ``v_B``, shape ``(batch,)``
    """
    if q_KBA.dim() != 3 or q_KBA.shape[1:] != probs_BA.shape or probs_BA.shape != log_probs_BA.shape:
        raise ValueError(
            f"Expected q_KBA (K, B, A) and probs_BA, log_probs_BA (B, A), got {tuple(q_KBA.shape)}, "
            f"{tuple(probs_BA.shape)}, {tuple(log_probs_BA.shape)}"
        )
    if minimize:
        return (probs_BA * (q_KBA.max(dim=0).values + ent_coef * log_probs_BA)).sum(dim=-1)
    return (probs_BA * (q_KBA.min(dim=0).values - ent_coef * log_probs_BA)).sum(dim=-1)


def critic_target(rewards_B1: th.Tensor, dones_B1: th.Tensor, discounts: th.Tensor | float, next_v_B: th.Tensor) -> th.Tensor:
    """
    Soft Bellman target ``y = r + gamma * (1 - done) * V(s')``.

    :param rewards_B1: Rewards, shape ``(batch, 1)``
    :param dones_B1: Episode ended (not truncated), shape ``(batch, 1)``
    :param discounts: ``gamma`` (``gamma ** n`` per sample for n-step returns, shape ``(batch, 1)``)
    :param next_v_B: Soft value of the next state from the target critics, shape ``(batch,)``
    :return: ``y_B1``, shape ``(batch, 1)``
    """
    return rewards_B1 + (1 - dones_B1) * discounts * next_v_B.unsqueeze(-1)


def critic_loss(q_KBA: th.Tensor, actions_B1: th.Tensor, target_B1: th.Tensor) -> th.Tensor:
    """
    ``0.5 * sum_k mean_b (Q_k(s_b, a_b) - y_b)^2``: the same scaling as SB3's SAC critic loss.

    :param q_KBA: Q-values of every critic for every action, shape ``(n_critics, batch, n_actions)``
    :param actions_B1: Actions taken (indices), shape ``(batch, 1)``
    :param target_B1: Targets, shape ``(batch, 1)``, without gradient
    :return: Scalar loss
    """
    n_critics = q_KBA.shape[0]
    index_KB1 = actions_B1.long().unsqueeze(0).expand(n_critics, -1, -1)
    q_taken_KB1 = q_KBA.gather(dim=2, index=index_KB1)
    return 0.5 * n_critics * F.mse_loss(q_taken_KB1, target_B1.expand_as(q_taken_KB1))


def actor_loss(
    q_KBA: th.Tensor, probs_BA: th.Tensor, log_probs_BA: th.Tensor, ent_coef: th.Tensor | float, minimize: bool = False
) -> th.Tensor:
    """
    Policy loss ``J_pi = E_s[pi(s)^T (alpha log pi(s) - min_k Q_k(s))]``, i.e. ``-V(s)`` of
    :func:`soft_state_value` averaged over the batch;
    with ``minimize`` it is ``E_s[pi(s)^T (alpha log pi(s) + max_k Q_k(s))]``.
    ``q_KBA`` must carry no gradient (the actor loss does not train the critics).

    :param q_KBA: Q-values of the online critics, shape ``(n_critics, batch, n_actions)``, without gradient
    :param probs_BA: ``pi(a|s)`` with gradient, shape ``(batch, n_actions)``
    :param log_probs_BA: ``log pi(a|s)`` with gradient, shape ``(batch, n_actions)``
    :param ent_coef: The temperature alpha (no gradient)
    :param minimize: Whether rewards are costs
    :return: Scalar loss
    """
    value_B = soft_state_value(q_KBA, probs_BA, log_probs_BA, ent_coef, minimize)
    return (value_B if minimize else -value_B).mean()


def negative_entropy(probs_BA: th.Tensor, log_probs_BA: th.Tensor) -> th.Tensor:
    """
    ``sum_a pi(a|s) log pi(a|s) = -H(pi(.|s))``, the exact expectation of ``log pi`` that the temperature loss
    ``-log(alpha) * (E[log pi] + target_entropy)`` uses in place of a sampled ``log pi(a|s)``.

    :param probs_BA: ``pi(a|s)``, shape ``(batch, n_actions)``
    :param log_probs_BA: ``log pi(a|s)``, shape ``(batch, n_actions)``
    :return: ``neg_entropy_B``, shape ``(batch,)``
    """
    return (probs_BA * log_probs_BA).sum(dim=-1)
