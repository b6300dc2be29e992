"""What our algorithms add to SB3's SAC: per-network learning rates, temperature, clipping, policy delay, target updates."""

import csv
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.envs import IdentityEnv
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from torch.nn import functional as F

from _helpers import MODEL_LIST, assert_state_dicts_equal, changed, clone_params, make_env, tiny_model, tiny_sac
from sb3_sac_ext import SAC, DiscreteSAC
from sb3_sac_ext.common.schedules import CosineDecay, ExponentialDecay, LinearDecay


def read_csv_log(folder: Path) -> list[dict[str, str]]:
    with open(folder / "progress.csv", newline="") as file:
        return list(csv.DictReader(file))


def short_episode_env(length: int = 25) -> gym.Env:
    return gym.make("Pendulum-v1", max_episode_steps=length)


# ----------------------------------------------------------------------------- learning rates

LR_CASES = {
    "float": (1e-3, 5e-4, 2e-3),
    "callable": (lambda p: 1e-3 * p, lambda p: 2e-4 + 1e-4 * p, lambda p: 3e-3 * p**2),
    "zoo_string": ("lin_3e-4", "lin_1e-3", "lin_2e-3"),
    "schedules": (LinearDecay(1e-3, 1e-4), ExponentialDecay(1e-3, 1e-5), CosineDecay(2e-3, 2e-4)),
    "ext_strings": ("lin_1e-3_1e-4", "exp_1e-3_1e-5", "cos_2e-3_2e-4"),
}


@pytest.mark.parametrize("case", sorted(LR_CASES))
def test_per_network_learning_rates(tmp_path, case):
    actor_lr, critic_lr, ent_coef_lr = LR_CASES[case]
    model = tiny_sac(
        short_episode_env(),
        learning_rate=actor_lr,
        qf_learning_rate=critic_lr,
        ent_coef_learning_rate=ent_coef_lr,
        learning_starts=30,
        seed=0,
    )
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(100, log_interval=1)
    model.dump_logs()
    schedules = {"actor": actor_lr, "critic": critic_lr, "ent_coef": ent_coef_lr}

    def expected(name: str, progress: float) -> float:
        value = schedules[name]
        if isinstance(value, str):  # the strings of this test are linear decays or their named variants
            return model.lr_schedules[name](progress)
        return value(progress) if callable(value) else value

    # After learning: each optimizer's rate is its own schedule at the progress of the last update
    progress = model._current_progress_remaining
    rows = read_csv_log(tmp_path)
    last = rows[-1]
    for name, optimizer in model.optimizers.items():
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected(name, progress), rel=1e-9, abs=1e-15)
        assert float(last[f"train/{name}_learning_rate"]) == pytest.approx(expected(name, progress), rel=1e-6, abs=1e-12)
    assert float(last["train/learning_rate"]) == pytest.approx(expected("actor", progress), rel=1e-6, abs=1e-12)

    # Mid-training: set the progress by hand and do one update
    model._current_progress_remaining = 0.5
    model.train(gradient_steps=1, batch_size=32)
    rates = {name: optimizer.param_groups[0]["lr"] for name, optimizer in model.optimizers.items()}
    for name, rate in rates.items():
        assert rate == pytest.approx(expected(name, 0.5), rel=1e-9)
    # The three rates are really distinct schedules
    assert len({round(rate, 12) for rate in rates.values()}) == 3


def test_zoo_string_values():
    model = tiny_sac(learning_rate="lin_3e-4", qf_learning_rate="lin_1e-3", ent_coef_learning_rate=None)
    assert model.lr_schedules["actor"](1.0) == pytest.approx(3e-4)
    assert model.lr_schedules["actor"](0.5) == pytest.approx(1.5e-4)
    assert model.lr_schedules["actor"](0.0) == 0.0
    assert model.lr_schedules["critic"](0.25) == pytest.approx(2.5e-4)
    # None falls back to learning_rate
    assert model.lr_schedules["ent_coef"] == model.lr_schedules["actor"] == LinearDecay(3e-4)
    # The optimizers start at the initial rate of their own schedule
    assert model.critic.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert model.actor.optimizer.param_groups[0]["lr"] == pytest.approx(3e-4)


def test_assigning_lr_schedule_sets_the_networks_that_follow_it():
    # SB3 code (and SB3's own tests) freeze learning with ``model.lr_schedule = lambda _: 0.0``
    model = tiny_sac(learning_starts=30, qf_learning_rate=1e-3, seed=0)
    model.learn(40)
    model.lr_schedule = lambda _: 0.0
    actor = {k: v.clone() for k, v in model.actor.state_dict().items()}
    model.train(gradient_steps=1, batch_size=32)
    # The actor and the temperature follow learning_rate; the critics have their own schedule
    assert model.actor.optimizer.param_groups[0]["lr"] == 0.0 and model.ent_coef_optimizer.param_groups[0]["lr"] == 0.0
    assert model.critic.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert all(th.equal(actor[k], v) for k, v in model.actor.state_dict().items())


