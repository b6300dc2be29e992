"""
The compiled update (``compile=True``, :mod:`sb3_sac_ext.common.compiled_update`) against the eager one
(``compile=False``): same losses, gradients, parameters and optimizer states after N steps on a fixed batch; the
non-finite guard; the fallback to the eager update; ``compile="auto"``.

The SAC comparison compiles for real (``torch.compile``; inductor draws its random numbers like eager PyTorch here,
``fallback_random``, so that SAC's sampled actions are the same). The DiscreteSAC and bf16 comparisons run the same
program without compiling it (the identity compiler) to keep the suite short.
"""

import copy
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
import torch._inductor.config as inductor_config
from stable_baselines3.common.torch_layers import FlattenExtractor

import sb3_sac_ext.common.compiled_update as compiled_update
from sb3_sac_ext import SAC, DiscreteSAC
from sb3_sac_ext.common import persistence
from sb3_sac_ext.common.compiled_update import AUTO_COMPILE_MIN_UPDATES, CompiledUpdate
from sb3_sac_ext.common.ensemble import EnsembleMLP
from sb3_sac_ext.common.recurrent.batch import fixed_length, masked_latents
from sb3_sac_ext.common.recurrent.layers import RNNBlock
from sb3_sac_ext.common.recurrent.policies import unroll_current_next
from sb3_sac_ext.common.errors import InvalidHyperparameterError, NonFiniteError
from tests._helpers import MODEL_LIST, tiny_model

STEPS = 5


def _twins(model_class: type, precision: str = "fp32", **kwargs: Any) -> tuple[Any, Any, Any]:
    """An eager and a compiled model with the same weights and replay data, both fed one fixed batch."""
    models = []
    for compile in (False, True):
        model = tiny_model(model_class, seed=0, precision=precision, compile=compile, learning_starts=10_000, **kwargs)
        model.learn(150)  # fills the buffer; no update before learning_starts
        models.append(model)
    eager, fast = models
    batch = eager._batches.sample(eager, eager.batch_size, True)
    for model in models:
        model._batches.sample = lambda *args, **kw: batch
    return eager, fast, batch


def _step_both(eager: Any, fast: Any, steps: int) -> list[tuple[dict, dict]]:
    logs = []
    for step in range(steps):
        for model in (eager, fast):
            th.manual_seed(step)  # the same noise for SAC's sampled actions
            model.train(gradient_steps=1, batch_size=model.batch_size)
        logs.append(tuple({k: float(v) for k, v in model._train_logs.items()} for model in (eager, fast)))
    return logs


def _optimizer_tensors(model: Any, key: str) -> list[th.Tensor]:
    return [
        optimizer.state[p][key]
        for optimizer in model.optimizers.values()
        for group in optimizer.param_groups
        for p in group["params"]
    ]


