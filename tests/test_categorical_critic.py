"""SimbaV2's categorical critic (``SimbaV2Policy(num_bins=...)``, SAC): the target projection by hand, the loss, a model."""

from typing import Any

import numpy as np
import pytest
import torch as th

from sb3_sac_ext import SAC
from sb3_sac_ext.sac import losses
from tests._helpers import assert_state_dicts_equal, sample_observations, tiny_model

SUPPORT = th.tensor([-1.0, 0.0, 1.0])


def _logits(probs: list[list[list[float]]]) -> th.Tensor:
    return th.tensor(probs).log()  # softmax(log p) = p


def test_categorical_target_by_hand() -> None:
    # Two critics, two samples. Expected values: critic 0 = 0.3, critic 1 = -0.3 on sample 0; 0.1 and 0.4 on sample 1
    probs = [[[0.2, 0.3, 0.5], [0.3, 0.3, 0.4]], [[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]]]
    rewards, dones, gamma = th.tensor([[0.5], [0.2]]), th.tensor([[0.0], [0.0]]), 0.5
    log_prob, alpha = th.tensor([[0.0], [-0.4]]), th.tensor(0.5)  # entropy terms alpha log pi = 0 and -0.2
    target = losses.categorical_target(_logits(probs), log_prob, alpha, rewards, dones, gamma, SUPPORT)
    # Sample 0: the smaller mean is critic 1's [0.5, 0.3, 0.2]; atoms 0.5 + 0.5 * z = [0, 0.5, 1]: the first lands
    # on bin 0.0, the second halfway between 0.0 and 1.0, the third on 1.0
    # Sample 1: critic 0's [0.3, 0.3, 0.4]; atoms 0.2 + 0.5 * (z + 0.2) = [-0.2, 0.3, 0.8]
    # -0.2 -> 0.2 to bin -1, 0.8 to bin 0; 0.3 -> 0.7 to bin 0, 0.3 to bin 1; 0.8 -> 0.2 to bin 0, 0.8 to bin 1
    expected = th.tensor(
        [
            [0.0, 0.5 + 0.15, 0.15 + 0.2],
            [0.3 * 0.2, 0.3 * 0.8 + 0.3 * 0.7 + 0.4 * 0.2, 0.3 * 0.3 + 0.4 * 0.8],
        ]
    )
    th.testing.assert_close(target, expected)
    th.testing.assert_close(target.sum(-1), th.ones(2))
    # An episode end keeps the reward alone, clipped to the support: all the mass on bin 1.0
    ended = losses.categorical_target(
        _logits(probs), log_prob, alpha, th.tensor([[3.0], [-0.5]]), th.ones(2, 1), gamma, SUPPORT
    )
    th.testing.assert_close(ended, th.tensor([[0.0, 0.0, 1.0], [0.5, 0.5, 0.0]]))
    # Costs: the larger mean (critic 0 on sample 0) and alpha log pi added: atoms 0.5 + 0.5 * z
    costs = losses.categorical_target(_logits(probs), log_prob, alpha, rewards, dones, gamma, SUPPORT, minimize=True)
    th.testing.assert_close(costs[0], th.tensor([0.0, 0.2 + 0.15, 0.15 + 0.5]))


def test_categorical_target_at_the_support_bounds() -> None:
    # The paper's 101 bins in [-5, 5]: returns at and past either bound land on the end bins, whatever the rounding
    support = th.linspace(-5.0, 5.0, 101)
    logits = th.zeros(2, 4, 101)
    rewards = th.tensor([[5.0], [-5.0], [7.3], [-4.9]])
    target = losses.categorical_target(logits, th.zeros(4, 1), 0.0, rewards, th.ones(4, 1), 0.99, support)
    for sample, bin_ in ((0, -1), (1, 0), (2, -1), (3, 1)):  # -4.9 is bin 1
        th.testing.assert_close(target[sample, bin_], th.tensor(1.0))
    th.testing.assert_close(target.sum(-1), th.ones(4))


def test_categorical_critic_loss_is_the_summed_cross_entropy() -> None:
    generator = th.Generator().manual_seed(0)
    logits = th.randn(2, 4, 3, generator=generator, requires_grad=True)
    target = th.softmax(th.randn(4, 3, generator=generator), -1)
    loss = losses.categorical_critic_loss(logits, target)
    by_hand = sum(-(target[b] * th.log_softmax(logits[k, b], -1)).sum() / 4 for k in range(2) for b in range(4))
    th.testing.assert_close(loss, by_hand)
    loss.backward()  # d CE / d logits = softmax - target, per critic and sample
    th.testing.assert_close(logits.grad, (th.softmax(logits.detach(), -1) - target) / 4)
    q = losses.expected_value(logits.detach(), SUPPORT)
    th.testing.assert_close(q, (th.softmax(logits.detach(), -1) * SUPPORT).sum(-1, keepdim=True))


def _model(**kwargs: Any) -> SAC:
    options = dict(net_arch=dict(pi=[16], qf=[32, 32]), num_bins=11)
    return tiny_model(SAC, policy="SimbaV2Policy", policy_kwargs=options, learning_starts=50, batch_size=32, seed=0, **kwargs)


def test_trains_saves_loads_and_uses_the_distribution(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(compile=False)
    critic = model.critic
    th.testing.assert_close(critic.support, th.linspace(-5.0, 5.0, 11))  # [-normalized_g_max, normalized_g_max]
    obs = th.as_tensor(sample_observations(model, 5))
    actions = th.zeros(5, 1)
    with th.no_grad():
        logits, q = critic.q_logits(obs, actions), critic.q_values(obs, actions)
    assert logits.shape == (2, 5, 11) and q.shape == (2, 5, 1)
    th.testing.assert_close(q, losses.expected_value(logits, critic.support))
    # The training loop's critic loss is the cross-entropy to the projected target
    seen = []
    loss_fn = losses.categorical_critic_loss
    monkeypatch.setattr(losses, "categorical_critic_loss", lambda lg, tg: seen.append(tg.shape) or loss_fn(lg, tg))
    model.learn(200)
    assert model._n_updates == 150 and seen == [(32, 11)] * 150
    assert all(th.isfinite(p).all() for p in model.policy.parameters())
    model.save(tmp_path / "model.zip")
    loaded = SAC.load(tmp_path / "model.zip", device="cpu")
    assert loaded.policy._get_constructor_parameters()["num_bins"] == 11
    assert_state_dicts_equal(model.policy.state_dict(), loaded.policy.state_dict(), "policy")
    th.testing.assert_close(loaded.critic.support, critic.support)
    observations = sample_observations(model, 6)
    np.testing.assert_array_equal(
        loaded.predict(observations, deterministic=True)[0], model.predict(observations, deterministic=True)[0]
    )
    loaded.set_env(model.get_env())
    loaded.learn(20, reset_num_timesteps=False)