# ----------------------------------------------------------------------------- temperature


def test_ent_coef_auto_is_learned():
    model = tiny_sac(ent_coef="auto", seed=0)
    assert model.log_ent_coef is not None
    assert float(model.log_ent_coef.detach().exp()) == pytest.approx(1.0)
    before = model.log_ent_coef.detach().clone()
    model.learn(120)
    assert not th.equal(before, model.log_ent_coef.detach())
    # Entropy of a fresh policy is far above the target -1: alpha decreases
    assert float(model.log_ent_coef.detach().exp()) < 1.0
    assert float(model.temperature.value) == pytest.approx(float(model.log_ent_coef.detach().exp()))


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_ent_coef_auto_initial_value(model_class):
    model = tiny_model(model_class, ent_coef="auto_0.1", seed=0)
    assert float(model.temperature.value) == pytest.approx(0.1)
    assert float(model.log_ent_coef.detach()) == pytest.approx(np.log(0.1))


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_ent_coef_fixed_stays(tmp_path, model_class):
    model = tiny_model(model_class, make_env(model_class, max_episode_steps=25), ent_coef=0.05, learning_starts=30, seed=0)
    assert model.ent_coef_optimizer is None
    assert "ent_coef" not in model.optimizers
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(80, log_interval=1)
    model.dump_logs()
    assert float(model.temperature.value) == pytest.approx(0.05)
    rows = [row for row in read_csv_log(tmp_path) if row.get("train/ent_coef")]
    assert rows and all(float(row["train/ent_coef"]) == pytest.approx(0.05) for row in rows)
    assert all(not row.get("train/ent_coef_loss") for row in rows)


def test_target_entropy_float_is_used():
    model = tiny_sac(target_entropy=-3.5, seed=0)
    assert model.target_entropy == -3.5
    assert model.temperature.target_entropy == -3.5
    # loss = -log(alpha) * (log_prob + target_entropy), averaged
    log_prob = th.tensor([[1.0], [2.0]])
    with th.no_grad():
        model.log_ent_coef.fill_(np.log(2.0))
    expected = -np.log(2.0) * ((1.0 - 3.5) + (2.0 - 3.5)) / 2
    assert float(model.temperature.loss(log_prob).detach()) == pytest.approx(expected)
    # and the default is -dim(action space)
    assert tiny_sac().target_entropy == -1.0


# ----------------------------------------------------------------------------- gradient clipping, policy delay


def _filled(model_class: type = SAC, **kwargs):
    """A model with a filled replay buffer and no update yet."""
    model = tiny_model(model_class, learning_starts=100, **kwargs)
    model.learn(100)
    assert model._n_updates == 0
    return model


def _grad_norm(module: th.nn.Module) -> float:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    assert grads, "no gradient found"
    return float(th.linalg.vector_norm(th.stack([th.linalg.vector_norm(g) for g in grads])))


def _record_optimizer_steps(model) -> list[str]:
    """Spy on the one optimizer-step hook: the names of the losses stepped, in order."""
    steps: list[str] = []
    original = model._optimizer_steps

    def spy(pairs):
        steps.extend(name for name, _ in pairs)
        original(pairs)

    model._optimizer_steps = spy
    return steps


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_max_grad_norm_clips(tmp_path, model_class):
    max_norm = 1e-3
    model = _filled(model_class, max_grad_norm=max_norm, seed=0)
    actor_before = clone_params(model.actor)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.train(gradient_steps=1, batch_size=64)
    # Gradients after clipping (left in .grad after the step)
    assert _grad_norm(model.critic) <= max_norm * (1 + 1e-4)
    assert _grad_norm(model.actor) <= max_norm * (1 + 1e-4)
    # Adam normalises the step: clipped gradients still move the weights
    assert changed(actor_before, model.actor)
    model.dump_logs()
    row = read_csv_log(tmp_path)[-1]
    # Logged norms are before clipping: clipping was active
    assert float(row["train/critic_grad_norm"]) > max_norm
    assert float(row["train/actor_grad_norm"]) > max_norm

    # Without max_grad_norm the same first step has a much larger gradient (nothing is clipped)
    unclipped = _filled(model_class, seed=0)
    unclipped.train(gradient_steps=1, batch_size=64)
    assert _grad_norm(unclipped.critic) > max_norm * 10


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_no_grad_norm_logged_without_clipping(tmp_path, model_class):
    model = _filled(model_class, seed=0)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.train(gradient_steps=1, batch_size=64)
    model.dump_logs()
    row = read_csv_log(tmp_path)[-1]
    assert "train/critic_grad_norm" not in row


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_policy_delay(model_class):
    model = _filled(model_class, policy_delay=2, seed=0)
    steps = _record_optimizer_steps(model)
    changes = []
    for _ in range(4):
        actor_before, critic_before = clone_params(model.actor), clone_params(model.critic)
        alpha_before = model.log_ent_coef.detach().clone()
        model.train(gradient_steps=1, batch_size=64)
        alpha_changed = not th.equal(alpha_before, model.log_ent_coef.detach())
        changes.append((changed(actor_before, model.actor), changed(critic_before, model.critic), alpha_changed))
    # Updates 0 and 2 train the actor and the temperature; the critic learns at every update
    assert changes == [(True, True, True), (False, True, False), (True, True, True), (False, True, False)]
    assert steps == ["critic", "actor", "ent_coef", "critic", "critic", "actor", "ent_coef", "critic"]
    assert model._n_updates == 4


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_policy_delay_counts_across_calls_and_gradient_steps(model_class):
    model = _filled(model_class, policy_delay=3, seed=0)
    actor_steps = []
    original = model._optimizer_steps

    def spy(steps):
        if any(name == "actor" for name, _ in steps):
            actor_steps.append(model._n_updates)
        original(steps)

    model._optimizer_steps = spy
    model.train(gradient_steps=4, batch_size=32)
    model.train(gradient_steps=3, batch_size=32)
    # Update indices 0..6: the actor trains at 0, 3 and 6 (_n_updates is the count at the start of each call)
    assert actor_steps == [0, 0, 4]


