"""CrossQ (``policy_kwargs=dict(batch_norm=True)``, SAC): batch renormalisation by hand, joint forward, no target."""

from typing import Any

import numpy as np
import pytest
import torch as th

from sb3_sac_ext import SAC, DiscreteSAC
from sb3_sac_ext.common import compiled_update
from sb3_sac_ext.common.batch_renorm import BatchRenorm, EnsembleBatchRenorm
from sb3_sac_ext.common.errors import InvalidHyperparameterError
from tests._helpers import assert_state_dicts_equal, sample_observations, tiny_model
from tests.test_network_variants import ort

CROSSQ = dict(net_arch=[32, 32], batch_norm=True, batch_norm_momentum=0.99, renorm_warmup_steps=50)


def test_batch_renorm_by_hand() -> None:
    norm = EnsembleBatchRenorm(2, 3, momentum=0.9, warmup_steps=1, eps=1e-3)
    with th.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    generator = th.Generator().manual_seed(0)
    first = th.randn(2, 16, 3, generator=generator) * 2 + 1
    # Warm-up: plain batch normalisation with the batch's own (population) statistics, per member and feature
    mean, var = first.mean(1, keepdim=True), first.var(1, unbiased=False, keepdim=True)
    expected = (first - mean) / th.sqrt(var + 1e-3) * norm.weight + norm.bias
    th.testing.assert_close(norm(first), expected)
    th.testing.assert_close(norm.running_mean, 0.1 * mean)  # 0.9 * 0 + 0.1 * batch mean
    th.testing.assert_close(norm.running_var, 0.9 + 0.1 * var)
    assert int(norm.steps) == 1
    # After the warm-up: x^ = (x - mu_B) / sigma_B * r + d with r, d clipped to [1/3, 3] and [-5, 5]
    running_mean, running_var = norm.running_mean.clone(), norm.running_var.clone()
    second = th.randn(2, 16, 3, generator=generator) * 3 - 2
    mean, var = second.mean(1, keepdim=True), second.var(1, unbiased=False, keepdim=True)
    sigma, running_sigma = th.sqrt(var + 1e-3), th.sqrt(running_var + 1e-3)
    r = (sigma / running_sigma).clamp(1 / 3, 3)
    d = ((mean - running_mean) / running_sigma).clamp(-5, 5)
    expected = ((second - mean) / sigma * r + d) * norm.weight + norm.bias
    th.testing.assert_close(norm(second), expected)
    # Evaluation mode: the running statistics, nothing updated
    norm.eval()
    state = {key: value.clone() for key, value in norm.state_dict().items()}
    x = th.randn(2, 4, 3, generator=generator)
    expected = (x - norm.running_mean) / th.sqrt(norm.running_var + 1e-3) * norm.weight + norm.bias
    th.testing.assert_close(norm(x), expected)
    assert_state_dicts_equal(state, norm.state_dict(), "eval")


def test_single_network_batch_renorm_is_a_one_member_ensemble() -> None:
    single, ensemble = BatchRenorm(3, momentum=0.9, warmup_steps=1), EnsembleBatchRenorm(1, 3, momentum=0.9, warmup_steps=1)
    generator = th.Generator().manual_seed(1)
    for x in (th.randn(8, 3, generator=generator) * 2 + 1, th.randn(8, 3, generator=generator) - 3):  # warm-up, then not
        th.testing.assert_close(single(x), ensemble(x.unsqueeze(0)).squeeze(0))
    assert_state_dicts_equal(ensemble.state_dict(), single.state_dict(), "statistics")
    single.eval(), ensemble.eval()
    x = th.randn(5, 3, generator=generator)
    th.testing.assert_close(single(x), ensemble(x.unsqueeze(0)).squeeze(0))


def _model(**kwargs: Any) -> SAC:
    settings = dict(policy_kwargs=dict(CROSSQ), learning_starts=50, batch_size=32, seed=0, compile=False, policy_delay=3)
    settings.update(kwargs)
    return tiny_model(SAC, **settings)


