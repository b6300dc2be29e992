"""
Sequence replay buffers for recurrent policies.

The storage is SB3's (``(buffer_size, n_envs, ...)`` arrays, one column per env) plus an explicit
``episode_starts`` flag per stored transition. Sampling returns *windows*: ``sequence_length`` consecutive
transitions of one env column plus a ``burn_in`` prefix, that never cross

- an episode end (terminated or truncated),
- the ring's write position (the oldest and the newest transitions are not consecutive),
- a restart of ``learn()`` or a loaded buffer (:meth:`RecurrentReplayBuffer.mark_episode_starts`).

The stored transitions are cut into *segments* at these boundaries. Window starts are drawn uniformly among the
``len(segment) + sequence_length - 1`` "virtual" starts of every segment (a window that starts before the segment
or ends after it is clipped to it), so each stored transition is covered by exactly ``sequence_length`` virtual
starts: every transition, first and last steps and one-step episodes included, is trained on equally often.
With ``sequence_length=None`` whole segments (episodes) are sampled, uniformly.
"""

from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize

from sb3_sac_ext.common.errors import InvalidHyperparameterError


class RecurrentReplayBufferSamples(NamedTuple):
    """
    A batch of ``n_seq`` windows, left-aligned and padded to ``T`` steps.

    - ``observations``: ``(n_seq, T + 1, *obs_shape)`` (or a dict of such): ``[obs[t0], next_obs[t0], ...,
      next_obs[t0 + T - 1]]``, so that step ``k`` of one unroll is the observation of transition ``t0 + k`` and
      step ``k + 1`` its next observation
    - ``actions``: ``(n_seq, T, action_dim)``; ``rewards``, ``dones`` (terminated, not truncated): ``(n_seq, T)``
    - ``mask``: ``(n_seq, T)`` bool, the steps that enter the losses (not burn-in, not padding)
    - ``valid``: ``(n_seq, T)`` bool, the steps that are stored transitions (burn-in included)
    """

    observations: Any
    actions: th.Tensor
    rewards: th.Tensor
    dones: th.Tensor
    mask: th.Tensor
    valid: th.Tensor


