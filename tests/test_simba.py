"""SimBa's pieces: the running observation normaliser (train and eval mode, by hand), the blocks, the batched critics."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from torch import nn

from sb3_sac_ext import SAC, DiscreteSAC
from sb3_sac_ext.common.errors import InvalidHyperparameterError
from sb3_sac_ext.common.simba import EnsembleSimba, RunningNormExtractor, RunningObsNorm, SimbaBlock, SimbaEncoder


def test_running_norm_by_hand() -> None:
    norm = RunningObsNorm((2,), epsilon=0.0)
    first = th.tensor([[1.0, 10.0], [3.0, 10.0]])
    # After the first batch: mean (2, 10), population variance (1, 0)
    out = norm(first)
    np.testing.assert_allclose(norm.running_mean.numpy(), [2.0, 10.0])
    np.testing.assert_allclose(norm.running_var.numpy(), [1.0, 0.0])
    assert float(norm.running_count) == 2.0
    np.testing.assert_allclose(out[:, 0].numpy(), [-1.0, 1.0])
    # Second batch: the statistics are those of the four samples together
    second = th.tensor([[5.0, 14.0], [7.0, 14.0]])
    norm(second)
    everything = th.cat([first, second]).double()
    np.testing.assert_allclose(norm.running_mean.numpy(), everything.mean(0).numpy())
    np.testing.assert_allclose(norm.running_var.numpy(), everything.var(0, unbiased=False).numpy())
    assert float(norm.running_count) == 4.0
    # Evaluation mode: frozen statistics, (x - mean) / sqrt(var)
    norm.eval()
    state = {key: value.clone() for key, value in norm.state_dict().items()}
    x = th.tensor([[4.0, 12.0]])
    expected = (x.double() - everything.mean(0)) / everything.var(0, unbiased=False).sqrt()
    np.testing.assert_allclose(norm(x).numpy(), expected.float().numpy(), rtol=1e-6)
    assert all(th.equal(state[key], value) for key, value in norm.state_dict().items())


def test_running_norm_is_saved_in_the_state_dict() -> None:
    extractor = RunningNormExtractor(spaces.Box(-1, 1, (3,)))
    assert set(extractor.state_dict()) == {"obs_norm.running_mean", "obs_norm.running_var", "obs_norm.running_count"}
    extractor(th.randn(8, 3))
    copy = RunningNormExtractor(spaces.Box(-1, 1, (3,)))
    copy.load_state_dict(extractor.state_dict())
    x = th.randn(4, 3)
    th.testing.assert_close(copy.eval()(x), extractor.eval()(x), rtol=0, atol=0)


def test_running_norm_many_batches_keeps_precision() -> None:
    norm = RunningObsNorm((1,))
    generator = th.Generator().manual_seed(0)
    for _ in range(200):
        norm(3.0 + 2.0 * th.randn(256, 1, generator=generator))
    np.testing.assert_allclose(norm.running_mean.numpy(), [3.0], atol=0.02)
    np.testing.assert_allclose(norm.running_var.numpy(), [4.0], atol=0.05)


def test_block_and_encoder_by_hand() -> None:
    th.manual_seed(0)
    block = SimbaBlock(8)
    x = th.randn(5, 8)
    expected = x + block.down(th.relu(block.up(nn.functional.layer_norm(x, (8,)))))
    th.testing.assert_close(block(x), expected)
    assert block.up.out_features == 32  # inverted bottleneck, scale factor 4
    encoder = SimbaEncoder(3, [8, 8])
    inputs = th.randn(5, 3)
    th.testing.assert_close(encoder(inputs), encoder.norm(encoder.blocks(encoder.embedding(inputs))))
    assert len(encoder.blocks) == 2 and encoder.out_dim == 8


def test_ensemble_simba_matches_separate_networks() -> None:
    th.manual_seed(0)
    ensemble = EnsembleSimba(3, 4, [8, 8], 2)
    with th.no_grad():
        for param in ensemble.parameters():
            param.add_(0.1 * th.randn_like(param))  # non-trivial layer-norm parameters
    x = th.randn(6, 4)
    out = ensemble(x)
    assert out.shape == (3, 6, 2)
    for member in range(3):
        encoder, head = SimbaEncoder(4, [8, 8]), nn.Linear(8, 2)
        mapping = {
            encoder.embedding: ensemble.embedding,
            encoder.norm: ensemble.norm,
            head: ensemble.output,
            **{block.norm: source.norm for block, source in zip(encoder.blocks, ensemble.blocks)},
            **{block.up: source.up for block, source in zip(encoder.blocks, ensemble.blocks)},
            **{block.down: source.down for block, source in zip(encoder.blocks, ensemble.blocks)},
        }
        with th.no_grad():
            for target, source in mapping.items():
                target.weight.copy_(source.weight[member].reshape(target.weight.shape))
                target.bias.copy_(source.bias[member].reshape(target.bias.shape))
        th.testing.assert_close(out[member], head(encoder(x)), rtol=1e-5, atol=1e-6)
    # One input per member gives the same as the shared input repeated
    th.testing.assert_close(ensemble(x.expand(3, 6, 4)), out, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("net_arch", [[], [32, 64], dict(pi=[16, 8], qf=[16])])
def test_unequal_block_widths_raise(net_arch) -> None:
    with pytest.raises(InvalidHyperparameterError, match="one width per residual block"):
        SAC("SimbaPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=net_arch))


@pytest.mark.parametrize("model_class", [SAC, DiscreteSAC])
def test_policy_layout(model_class) -> None:
    env = "Pendulum-v1" if model_class is SAC else "CartPole-v1"
    model = model_class("SimbaPolicy", env, policy_kwargs=dict(net_arch=dict(pi=[16], qf=[32, 32])), buffer_size=100)
    policy = model.policy
    assert isinstance(policy.actor.features_extractor, RunningNormExtractor)
    assert isinstance(policy.critic.qf, EnsembleSimba) and len(policy.critic.qf.blocks) == 2
    assert isinstance(policy.actor.optimizer, th.optim.AdamW)
    # The target critic's statistics are copied at each target update, as batch-norm statistics are
    assert len(model.batch_norm_stats) == len(model.batch_norm_stats_target) == 3
    policy.set_training_mode(True)
    policy.critic.features_extractor(th.ones(4, *model.observation_space.shape))
    model._update_target()
    assert th.equal(policy.critic_target.features_extractor.obs_norm.running_count, th.tensor(4.0, dtype=th.float64))


# ----------------------------------------------------------------- SimbaV2


def test_simbav2_equations_by_hand() -> None:
    from sb3_sac_ext.common.simbav2 import C_SHIFT, EnsembleSimbaV2, SimbaV2Encoder

    th.manual_seed(0)
    net = EnsembleSimbaV2(2, 3, [8], 1)
    with th.no_grad():
        for param in net.parameters():
            param.mul_(1.0 + 0.1 * th.rand_like(param))  # weights off the sphere, non-trivial scalers
    x = th.randn(5, 3)

    def unit(v: th.Tensor) -> th.Tensor:
        return v / v.norm(dim=-1, keepdim=True)

    def rows(w: th.Tensor) -> th.Tensor:
        return w / w.norm(dim=-1, keepdim=True)

    for member in range(2):
        shifted = unit(th.cat([x, th.full((5, 1), C_SHIFT)], dim=-1))  # x~ = Norm([x; c_shift])
        e = net.embedding_scaler
        h = unit(shifted @ rows(net.embedding.weight[member]).T * e.scaler[member] * (e.init / e.scale))
        block = net.blocks[0]
        s = block.up_scaler
        hidden = th.relu(h @ rows(block.up.weight[member]).T * s.scaler[member] * (s.init / s.scale)) + 1e-8
        h_tilde = unit(hidden @ rows(block.down.weight[member]).T)
        alpha = block.alpha.scaler[member] * (block.alpha.init / block.alpha.scale)
        h = unit(h + alpha * (h_tilde - h))  # LERP, then back onto the sphere
        q = h @ net.output.weight[member].T + net.output.bias[member]
        th.testing.assert_close(net(x)[member], q, rtol=1e-5, atol=1e-6)
    # Initial values as in the paper: alpha = 1 / (n_blocks + 1), embedding scaler = sqrt(2 / width)
    fresh = EnsembleSimbaV2(1, 3, [8, 8, 8], 1)
    alpha = fresh.blocks[0].alpha
    th.testing.assert_close(alpha(th.ones(1, 1, 8)), th.full((1, 1, 8), 0.25))
    th.testing.assert_close(fresh.embedding_scaler(th.ones(1, 1, 8)), th.full((1, 1, 8), 0.5))
    # The actor's encoder ends on the unit sphere
    latent = SimbaV2Encoder(3, [8, 8])(x)
    th.testing.assert_close(latent.norm(dim=-1), th.ones(5))


@pytest.mark.parametrize("model_class", [SAC, DiscreteSAC])
def test_simbav2_policy_refuses_layer_norm_and_dropout(model_class) -> None:
    env = "Pendulum-v1" if model_class is SAC else "CartPole-v1"
    for option in (dict(layer_norm=True), dict(dropout_rate=0.01)):
        with pytest.raises(InvalidHyperparameterError, match="SimbaV2Policy"):
            model_class("SimbaV2Policy", env, policy_kwargs=option, buffer_size=100)
    model = model_class("SimbaV2Policy", env, policy_kwargs=dict(net_arch=[16]), buffer_size=100, param_resets=[50])
    assert isinstance(model.policy.actor.features_extractor, RunningNormExtractor)
