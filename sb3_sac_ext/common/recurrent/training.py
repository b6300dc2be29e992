"""
The recurrent path of SAC and DiscreteSAC (issue 8): setup checks, rollout collection carrying the actor's RNN
state per env, and the updates on windows of :class:`~sb3_sac_ext.common.recurrent.buffers.RecurrentReplayBuffer`.

Each update unrolls every network (actor, critic, target critic) once over ``[obs[t0], next_obs[t0..t0+T)]`` from a
zero state and reads the current (step ``k``) and next (step ``k + 1``) outputs of each transition from that one
unroll; then it keeps the masked steps (not burn-in, not padding) and applies the same loss code as the
feed-forward path on those ``B`` transitions. The functions take the algorithm as ``model``: every optimizer step
goes through ``model._optimizer_step``.
"""

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from torch.nn import functional as F

from sb3_sac_ext.common.errors import InvalidHyperparameterError
from sb3_sac_ext.common.recurrent.buffers import RecurrentDictReplayBuffer, RecurrentReplayBuffer
from sb3_sac_ext.common.recurrent.policies import unroll_current_next


def configure_recurrent(model: Any) -> None:
    """
    Check the settings a recurrent policy does not support (typed errors) and select the sequence replay buffer.
    Called by the algorithms' ``_setup_model`` before SB3 builds the buffer.
    """
    from stable_baselines3.her.her_replay_buffer import HerReplayBuffer

    if getattr(model, "use_sde", False):
        raise InvalidHyperparameterError("use_sde=True is not supported with recurrent policies; use use_sde=False")
    if model.n_steps > 1:
        raise InvalidHyperparameterError("n_steps > 1 is not supported with recurrent policies; use n_steps=1")
    buffer_class = model.replay_buffer_class
    if buffer_class is not None and issubclass(buffer_class, HerReplayBuffer):
        raise InvalidHyperparameterError("HerReplayBuffer is not supported with recurrent policies")
    if model.optimize_memory_usage:
        raise InvalidHyperparameterError(
            "optimize_memory_usage=True is not supported with recurrent policies (the sequences need each episode's "
            "terminal observation); use optimize_memory_usage=False"
        )
    wanted = RecurrentDictReplayBuffer if isinstance(model.observation_space, spaces.Dict) else RecurrentReplayBuffer
    if buffer_class is None:
        model.replay_buffer_class = wanted
    elif not issubclass(buffer_class, (RecurrentReplayBuffer, RecurrentDictReplayBuffer)):
        raise InvalidHyperparameterError(
            f"Recurrent policies need a sequence replay buffer ({wanted.__name__}), got {buffer_class.__name__}"
        )
    policy_kwargs = model.policy_kwargs or {}
    model.replay_buffer_kwargs = {
        **(model.replay_buffer_kwargs or {}),
        "sequence_length": policy_kwargs.get("sequence_length", 16),
        "burn_in": policy_kwargs.get("burn_in", 0),
    }
    model._last_lstm_states = None


def reset_states(model: Any, env_mask: np.ndarray | None = None) -> None:
    """Start new episodes (for the RNN state and for the buffer's segments) in the given envs (all when ``None``)."""
    n_envs = model.n_envs
    mask = np.ones(n_envs, dtype=bool) if env_mask is None else np.asarray(env_mask, dtype=bool)
    starts = getattr(model, "_last_episode_starts", None)
    if starts is None or np.shape(starts) != (n_envs,):
        starts = np.ones(n_envs, dtype=bool)
    model._last_episode_starts = np.asarray(starts, dtype=bool) | mask
    buffer = getattr(model, "replay_buffer", None)
    if buffer is not None and hasattr(buffer, "mark_episode_starts"):
        buffer.mark_episode_starts(mask)


