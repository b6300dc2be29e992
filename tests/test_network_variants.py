"""
The network variants of the policies (``policy_kwargs`` and policy names, as SBX names them): DroQ's
``layer_norm``/``dropout_rate`` critics. Each variant builds for SAC and DiscreteSAC, trains a few hundred steps on
the eager and on the compiled program (run without compiling, the identity compiler), saves and loads exactly, and
exports with actions equal to ``predict(deterministic=True)`` (those runs: ``test_network_variants_run.py``).
"""

import warnings
from typing import Any

import pytest
import torch as th
from stable_baselines3.common.torch_layers import FlattenExtractor
from torch import nn

from sb3_sac_ext import SAC, DiscreteSAC
from sb3_sac_ext.common.compiled_update import CompiledUpdate
from sb3_sac_ext.common.ensemble import EnsembleMLP
from sb3_sac_ext.common.errors import InvalidHyperparameterError
from sb3_sac_ext.common.network_options import check_distributed_statistics
from tests._helpers import MODEL_LIST, tiny_model

try:
    import onnx  # noqa: F401
    import onnxruntime as ort
except ImportError:
    ort = None

# name -> (policy, extra policy_kwargs)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "droq": ("MlpPolicy", dict(layer_norm=True, dropout_rate=0.01)),
    "layer_norm": ("MlpPolicy", dict(layer_norm=True)),
    "simba": ("SimbaPolicy", dict(net_arch=[32])),
    "simba_dropout": ("SimbaPolicy", dict(net_arch=dict(pi=[16], qf=[32, 32]), dropout_rate=0.01)),
    "simbav2": ("SimbaV2Policy", dict(net_arch=dict(pi=[16], qf=[32, 32]))),
    "simbav2_flatten": ("SimbaV2Policy", dict(net_arch=[32], features_extractor_class=FlattenExtractor)),
    # SAC's SimbaV2 critics with a linear Q-head instead of the categorical one (DiscreteSAC's always have one)
    "simbav2_linear": ("SimbaV2Policy", dict(net_arch=dict(pi=[16], qf=[32, 32]), num_bins=None)),
    # SimBa's networks without the running normalisation
    "simba_flatten": ("SimbaPolicy", dict(net_arch=[32], features_extractor_class=FlattenExtractor)),
}

# Every variant has a fast path (the compiled update), the running statistics included
COMPILED_VARIANTS = list(VARIANTS)


def variant_model(model_class: type, variant: str, **kwargs: Any) -> Any:
    policy, options = VARIANTS[variant]
    settings = dict(learning_starts=50, batch_size=32, seed=0, compile=False)
    settings.update(kwargs)
    return tiny_model(model_class, policy=policy, policy_kwargs={"net_arch": [32, 32], **options}, **settings)


# ----------------------------------------------------------------- the ensemble's layer norm and dropout


@pytest.mark.parametrize("shared_input", [True, False])
def test_layer_norm_both_layouts_agree(shared_input: bool) -> None:
    th.manual_seed(0)
    ensemble = EnsembleMLP(3, 6, [16, 8], 2, layer_norm=True, dropout_rate=0.2).eval()
    with th.no_grad():  # non-trivial affine parameters
        for scale, shift in zip(ensemble.norm_weights, ensemble.norm_biases):
            scale.uniform_(0.5, 1.5)
            shift.uniform_(-0.5, 0.5)
    x = th.randn(10, 6) if shared_input else th.randn(3, 10, 6)
    batch_major = ensemble(x)
    ensemble.feature_major = True
    feature_major = ensemble(x)
    th.testing.assert_close(feature_major, batch_major, rtol=1e-5, atol=1e-6)