def test_joint_forward_and_no_target_network(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    target_before = {k: v.clone() for k, v in model.critic_target.state_dict().items()}
    sizes = []
    q_values = model.critic.q_values
    monkeypatch.setattr(
        model.critic, "q_values", lambda obs, actions, **kw: sizes.append(len(actions)) or q_values(obs, actions, **kw)
    )
    model.learn(120)
    assert model._n_updates == 70
    # One joint forward of 2 x 32 state-actions per critic update; the actor's (every 3 updates) sees 32
    assert sizes.count(64) == 70 and sizes.count(32) == 24
    qf = model.critic.qf
    assert int(qf.input_norm.steps) == 70  # the actor loss reads the running statistics without updating them
    assert_state_dicts_equal(target_before, model.critic_target.state_dict(), "critic_target (unused)")


def test_actor_batch_norm_learns_its_statistics_in_its_own_loss_only() -> None:
    """
    ``batch_norm_actor``: the actor's renormalisation layers (input, after each hidden layer) use the batch statistics
    and update the running ones in the actor loss only; acting, ``predict`` and the critics' next actions read them.
    """
    model = _model(policy_kwargs=dict(CROSSQ, batch_norm_actor=True))
    norms = [module for module in model.actor.latent_pi if isinstance(module, BatchRenorm)]
    assert len(norms) == 3 and model.actor.latent_pi[0] is norms[0]  # input, then after each of the 2 hidden layers
    calls = []
    forward = model.actor.latent_pi.forward
    model.actor.latent_pi.forward = lambda x: calls.append(model.actor.latent_pi.training) or forward(x)
    model.learn(120)
    # 70 critic updates (next actions: running statistics), 24 actor updates (batch statistics), 120 env steps
    assert calls.count(True) == 24 and int(norms[0].steps) == 24
    assert calls.count(False) == 70 + 120 - 50  # 50 random steps before learning_starts do not call the actor
    state = {key: value.clone() for key, value in model.actor.state_dict().items()}
    model.predict(sample_observations(model, 4))
    assert_state_dicts_equal(state, model.actor.state_dict(), "predict")
    assert model.policy._get_constructor_parameters()["batch_norm_actor"] is True


@pytest.mark.parametrize("actor", [False, True])
def test_trains_saves_loads_exports(tmp_path: Any, actor: bool) -> None:
    model = _model(policy_kwargs=dict(CROSSQ, optimizer_kwargs=dict(betas=(0.5, 0.999)), batch_norm_actor=actor))
    model.learn(200)
    assert model.critic.optimizer.param_groups[0]["betas"] == (0.5, 0.999)  # CrossQ's Adam beta1
    assert int(model.critic.qf.input_norm.steps) > model.critic.qf.input_norm.warmup_steps  # renormalisation ran
    model.save(tmp_path / "model.zip")
    loaded = SAC.load(tmp_path / "model.zip", device="cpu")
    assert_state_dicts_equal(model.policy.state_dict(), loaded.policy.state_dict(), "policy")  # running stats included
    for name, optimizer in model.optimizers.items():
        assert_state_dicts_equal(optimizer.state_dict(), loaded.optimizers[name].state_dict(), name)
    obs = sample_observations(model, 6)
    expected = model.predict(obs, deterministic=True)[0]
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], expected)
    path = model.export(tmp_path / "policy.pt", verify=False)
    with th.no_grad():
        (action,) = [out.numpy() for out in th.jit.load(str(path))(th.as_tensor(obs))]
    np.testing.assert_allclose(action, expected, atol=1e-5)
    if ort is not None:  # the actor's renormalisation (running statistics) in the ONNX graph too
        session = ort.InferenceSession(str(model.export(tmp_path / "policy.onnx", verify=False)))
        np.testing.assert_allclose(session.run(None, {"obs": obs})[0], expected, atol=1e-5)
    loaded.set_env(model.get_env())
    loaded.learn(20, reset_num_timesteps=False)


def test_refused_combinations() -> None:
    # (batch renormalisation itself has the compiled update's fast path: tests/test_network_variants.py)
    reason = compiled_update.unsupported_reason(_model())
    assert reason is None or "C++ compiler" in reason
    for option in ("batch_norm", "batch_norm_actor"):
        with pytest.raises(InvalidHyperparameterError, match="SAC only"):
            DiscreteSAC("MlpPolicy", "CartPole-v1", policy_kwargs={option: True}, buffer_size=100)
        with pytest.raises(InvalidHyperparameterError, match=f"{option} must be True or False"):
            SAC("MlpPolicy", "Pendulum-v1", policy_kwargs={option: "yes"}, buffer_size=100)
        with pytest.raises(InvalidHyperparameterError, match="recurrent"):
            SAC("MlpLstmPolicy", "Pendulum-v1", policy_kwargs={option: True}, buffer_size=100)
    for policy in ("SimbaPolicy", "SimbaV2Policy"):
        with pytest.raises(InvalidHyperparameterError, match="MLP actors"):
            SAC(policy, "Pendulum-v1", policy_kwargs=dict(batch_norm_actor=True), buffer_size=100)
    with pytest.raises(InvalidHyperparameterError, match="MLP critics"):
        SAC("SimbaPolicy", "Pendulum-v1", policy_kwargs=dict(batch_norm=True), buffer_size=100)
    with pytest.raises(InvalidHyperparameterError, match="batch_norm_momentum"):
        SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(batch_norm=True, batch_norm_momentum=1.5), buffer_size=100)
    with pytest.raises(InvalidHyperparameterError, match="renorm_warmup_steps"):
        SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(batch_norm=True, renorm_warmup_steps=-1), buffer_size=100)