class _SequenceSampling:
    """Segment bookkeeping and window sampling shared by the array and the Dict buffer."""

    buffer_size: int
    n_envs: int
    pos: int
    full: bool
    dones: np.ndarray
    timeouts: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    device: th.device

    def _init_sequences(self, sequence_length: int | None, burn_in: int, optimize_memory_usage: bool) -> None:
        if optimize_memory_usage:
            raise InvalidHyperparameterError(
                "optimize_memory_usage=True is not supported by recurrent policies: a sequence needs the terminal "
                "observation of each episode, which the memory-optimised layout overwrites; use optimize_memory_usage=False"
            )
        if sequence_length is not None and (isinstance(sequence_length, bool) or int(sequence_length) < 1):
            raise InvalidHyperparameterError(f"sequence_length must be a positive int or None, got {sequence_length!r}")
        if isinstance(burn_in, bool) or int(burn_in) < 0:
            raise InvalidHyperparameterError(f"burn_in must be a non-negative int, got {burn_in!r}")
        self.sequence_length = None if sequence_length is None else int(sequence_length)
        self.burn_in = int(burn_in)
        self.episode_starts = np.zeros((self.buffer_size, self.n_envs), dtype=bool)
        # The next transition added to each column starts a new segment (episode start, learn() restart, loaded buffer)
        self._next_is_start = np.ones(self.n_envs, dtype=bool)

    def mark_episode_starts(self, env_mask: np.ndarray | None = None) -> None:
        """
        Make the next transition added to the given columns (all when ``None``) the start of a new segment: call it
        when the envs are reset outside an episode end (a new ``learn()``, a loaded buffer).

        :param env_mask: Bool array of shape ``(n_envs,)``
        """
        if env_mask is None:
            self._next_is_start[:] = True
        else:
            self._next_is_start |= np.asarray(env_mask, dtype=bool).reshape(self.n_envs)

    def _record_starts(self, done: np.ndarray, infos: list[dict[str, Any]]) -> None:
        """Called by ``add`` before SB3 advances ``pos``."""
        self.episode_starts[self.pos] = self._next_is_start
        truncated = np.array([info.get("TimeLimit.truncated", False) for info in infos], dtype=bool)
        self._next_is_start = np.asarray(done, dtype=bool).reshape(self.n_envs) | truncated.reshape(self.n_envs)

    def reset(self) -> None:
        super().reset()  # type: ignore[misc]
        if hasattr(self, "episode_starts"):
            self.episode_starts[:] = False
            self._next_is_start[:] = True

    # ------------------------------------------------------------------ segments

    def segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        :return: ``(env, start, length)`` of every segment; ``start`` counts in chronological order (0: the oldest
            stored transition of the column), see :meth:`_physical`
        """
        n_valid = self.buffer_size if self.full else self.pos
        if n_valid == 0:
            raise ValueError("The replay buffer is empty")
        order = (np.arange(n_valid) + self.pos) % self.buffer_size if self.full else np.arange(n_valid)
        starts = self.episode_starts[order].copy()  # (n_valid, n_envs), chronological
        ends = (self.dones[order] > 0) | (self.timeouts[order] > 0)
        starts[0] = True
        starts[1:] |= ends[:-1]
        env_of, start_of = np.nonzero(starts.T)  # sorted by env, then time
        flat = env_of * n_valid + start_of
        lengths = np.diff(np.append(flat, self.n_envs * n_valid))
        return env_of, start_of, lengths

    def _physical(self, chrono: np.ndarray) -> np.ndarray:
        return (chrono + self.pos) % self.buffer_size if self.full else chrono

    def sample_windows(self, n_seq: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, ...]:
        """
        Draw ``n_seq`` windows (see the module docstring).

        :return: ``(env, first, burn, length)`` per window: column, chronological index of the first unrolled step,
            number of burn-in steps, number of steps after the burn-in
        """
        env_of, start_of, lengths = self.segments()
        rng = rng if rng is not None else np.random.default_rng(np.random.randint(2**31))
        if self.sequence_length is None:
            pick = rng.integers(0, len(lengths), size=n_seq)
            return env_of[pick], start_of[pick], np.zeros(n_seq, dtype=np.int64), lengths[pick]
        L = self.sequence_length
        n_virtual = lengths + L - 1
        cumulative = np.cumsum(n_virtual)
        u = rng.integers(0, cumulative[-1], size=n_seq)
        seg = np.searchsorted(cumulative, u, side="right")
        offset = u - (cumulative[seg] - n_virtual[seg]) - (L - 1)  # in [-(L - 1), len - 1]
        first_loss = np.maximum(offset, 0)
        end = np.minimum(offset + L, lengths[seg])
        first = np.maximum(first_loss - self.burn_in, 0)
        return env_of[seg], start_of[seg] + first, first_loss - first, end - first_loss

    # ------------------------------------------------------------------ batches

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> RecurrentReplayBufferSamples:  # type: ignore[override]
        """
        :param batch_size: Number of transitions (``batch_size // sequence_length`` windows, at least one; in
            whole-episode mode, ``batch_size / mean episode length`` episodes)
        :param env: VecNormalize to normalise observations and rewards with
        """
        if self.sequence_length is None:
            _, _, lengths = self.segments()
            n_seq = max(1, round(batch_size / float(lengths.mean())))
        else:
            n_seq = max(1, batch_size // self.sequence_length)
        return self.get_windows(*self.sample_windows(n_seq), env=env)

    def get_windows(
        self, env_idx: np.ndarray, first: np.ndarray, burn: np.ndarray, length: np.ndarray, env: VecNormalize | None = None
    ) -> RecurrentReplayBufferSamples:
        """
        Gather windows into a padded batch.

        :param env_idx: Column of each window
        :param first: Chronological index of its first step
        :param burn: Number of burn-in steps
        :param length: Number of loss steps after the burn-in
        :param env: VecNormalize to normalise observations and rewards with
        """
        total = burn + length
        T = int(total.max())
        steps = np.arange(T)
        valid = steps[None, :] < total[:, None]
        mask = valid & (steps[None, :] >= burn[:, None])
        # Padding repeats the last stored step (finite inputs; outputs there are masked and, the RNN being causal,
        # never change the earlier ones)
        chrono = first[:, None] + np.minimum(steps[None, :], total[:, None] - 1)
        idx = self._physical(chrono)
        cols = env_idx[:, None]
        obs_seq = self._gather_obs(idx, cols, env)
        dones = (self.dones[idx, cols] * (1 - self.timeouts[idx, cols])) * valid
        rewards = self._normalize_reward(self.rewards[idx, cols], env)
        actions = self.actions[idx, cols]
        return RecurrentReplayBufferSamples(
            observations=obs_seq,
            actions=self.to_torch(actions),
            rewards=self.to_torch(rewards.astype(np.float32)),
            dones=self.to_torch(dones.astype(np.float32)),
            mask=th.as_tensor(mask, device=self.device),
            valid=th.as_tensor(valid, device=self.device),
        )

    def _gather_obs(self, idx: np.ndarray, cols: np.ndarray, env: VecNormalize | None) -> Any:
        raise NotImplementedError


class RecurrentReplayBuffer(_SequenceSampling, ReplayBuffer):
    """
    SB3's ``ReplayBuffer`` with episode-start flags and window sampling for recurrent policies
    (see :mod:`sb3_sac_ext.common.recurrent.buffers`).

    :param buffer_size: Max number of transitions per env column
    :param observation_space: Observation space
    :param action_space: Action space
    :param device: PyTorch device
    :param n_envs: Number of parallel environments
    :param optimize_memory_usage: Not supported (raises :class:`InvalidHyperparameterError`)
    :param handle_timeout_termination: Bootstrap on truncation (``TimeLimit.truncated``)
    :param sequence_length: Number of loss steps per window; ``None`` samples whole episodes
    :param burn_in: Number of steps unrolled before each window to warm the RNN state up (not in the losses)
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        sequence_length: int | None = 16,
        burn_in: int = 0,
    ):
        if optimize_memory_usage:
            self._init_sequences(None, 0, optimize_memory_usage)
        super().__init__(buffer_size, observation_space, action_space, device, n_envs, False, handle_timeout_termination)
        self._init_sequences(sequence_length, burn_in, False)

    def add(self, obs: Any, next_obs: Any, action: np.ndarray, reward: np.ndarray, done: np.ndarray, infos: list) -> None:
        self._record_starts(done, infos)
        super().add(obs, next_obs, action, reward, done, infos)

    def _gather_obs(self, idx: np.ndarray, cols: np.ndarray, env: VecNormalize | None) -> th.Tensor:
        first = self.observations[idx[:, :1], cols]
        seq = np.concatenate([first, self.next_observations[idx, cols]], axis=1)
        return self.to_torch(self._normalize_obs(seq, env))