def _assert_close_models(eager: Any, fast: Any, rtol: float, atol: float) -> None:
    for (name, p_eager), p_fast in zip(eager.policy.named_parameters(), fast.policy.parameters()):
        th.testing.assert_close(p_fast, p_eager, rtol=rtol, atol=atol, msg=lambda m, name=name: f"{name}: {m}")
    for key in ("exp_avg", "exp_avg_sq", "step"):
        for t_eager, t_fast in zip(_optimizer_tensors(eager, key), _optimizer_tensors(fast, key)):
            th.testing.assert_close(t_fast, t_eager, rtol=rtol, atol=atol)
    th.testing.assert_close(fast.temperature.value, eager.temperature.value, rtol=rtol, atol=atol)


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_compiled_matches_eager(model_class: type, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inductor_config, "fallback_random", True)
    eager, fast, batch = _twins(model_class)
    for p_eager, p_fast in zip(eager.policy.parameters(), fast.policy.parameters()):
        assert th.equal(p_eager, p_fast)

    if model_class is DiscreteSAC:
        # The same program, run without compiling it (a real compilation is ~40 s: SAC's is enough for the suite;
        # benchmarks/throughput.py compiles DiscreteSAC's)
        fast._compiled_update = CompiledUpdate.build(fast, batch, compiler=lambda fn: fn)

    # Gradients: after the first Adam step, exp_avg = (1 - beta1) * gradient
    logs = _step_both(eager, fast, 1)
    assert fast._compiled_update is not None and fast._compiled_update.calls == 1
    assert eager._compiled_update is None
    for m_eager, m_fast in zip(_optimizer_tensors(eager, "exp_avg"), _optimizer_tensors(fast, "exp_avg")):
        th.testing.assert_close(m_fast, m_eager, rtol=1e-4, atol=1e-6)
    logs += _step_both(eager, fast, STEPS - 1)
    for step_eager, step_fast in logs:
        assert step_fast.keys() == step_eager.keys()
        for key in step_eager:
            assert step_fast[key] == pytest.approx(step_eager[key], rel=1e-4, abs=1e-5), key
    _assert_close_models(eager, fast, rtol=1e-4, atol=1e-5)
    # The program moved the weights (not a no-op that trivially matches)
    assert not th.equal(next(fast.actor.parameters()), next(tiny_model(model_class, seed=0).actor.parameters()))

    # The non-finite guard: the step that sees a NaN changes no trained weight and no optimizer state, and the call
    # raises (the target critics still move towards the unchanged critics, as in the eager update)
    trained = [*fast.actor.parameters(), *fast.critic.parameters()]
    before = [p.detach().clone() for p in trained]
    steps_before = [t.clone() for t in _optimizer_tensors(fast, "step")]
    bad = batch._replace(rewards=th.full_like(batch.rewards, float("nan")))
    fast._batches.sample = lambda *args, **kw: bad
    with pytest.raises(NonFiniteError, match="critic"):
        fast.train(gradient_steps=1, batch_size=fast.batch_size)
    assert all(th.equal(a, b) for a, b in zip(before, trained))
    assert all(th.equal(a, b) for a, b in zip(steps_before, _optimizer_tensors(fast, "step")))

    # A copy drops the compiled program (bound to the original's networks) and builds its own when it trains
    copied = copy.deepcopy(fast)
    assert copied._compiled_update is None and fast._compiled_update is not None

    # learn() goes through the same compiled program
    del fast._batches.sample
    fast.learning_starts = 0
    fast.learn(64, reset_num_timesteps=False)
    assert fast._compiled_update.calls > STEPS


def test_compiled_program_bf16_matches_eager_bf16() -> None:
    """The same program in bf16 autocast (run without compiling) against the eager bf16 update."""
    eager, fast, batch = _twins(SAC, precision="bf16")
    fast._compiled_update = CompiledUpdate.build(fast, batch, compiler=lambda fn: fn)
    _step_both(eager, fast, STEPS)
    assert fast._compiled_update.calls == STEPS
    # bf16 products round to 8 bits of mantissa, and the two paths round at different places
    _assert_close_models(eager, fast, rtol=2e-2, atol=2e-3)


