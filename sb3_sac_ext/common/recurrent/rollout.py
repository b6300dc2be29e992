"""
Recurrent policies outside the update: the settings they do not support, the choice of the sequence replay buffer,
and rollout collection carrying the actor's RNN state and the episode starts per env. The update itself is the one
training loop (:mod:`sb3_sac_ext.common.training`) fed by :class:`~sb3_sac_ext.common.recurrent.batch.SequenceBatches`.
"""

from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.her.her_replay_buffer import HerReplayBuffer

from sb3_sac_ext.common.errors import InvalidHyperparameterError
from sb3_sac_ext.common.recurrent.buffers import RecurrentDictReplayBuffer, RecurrentReplayBuffer


def configure_recurrent(model: Any) -> None:
    """
    Check the settings a recurrent policy does not support (typed errors) and select the sequence replay buffer.
    Called by the algorithms' ``_setup_model`` before SB3 builds the buffer.
    """
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


__all__ = ["after_store", "before_store", "configure_recurrent", "sample_action"]
