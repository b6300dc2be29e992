"""
The exportable graph: :class:`ExportedPolicy` maps raw env observations to actions (or distribution parameters)
with plain torch ops only, so that it traces to TorchScript and exports to ONNX.

The math of the actors is read from their parameters: one head for the SAC actors (SB3's ``Actor`` and the
recurrent one share ``latent_pi``, ``mu``, ``log_std``) and one for the categorical actors (``logits_net``),
applied to the features (feed-forward actor) or to the RNN output (recurrent actor).
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN
from torch import nn

from sb3_sac_ext.common.errors import SB3SacExtError, UnsupportedSpaceError
from sb3_sac_ext.common.recurrent.layers import RNNBlock


def _one_hot(obs: th.Tensor, n: int) -> th.Tensor:
    # Comparison with arange instead of F.one_hot: same values, exports to plain ONNX ops with any exporter
    return (obs.long().unsqueeze(-1) == th.arange(n, device=obs.device)).float()


def preprocess_for_export(obs: th.Tensor, space: spaces.Space, normalize_images: bool) -> th.Tensor:
    """
    SB3's ``preprocess_obs`` for one (non-Dict) space, written with export-friendly ops.

    :param obs: Batched observation, shape ``(batch, *space.shape)``
    :param space: The model's observation space
    :param normalize_images: Whether image observations are divided by 255
    :return: Float tensor the features extractor takes
    """
    if isinstance(space, spaces.Box):
        if normalize_images and is_image_space(space):
            return obs.float() / 255.0
        return obs.float()
    if isinstance(space, spaces.Discrete):
        return _one_hot(obs.reshape(-1), int(space.n))
    if isinstance(space, spaces.MultiDiscrete):
        columns = obs.reshape(obs.shape[0], -1)
        return th.cat([_one_hot(columns[:, i], int(n)) for i, n in enumerate(space.nvec.reshape(-1))], dim=-1)
    if isinstance(space, spaces.MultiBinary):
        return obs.float()
    raise UnsupportedSpaceError(f"Cannot export a policy for the observation space {space}")


def _features(actor: nn.Module, obs: Any) -> th.Tensor:
    """SB3's ``extract_features`` of ``actor`` with export-friendly preprocessing."""
    space = actor.observation_space
    normalize_images = getattr(actor, "normalize_images", True)
    if isinstance(space, spaces.Dict):
        preprocessed: Any = {key: preprocess_for_export(obs[key], space[key], normalize_images) for key in space.spaces}
    else:
        preprocessed = preprocess_for_export(obs, space, normalize_images)
    return actor.features_extractor(preprocessed)


def _head(actor: nn.Module, latent: th.Tensor, deterministic: bool) -> dict[str, th.Tensor]:
    """
    ``latent`` (features, or the RNN output of a recurrent actor) -> ``{"action"}`` (in [-1, 1] for Box, the int64
    argmax for Discrete) or the distribution parameters ``{"mean", "log_std"}`` | ``{"logits"}``.
    """
    if isinstance(actor.action_space, spaces.Box):
        # SB3's Actor.get_action_dist_params after the features extractor
        latent_pi = actor.latent_pi(latent)
        mean = actor.mu(latent_pi)
        if deterministic:
            return {"action": th.tanh(mean)}
        if getattr(actor, "use_sde", False):
            # gSDE: std of each action = sqrt(latent^2 @ exp(log_std)^2 + eps), as SB3's StateDependentNoiseDistribution
            dist = actor.action_dist
            variance = th.mm(latent_pi**2, dist.get_std(actor.log_std) ** 2)
            return {"mean": mean, "log_std": 0.5 * th.log(variance + dist.epsilon)}
        return {"mean": mean, "log_std": th.clamp(actor.log_std(latent_pi), LOG_STD_MIN, LOG_STD_MAX)}
    if isinstance(actor.action_space, spaces.Discrete):
        logits = actor.logits_net(latent).float()
        return {"action": th.argmax(logits, dim=-1)} if deterministic else {"logits": logits}
    raise UnsupportedSpaceError(f"Cannot export a policy for the action space {actor.action_space}")


def actor_export_outputs(actor: nn.Module, obs: Any, deterministic: bool) -> dict[str, th.Tensor]:
    """
    The outputs of a feed-forward actor for export: ``{"action"}`` when ``deterministic`` (in [-1, 1] for Box
    actions, the int64 argmax for Discrete actions), else the distribution parameters ``{"mean", "log_std"}``
    (pre-tanh Gaussian, Box) or ``{"logits"}`` (Discrete).

    :param actor: ``model.policy.actor``: SB3's SAC ``Actor`` (or a subclass) or a categorical actor (``logits_net``)
    :param obs: Observation after VecNormalize and transposition, before SB3's preprocessing
    :param deterministic: Action or distribution parameters
    :return: Output name -> tensor
    """
    return _head(actor, _features(actor, obs), deterministic)