# ----------------------------------------------------------------------------- target updates


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_hard_target_update_interval(model_class):
    # tau=1 copies the critic into the target at every target update
    model = _filled(model_class, tau=1.0, target_update_interval=3, seed=0)

    def target_equals_critic() -> bool:
        return all(th.equal(a, b) for a, b in zip(model.critic.parameters(), model.critic_target.parameters(), strict=True))

    assert target_equals_critic()
    target_before = clone_params(model.critic_target)
    model.train(gradient_steps=2, batch_size=64)
    # No target update yet: the target still holds the initial critic
    assert not changed(target_before, model.critic_target)
    assert not target_equals_critic()
    # The interval is counted over the whole run, across train() calls: the 3rd update copies the weights
    model.train(gradient_steps=1, batch_size=64)
    assert_state_dicts_equal(model.critic.state_dict(), model.critic_target.state_dict(), "critic_target")
    assert changed(target_before, model.critic_target)
    model.train(gradient_steps=1, batch_size=64)
    assert not target_equals_critic()


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_soft_target_update_is_polyak(model_class):
    model = _filled(model_class, tau=0.1, seed=0)
    critic_before = clone_params(model.critic)
    target_before = clone_params(model.critic_target)
    model.train(gradient_steps=1, batch_size=64)
    for key, value in model.critic_target.state_dict().items():
        expected = th.lerp(target_before[key], model.critic.state_dict()[key], 0.1)
        assert th.allclose(value, expected, atol=1e-7), key
    # and the critic itself moved
    assert changed(critic_before, model.critic)


# ----------------------------------------------------------------------------- objective


def _deterministic_actor(model: SAC):
    """Replace the sampling by tanh(mean) with log_prob = sum(log_std): the losses become deterministic."""

    def action_log_prob(obs):
        mean, log_std, _ = model.actor.get_action_dist_params(obs)
        return th.tanh(mean), log_std.sum(dim=-1)

    model.actor.action_log_prob = action_log_prob
    return action_log_prob