@pytest.mark.slow  # a cold compilation of SimBa's program: minutes on one core
def test_compiled_running_statistics_match_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    SimBa's running observation statistics through the real compiler: updated by the target computation (directly),
    by the losses (staged inside torch.func.grad, written after it) and copied to the target critic, with the 0-d
    float64 count that a plain copy_ into would lose under torch.compile (sb3_sac_ext.common.running_stats.assign).
    """
    monkeypatch.setattr(inductor_config, "fallback_random", True)
    eager, fast, _ = _twins(SAC, policy="SimbaPolicy", policy_kwargs=dict(net_arch=[16]))
    _step_both(eager, fast, 3)
    assert fast._compiled_update is not None and fast._compiled_update.calls == 3
    counts = {name: float(b) for name, b in fast.policy.named_buffers() if name.endswith("running_count")}
    # actor: next and current observations of each step; critic: its loss and the actor's; target: copied
    assert counts and all(count == 3 * 2 * fast.batch_size for count in counts.values()), counts
    for (name, b_eager), b_fast in zip(eager.policy.named_buffers(), fast.policy.buffers()):
        th.testing.assert_close(b_fast, b_eager, rtol=1e-6, atol=1e-7, msg=lambda m, name=name: f"{name}: {m}")
    _assert_close_models(eager, fast, rtol=1e-4, atol=1e-5)


def test_adam_step_matches_torch_adam_and_skips() -> None:
    """adam_step against torch's Adam and AdamW (weight decay, maximize), and an exact skip when not ok."""
    for optimizer_class, kwargs in ((th.optim.Adam, {"weight_decay": 0.1}), (th.optim.AdamW, {"maximize": True})):
        params = [th.randn(4, 3, requires_grad=True), th.randn(3, requires_grad=True)]
        ours = [p.detach().clone() for p in params]
        optimizer = optimizer_class(params, lr=1e-2, **kwargs)
        for p in params:
            compiled_update._init_adam_state(optimizer, p)
        states = [{k: v.clone() for k, v in optimizer.state[p].items()} for p in params]
        hp = compiled_update._AdamHyperparameters(optimizer)
        for step in range(1, 4):
            grads = [th.randn_like(p) for p in params]
            for p, g in zip(params, grads):
                p.grad = g.clone()
            optimizer.step()
            t = float(step)
            coefficients = th.tensor([1e-2, 1e-2 / (1 - hp.beta1**t), (1 - hp.beta2**t) ** -0.5])
            compiled_update.adam_step(ours, grads, states, coefficients, hp, th.tensor(True))
            for p, q in zip(params, ours):
                th.testing.assert_close(q, p.detach(), rtol=1e-6, atol=1e-7)
        frozen = [p.clone() for p in ours], [{k: v.clone() for k, v in s.items()} for s in states]
        grads = [th.full_like(p, float("nan")) for p in ours]
        compiled_update.adam_step(ours, grads, states, th.tensor([1e-2, 1.0, 1.0]), hp, th.tensor(False))
        assert all(th.equal(a, b) for a, b in zip(frozen[0], ours))
        assert all(th.equal(a[k], b[k]) for a, b in zip(frozen[1], states) for k in a)


class _BranchingExtractor(FlattenExtractor):
    """A features extractor with a data-dependent Python branch: dynamo cannot trace it as one graph."""

    def forward(self, observations: th.Tensor) -> th.Tensor:
        flat = super().forward(observations)
        if bool(flat.sum() > 1e9):
            return flat * 2
        return flat


def test_untraceable_policy_falls_back_to_eager_with_one_warning() -> None:
    kwargs = dict(seed=0, precision="fp32", learning_starts=50)
    policy_kwargs = dict(net_arch=[16, 16], features_extractor_class=_BranchingExtractor)
    eager = tiny_model(SAC, compile=False, policy_kwargs=policy_kwargs, **kwargs).learn(120)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallback = tiny_model(SAC, compile=True, policy_kwargs=policy_kwargs, **kwargs).learn(120)
    messages = [str(w.message) for w in caught if "compiled update is not used" in str(w.message)]
    assert len(messages) == 1 and "compilation failed" in messages[0], messages
    assert fallback._compiled_update is None and fallback._eager_only
    # Training went on eagerly, exactly as compile=False (the probe of the build draws no random numbers of the run)
    for p_eager, p_fallback in zip(eager.policy.parameters(), fallback.policy.parameters()):
        assert th.equal(p_eager, p_fallback)