def recurrent_actor_rnn(actor: nn.Module) -> RNNBlock | None:
    """The RNN of a recurrent actor (``actor.rnn``), ``None`` for a feed-forward one."""
    rnn = getattr(actor, "rnn", None)
    return rnn if isinstance(rnn, RNNBlock) else None


def recurrent_actor_export_outputs(
    actor: nn.Module, obs: Any, state: Sequence[th.Tensor], episode_start: th.Tensor, deterministic: bool
) -> dict[str, th.Tensor]:
    """
    One step of a recurrent actor for export, as ``RecurrentSoftPolicy.predict_step``: the state of the envs whose
    ``episode_start`` is 1 is zeroed, then ``obs -> features -> RNN -> head``.

    :param actor: A recurrent actor (``model.policy.actor`` of a ``*LstmPolicy``)
    :param obs: Observation after VecNormalize and transposition, before SB3's preprocessing
    :param state: ``(h, c)`` for an LSTM, ``(h,)`` for a GRU, each ``(n_layers, batch, hidden)``
    :param episode_start: 1 where an episode starts, shape ``(batch,)``
    :param deterministic: Action or distribution parameters
    :return: Output name -> tensor, the outputs of :func:`actor_export_outputs` plus ``h_out`` (and ``c_out``)
    """
    rnn = recurrent_actor_rnn(actor)
    if rnn is None:
        raise SB3SacExtError(f"{type(actor).__name__} is not a recurrent actor (no RNNBlock ``rnn``)")
    h = state[0]
    c = state[1] if rnn.rnn_type == "lstm" else h  # a GRU ignores c
    latent, (h_out, c_out) = rnn.step(_features(actor, obs), (h, c), episode_start)
    outputs = _head(actor, latent, deterministic)
    outputs["h_out"] = h_out
    if rnn.rnn_type == "lstm":
        outputs["c_out"] = c_out
    return outputs


class _ObsNormalization(nn.Module):
    """VecNormalize's ``(obs - mean) / sqrt(var + eps)`` clipped to ``[-clip_obs, clip_obs]``, as constants."""

    def __init__(self, mean: np.ndarray, var: np.ndarray, epsilon: float, clip_obs: float):
        super().__init__()
        self.register_buffer("mean", th.as_tensor(np.asarray(mean, dtype=np.float32)))
        self.register_buffer("std", th.as_tensor(np.sqrt(np.asarray(var, dtype=np.float64) + epsilon).astype(np.float32)))
        self.clip_obs = float(clip_obs)

    def forward(self, obs: th.Tensor) -> th.Tensor:
        return th.clamp((obs.float() - self.mean) / self.std, -self.clip_obs, self.clip_obs)