class RecurrentDictReplayBuffer(_SequenceSampling, DictReplayBuffer):
    """
    SB3's ``DictReplayBuffer`` with episode-start flags and window sampling; see :class:`RecurrentReplayBuffer`.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Dict,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        sequence_length: int | None = 16,
        burn_in: int = 0,
    ):
        if optimize_memory_usage:
            self._init_sequences(None, 0, optimize_memory_usage)
        super().__init__(buffer_size, observation_space, action_space, device, n_envs, False, handle_timeout_termination)
        self._init_sequences(sequence_length, burn_in, False)

    def add(self, obs: Any, next_obs: Any, action: np.ndarray, reward: np.ndarray, done: np.ndarray, infos: list) -> None:
        self._record_starts(done, infos)
        super().add(obs, next_obs, action, reward, done, infos)

    def _gather_obs(self, idx: np.ndarray, cols: np.ndarray, env: VecNormalize | None) -> dict[str, th.Tensor]:
        seq = {
            key: np.concatenate([self.observations[key][idx[:, :1], cols], self.next_observations[key][idx, cols]], axis=1)
            for key in self.observations
        }
        normalized = self._normalize_obs(seq, env)  # type: ignore[arg-type]
        return {key: self.to_torch(value) for key, value in normalized.items()}  # type: ignore[union-attr]


__all__ = ["RecurrentDictReplayBuffer", "RecurrentReplayBuffer", "RecurrentReplayBufferSamples"]