def test_settings_without_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # No C++ compiler: compile=True warns once and trains eagerly; "auto" trains eagerly without a word
    monkeypatch.setattr(compiled_update.shutil, "which", lambda name: None)
    with pytest.warns(UserWarning, match="no C\\+\\+ compiler"):
        model = tiny_model(SAC, compile=True, learning_starts=20).learn(60)
    assert model._eager_only and model._compiled_update is None
    model = tiny_model(SAC, compile="auto", learning_starts=20)
    model._planned_updates = AUTO_COMPILE_MIN_UPDATES
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.learn(60, reset_num_timesteps=False)
    monkeypatch.undo()
    # Each setting without a fast path is named
    assert "gSDE" in compiled_update.unsupported_reason(tiny_model(SAC, use_sde=True))
    sgd = tiny_model(SAC, policy_kwargs=dict(net_arch=[8], optimizer_class=th.optim.SGD))
    assert "SGD" in compiled_update.unsupported_reason(sgd)
    recurrent = dict(net_arch=[8], lstm_hidden_size=8)
    assert compiled_update.unsupported_reason(tiny_model(DiscreteSAC, policy="MlpLstmPolicy", policy_kwargs=recurrent)) is None
    shared = tiny_model(SAC, policy="MlpLstmPolicy", policy_kwargs=dict(**recurrent, shared_lstm=True))
    assert "shared_lstm" in compiled_update.unsupported_reason(shared)
    episodes = tiny_model(SAC, policy="MlpLstmPolicy", policy_kwargs=dict(**recurrent, sequence_length=None))
    assert "whole-episode" in compiled_update.unsupported_reason(episodes)
    assert compiled_update.unsupported_reason(tiny_model(SAC)) is None


def test_auto_compiles_long_runs_only() -> None:
    model = tiny_model(SAC, compile="auto", learning_starts=50)
    model.learn(120)
    assert model._compiled_update is None and not model._eager_only
    # What learn(20_000) plans with the defaults: one update per env step after learning_starts
    model = SAC("MlpPolicy", "Pendulum-v1", compile="auto")
    _, _ = model._setup_learn(20_000)
    assert model._planned_updates == 20_000 - 100 >= AUTO_COMPILE_MIN_UPDATES
    model = SAC("MlpPolicy", "Pendulum-v1", train_freq=4, gradient_steps=2)
    model._setup_learn(20_100)
    assert model._planned_updates == 20_000 // 4 * 2
    for value in ("yes", 1.5, None):
        with pytest.raises(InvalidHyperparameterError, match="compile must be"):
            SAC("MlpPolicy", "Pendulum-v1", compile=value)
    assert np.isfinite(AUTO_COMPILE_MIN_UPDATES)
    # Recurrent policies compile for longer runs only (their program takes minutes to compile)
    recurrent = tiny_model(SAC, policy="MlpLstmPolicy", compile="auto", policy_kwargs=dict(net_arch=[8], lstm_hidden_size=8))
    recurrent._planned_updates = AUTO_COMPILE_MIN_UPDATES
    assert not compiled_update._wants_compiled_update(recurrent)
    recurrent._planned_updates = compiled_update.AUTO_COMPILE_MIN_UPDATES_RECURRENT
    assert compiled_update._wants_compiled_update(recurrent)