class ExportedPolicy(nn.Module):
    """
    The deployable policy: raw env observations in (positional, in ``input_names`` order), actions or
    distribution parameters out (in ``output_names`` order). Only plain torch ops, so it traces and exports.
    For a recurrent actor the inputs go on with the state (``h``, and ``c`` for an LSTM) and ``episode_start``,
    and the outputs with the new state (``h_out``, ``c_out``).

    :param actor: The model's actor (``model.policy.actor``)
    :param observation_space: The model's observation space (channel-first images)
    :param action_space: The model's action space
    :param deterministic: Output the action (True) or the distribution parameters (False)
    :param channels_last: Whether image inputs are channel-last (transposed to channel-first in the graph)
    :param normalize: VecNormalize whose observation statistics are folded into the graph
    """

    def __init__(
        self,
        actor: nn.Module,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        deterministic: bool = True,
        channels_last: bool = False,
        normalize: Any = None,
    ):
        super().__init__()
        self.actor = actor
        self.observation_space = observation_space
        self.action_space = action_space
        self.deterministic = deterministic
        self.channels_last = channels_last
        self.is_dict = isinstance(observation_space, spaces.Dict)
        self.keys = list(observation_space.spaces) if self.is_dict else [""]
        self.normalizers = nn.ModuleDict()
        if normalize is not None and normalize.norm_obs:
            if self.is_dict:
                for key in normalize.norm_obs_keys:
                    rms = normalize.obs_rms[key]
                    self.normalizers[key] = _ObsNormalization(rms.mean, rms.var, normalize.epsilon, normalize.clip_obs)
            else:
                rms = normalize.obs_rms
                self.normalizers["obs"] = _ObsNormalization(rms.mean, rms.var, normalize.epsilon, normalize.clip_obs)
        if isinstance(action_space, spaces.Box):
            self.register_buffer("low", th.as_tensor(action_space.low, dtype=th.float32).reshape(-1))
            self.register_buffer("high", th.as_tensor(action_space.high, dtype=th.float32).reshape(-1))
        elif not isinstance(action_space, spaces.Discrete):
            raise UnsupportedSpaceError(f"Cannot export a policy for the action space {action_space}")
        rnn = recurrent_actor_rnn(actor)
        self.recurrent = rnn is not None
        self.rnn_type = None if rnn is None else rnn.rnn_type
        self.state_shape = None if rnn is None else (rnn.n_layers, rnn.hidden_size)
        # GRU: no cell state, so no ``c`` input / ``c_out`` output
        self.state_names = [] if rnn is None else ["h", "c"] if rnn.rnn_type == "lstm" else ["h"]
        self.output_names = self._output_names()

    @property
    def observation_names(self) -> list[str]:
        return list(self.keys) if self.is_dict else ["obs"]

    @property
    def input_names(self) -> list[str]:
        if self.recurrent:
            return [*self.observation_names, *self.state_names, "episode_start"]
        return self.observation_names

    def _output_names(self) -> list[str]:
        if self.deterministic:
            names = ["action"]
        else:
            names = ["mean", "log_std"] if isinstance(self.action_space, spaces.Box) else ["logits"]
        return [*names, *(f"{name}_out" for name in self.state_names)]

    def batch_axis(self, name: str) -> int:
        """Dimension of the input or output ``name`` that is the batch (1 for the RNN state, else 0)."""
        return 1 if name in self.state_names or name.removesuffix("_out") in self.state_names else 0

    def initial_state(self, batch: int, seed: int | None) -> list[np.ndarray]:
        """
        :param batch: Number of envs
        :param seed: None for zeros, else the seed of random normal states
        :return: The state inputs of a recurrent policy, then ``episode_start`` (zeros)
        """
        if self.state_shape is None:
            raise SB3SacExtError("a feed-forward policy has no state")
        shape = (self.state_shape[0], batch, self.state_shape[1])
        rng = np.random.default_rng(seed)
        states = [
            np.zeros(shape, dtype=np.float32) if seed is None else rng.normal(size=shape).astype(np.float32)
            for _ in self.state_names
        ]
        return [*states, np.zeros(batch, dtype=np.float32)]

    def _model_input(self, obs: th.Tensor, key: str, space: spaces.Space) -> th.Tensor:
        name = key if self.is_dict else "obs"
        if name in self.normalizers:
            obs = self.normalizers[name](obs)
        if self.channels_last and is_image_space(space):
            obs = obs.permute(0, 3, 1, 2)
        return obs

    def forward(self, *inputs: th.Tensor) -> tuple[th.Tensor, ...]:
        observations = inputs[: len(self.keys)]
        if self.is_dict:
            obs: Any = {
                key: self._model_input(value, key, self.observation_space[key])
                for key, value in zip(self.keys, observations, strict=True)
            }
        else:
            obs = self._model_input(observations[0], "", self.observation_space)
        if self.recurrent:
            state = inputs[len(self.keys) : -1]
            outputs = recurrent_actor_export_outputs(self.actor, obs, state, inputs[-1], self.deterministic)
        else:
            outputs = actor_export_outputs(self.actor, obs, self.deterministic)
        if self.deterministic and isinstance(self.action_space, spaces.Box):
            # SB3's predict: unscale_action from [-1, 1] to [low, high], then clip to the bounds
            scaled = outputs["action"].reshape(outputs["action"].shape[0], -1)
            action = self.low + 0.5 * (scaled + 1.0) * (self.high - self.low)
            action = th.maximum(th.minimum(action, self.high), self.low)
            outputs["action"] = action.reshape(-1, *self.action_space.shape)
        return tuple(outputs[name] for name in self.output_names)


class DictInputPolicy(nn.Module):
    """TorchScript entry point for Dict observations: takes ``{key: tensor}`` like ``predict`` does
    (then ``h``, ``c``, ``episode_start`` for a recurrent policy)."""

    def __init__(self, policy: ExportedPolicy):
        super().__init__()
        self.policy = policy
        self.keys = list(policy.keys)

    def forward(self, obs: dict[str, th.Tensor], *state: th.Tensor) -> tuple[th.Tensor, ...]:
        return self.policy(*[obs[key] for key in self.keys], *state)
