"""
The SAC losses on hand-computed cases (Haarnoja et al. 2018, https://arxiv.org/abs/1812.05905).

Which tensors carry gradients in the actor loss changes results (CleanRL's ablation): the critics' weights get
none, the reparameterised action and ``log pi`` do. Pinned here.
"""

import pytest
import torch as th
from torch.nn import functional as F

from _helpers import tiny_sac
from sb3_sac_ext.sac.losses import actor_loss, critic_loss, critic_target, soft_value

# Two critics, a batch of two: critic 0 is the pessimistic one for the first sample, critic 1 for the second
Q_KB1 = th.tensor([[[1.0], [4.0]], [[2.0], [3.0]]])
LOG_PROB_B1 = th.tensor([[-1.0], [0.5]])
ALPHA = 0.2


def test_soft_value_by_hand():
    # min_k Q - alpha log pi = [1 + 0.2, 3 - 0.1]
    v_B1 = soft_value(Q_KB1, LOG_PROB_B1, ALPHA)
    assert v_B1.shape == (2, 1)
    assert v_B1.flatten().tolist() == pytest.approx([1.2, 2.9])
    # Costs: max_k Q + alpha log pi = [2 - 0.2, 4 + 0.1]
    assert soft_value(Q_KB1, LOG_PROB_B1, ALPHA, minimize=True).flatten().tolist() == pytest.approx([1.8, 4.1])
    # A tensor temperature gives the same values
    assert th.allclose(soft_value(Q_KB1, LOG_PROB_B1, th.tensor(ALPHA)), v_B1)


def test_soft_value_shape_mismatch_raises():
    with pytest.raises(ValueError, match="q_KB1"):
        soft_value(Q_KB1[0], LOG_PROB_B1, ALPHA)
    with pytest.raises(ValueError, match="q_KB1"):
        soft_value(Q_KB1, LOG_PROB_B1[:1], ALPHA)


def test_critic_target_by_hand():
    rewards_B1, next_v_B1 = th.tensor([[0.5], [1.0]]), th.tensor([[1.2], [2.9]])
    # Second transition terminal: no bootstrap
    y_B1 = critic_target(rewards_B1, th.tensor([[0.0], [1.0]]), 0.9, next_v_B1)
    assert y_B1.shape == (2, 1)
    assert y_B1.flatten().tolist() == pytest.approx([0.5 + 0.9 * 1.2, 1.0])
    # n-step returns: one discount gamma ** k per sample
    y_B1 = critic_target(rewards_B1, th.zeros(2, 1), th.tensor([[0.81], [0.9]]), next_v_B1)
    assert y_B1.flatten().tolist() == pytest.approx([0.5 + 0.81 * 1.2, 1.0 + 0.9 * 2.9])


def test_critic_loss_by_hand_and_sb3_scaling():
    target_B1 = th.tensor([[2.0], [3.0]])
    # Critic 0: errors [-1, 1] -> mse 1; critic 1: errors [0, 0] -> mse 0; SB3 scales the sum by 0.5
    assert critic_loss(Q_KB1, target_B1).item() == pytest.approx(0.5)
    # SB3's formula, 0.5 * sum_k mse(Q_k, y), for three critics
    q_KB1 = th.randn(3, 5, 1, generator=th.Generator().manual_seed(0))
    y_B1 = th.randn(5, 1, generator=th.Generator().manual_seed(1))
    expected = 0.5 * sum(F.mse_loss(q_B1, y_B1) for q_B1 in q_KB1)
    assert critic_loss(q_KB1, y_B1).item() == pytest.approx(expected.item(), rel=1e-6)


def test_actor_loss_by_hand():
    # mean(alpha log pi - min_k Q) = mean([-0.2 - 1, 0.1 - 3])
    assert actor_loss(Q_KB1, LOG_PROB_B1, ALPHA).item() == pytest.approx((-1.2 - 2.9) / 2)
    # Costs: mean(max_k Q + alpha log pi) = mean([2 - 0.2, 4 + 0.1])
    assert actor_loss(Q_KB1, LOG_PROB_B1, ALPHA, minimize=True).item() == pytest.approx((1.8 + 4.1) / 2)


def test_actor_loss_gradients_by_hand():
    # Linear critics Q_k(a) = w_k * a, evaluated with detached weights as the actor loss does
    weights_K = th.tensor([2.0, -1.0], requires_grad=True)
    action_B1 = th.tensor([[0.5]], requires_grad=True)
    log_prob_B1 = th.tensor([[-1.0]], requires_grad=True)
    q_KB1 = weights_K.detach()[:, None, None] * action_B1  # [1.0, -0.5]: critic 1 is the minimum
    actor_loss(q_KB1, log_prob_B1, ALPHA).backward()
    assert weights_K.grad is None
    # d/da (alpha log pi - min_k w_k a) = -w_1 = 1; d/d(log pi) = alpha
    assert action_B1.grad.item() == pytest.approx(1.0)
    assert log_prob_B1.grad.item() == pytest.approx(ALPHA)

    # Costs: the maximum (critic 0) drives the action: d/da (max_k w_k a) = w_0 = 2
    action_B1.grad, log_prob_B1.grad = None, None
    q_KB1 = weights_K.detach()[:, None, None] * action_B1
    actor_loss(q_KB1, log_prob_B1, ALPHA, minimize=True).backward()
    assert action_B1.grad.item() == pytest.approx(2.0)
    assert log_prob_B1.grad.item() == pytest.approx(ALPHA)


def test_actor_loss_through_the_critic_trains_only_the_action():
    # The model's own ensemble critic, as SAC's update calls it for the actor loss
    model = tiny_sac(seed=0)
    obs = th.as_tensor(model.observation_space.sample()[None].repeat(4, axis=0))
    actions = th.zeros(4, 1, requires_grad=True)
    ent_coef = th.tensor(ALPHA)
    q_KB1 = model.critic.q_values(obs, actions, detach_params=True)
    actor_loss(q_KB1, th.zeros(4, 1), ent_coef).backward()
    assert all(param.grad is None for param in model.critic.parameters())
    assert actions.grad is not None and th.any(actions.grad != 0)
    # and the critic loss does train the critic's weights
    critic_loss(model.critic.q_values(obs, actions.detach()), th.ones(4, 1)).backward()
    assert all(param.grad is not None for param in model.critic.qf.parameters())