def test_layer_norm_matches_separate_torch_layers() -> None:
    """Each member is Linear -> LayerNorm -> ReLU -> ... -> Linear with its own affine parameters."""
    th.manual_seed(0)
    ensemble = EnsembleMLP(2, 5, [16, 16], 1, layer_norm=True)
    with th.no_grad():
        for scale, shift in zip(ensemble.norm_weights, ensemble.norm_biases):
            scale.uniform_(0.5, 1.5)
            shift.uniform_(-0.5, 0.5)
    x = th.randn(7, 5)
    out = ensemble(x)
    for member in range(2):
        layers: list[nn.Module] = []
        for layer in range(3):
            linear = nn.Linear(*reversed(ensemble.weights[layer].shape[1:]))
            linear.weight.data.copy_(ensemble.weights[layer][member])
            linear.bias.data.copy_(ensemble.biases[layer][member, 0])
            layers.append(linear)
            if layer < 2:
                norm = nn.LayerNorm(linear.out_features)
                norm.weight.data.copy_(ensemble.norm_weights[layer][member, 0])
                norm.bias.data.copy_(ensemble.norm_biases[layer][member, 0])
                layers += [norm, nn.ReLU()]
        th.testing.assert_close(out[member], nn.Sequential(*layers)(x), rtol=1e-5, atol=1e-6)


def test_dropout_only_in_training_mode() -> None:
    th.manual_seed(0)
    ensemble = EnsembleMLP(2, 4, [64], 1, dropout_rate=0.5)
    x = th.randn(32, 4)
    assert not th.equal(ensemble(x), ensemble(x))  # two dropout masks
    ensemble.eval()
    th.testing.assert_close(ensemble(x), ensemble(x), rtol=0, atol=0)
    ensemble.feature_major = True
    th.testing.assert_close(ensemble(x), EnsembleMLP.forward(ensemble.train(False), x), rtol=0, atol=0)


def test_default_ensemble_has_no_new_parameters() -> None:
    names = [name for name, _ in EnsembleMLP(2, 4, [8, 8], 1).named_parameters()]
    assert names == ["weights.0", "weights.1", "weights.2", "biases.0", "biases.1", "biases.2"]


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_target_dropout_follows_training_mode(model_class: type) -> None:
    """As in the DroQ authors' code and SBX, the target critics use dropout while training; nothing does in eval mode."""
    model = variant_model(model_class, "droq")
    policy = model.policy
    policy.set_training_mode(True)
    assert policy.critic.qf.training and policy.critic_target.qf.training
    assert not policy.critic_target.features_extractor.training  # the rest of the target stays in eval mode
    policy.set_training_mode(False)
    assert not policy.critic.qf.training and not policy.critic_target.qf.training
    assert not variant_model(model_class, "layer_norm").policy.critic_target.qf.training


@pytest.mark.parametrize("value", [-0.1, 1.0, "0.1", True])
def test_invalid_dropout_rate(value: Any) -> None:
    with pytest.raises(InvalidHyperparameterError, match="dropout_rate"):
        SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(dropout_rate=value))


def test_invalid_layer_norm() -> None:
    with pytest.raises(InvalidHyperparameterError, match="layer_norm"):
        DiscreteSAC("MlpPolicy", "CartPole-v1", policy_kwargs=dict(layer_norm="yes"))


def test_recurrent_policy_rejects_feed_forward_options() -> None:
    with pytest.raises(InvalidHyperparameterError, match="recurrent policy"):
        SAC("MlpLstmPolicy", "Pendulum-v1", policy_kwargs=dict(layer_norm=True))


# ----------------------------------------------------------------- every variant: train, compiled program, save, export


