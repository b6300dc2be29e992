"""Periodic parameter resets (``param_resets``, ``reset_networks``): what is re-initialised, what is not, when, resume."""

import warnings
from typing import Any

import pytest
import torch as th

from sb3_sac_ext import SAC, DiscreteSAC
from sb3_sac_ext.common import resets
from sb3_sac_ext.common.compiled_update import CompiledUpdate
from sb3_sac_ext.common.ensemble import EnsembleMLP
from sb3_sac_ext.common.errors import InvalidHyperparameterError
from sb3_sac_ext.common.resets import apply_reset
from tests._helpers import MODEL_LIST, assert_state_dicts_equal, tiny_model


def _model(model_class: type, **kwargs: Any) -> Any:
    settings = dict(learning_starts=50, batch_size=32, seed=0, compile=False)
    settings.update(kwargs)
    return tiny_model(model_class, **settings)


def _optimizer_states(optimizer: th.optim.Optimizer) -> dict:
    return {k: {n: v.clone() for n, v in s.items()} for k, s in optimizer.state_dict()["state"].items()}


@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_critic_reset_restores_initialisation_and_leaves_the_rest(model_class: type, layer_norm: bool) -> None:
    model = _model(model_class, policy_kwargs=dict(net_arch=[32, 32], layer_norm=layer_norm))
    model.learn(80)
    actor_before = {k: v.clone() for k, v in model.actor.state_dict().items()}
    actor_optimizer_before = _optimizer_states(model.actor.optimizer)
    ent_coef_before = model.log_ent_coef.detach().clone()
    ent_optimizer_before = _optimizer_states(model.ent_coef_optimizer)
    qf = model.critic.qf
    th.manual_seed(7)
    apply_reset(model, ["critic"])
    # The module's own initialisation: the same draws as a freshly built ensemble of that shape
    th.manual_seed(7)
    dims = qf.layer_dims
    fresh = EnsembleMLP(qf.n_members, dims[0], dims[1:-1], dims[-1], layer_norm=layer_norm)
    assert_state_dicts_equal(fresh.state_dict(), qf.state_dict(), "critic.qf")
    # nn.Linear's distribution: uniform in +-1/sqrt(fan_in)
    for weight in qf.weights:
        bound = weight.shape[-1] ** -0.5
        assert weight.abs().max() <= bound
        assert abs(float(weight.detach().std()) - bound / 3**0.5) < 0.1 * bound
    assert_state_dicts_equal(model.critic.state_dict(), model.critic_target.state_dict(), "target")
    for state in model.critic.optimizer.state.values():
        assert all(float(value.abs().max()) == 0.0 for value in state.values())
    # Everything else: bit-identical
    assert_state_dicts_equal(actor_before, model.actor.state_dict(), "actor")
    assert_state_dicts_equal(actor_optimizer_before, _optimizer_states(model.actor.optimizer), "actor.optimizer")
    assert th.equal(ent_coef_before, model.log_ent_coef.detach())
    assert_state_dicts_equal(ent_optimizer_before, _optimizer_states(model.ent_coef_optimizer), "ent_coef_optimizer")
    model.learn(10, reset_num_timesteps=False)  # trains on after the reset


def test_actor_reset_keeps_the_critics_and_running_statistics() -> None:
    model = _model(SAC, policy="SimbaPolicy", policy_kwargs=dict(net_arch=[16]), reset_networks=["actor"])
    model.learn(100)
    critic_before = {k: v.clone() for k, v in model.policy.critic.state_dict().items()}
    target_before = {k: v.clone() for k, v in model.policy.critic_target.state_dict().items()}
    stats_before = model.actor.features_extractor.obs_norm.running_mean.clone()
    actor_before = {k: v.clone() for k, v in model.actor.named_parameters()}
    apply_reset(model, ["actor"])
    assert all(not th.equal(actor_before[k], v) for k, v in model.actor.named_parameters() if "norm" not in k)
    encoder = model.actor.latent_pi
    assert th.equal(encoder.norm.weight, th.ones_like(encoder.norm.weight))  # LayerNorm's init
    assert th.equal(model.actor.features_extractor.obs_norm.running_mean, stats_before)  # statistics are kept
    assert_state_dicts_equal(critic_before, model.policy.critic.state_dict(), "critic")
    assert_state_dicts_equal(target_before, model.policy.critic_target.state_dict(), "critic_target")


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_resets_happen_once_and_survive_save_load(model_class: type, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = resets.apply_reset
    monkeypatch.setattr(resets, "apply_reset", lambda model, names: calls.append(model.num_timesteps) or real(model, names))
    model = _model(model_class, param_resets=[120, 10_000])
    model.learn(100)
    assert calls == [] and model._param_resets_done == 0
    model.learn(60, reset_num_timesteps=False)
    assert calls == [120] and model._param_resets_done == 1
    model.save(tmp_path / "model.zip")
    loaded = type(model).load(tmp_path / "model.zip", env=model.get_env())
    assert loaded.param_resets == [120, 10_000] and loaded._param_resets_done == 1
    loaded.learn(40, reset_num_timesteps=False)
    assert calls == [120]  # the reset already done is not redone


def test_compiled_program_after_a_reset() -> None:
    model = _model(SAC, learning_starts=10_000, policy_kwargs=dict(net_arch=[32, 32], layer_norm=True))
    model.learn(100)
    model.compile = True  # the injected program below is used (compile=False would drop it)
    model._compiled_update = CompiledUpdate.build(model, model._batches.sample(model, 32, True), compiler=lambda fn: fn)
    model.train(gradient_steps=2, batch_size=32)
    apply_reset(model, ["actor", "critic"])
    before = {k: v.clone() for k, v in model.critic.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.train(gradient_steps=2, batch_size=32)
    assert model._compiled_update is not None
    assert any(not th.equal(before[k], v) for k, v in model.critic.state_dict().items())
    for state in model.critic.optimizer.state.values():
        assert float(state["step"]) == 2.0  # counted from the reset


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(param_resets=[100, 50]), "param_resets"),
        (dict(param_resets=[0]), "param_resets"),
        (dict(param_resets="100"), "param_resets"),
        (dict(param_resets=[100], reset_networks=["critic_target"]), "reset_networks"),
        (dict(param_resets=[100], reset_networks=[]), "reset_networks"),
        (dict(param_resets=[100], use_sde=True), "log_std"),
        (dict(param_resets=[100], policy="MlpLstmPolicy"), "recurrent"),
    ],
)
def test_invalid_settings(kwargs: dict, match: str) -> None:
    policy = kwargs.pop("policy", "MlpPolicy")
    with pytest.raises(InvalidHyperparameterError, match=match):
        SAC(policy, "Pendulum-v1", buffer_size=100, **kwargs)


def test_gsde_with_critic_resets_only() -> None:
    model = SAC("MlpPolicy", "Pendulum-v1", buffer_size=100, use_sde=True, param_resets=[100], reset_networks=["critic"])
    assert model.reset_networks == ["critic"]
    DiscreteSAC("MlpPolicy", "CartPole-v1", buffer_size=100, param_resets=[100])