@pytest.mark.parametrize("objective", ["maximize", "minimize"])
def test_objective_losses_by_hand(objective):
    model = _filled(objective=objective, ent_coef=0.2, gamma=0.9, precision="fp32", seed=0)
    batch = model.replay_buffer.sample(32)
    model.replay_buffer.sample = lambda *args, **kwargs: batch
    action_log_prob = _deterministic_actor(model)
    critic = {k: v.clone() for k, v in model.critic.state_dict().items()}
    losses = {}
    critic_at_actor_step = {}
    original = model._optimizer_steps

    def spy(steps):
        for name, loss in steps:
            losses[name] = float(loss.detach())
            if name == "actor":
                critic_at_actor_step.update({k: v.clone() for k, v in model.critic.state_dict().items()})
        original(steps)

    model._optimizer_steps = spy
    target = {k: v.clone() for k, v in model.critic_target.state_dict().items()}
    actor_state = {k: v.clone() for k, v in model.actor.state_dict().items()}
    model.train(gradient_steps=1, batch_size=32)

    # Recompute with copies of the networks as they were at each step (the actor only changes after the critic)
    reference = tiny_sac(objective=objective, precision="fp32", seed=1)
    reference.actor.load_state_dict(actor_state)
    reference.critic.load_state_dict(critic)
    reference.critic_target.load_state_dict(target)
    ref_action_log_prob = _deterministic_actor(reference)
    alpha = 0.2
    with th.no_grad():
        next_actions, next_log_prob = ref_action_log_prob(batch.next_observations)
        next_q = th.cat(reference.critic_target(batch.next_observations, next_actions), dim=1)  # (B, n_critics)
        pessimistic_max = next_q.max(dim=1, keepdim=True).values + alpha * next_log_prob.unsqueeze(-1)
        pessimistic_min = next_q.min(dim=1, keepdim=True).values - alpha * next_log_prob.unsqueeze(-1)
        targets = {
            kind: batch.rewards + (1 - batch.dones) * 0.9 * v
            for kind, v in (("max", pessimistic_max), ("min", pessimistic_min))
        }
        current = reference.critic(batch.observations, batch.actions)
        critic_losses = {kind: 0.5 * sum(F.mse_loss(q, t) for q in current) for kind, t in targets.items()}
    kind = "max" if objective == "minimize" else "min"
    other = "min" if kind == "max" else "max"
    assert losses["critic"] == pytest.approx(float(critic_losses[kind]), rel=1e-5)
    assert losses["critic"] != pytest.approx(float(critic_losses[other]), rel=1e-3)

    reference.critic.load_state_dict(critic_at_actor_step)
    with th.no_grad():
        actions_pi, log_prob = ref_action_log_prob(batch.observations)
        q_pi = th.cat(reference.critic(batch.observations, actions_pi), dim=1)
        log_prob = log_prob.unsqueeze(-1)
        if objective == "minimize":
            expected_actor = (q_pi.max(dim=1, keepdim=True).values + alpha * log_prob).mean()
        else:
            expected_actor = (alpha * log_prob - q_pi.min(dim=1, keepdim=True).values).mean()
    assert losses["actor"] == pytest.approx(float(expected_actor), rel=1e-5)
    assert action_log_prob is model.actor.action_log_prob


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_objective_minimize_trains(model_class):
    model = tiny_model(model_class, objective="minimize", seed=0)
    actor_before = clone_params(model.actor)
    model.learn(120)
    assert changed(actor_before, model.actor)
    if model_class is SAC:
        assert not th.equal(actor_before["mu.weight"], model.actor.mu.weight)
    for tensor in model.policy.state_dict().values():
        assert th.isfinite(tensor).all()


def test_discrete_minimize_learns_to_avoid_costs():
    # Costs = rewards of IdentityEnv: minimising them means never matching the state
    env = IdentityEnv(4)
    model = DiscreteSAC(
        "MlpPolicy", env, objective="minimize", learning_rate=3e-3, learning_starts=100, buffer_size=1000,
        batch_size=64, gamma=0.5, target_entropy_scale=0.3, policy_kwargs=dict(net_arch=[32]), seed=0,
    )  # fmt: skip
    model.learn(600)
    mean_cost, _ = evaluate_policy(model, env, n_eval_episodes=5, warn=False)
    assert mean_cost <= 10


# ----------------------------------------------------------------------------- logging


def test_logger_keys(tmp_path):
    model = tiny_sac(short_episode_env(), learning_starts=30, max_grad_norm=10.0, seed=0)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(100, log_interval=1)
    rows = read_csv_log(tmp_path)
    keys = set(rows[-1])
    for key in (
        "train/actor_loss",
        "train/critic_loss",
        "train/ent_coef",
        "train/ent_coef_loss",
        "train/actor_learning_rate",
        "train/critic_learning_rate",
        "train/ent_coef_learning_rate",
        "train/learning_rate",
        "train/n_updates",
        "train/critic_grad_norm",
        "rollout/ep_rew_mean",
        "time/total_timesteps",
    ):
        assert key in keys, key
    last = rows[-1]
    assert float(last["train/critic_loss"]) > 0
    assert np.isfinite(float(last["train/actor_loss"]))
    assert float(last["train/ent_coef"]) == pytest.approx(float(model.log_ent_coef.detach().exp()), rel=0.05)
    # One dump per episode (log_interval=1, 25-step episodes)
    assert [int(row["time/total_timesteps"]) for row in rows] == [25, 50, 75, 100]


def test_tensorboard(tmp_path):
    model = tiny_sac(short_episode_env(), learning_starts=30, tensorboard_log=str(tmp_path), seed=0)
    model.learn(60, log_interval=1, tb_log_name="run")
    event_files = list((tmp_path / "run_1").glob("events.out.tfevents.*"))
    assert len(event_files) == 1 and event_files[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(event_files[0]))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/critic_loss", "train/actor_loss", "train/critic_learning_rate", "train/ent_coef"} <= scalars
    # A second learn() call continues in a new run folder
    model.learn(30, log_interval=1, tb_log_name="run")
    assert (tmp_path / "run_2").is_dir()