def sample_action(
    model: Any, learning_starts: int, action_noise: Any = None, n_envs: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """
    SB3's ``OffPolicyAlgorithm._sample_action`` for recurrent policies: the actor's RNN state is carried per env
    (``model._last_lstm_states``, reset where ``model._last_episode_starts``), also during the warm-up (random
    actions), so that the state is right when the policy takes over.
    """
    policy_action, model._last_lstm_states = model.policy.predict(
        model._last_obs, model._last_lstm_states, model._last_episode_starts, deterministic=False
    )
    if model.num_timesteps < learning_starts:
        unscaled_action = np.array([model.action_space.sample() for _ in range(n_envs)])
    else:
        unscaled_action = policy_action
    if isinstance(model.action_space, spaces.Box):
        scaled_action = model.policy.scale_action(unscaled_action)
        if action_noise is not None:
            scaled_action = np.clip(scaled_action + action_noise(), -1, 1)
        buffer_action = scaled_action
        action = model.policy.unscale_action(scaled_action)
    else:
        buffer_action = unscaled_action
        action = buffer_action
    return action, buffer_action


def before_store(model: Any, replay_buffer: Any) -> None:
    """Pass the episode-start flags of the transitions about to be stored to the buffer."""
    replay_buffer.mark_episode_starts(model._last_episode_starts)


def after_store(model: Any, dones: np.ndarray, infos: list[dict[str, Any]]) -> None:
    """SB3's off-policy code never updates ``_last_episode_starts``: the next observation starts an episode where done."""
    model._last_episode_starts = np.asarray(dones, dtype=bool).copy()


def rnn_grad_norm(network: Any) -> th.Tensor | None:
    """Global norm of the gradients of ``network.rnn`` (after clipping), ``None`` when it has none."""
    grads = [p.grad for p in network.rnn.parameters() if p.grad is not None]
    if not grads:
        return None
    return th.linalg.vector_norm(th.stack(th._foreach_norm(grads)))


def _log_rnn_grad(logs: dict[str, list[th.Tensor]], key: str, network: Any) -> None:
    if not getattr(network, "shares_rnn", False):
        norm = rnn_grad_norm(network)
        if norm is not None:
            logs[key].append(norm.detach())


def _new_logs() -> dict[str, list[th.Tensor]]:
    keys = ("critic_loss", "actor_loss", "ent_coef", "ent_coef_loss", "actor_rnn_grad_norm", "critic_rnn_grad_norm")
    return {key: [] for key in keys}


def _actor_and_temperature_step(
    model: Any, actor_loss: th.Tensor, ent_coef_loss: th.Tensor | None, logs: dict[str, list[th.Tensor]]
) -> None:
    """The actor's step, then the temperature's (alpha was read before both): one all-reduce for the two."""
    steps = [("actor", actor_loss)]
    if ent_coef_loss is not None:
        steps.append(("ent_coef", ent_coef_loss))
        logs["ent_coef_loss"].append(ent_coef_loss)
    model._optimizer_steps(steps)


def _finish(model: Any, gradient_steps: int, logs: dict[str, list[th.Tensor]]) -> None:
    model._n_updates += gradient_steps
    model.logger.record("train/n_updates", model._n_updates, exclude="tensorboard")
    model._record_train_logs({f"train/{key}": values for key, values in logs.items()})


def train_sac(model: Any, gradient_steps: int, batch_size: int) -> None:
    """Recurrent SAC update (``batch_size`` counts transitions). Same losses as ``SAC.train`` on the masked steps."""
    model.policy.set_training_mode(True)
    model._update_learning_rates()
    minimize = model.objective == "minimize"
    actor, critic, critic_target = model.actor, model.critic, model.critic_target
    logs = _new_logs()
    for gradient_step in range(gradient_steps):
        update_index = model._n_updates + gradient_step
        data = model.replay_buffer.sample(batch_size, env=model._vec_normalize_env)
        mask = data.mask
        actions_BA = data.actions[mask]
        rewards_B1 = data.rewards[mask].unsqueeze(-1)
        dones_B1 = data.dones[mask].unsqueeze(-1)
        update_actor = update_index % model.policy_delay == 0
        ent_coef = model.temperature.value

        with model._autocast(), th.set_grad_enabled(update_actor):
            actor_now_BH, actor_next_BH = unroll_current_next(actor, data.observations, mask)
        with th.no_grad(), model._autocast():
            next_actions, next_log_prob = actor.action_log_prob(actor_next_BH.detach())
            _, target_next_BH = unroll_current_next(critic_target, data.observations, mask)
            next_q = critic_target.q_values(target_next_BH, next_actions).float()  # (n_critics, B, 1)
            if minimize:
                next_v = next_q.max(dim=0).values + ent_coef * next_log_prob.float().unsqueeze(-1)
            else:
                next_v = next_q.min(dim=0).values - ent_coef * next_log_prob.float().unsqueeze(-1)
            target_q = rewards_B1 + (1 - dones_B1) * model.gamma * next_v

        with model._autocast():
            critic_now_BH, _ = unroll_current_next(critic, data.observations, mask)
            current_q = critic.q_values(critic_now_BH, actions_BA).float()
        critic_loss = 0.5 * critic.n_critics * F.mse_loss(current_q, target_q.expand_as(current_q))
        model._optimizer_step("critic", critic_loss)
        logs["critic_loss"].append(critic_loss)
        _log_rnn_grad(logs, "critic_rnn_grad_norm", critic)

        if update_actor:
            with model._autocast():
                actions_pi, log_prob = actor.action_log_prob(actor_now_BH)
                # d(Q)/d(action) only: no gradient into the critic's RNN or weights
                q_pi = critic.q_values(critic_now_BH.detach(), actions_pi, detach_params=True).float()
            log_prob = log_prob.float().unsqueeze(-1)
            if minimize:
                actor_loss = (q_pi.max(dim=0).values + ent_coef * log_prob).mean()
            else:
                actor_loss = (ent_coef * log_prob - q_pi.min(dim=0).values).mean()
            _actor_and_temperature_step(model, actor_loss, model.temperature.loss(log_prob), logs)
            logs["actor_loss"].append(actor_loss)
            _log_rnn_grad(logs, "actor_rnn_grad_norm", actor)
        logs["ent_coef"].append(ent_coef)

        if (update_index + 1) % model.target_update_interval == 0:
            model._update_target()
    _finish(model, gradient_steps, logs)


def train_discrete_sac(model: Any, gradient_steps: int, batch_size: int) -> None:
    """Recurrent DiscreteSAC update (``batch_size`` counts transitions); the loss functions of ``discrete_sac.py``."""
    from sb3_sac_ext.discrete_sac.discrete_sac import (
        actor_loss,
        critic_loss,
        critic_target,
        negative_entropy,
        soft_state_value,
    )

    model.policy.set_training_mode(True)
    model._update_learning_rates()
    minimize = model.objective == "minimize"
    actor, critic, target = model.actor, model.critic, model.critic_target
    logs = _new_logs()
    for gradient_step in range(gradient_steps):
        update_index = model._n_updates + gradient_step
        data = model.replay_buffer.sample(batch_size, env=model._vec_normalize_env)
        mask = data.mask
        actions_B1 = data.actions[mask]
        rewards_B1 = data.rewards[mask].unsqueeze(-1)
        dones_B1 = data.dones[mask].unsqueeze(-1)
        update_actor = update_index % model.policy_delay == 0
        ent_coef = model.temperature.value

        with model._autocast(), th.set_grad_enabled(update_actor):
            actor_now_BH, actor_next_BH = unroll_current_next(actor, data.observations, mask)
        with th.no_grad(), model._autocast():
            next_probs_BA, next_log_probs_BA = actor.action_probs(actor_next_BH.detach())
            _, target_next_BH = unroll_current_next(target, data.observations, mask)
            next_q_KBA = target.q_values(target_next_BH).float()
            next_v_B = soft_state_value(next_q_KBA, next_probs_BA, next_log_probs_BA, ent_coef, minimize)
            target_B1 = critic_target(rewards_B1, dones_B1, model.gamma, next_v_B)

        with model._autocast():
            critic_now_BH, _ = unroll_current_next(critic, data.observations, mask)
            q_KBA = critic.q_values(critic_now_BH).float()
        loss_critic = critic_loss(q_KBA, actions_B1, target_B1)
        model._optimizer_step("critic", loss_critic)
        logs["critic_loss"].append(loss_critic)
        _log_rnn_grad(logs, "critic_rnn_grad_norm", critic)

        if update_actor:
            with model._autocast():
                probs_BA, log_probs_BA = actor.action_probs(actor_now_BH)
                with th.no_grad():
                    q_pi_KBA = critic.q_values(critic_now_BH.detach(), detach_params=True).float()
            loss_actor = actor_loss(q_pi_KBA, probs_BA, log_probs_BA, ent_coef, minimize)
            ent_coef_loss = model.temperature.loss(negative_entropy(probs_BA, log_probs_BA))
            _actor_and_temperature_step(model, loss_actor, ent_coef_loss, logs)
            logs["actor_loss"].append(loss_actor)
            _log_rnn_grad(logs, "actor_rnn_grad_norm", actor)
        logs["ent_coef"].append(ent_coef)

        if (update_index + 1) % model.target_update_interval == 0:
            model._update_target()
    _finish(model, gradient_steps, logs)


__all__ = [
    "after_store",
    "before_store",
    "configure_recurrent",
    "reset_states",
    "rnn_grad_norm",
    "sample_action",
    "train_discrete_sac",
    "train_sac",
]