def test_several_gradient_steps_sample_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the compiled update, gradient_steps=G samples G * batch_size transitions in one call, then slices them."""
    model = tiny_model(SAC, compile=True, learning_starts=10_000, batch_size=16, seed=0)
    model.learn(100)
    model._compiled_update = CompiledUpdate.build(model, model._batches.sample(model, 16, True), compiler=lambda fn: fn)
    calls = []
    sample = model.replay_buffer.sample
    monkeypatch.setattr(model.replay_buffer, "sample", lambda n, env=None: calls.append(n) or sample(n, env))
    seen = []
    program = model._compiled_update._program
    model._compiled_update._program = lambda params, states, coef, batch, *rest: (
        seen.append(batch) or program(params, states, coef, batch, *rest)
    )
    model.train(gradient_steps=3, batch_size=16)
    assert calls == [48] and len(seen) == 3
    assert all(batch.rewards.shape == (16, 1) for batch in seen)
    assert seen[0].actor_obs is seen[0].critic_obs  # shared tensors stay shared
    assert not th.equal(seen[0].rewards, seen[1].rewards)
    assert model._n_updates == 3


def test_set_params_compile_false_returns_to_the_eager_update() -> None:
    model = tiny_model(SAC, compile=True, learning_starts=10_000, seed=0)
    model.learn(100)
    model._compiled_update = CompiledUpdate.build(model, model._batches.sample(model, 64, True), compiler=lambda fn: fn)
    weights = next(model.actor.parameters())
    model.train(gradient_steps=1, batch_size=64)
    assert model._compiled_update.calls == 1
    assert model.set_params(compile=False) is model and next(model.actor.parameters()) is weights  # kept, not rebuilt
    model.train(gradient_steps=1, batch_size=64)
    assert model._compiled_update is None
    assert not any(module.feature_major for module in model.policy.modules() if isinstance(module, EnsembleMLP))


def test_checkpoint_of_a_model_with_a_compiled_program(tmp_path: Path) -> None:
    """A checkpoint (and save) leaves the compiled program out; the loaded model builds its own and trains on."""
    model = tiny_model(SAC, compile=True, learning_starts=10_000, seed=0)
    model.learn(100)
    model._compiled_update = CompiledUpdate.build(model, model._batches.sample(model, 64, True), compiler=lambda fn: fn)
    model.train(gradient_steps=1, batch_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # left out on purpose, not skipped with a warning as data that cannot be stored
        folder = persistence.save_checkpoint(model, tmp_path / "ckpt")
        model.save(tmp_path / "model.zip")
    assert model._compiled_update is not None and model._compiled_update.calls == 1  # the saved model keeps its own
    resumed = persistence.load_checkpoint(folder)
    for loaded in (resumed, SAC.load(tmp_path / "model.zip")):
        assert loaded._compiled_update is None and loaded.compile is True
        for (name, p_saved), p_loaded in zip(model.policy.named_parameters(), loaded.policy.parameters()):
            assert th.equal(p_saved, p_loaded), name
    batch = resumed._batches.sample(resumed, 64, True)
    resumed._compiled_update = CompiledUpdate.build(resumed, batch, compiler=lambda fn: fn)
    resumed.set_logger(Logger(None, []))
    resumed.train(gradient_steps=1, batch_size=64)
    assert resumed._compiled_update.calls == 1 and resumed._n_updates == model._n_updates + 1


# ------------------------------------------------------------------------------------------------ recurrent policies

RECURRENT_ENVS = {SAC: "Pendulum-v1", DiscreteSAC: "CartPole-v1"}


def _recurrent_twins(model_class: type, max_grad_norm: float | None = None, **policy_kwargs: Any) -> tuple[Any, Any, Any]:
    """An eager and a compiled recurrent model with the same weights and replay data (episodes of 12 steps)."""
    models = []
    for compile in (False, True):
        env = make_vec_env(RECURRENT_ENVS[model_class], n_envs=2, env_kwargs=dict(max_episode_steps=12), seed=0)
        kwargs = dict(net_arch=[16, 16], lstm_hidden_size=8, sequence_length=4, burn_in=2, **policy_kwargs)
        model = model_class(
            "MlpLstmPolicy", env, buffer_size=600, learning_starts=10_000, batch_size=32, seed=0, compile=compile,
            policy_kwargs=kwargs, max_grad_norm=max_grad_norm,
        )  # fmt: skip
        model.learn(150)
        models.append(model)
    eager, fast = models
    return eager, fast, eager._batches.sample(eager, eager.batch_size, True)


@pytest.mark.parametrize("model_class", MODEL_LIST)
@pytest.mark.parametrize(("rnn_type", "n_lstm_layers", "max_grad_norm"), [("lstm", 1, None), ("gru", 2, 0.05)])
def test_recurrent_compiled_program_matches_eager(
    model_class: type, rnn_type: str, n_lstm_layers: int, max_grad_norm: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recurrent program (unrolls inside the losses, RNN cell loops; run without compiling) against the eager update."""
    eager, fast, batch = _recurrent_twins(model_class, max_grad_norm, rnn_type=rnn_type, n_lstm_layers=n_lstm_layers)
    assert int(batch.mask.sum()) < batch.mask.numel()  # burn-in and padding steps are left out
    for model in (eager, fast):
        model._batches.sample = lambda *args, **kw: batch
    fast._compiled_update = CompiledUpdate.build(fast, batch, compiler=lambda fn: fn)
    unrolled, cell_loops = RNNBlock.unrolled, []

    def counted(self: RNNBlock, *args: Any) -> Any:
        cell_loops.append(self)
        return unrolled(self, *args)

    monkeypatch.setattr(RNNBlock, "unrolled", counted)
    rnn_before = [p.detach().clone() for p in fast.actor.rnn.parameters()]
    for step_eager, step_fast in _step_both(eager, fast, STEPS):
        assert step_fast.keys() == step_eager.keys()
        assert "train/critic_rnn_grad_norm" in step_fast and "train/actor_rnn_grad_norm" in step_fast
        for key in step_eager:
            assert step_fast[key] == pytest.approx(step_eager[key], rel=1e-5, abs=1e-6), key
    assert fast._compiled_update.calls == STEPS
    _assert_close_models(eager, fast, rtol=1e-5, atol=1e-6)
    # The gradient reached the RNN weights
    assert not all(th.equal(a, b) for a, b in zip(fast.actor.rnn.parameters(), rnn_before))
    # The program ran the cell loops (the actor twice: without gradient for the target, with it for its loss); acting
    # and the eager update keep the fused RNN kernels
    assert len(cell_loops) == STEPS * 4
    assert not any(module.cell_loop for module in fast.policy.modules() if isinstance(module, RNNBlock))


