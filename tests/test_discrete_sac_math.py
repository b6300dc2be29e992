"""
The DiscreteSAC losses on hand-built 2- and 3-action cases (Christodoulou 2019, https://arxiv.org/abs/1910.07207).

Which tensors carry gradients changes results (CleanRL's discrete SAC ablation): pinned here.
"""

import math

import numpy as np
import pytest
import torch as th

from sb3_sac_ext import DiscreteSAC
from sb3_sac_ext.common.entropy import EntropyTemperature
from sb3_sac_ext.discrete_sac.losses import (
    actor_loss,
    critic_loss,
    critic_target,
    negative_entropy,
    soft_state_value,
)

# Two critics, one state, two actions
Q_KBA = th.tensor([[[1.0, 2.0]], [[1.5, 0.5]]])
PROBS_BA = th.tensor([[0.25, 0.75]])
LOG_PROBS_BA = PROBS_BA.log()
ALPHA = 0.5


def test_critic_target_by_hand():
    # min over critics per action: [1.0, 0.5]
    v = 0.25 * (1.0 - ALPHA * math.log(0.25)) + 0.75 * (0.5 - ALPHA * math.log(0.75))
    next_v_B = soft_state_value(Q_KBA, PROBS_BA, LOG_PROBS_BA, ALPHA)
    assert next_v_B.shape == (1,)
    assert next_v_B.item() == pytest.approx(v)
    rewards, gamma = th.tensor([[0.3]]), 0.9
    y = critic_target(rewards, th.tensor([[0.0]]), gamma, next_v_B)
    assert y.shape == (1, 1)
    assert y.item() == pytest.approx(0.3 + 0.9 * v)
    # Terminal transition: no bootstrap
    assert critic_target(rewards, th.tensor([[1.0]]), gamma, next_v_B).item() == pytest.approx(0.3)


def test_critic_target_minimize_uses_max_and_plus_entropy_term():
    # max over critics per action: [1.5, 2.0]; costs: + alpha log pi
    v = 0.25 * (1.5 + ALPHA * math.log(0.25)) + 0.75 * (2.0 + ALPHA * math.log(0.75))
    assert soft_state_value(Q_KBA, PROBS_BA, LOG_PROBS_BA, ALPHA, minimize=True).item() == pytest.approx(v)


def test_three_actions_batch_of_two():
    q_KBA = th.tensor([[[0.0, 1.0, 2.0], [3.0, 0.0, 1.0]], [[1.0, 0.0, 3.0], [2.0, 2.0, 2.0]]])
    probs_BA = th.tensor([[0.2, 0.3, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    log_probs_BA = probs_BA.log()
    min_q = np.array([[0.0, 0.0, 2.0], [2.0, 0.0, 1.0]])
    p = probs_BA.numpy().astype(np.float64)
    expected = (p * (min_q - 0.1 * np.log(p))).sum(axis=1)
    np.testing.assert_allclose(soft_state_value(q_KBA, probs_BA, log_probs_BA, 0.1).numpy(), expected, rtol=1e-6)
    entropy = -(p * np.log(p)).sum(axis=1)
    np.testing.assert_allclose(negative_entropy(probs_BA, log_probs_BA).numpy(), -entropy, rtol=1e-6)
    assert entropy[1] == pytest.approx(math.log(3))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="q_KBA"):
        soft_state_value(Q_KBA[0], PROBS_BA, LOG_PROBS_BA, ALPHA)
    with pytest.raises(ValueError, match="q_KBA"):
        soft_state_value(Q_KBA, th.ones(1, 3) / 3, th.ones(1, 3), ALPHA)


def test_critic_loss_uses_taken_action():
    target_B1 = th.tensor([[1.0]])
    # Action 1: Q = 2.0 and 0.5 -> 0.5 * (1 + 0.25)
    assert critic_loss(Q_KBA, th.tensor([[1]]), target_B1).item() == pytest.approx(0.5 * (1.0 + 0.25))
    # Action 0 (stored as float by some buffers): Q = 1.0 and 1.5 -> 0.5 * (0 + 0.25)
    assert critic_loss(Q_KBA, th.tensor([[0.0]]), target_B1).item() == pytest.approx(0.5 * 0.25)


def test_actor_loss_gradient_matches_the_exact_expectation():
    logits = th.tensor([[0.1, -0.4, 0.7]], requires_grad=True)
    q_KBA = th.tensor([[[1.0, 2.0, 0.0]], [[0.5, 3.0, 1.0]]])
    log_probs = th.log_softmax(logits, dim=-1)
    loss = actor_loss(q_KBA, log_probs.exp(), log_probs, ALPHA)
    loss.backward()
    # J(logits) = sum_a pi_a (alpha log pi_a - min_k Q_k(a)), differentiated by finite differences
    min_q = q_KBA.min(dim=0).values.double()

    def objective(z: th.Tensor) -> float:
        lp = th.log_softmax(z, dim=-1)
        return float((lp.exp() * (ALPHA * lp - min_q)).sum())

    z0 = logits.detach().double()
    numeric = th.zeros_like(z0)
    for i in range(3):
        step = th.zeros_like(z0)
        step[0, i] = 1e-6
        numeric[0, i] = (objective(z0 + step) - objective(z0 - step)) / 2e-6
    np.testing.assert_allclose(logits.grad.numpy(), numeric.numpy(), atol=1e-5)


def test_actor_loss_prefers_the_best_action():
    # Gradient descent on the actor loss moves probability towards the action with the highest min-Q
    logits = th.zeros(1, 2, requires_grad=True)
    log_probs = th.log_softmax(logits, dim=-1)
    actor_loss(Q_KBA, log_probs.exp(), log_probs, 0.01).backward()  # min-Q = [1.0, 0.5]
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]
    # Costs: the lowest max-Q wins (max-Q = [1.5, 2.0])
    logits = th.zeros(1, 2, requires_grad=True)
    log_probs = th.log_softmax(logits, dim=-1)
    actor_loss(Q_KBA, log_probs.exp(), log_probs, 0.01, minimize=True).backward()
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]