@pytest.mark.parametrize("variant", COMPILED_VARIANTS)
@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_compiled_program_trains(model_class: type, variant: str) -> None:
    """The compiled update's program (run eagerly here: the identity compiler) handles the variant's layers."""
    model = variant_model(model_class, variant, learning_starts=10_000)
    model.learn(100)
    model.compile = True  # the injected program below is used (compile=False would drop it)
    model._compiled_update = CompiledUpdate.build(model, model._batches.sample(model, 32, True), compiler=lambda fn: fn)
    before = {name: p.detach().clone() for name, p in model.policy.named_parameters()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to the eager update
        model.train(gradient_steps=3, batch_size=32)
    assert model._compiled_update is not None
    critic_changed = [
        name for name, p in model.policy.named_parameters() if name.startswith("critic.") and not th.equal(p, before[name])
    ]
    assert critic_changed and all(th.isfinite(p).all() for p in model.policy.parameters())


def _eager_and_program(make_model: Any) -> tuple[Any, Any, Any]:
    """Two equal models fed one fixed batch: the eager update, and the compiled update's program run eagerly."""
    models = []
    for _ in range(2):
        model = make_model()
        model.learn(100)
        models.append(model)
    eager, fast = models
    batch = eager._batches.sample(eager, 32, True)
    for model in models:
        model._batches.sample = lambda *args, **kwargs: batch
    fast.compile = True  # the injected program below is used (compile=False would drop it)
    return eager, fast, batch


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_compiled_program_matches_eager_without_dropout(model_class: type) -> None:
    """With layer norm (no random draws in the critics), the program's step equals the eager step to rounding."""
    eager, fast, batch = _eager_and_program(lambda: variant_model(model_class, "layer_norm", learning_starts=10_000))
    fast._compiled_update = CompiledUpdate.build(fast, batch, compiler=lambda fn: fn)
    th.manual_seed(1)
    eager.train(gradient_steps=1, batch_size=32)
    th.manual_seed(1)
    fast.train(gradient_steps=1, batch_size=32)
    for (name, p_eager), p_fast in zip(eager.critic.named_parameters(), fast.critic.parameters()):
        th.testing.assert_close(p_fast, p_eager, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize(
    ("model_class", "variant"),
    [
        (SAC, "simba"),
        (DiscreteSAC, "simba"),
        (SAC, "simbav2"),
        (SAC, "simbav2_linear"),
        (SAC, "crossq"),
        (SAC, "crossq_actor"),
    ],
)
def test_compiled_program_updates_running_statistics_as_eager(model_class: type, variant: str) -> None:
    """
    The running statistics (SimBa's observation normalisation, CrossQ's batch renormalisation) that the losses update
    inside torch.func.grad come out of the program equal to the eager update's, and so do the parameters; the
    program's parameter probe leaves them untouched.
    """
    special = {
        "crossq": ("MlpPolicy", dict(batch_norm=True, renorm_warmup_steps=2)),
        "crossq_actor": ("MlpPolicy", dict(batch_norm=True, batch_norm_actor=True, renorm_warmup_steps=2)),
    }
    policy, options = special[variant] if variant in special else VARIANTS[variant]
    eager, fast, batch = _eager_and_program(
        lambda: tiny_model(
            model_class, policy=policy, policy_kwargs={"net_arch": [32, 32], **options}, seed=0, learning_starts=10_000
        )
    )
    before = {name: b.clone() for name, b in fast.policy.named_buffers()}
    fast._compiled_update = CompiledUpdate.build(fast, batch, compiler=lambda fn: fn)
    assert all(th.equal(b, before[name]) for name, b in fast.policy.named_buffers())
    for step in range(4):  # past CrossQ's warm-up of 2 batches: the renormalisation corrections apply
        for model in (eager, fast):
            th.manual_seed(step)
            model.train(gradient_steps=1, batch_size=32)
    assert fast._compiled_update.calls == 4
    buffers = dict(eager.policy.named_buffers())
    moved = [name for name, b in fast.policy.named_buffers() if not th.equal(b, before[name])]
    assert any("running_mean" in name for name in moved) and any("running_count" in n or "steps" in n for n in moved)
    for name, b_fast in fast.policy.named_buffers():
        th.testing.assert_close(b_fast, buffers[name], rtol=1e-6, atol=1e-7, msg=name)
    for (name, p_eager), p_fast in zip(eager.policy.named_parameters(), fast.policy.parameters()):
        th.testing.assert_close(p_fast, p_eager, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize(
    "policy, options",
    [
        ("SimbaPolicy", {}),
        ("SimbaV2Policy", {}),
        ("MlpPolicy", dict(batch_norm=True)),
        ("MlpPolicy", dict(batch_norm_actor=True)),
    ],
)
def test_running_statistics_refused_in_data_parallel_training(policy: str, options: dict) -> None:
    model = SAC(policy, "Pendulum-v1", policy_kwargs=dict(net_arch=[16], **options), buffer_size=100)
    model._distributed = object()  # as set by sb3_sac_ext.common.distributed.setup under torchrun
    with pytest.raises(InvalidHyperparameterError, match="data-parallel"):
        check_distributed_statistics(model)
    plain = SAC("SimbaPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16], features_extractor_class=FlattenExtractor))
    plain._distributed = object()
    check_distributed_statistics(plain)  # no running statistics: allowed