def test_recurrent_fixed_length_batches_read_the_same_latents() -> None:
    """Padding the sequences (repeating the last observation) and indexing the kept steps changes no latent."""
    eager, _, _ = _recurrent_twins(SAC)
    buffer = eager.replay_buffer
    env_of, start_of, _ = buffer.segments()
    data = buffer.get_windows(env_of[:3], start_of[:3], np.array([0, 1, 2]), np.array([3, 2, 1]))
    batch = eager._batches.sample(eager, 32, True)._replace(observations=data.observations, mask=data.mask)
    assert batch.mask.shape[1] == 3
    for network in (eager.actor, eager.critic):
        expected = unroll_current_next(network, data.observations, data.mask)
        fixed = fixed_length(batch, 6)
        assert fixed.mask.shape == (3, 6) and fixed.observations.shape[1] == 7
        for got, want in zip(masked_latents(network, fixed), expected):
            th.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_recurrent_compiled_update_one_program_for_every_batch_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    compile=True on a recurrent policy: compiled for real once, for batches that keep different numbers of steps.
    Slow (``-m slow``): the cold compilation of the unrolled RNN loops takes 1.5-3.5 minutes on a small CPU; the
    program's math is checked against eager in the default suite without compiling it.
    """
    monkeypatch.setattr(inductor_config, "fallback_random", True)
    eager, fast, batch = _recurrent_twins(SAC)
    short = batch._replace(
        mask=batch.mask & (th.arange(batch.mask.shape[1]) < batch.mask.shape[1] - 1),
    )
    keep = short.mask[batch.mask]
    short = short._replace(actions=batch.actions[keep], rewards=batch.rewards[keep], dones=batch.dones[keep])
    th._dynamo.reset()
    th._dynamo.utils.counters.clear()
    for step, data in enumerate((batch, short, batch)):
        for model in (eager, fast):
            model._batches.sample = lambda *args, data=data, **kw: data
            th.manual_seed(step)
            model.train(gradient_steps=1, batch_size=32)
    assert fast._compiled_update is not None and fast._compiled_update.calls == 3
    assert th._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    _assert_close_models(eager, fast, rtol=1e-4, atol=1e-5)