def _temperature_grad(probs: list[float], target_entropy: float) -> float:
    temperature = EntropyTemperature("auto_0.5", target_entropy, th.device("cpu"))
    probs_BA = th.tensor([probs], dtype=th.float64)
    loss = temperature.loss(negative_entropy(probs_BA, probs_BA.log()))
    loss.backward()
    return float(temperature.log_ent_coef.grad)


def test_temperature_loss_sign_and_fixed_point():
    probs = [0.2, 0.3, 0.5]
    entropy = -sum(p * math.log(p) for p in probs)
    # d loss / d log(alpha) = entropy - target: a too greedy policy (entropy < target) gets a larger alpha
    assert _temperature_grad(probs, entropy + 0.1) == pytest.approx(-0.1)
    assert _temperature_grad(probs, entropy - 0.1) == pytest.approx(0.1)
    # Fixed point: zero gradient when the entropy equals the target
    assert _temperature_grad(probs, entropy) == pytest.approx(0.0, abs=1e-7)
    assert _temperature_grad([0.5, 0.5], math.log(2)) == pytest.approx(0.0, abs=1e-7)


def test_auto_target_entropy_is_scaled_max_entropy():
    from stable_baselines3.common.envs import IdentityEnv

    model = DiscreteSAC("MlpPolicy", IdentityEnv(3), policy_kwargs=dict(net_arch=[8]), buffer_size=64, batch_size=8)
    assert model.target_entropy == pytest.approx(0.89 * math.log(3))
    model = DiscreteSAC("MlpPolicy", IdentityEnv(3), buffer_size=64, batch_size=8, target_entropy_scale=0.5)
    assert model.target_entropy == pytest.approx(0.5 * math.log(3))
    model = DiscreteSAC("MlpPolicy", IdentityEnv(3), buffer_size=64, batch_size=8, target_entropy=0.3)
    assert model.target_entropy == pytest.approx(0.3)


def _tiny_trained_model(**kwargs) -> DiscreteSAC:
    from stable_baselines3.common.envs import IdentityEnv

    settings = dict(policy_kwargs=dict(net_arch=[16]), learning_starts=32, buffer_size=64, batch_size=16, seed=0)
    model = DiscreteSAC("MlpPolicy", IdentityEnv(3), **{**settings, **kwargs})
    model.learn(32)  # fills the buffer, no update yet
    return model


@pytest.mark.parametrize("share_features_extractor", [False, True])
def test_actor_and_temperature_losses_send_no_gradient_into_the_critics(share_features_extractor):
    model = _tiny_trained_model(policy_kwargs=dict(net_arch=[16], share_features_extractor=share_features_extractor))
    critic_params = list(model.critic.parameters()) + list(model.critic_target.parameters())
    original_steps = model._optimizer_steps
    checked = []

    def checking_steps(steps):
        for name, loss in steps:
            if name in ("actor", "ent_coef"):
                for param in critic_params:
                    param.grad = None
                loss.backward(retain_graph=True)
                critic_only = [p for n, p in model.critic.named_parameters() if "features_extractor" not in n]
                assert all(param.grad is None for param in critic_only), f"{name} loss reached the critics"
                assert all(param.grad is None for param in model.critic_target.parameters())
                checked.append(name)
        original_steps(steps)

    model._optimizer_steps = checking_steps
    before = {k: v.clone() for k, v in model.critic.state_dict().items()}
    model.train(gradient_steps=1, batch_size=16)
    assert checked == ["actor", "ent_coef"]
    del model._optimizer_steps
    # The critic did change, through its own loss only
    assert any(not th.equal(before[k], v) for k, v in model.critic.state_dict().items())


def test_critic_loss_sends_no_gradient_into_the_actor_or_target():
    model = _tiny_trained_model(ent_coef=0.1)
    original_steps = model._optimizer_steps

    def checking_steps(steps):
        for name, loss in steps:
            if name == "critic":
                for param in [*model.actor.parameters(), *model.critic_target.parameters()]:
                    param.grad = None
                loss.backward(retain_graph=True)
                assert all(param.grad is None for param in model.actor.parameters())
                assert all(param.grad is None for param in model.critic_target.parameters())
        original_steps(steps)

    model._optimizer_steps = checking_steps
    model.train(gradient_steps=2, batch_size=16)
