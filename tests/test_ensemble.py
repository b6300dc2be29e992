"""The batched critic ensemble gives the same values, losses and gradients as SB3's separate critics."""

import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.torch_layers import FlattenExtractor
from torch.nn import functional as F

from sb3_sac_ext.common.ensemble import EnsembleMLP
from sb3_sac_ext.sac.policies import EnsembleContinuousCritic, convert_sb3_critic_state_dict, squashed_gaussian_sample

OBS_SPACE = spaces.Box(-1, 1, (5,))
ACTION_SPACE = spaces.Box(-1, 1, (2,))


def make_pair(n_critics: int) -> tuple[ContinuousCritic, EnsembleContinuousCritic]:
    th.manual_seed(0)
    kwargs = dict(
        observation_space=OBS_SPACE,
        action_space=ACTION_SPACE,
        net_arch=[32, 32],
        features_dim=5,
        n_critics=n_critics,
        share_features_extractor=False,
    )
    separate = ContinuousCritic(features_extractor=FlattenExtractor(OBS_SPACE), **kwargs)
    ensemble = EnsembleContinuousCritic(features_extractor=FlattenExtractor(OBS_SPACE), **kwargs)
    ensemble.load_state_dict(convert_sb3_critic_state_dict(separate.state_dict()))
    return separate, ensemble


def batch(size: int = 64) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    generator = th.Generator().manual_seed(1)
    obs = th.rand(size, 5, generator=generator) * 2 - 1
    actions = th.rand(size, 2, generator=generator) * 2 - 1
    target = th.randn(size, 1, generator=generator)
    return obs, actions, target


@pytest.mark.parametrize("n_critics", [1, 2, 3, 5])
def test_critic_loss_and_gradients_match_separate_critics(n_critics):
    separate, ensemble = make_pair(n_critics)
    obs, actions, target = batch()

    q_separate = separate(obs, actions)
    loss_separate = 0.5 * sum(F.mse_loss(q, target) for q in q_separate)
    loss_separate.backward()

    q_ensemble = ensemble.q_values(obs, actions)
    assert q_ensemble.shape == (n_critics, 64, 1)
    loss_ensemble = 0.5 * n_critics * F.mse_loss(q_ensemble, target.expand_as(q_ensemble))
    loss_ensemble.backward()

    th.testing.assert_close(q_ensemble, th.stack(q_separate), rtol=1e-6, atol=1e-6)
    th.testing.assert_close(loss_ensemble, loss_separate, rtol=1e-6, atol=1e-7)
    separate_grads = convert_sb3_critic_state_dict({name: p.grad for name, p in separate.named_parameters()})
    for name, param in ensemble.named_parameters():
        th.testing.assert_close(param.grad, separate_grads[name], rtol=1e-5, atol=1e-6)


def test_actor_loss_sends_no_gradient_to_critic_weights_but_same_action_gradient():
    separate, ensemble = make_pair(2)
    obs, actions, _ = batch()
    actions_sep = actions.clone().requires_grad_(True)
    actions_ens = actions.clone().requires_grad_(True)

    th.cat(separate(obs, actions_sep), dim=1).min(dim=1).values.mean().backward()
    ensemble.q_values(obs, actions_ens, detach_params=True).min(dim=0).values.mean().backward()

    th.testing.assert_close(actions_ens.grad, actions_sep.grad, rtol=1e-5, atol=1e-7)
    assert all(p.grad is None for p in ensemble.parameters())
    assert any(p.grad is not None for p in separate.parameters())  # SB3 computes (and then discards) them


def test_bf16_autocast_close_to_fp32():
    _, ensemble = make_pair(2)
    obs, actions, target = batch(256)
    q_fp32 = ensemble.q_values(obs, actions)
    with th.autocast("cpu", dtype=th.bfloat16):
        q_bf16 = ensemble.q_values(obs, actions).float()
    loss_fp32 = F.mse_loss(q_fp32, target.expand_as(q_fp32))
    loss_bf16 = F.mse_loss(q_bf16, target.expand_as(q_bf16))
    # bf16 keeps 8 bits of mantissa: relative error of a few 1e-3 per matmul
    th.testing.assert_close(q_bf16, q_fp32, rtol=3e-2, atol=3e-2)
    th.testing.assert_close(loss_bf16, loss_fp32, rtol=1e-2, atol=1e-3)


def test_ensemble_members_are_initialised_independently_like_linear():
    th.manual_seed(0)
    ensemble = EnsembleMLP(4, 10, [64], 1)
    first = ensemble.weights[0].detach()
    assert not th.equal(first[0], first[1])
    bound = 1 / 10**0.5
    assert first.abs().max() <= bound
    assert first.std() == pytest.approx(bound / 3**0.5, rel=0.1)  # uniform(-b, b) has std b / sqrt(3)
    state = ensemble.member_state_dict(2)
    assert state["0.weight"].shape == (64, 10) and state["2.bias"].shape == (1,)


def test_squashed_gaussian_log_prob_matches_sb3_distribution():
    from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution

    th.manual_seed(3)
    mean = th.randn(128, 3)
    log_std = th.randn(128, 3).clamp(-3, 1)
    actions, log_prob = squashed_gaussian_sample(mean, log_std)
    reference = SquashedDiagGaussianDistribution(3).proba_distribution(mean, log_std).log_prob(actions)
    assert actions.abs().max() <= 1
    # SB3 recovers the Gaussian sample with atanh(actions), which loses precision near |a| = 1
    mask = actions.abs().max(dim=1).values < 0.999
    th.testing.assert_close(log_prob[mask], reference[mask], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("per_member_input", [False, True])
def test_feature_major_layout_same_outputs_and_gradients_contiguous(per_member_input: bool):
    """The compiled update's layout: same outputs and gradients, and the weights' gradients come out contiguous."""
    th.manual_seed(0)
    ensemble = EnsembleMLP(2, 6, [32, 32], 1)
    x = th.randn(2, 17, 6) if per_member_input else th.randn(17, 6)
    grads = []
    for feature_major in (False, True):
        ensemble.feature_major = feature_major
        ensemble.zero_grad()
        out = ensemble(x)
        assert out.shape == (2, 17, 1)
        out.square().mean().backward()
        grads.append([(out.detach(), p.grad.clone(), p.grad.is_contiguous()) for p in ensemble.weights])
    ensemble.feature_major = False
    for (out_a, grad_a, _), (out_b, grad_b, contiguous) in zip(*grads):
        th.testing.assert_close(out_b, out_a, rtol=1e-5, atol=1e-6)
        th.testing.assert_close(grad_b, grad_a, rtol=1e-5, atol=1e-6)
        assert contiguous


def test_precision_auto_turns_bf16_on_with_native_cpu_bf16(monkeypatch: pytest.MonkeyPatch):
    from sb3_sac_ext.common.precision import Precision, bf16_is_fast

    cpu = th.device("cpu")
    for amx, avx512_bf16, expected in ((False, False, False), (True, False, True), (False, True, True)):
        monkeypatch.setattr(th.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        monkeypatch.setattr(th.cpu, "_is_avx512_bf16_supported", lambda value=avx512_bf16: value)
        assert bf16_is_fast(cpu) is expected
        assert Precision("auto", cpu).bf16 is expected
        assert Precision("fp32", cpu).bf16 is False and Precision("bf16", cpu).bf16 is True
