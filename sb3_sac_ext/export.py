"""
Export a trained policy for deployment, as ONNX or TorchScript, with the observation preprocessing included.

The exported graph takes the observation **as the environment returns it** and returns the action **the
environment receives**, the same as ``model.predict(obs, deterministic=True)`` on a batch::

    raw obs -> [VecNormalize statistics, when passed] -> [HWC -> CHW, when SB3 wrapped the env in VecTransposeImage]
            -> SB3's preprocess_obs (images / 255, one-hot of Discrete / MultiDiscrete, float cast)
            -> actor -> tanh(mean) rescaled to the Box bounds and clipped (SAC) | argmax of the logits (DiscreteSAC)

Image layout: SB3 transposes channel-last image observations to channel-first with ``VecTransposeImage``; the
exported file then takes the **channel-last** images that the env returns. Whether that happened is read from
``model.get_env()`` (or from the shape of ``normalize.observation_space``); for a model loaded without its env,
pass ``channels_last=True`` or ``False``. Without that information the input layout is the model's
``observation_space`` (channel-first for images).

ONNX export uses the TorchScript-based exporter, ``torch.onnx.export(..., dynamo=False)``: with torch 2.13 it
is still available (deprecated), needs no ``onnxscript`` and exports SB3's networks reliably and quickly.
When a later torch removes it, the torch.export-based exporter (``dynamo=True``, which needs ``onnxscript``)
is used instead, with a dynamic batch dimension declared through ``dynamic_shapes``.

Both formats have a dynamic batch dimension and carry metadata (observation and action spaces, input and
output names, library versions): ONNX as metadata properties, TorchScript as the extra file ``metadata.json``
inside the archive and as a side file ``<path>.json``.

Algorithms plug in through a small interface on the actor: an actor may define
``export_outputs(obs: PyTorchObs, deterministic: bool) -> dict[str, th.Tensor]`` (``obs`` is the
observation after normalisation and transposition; the method applies SB3's preprocessing through
``extract_features``). Otherwise the action space decides: Box -> SB3's SAC ``Actor`` (``latent_pi``, ``mu``, ``log_std``),
Discrete -> a categorical actor whose ``logits(obs)`` method, or else ``forward(obs)``, returns logits.

Recurrent policies (``MlpLstmPolicy``, ``CnnLstmPolicy``, ``MultiInputLstmPolicy``: an actor with an ``rnn``
:class:`~sb3_sac_ext.common.recurrent.layers.RNNBlock`) export the RNN state as explicit inputs and outputs, one
step per call, as ``model.predict(obs, state, episode_start)`` does::

    inputs:  obs (batch, ...) [or one per Dict key], h (n_layers, batch, hidden), c (LSTM only), episode_start (batch,)
    outputs: action [or mean, log_std | logits], h_out, c_out (LSTM only)

The state of the envs whose ``episode_start`` is 1 is zeroed before the step (float32 0./1.; TorchScript also takes
bool). A GRU has no cell state: its file has no ``c`` input and no ``c_out`` output (``predict`` carries a zero
``c`` for it). The batch dimension (dimension 1 of ``h`` and ``c``) is dynamic. An actor may define
``export_head(latent, deterministic) -> dict[str, th.Tensor]`` to map the RNN output to the outputs; otherwise
``dist_params(latent)`` (Box) or ``logits_net(latent)`` (Discrete) is used.
"""

import argparse
import copy
import glob
import json
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from torch import nn

from sb3_sac_ext.common.errors import SB3SacExtError, UnsupportedSpaceError
from sb3_sac_ext.common.recurrent.layers import RNNBlock
from sb3_sac_ext.version import __version__

FORMATS = {".onnx": "onnx", ".pt": "torchscript"}
INSTALL_HINT = 'pip install "sb3-sac-ext[export]"'
# Batch sizes of the example inputs used at export time and to verify the exported file
_EXPORT_BATCH = 2
_VERIFY_BATCH = 5
# Steps of the sequence that verifies a recurrent export
_VERIFY_STEPS = 4


class ExportFormatError(SB3SacExtError, ValueError):
    """The export format (file suffix or ``format`` argument) is not one of the accepted ones."""


class ExportDependencyError(SB3SacExtError, ImportError):
    """A package needed to export (onnx, onnxscript) is not installed."""


class ExportVerificationError(SB3SacExtError, ValueError):
    """The exported file does not reproduce the model's outputs."""


# ----------------------------------------------------------------------------------------------- graph


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


class _DictInputPolicy(nn.Module):
    """TorchScript entry point for Dict observations: takes ``{key: tensor}`` like ``predict`` does
    (then ``h``, ``c``, ``episode_start`` for a recurrent policy)."""

    def __init__(self, policy: ExportedPolicy):
        super().__init__()
        self.policy = policy
        self.keys = list(policy.keys)

    def forward(self, obs: dict[str, th.Tensor], *state: th.Tensor) -> tuple[th.Tensor, ...]:
        return self.policy(*[obs[key] for key in self.keys], *state)


def _preprocess(actor: nn.Module, obs: Any) -> Any:
    """SB3's preprocess_obs with export-friendly ops, for the features extractor of ``actor``."""
    space = actor.observation_space
    normalize_images = getattr(actor, "normalize_images", True)
    if isinstance(space, spaces.Dict):
        return {key: preprocess_for_export(obs[key], space[key], normalize_images) for key in space.spaces}
    return preprocess_for_export(obs, space, normalize_images)


def actor_export_outputs(actor: nn.Module, obs: Any, deterministic: bool) -> dict[str, th.Tensor]:
    """
    The actor's outputs for export: ``{"action"}`` when ``deterministic`` (in [-1, 1] for Box actions,
    the int64 argmax for Discrete actions), else the distribution parameters ``{"mean", "log_std"}``
    (pre-tanh Gaussian, Box) or ``{"logits"}`` (Discrete).

    :param actor: ``model.policy.actor``; one that defines ``export_outputs(obs, deterministic)`` is used as is
    :param obs: Observation after VecNormalize and transposition, before SB3's preprocessing
    :param deterministic: Action or distribution parameters
    :return: Output name -> tensor
    """
    if hasattr(actor, "export_outputs"):
        return dict(actor.export_outputs(obs, deterministic))
    if isinstance(actor.action_space, spaces.Box):
        latent_pi = actor.latent_pi(actor.features_extractor(_preprocess(actor, obs)))
        mean = actor.mu(latent_pi)
        if deterministic:
            return {"action": th.tanh(mean)}
        if getattr(actor, "use_sde", False):
            # gSDE: std of each action = sqrt(latent^2 @ exp(log_std)^2 + eps), as SB3's StateDependentNoiseDistribution
            dist = actor.action_dist
            std = dist.get_std(actor.log_std)
            variance = th.mm(latent_pi**2, std**2)
            return {"mean": mean, "log_std": 0.5 * th.log(variance + dist.epsilon)}
        log_std = th.clamp(actor.log_std(latent_pi), *_log_std_bounds())
        return {"mean": mean, "log_std": log_std}
    if isinstance(actor.action_space, spaces.Discrete):
        # Categorical actor: a ``logits`` method, else ``forward`` returns the logits
        logits = actor.logits(obs) if callable(getattr(actor, "logits", None)) else actor(obs)
        if deterministic:
            return {"action": th.argmax(logits, dim=-1)}
        return {"logits": logits}
    raise UnsupportedSpaceError(f"Cannot export a policy for the action space {actor.action_space}")


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
    features = actor.features_extractor(_preprocess(actor, obs))
    h = state[0]
    c = state[1] if rnn.rnn_type == "lstm" else h  # a GRU ignores c
    latent, (h_out, c_out) = rnn.step(features, (h, c), episode_start)
    outputs = _recurrent_head(actor, latent, deterministic)
    outputs["h_out"] = h_out
    if rnn.rnn_type == "lstm":
        outputs["c_out"] = c_out
    return outputs


def _recurrent_head(actor: nn.Module, latent: th.Tensor, deterministic: bool) -> dict[str, th.Tensor]:
    """RNN output -> action (in [-1, 1] for Box) or distribution parameters, as the recurrent actors compute them."""
    if hasattr(actor, "export_head"):
        return dict(actor.export_head(latent, deterministic))
    if isinstance(actor.action_space, spaces.Box):
        mean, log_std = actor.dist_params(latent)
        return {"action": th.tanh(mean)} if deterministic else {"mean": mean, "log_std": log_std}
    if isinstance(actor.action_space, spaces.Discrete):
        logits = actor.logits_net(latent).float()
        return {"action": th.argmax(logits, dim=-1)} if deterministic else {"logits": logits}
    raise UnsupportedSpaceError(f"Cannot export a policy for the action space {actor.action_space}")


def _log_std_bounds() -> tuple[float, float]:
    from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN

    return float(LOG_STD_MIN), float(LOG_STD_MAX)


# ----------------------------------------------------------------------------------------------- helpers


def _require(*modules: str) -> None:
    """Import the optional export dependencies, or raise :class:`ExportDependencyError` with the pip command."""
    import importlib

    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportDependencyError(f"Exporting to ONNX needs {', '.join(missing)}: {INSTALL_HINT}")


def resolve_format(path: str | os.PathLike, format: str | None = None) -> str:
    """
    :param path: Output file
    :param format: ``"onnx"``, ``"torchscript"`` (or a suffix, ``".onnx"`` / ``".pt"``); ``None``: from the suffix
    :return: ``"onnx"`` or ``"torchscript"``
    """
    accepted = ", ".join(f"{suffix} ({name})" for suffix, name in FORMATS.items())
    if format is not None:
        name = format.lower()
        name = FORMATS.get(name if name.startswith(".") else f".{name}", name)
        if name not in FORMATS.values():
            raise ExportFormatError(f"Unknown export format {format!r}; accepted: {accepted}")
        return name
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ExportFormatError(f"Cannot infer the export format from {os.fspath(path)!r}; accepted suffixes: {accepted}")
    return FORMATS[suffix]


def _transpose_space(space: spaces.Space) -> spaces.Space:
    """Channel-first image space -> the channel-last one the env returns (other spaces unchanged)."""
    if isinstance(space, spaces.Dict):
        return spaces.Dict({key: _transpose_space(sub) for key, sub in space.spaces.items()})
    if isinstance(space, spaces.Box) and is_image_space(space):
        return spaces.Box(
            low=np.transpose(space.low, (1, 2, 0)),
            high=np.transpose(space.high, (1, 2, 0)),
            dtype=space.dtype,  # type: ignore[arg-type]
        )
    return space


def _detect_channels_last(model: Any, normalize: Any) -> bool:
    from stable_baselines3.common.vec_env import VecTransposeImage, is_vecenv_wrapped

    env = model.get_env()
    if env is not None:
        return is_vecenv_wrapped(env, VecTransposeImage)
    if normalize is not None:
        obs_space = model.observation_space
        transposed = _transpose_space(obs_space)
        return transposed != obs_space and _shapes(normalize.observation_space) == _shapes(transposed)
    return False


def _shapes(space: spaces.Space) -> Any:
    if isinstance(space, spaces.Dict):
        return {key: _shapes(sub) for key, sub in space.spaces.items()}
    return space.shape


def space_to_json(space: spaces.Space) -> dict[str, Any]:
    """
    :param space: A gymnasium space
    :return: A JSON-serialisable description (type, shape, dtype, bounds; uniform bounds as one number)
    """
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {key: space_to_json(sub) for key, sub in space.spaces.items()}}
    description: dict[str, Any] = {"type": type(space).__name__, "shape": list(space.shape or ()), "dtype": str(space.dtype)}
    if isinstance(space, spaces.Box):
        for bound in ("low", "high"):
            values = np.asarray(getattr(space, bound))
            uniform = values.size > 0 and bool(np.all(values == values.flat[0]))
            description[bound] = _json_number(values.flat[0]) if uniform else [_json_number(v) for v in values.reshape(-1)]
    elif isinstance(space, spaces.Discrete):
        description.update(n=int(space.n), start=int(space.start))
    elif isinstance(space, spaces.MultiDiscrete):
        description["nvec"] = space.nvec.tolist()
    return description


def _json_number(value: Any) -> float | int | str:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def _example_inputs(space: spaces.Space, batch: int, seed: int = 0) -> list[np.ndarray]:
    """``batch`` observations sampled from ``space`` (the env layout), one array per input."""
    space = _copy_space(space)
    space.seed(seed)
    samples = [space.sample() for _ in range(batch)]
    if isinstance(space, spaces.Dict):
        return [np.stack([sample[key] for sample in samples]) for key in space.spaces]
    return [np.stack(samples)]


def _copy_space(space: spaces.Space) -> spaces.Space:
    return copy.deepcopy(space)


def _state_inputs(policy: ExportedPolicy, actor: nn.Module, batch: int, seed: int | None) -> list[np.ndarray]:
    """Initial state inputs of a recurrent policy (zeros when ``seed`` is None) and ``episode_start`` (zeros)."""
    rnn = recurrent_actor_rnn(actor)
    assert rnn is not None
    shape = (rnn.n_layers, batch, rnn.hidden_size)
    rng = np.random.default_rng(seed)
    states = [
        np.zeros(shape, dtype=np.float32) if seed is None else rng.normal(size=shape).astype(np.float32)
        for _ in policy.state_names
    ]
    return [*states, np.zeros(batch, dtype=np.float32)]


def _model_obs(policy: ExportedPolicy, inputs: list[np.ndarray], normalize: Any) -> Any:
    obs: Any = dict(zip(policy.keys, inputs, strict=True)) if policy.is_dict else inputs[0]
    if normalize is not None:
        obs = normalize.normalize_obs(obs)
    if policy.channels_last:
        obs = to_model_layout(policy.observation_space, obs)
    return obs


def _verification_steps(
    model: Any, policy: ExportedPolicy, input_space: spaces.Space, normalize: Any
) -> list[tuple[list[np.ndarray], list[np.ndarray]]]:
    """
    ``(inputs, expected outputs)`` of the calls that verify the exported file: one batch for a feed-forward policy;
    for a recurrent one a short sequence from a random state, with episode starts (envs 0 and 1 at steps 0 and 2),
    each step fed the state that ``model.predict`` returned at the step before.
    """
    if not policy.recurrent:
        inputs = _example_inputs(input_space, _VERIFY_BATCH, seed=2)
        return [(inputs, _reference_outputs(model, policy, inputs, normalize))]
    steps = []
    *state, _ = _state_inputs(policy, model.policy.actor, _VERIFY_BATCH, seed=3)
    for t in range(_VERIFY_STEPS):
        obs_inputs = _example_inputs(input_space, _VERIFY_BATCH, seed=2 + t)
        episode_start = np.zeros(_VERIFY_BATCH, dtype=np.float32)
        if t in (0, 2):
            episode_start[t // 2] = 1.0
        inputs = [*obs_inputs, *state, episode_start]
        expected = _reference_outputs(model, policy, inputs, normalize)
        steps.append((inputs, expected))
        state = expected[len(expected) - len(policy.state_names) :]
    return steps


def _reference_outputs(model: Any, policy: ExportedPolicy, inputs: list[np.ndarray], normalize: Any) -> list[np.ndarray]:
    """What the exported file must return: ``model.predict`` (deterministic) or the actor's distribution parameters."""
    obs = _model_obs(policy, inputs[: len(policy.keys)], normalize)
    if policy.recurrent:
        return _recurrent_reference_outputs(model, policy, obs, inputs[len(policy.keys) :])
    if policy.deterministic:
        return [model.predict(obs, deterministic=True)[0]]
    obs_tensor, _ = model.policy.obs_to_tensor(obs)
    with th.no_grad():
        outputs = actor_export_outputs(model.policy.actor, obs_tensor, deterministic=False)
    return [outputs[name].cpu().numpy() for name in policy.output_names]


def _recurrent_reference_outputs(model: Any, policy: ExportedPolicy, obs: Any, extra: list[np.ndarray]) -> list[np.ndarray]:
    """``model.predict(obs, state, episode_start)`` (deterministic), or the actor's step (distribution parameters)."""
    state_in, episode_start = extra[:-1], extra[-1]
    h = state_in[0]
    state = (h, state_in[1] if len(state_in) > 1 else np.zeros_like(h))
    if policy.deterministic:
        action, new_state = model.predict(obs, state=state, episode_start=episode_start, deterministic=True)
        return [action, *new_state[: len(policy.state_names)]]
    model.policy.set_training_mode(False)
    obs_tensor, _ = model.policy.obs_to_tensor(obs)
    device = model.policy.device
    with th.no_grad():
        states = tuple(th.as_tensor(s, device=device) for s in state)
        latent, new_state = model.policy.actor.step(obs_tensor, states, th.as_tensor(episode_start, device=device))
        outputs = _recurrent_head(model.policy.actor, latent, deterministic=False)
    names = policy.output_names[: len(policy.output_names) - len(policy.state_names)]
    return [outputs[name].cpu().numpy() for name in names] + [s.cpu().numpy() for s in new_state[: len(policy.state_names)]]


def to_model_layout(observation_space: spaces.Space, obs: Any) -> Any:
    """
    Transpose batched channel-last images to the model's channel-first layout (what VecTransposeImage does).

    :param observation_space: The model's observation space
    :param obs: Batched observations as the env returns them
    :return: The observations the model takes
    """
    if isinstance(observation_space, spaces.Dict):
        return {key: to_model_layout(observation_space[key], value) for key, value in obs.items()}
    if is_image_space(observation_space):
        return np.transpose(obs, (0, 3, 1, 2))
    return obs


def _check_close(name: str, actual: Sequence[np.ndarray], expected: Sequence[np.ndarray], path: str) -> None:
    for output, got, want in zip(name.split(","), actual, expected, strict=True):
        got = np.asarray(got).reshape(np.shape(want))
        if not np.allclose(got, want, atol=1e-4, rtol=1e-4):
            raise ExportVerificationError(
                f"{path}: output {output!r} differs from the model's by up to {np.max(np.abs(got - want)):.3g}"
            )


def _atomic_target(path: Path) -> Path:
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    return Path(tmp_name)


# ----------------------------------------------------------------------------------------------- exporters


def _export_onnx(policy: ExportedPolicy, example: tuple[th.Tensor, ...], target: Path, opset: int | None) -> str:
    """Write ``policy`` to ``target`` as ONNX; return the name of the exporter used."""
    names = [*policy.input_names, *policy.output_names]
    try:
        with warnings.catch_warnings():
            # torch >= 2.9 flags the TorchScript-based exporter as deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            if policy.recurrent:
                # nn.LSTM/GRU's shape checks (Python bools in the trace), and a warning about a variable batch size
                # that does not apply: the initial state is an input of the graph
                warnings.simplefilter("ignore", th.jit.TracerWarning)
                warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
            th.onnx.export(
                policy,
                example,
                str(target),
                dynamo=False,
                input_names=policy.input_names,
                output_names=policy.output_names,
                opset_version=opset,
                dynamic_axes={name: {policy.batch_axis(name): "batch"} for name in names},
                do_constant_folding=True,
            )
        return "torch.onnx.export(dynamo=False)"
    except TypeError:
        pass  # ``dynamo=False`` no longer accepted: the TorchScript-based exporter was removed
    # The TorchScript-based exporter is gone: torch.export-based exporter (needs onnxscript)
    _require("onnxscript")
    batch = th.export.Dim("batch", min=1)
    program = th.onnx.export(
        policy,
        example,
        dynamo=True,
        input_names=policy.input_names,
        output_names=policy.output_names,
        opset_version=opset,
        verbose=False,
        dynamic_shapes=(tuple({policy.batch_axis(name): batch} for name in policy.input_names),),  # forward(*inputs)
    )
    program.save(str(target))
    return "torch.onnx.export(dynamo=True)"


def _add_onnx_metadata(target: Path, metadata: dict[str, Any]) -> None:
    import onnx

    proto = onnx.load(str(target))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value)
    onnx.save(proto, str(target))


def _verify_onnx(
    target: Path, policy: ExportedPolicy, steps: list[tuple[list[np.ndarray], list[np.ndarray]]], path: str
) -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    for inputs, expected in steps:
        actual = session.run(policy.output_names, dict(zip(policy.input_names, inputs, strict=True)))
        _check_close(",".join(policy.output_names), actual, expected, path)
    return True


def _verify_torchscript(
    target: Path, policy: ExportedPolicy, steps: list[tuple[list[np.ndarray], list[np.ndarray]]], path: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = th.jit.load(str(target))
    n_obs = len(policy.keys)
    for inputs, expected in steps:
        tensors = [th.as_tensor(array) for array in inputs]
        with th.no_grad():
            if policy.is_dict:
                actual = module(dict(zip(policy.keys, tensors[:n_obs], strict=True)), *tensors[n_obs:])
            else:
                actual = module(*tensors)
        _check_close(",".join(policy.output_names), [tensor.numpy() for tensor in actual], expected, path)


def export_policy(
    model: Any,
    path: str | os.PathLike,
    format: str | None = None,
    deterministic: bool = True,
    opset: int | None = None,
    normalize: Any = None,
    *,
    channels_last: bool | None = None,
    verify: bool = True,
) -> Path:
    """
    Export the policy of a SAC or DiscreteSAC model, preprocessing included (see the module docstring).

    Inputs are named ``obs`` (one input) or after the keys of a Dict observation space; the batch dimension is
    dynamic. ONNX is run with ``session.run(None, {"obs": obs})``; TorchScript with ``module(obs)``
    (a ``{key: tensor}`` dict for Dict observations). Both return a tuple of outputs. Recurrent policies
    (``*LstmPolicy``) also take the RNN state and ``episode_start`` and return the new state: ONNX
    ``session.run(None, {"obs": obs, "h": h, "c": c, "episode_start": starts})``, TorchScript
    ``module(obs, h, c, episode_start)`` -> ``(action, h_out, c_out)`` (GRU: no ``c``, no ``c_out``).

    :param model: A SAC or DiscreteSAC model (any SB3 algorithm whose ``policy.actor`` follows the interface)
    :param path: Output file: ``.onnx`` (ONNX) or ``.pt`` (TorchScript); written atomically
    :param format: ``"onnx"`` or ``"torchscript"``; ``None``: from the suffix of ``path``
    :param deterministic: Output ``action`` (what ``predict(obs, deterministic=True)`` returns), or the
        distribution parameters instead: ``mean`` and ``log_std`` of the Gaussian before tanh and rescaling (SAC),
        ``logits`` (DiscreteSAC)
    :param opset: ONNX opset version (``None``: the exporter's default)
    :param normalize: A ``VecNormalize`` whose observation statistics (``(obs - mean) / sqrt(var + eps)`` clipped
        to ``clip_obs``) are folded into the graph, so the file takes unnormalised observations
    :param channels_last: Whether image inputs are channel-last (as the env returns them when SB3 wrapped it in
        ``VecTransposeImage``); ``None``: detected from ``model.get_env()`` / ``normalize``, else channel-first
    :param verify: Run the written file on sampled observations and compare with ``model.predict`` (ONNX: when
        onnxruntime is installed; recurrent policies: step by step over a short sequence with episode starts,
        states included); raise :class:`ExportVerificationError` on a mismatch
    :return: The path of the written file
    """
    kind = resolve_format(path, format)
    if kind == "onnx":
        _require("onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if channels_last is None:
        channels_last = _detect_channels_last(model, normalize)
    obs_space = model.observation_space
    input_space = _transpose_space(obs_space) if channels_last else obs_space
    if normalize is not None and normalize.norm_obs:
        # VecNormalize outputs float32: its input space is the env's, with the env's dtype
        input_space = normalize.observation_space

    # A frozen CPU copy: the model is left untouched, and outputs of the TorchScript module carry no grad_fn
    actor = copy.deepcopy(model.policy.actor).cpu().eval().requires_grad_(False)
    policy = ExportedPolicy(actor, obs_space, model.action_space, deterministic, bool(channels_last), normalize)
    example_arrays = _example_inputs(input_space, _EXPORT_BATCH, seed=1)
    if policy.recurrent:
        example_arrays += _state_inputs(policy, actor, _EXPORT_BATCH, seed=None)
    example = tuple(th.as_tensor(array) for array in example_arrays)

    metadata = {
        "producer": "sb3_sac_ext.export",
        "algorithm": type(model).__name__,
        "format": kind,
        "deterministic": json.dumps(bool(deterministic)),
        "channels_last": json.dumps(bool(channels_last)),
        "vec_normalize_folded": json.dumps(normalize is not None and bool(normalize.norm_obs)),
        "observation_space": space_to_json(input_space),
        "model_observation_space": space_to_json(obs_space),
        "action_space": space_to_json(model.action_space),
        "input_names": policy.input_names,
        "output_names": policy.output_names,
        "recurrent": json.dumps(policy.recurrent),
        "sb3_sac_ext_version": __version__,
        "stable_baselines3_version": _version("stable_baselines3"),
        "torch_version": th.__version__,
    }
    if policy.recurrent:
        rnn = recurrent_actor_rnn(actor)
        assert rnn is not None
        metadata.update(
            rnn_type=rnn.rnn_type,
            state_names=policy.state_names,
            state_output_names=[f"{name}_out" for name in policy.state_names],
            state_shape=[rnn.n_layers, "batch", rnn.hidden_size],
            episode_start_input="episode_start",
        )
    target = _atomic_target(path)
    try:
        with th.no_grad():
            if kind == "onnx":
                metadata["exporter"] = _export_onnx(policy, example, target, opset)
                _add_onnx_metadata(target, metadata)
            else:
                metadata["exporter"] = "torch.jit.trace"
                traced_module: nn.Module = _DictInputPolicy(policy) if policy.is_dict else policy
                n_obs = len(policy.keys)
                traced_input: Any = (
                    (dict(zip(policy.keys, example[:n_obs], strict=True)), *example[n_obs:]) if policy.is_dict else example
                )
                with warnings.catch_warnings():
                    # torch >= 2.10 flags TorchScript as deprecated; it still is the format torch.jit.load reads
                    warnings.simplefilter("ignore", th.jit.TracerWarning)
                    warnings.simplefilter("ignore", DeprecationWarning)
                    traced = th.jit.trace(traced_module, traced_input, strict=False, check_trace=False)
                    th.jit.save(traced, str(target), _extra_files={"metadata.json": json.dumps(metadata)})
        if verify:
            steps = _verification_steps(model, policy, input_space, normalize)
            if kind == "onnx":
                _verify_onnx(target, policy, steps, os.fspath(path))
            else:
                _verify_torchscript(target, policy, steps, os.fspath(path))
        if kind == "torchscript":
            side = Path(f"{path}.json")
            side_target = _atomic_target(side)
            side_target.write_text(json.dumps(metadata, indent=2))
            os.replace(side_target, side)
        os.replace(target, path)
    finally:
        if target.exists():
            target.unlink()
    return path


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """
    :param path: A file written by :func:`export_policy`
    :return: Its metadata (JSON values decoded)
    """
    path = Path(path)
    if resolve_format(path) == "onnx":
        _require("onnx")
        import onnx

        raw = {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
    else:
        extra = {"metadata.json": ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            th.jit.load(str(path), _extra_files=extra)
        raw = json.loads(extra["metadata.json"])
    decoded = {}
    for key, value in raw.items():
        try:
            decoded[key] = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            decoded[key] = value
    return decoded


# ----------------------------------------------------------------------------------------------- CLI


def _algorithms() -> dict[str, Any]:
    from sb3_sac_ext.sac import SAC

    algos: dict[str, Any] = {"sac": SAC, "sac_ext": SAC}
    try:
        from sb3_sac_ext.discrete_sac import DiscreteSAC  # type: ignore[attr-defined]

        algos["discrete_sac"] = DiscreteSAC
    except ImportError:
        pass
    return algos


def find_model(log_folder: str | os.PathLike, algo: str, env_id: str, exp_id: int = 0) -> Path:
    """
    Find a model saved the RL Zoo way: ``<log_folder>/<algo>/<env_id>_<exp_id>/<env_id>.zip``.

    :param log_folder: The RL Zoo log folder (``-f``)
    :param algo: Algorithm key
    :param env_id: Environment id
    :param exp_id: Experiment id; ``0``: the latest
    :return: Path of the model file (``best_model.zip`` when the final one is missing)
    """
    algo_folder = Path(log_folder) / algo
    if exp_id == 0:
        pattern = re.compile(rf"^{re.escape(env_id)}_(\d+)$")
        ids = [
            int(m.group(1))
            for d in glob.glob(str(algo_folder / f"{glob.escape(env_id)}_*"))
            if (m := pattern.match(Path(d).name))
        ]
        if not ids:
            raise FileNotFoundError(f"No experiment of {algo} on {env_id} in {algo_folder}")
        exp_id = max(ids)
    folder = algo_folder / f"{env_id}_{exp_id}"
    for name in (f"{env_id}.zip", "best_model.zip"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"No {env_id}.zip or best_model.zip in {folder}")


def export_main(argv: Sequence[str] | None = None) -> int:
    """
    ``sb3-sac-ext export``: export a saved model, found RL Zoo style or given with ``--model``.

    :param argv: Arguments after ``export`` (``None``: ``sys.argv[1:]``)
    :return: Exit status
    """
    parser = argparse.ArgumentParser(prog="sb3-sac-ext export", description="Export a trained policy to ONNX or TorchScript")
    parser.add_argument("--algo", default="sac", help="Algorithm key (sac, discrete_sac)")
    parser.add_argument("--env", help="Environment id (to find the model in the log folder)")
    parser.add_argument("-f", "--folder", default="logs", help="RL Zoo log folder")
    parser.add_argument("--exp-id", type=int, default=0, help="Experiment id (0: latest)")
    parser.add_argument("--model", help="Path of a saved model .zip (instead of --env/-f)")
    parser.add_argument("-o", "--output", required=True, help="Output file: .onnx or .pt")
    parser.add_argument("--format", choices=["onnx", "torchscript"], help="Format (default: from the suffix)")
    parser.add_argument("--stochastic", action="store_true", help="Export the distribution parameters, not the action")
    parser.add_argument("--opset", type=int, help="ONNX opset version")
    parser.add_argument(
        "--vec-normalize",
        help=(
            "normalisation statistics to fold in: vec_normalize.zip, or a pickled vecnormalize.pkl with "
            "--allow-pickle (default: the file next to the model, if any)"
        ),
    )
    parser.add_argument("--no-vec-normalize", action="store_true", help="Do not fold VecNormalize statistics in")
    parser.add_argument("--channels-last", choices=["auto", "yes", "no"], default="auto", help="Layout of image inputs")
    parser.add_argument("--allow-pickle", action="store_true", help="Allow unpickling items of the model file (trusted files)")
    parser.add_argument("--repo-id", help="Hugging Face Hub repository to download the model from (instead of --env/-f)")
    parser.add_argument("--revision", help="Hub commit sha to pin (with --repo-id)")
    parser.add_argument("--endpoint", help="Hub URL (with --repo-id; default: HF_ENDPOINT or https://huggingface.co)")
    args = parser.parse_args(argv)

    algos = _algorithms()
    if args.algo not in algos:
        parser.error(f"unknown --algo {args.algo!r}; available: {', '.join(sorted(algos))}")
    if args.model is None and args.env is None and args.repo_id is None:
        parser.error("give --env (with -f), --model or --repo-id")
    if args.repo_id is not None:
        from sb3_sac_ext.hub import VEC_NORMALIZE_FILE, download_from_hub

        # Downloaded through huggingface_hub's cache and verified against the repository's sha256 manifest
        download = download_from_hub(args.repo_id, revision=args.revision, endpoint=args.endpoint)
        model_path = download.model
        if args.vec_normalize is None and download.path(VEC_NORMALIZE_FILE) is not None:
            args.vec_normalize = str(download.path(VEC_NORMALIZE_FILE))
    else:
        model_path = Path(args.model) if args.model else find_model(args.folder, args.algo, args.env, args.exp_id)
    load_kwargs: dict[str, Any] = {"device": "cpu"}
    if args.allow_pickle:
        load_kwargs["allow_pickle"] = True
    model = algos[args.algo].load(model_path, **load_kwargs)

    normalize = None
    stats_path = Path(args.vec_normalize) if args.vec_normalize else _find_vec_normalize(model_path)
    if not args.no_vec_normalize and stats_path is not None:
        normalize = _load_vec_normalize(stats_path, model, allow_pickle=args.allow_pickle)
    channels_last = {"auto": None, "yes": True, "no": False}[args.channels_last]
    out = export_policy(
        model,
        args.output,
        format=args.format,
        deterministic=not args.stochastic,
        opset=args.opset,
        normalize=normalize,
        channels_last=channels_last,
    )
    print(f"Exported {model_path} to {out}" + (f" (VecNormalize statistics from {stats_path})" if normalize else ""))
    return 0


def _find_vec_normalize(model_path: Path) -> Path | None:
    # Ours: vec_normalize.zip (pickle-free) next to the model; RL Zoo: <exp folder>/<env_id>/vecnormalize.pkl
    for candidate in (
        model_path.parent / "vec_normalize.zip",
        model_path.parent / model_path.stem / "vecnormalize.pkl",
        model_path.parent / "vecnormalize.pkl",
    ):
        if candidate.is_file():
            return candidate
    return None


class _SpacesEnv(gym.Env):
    """An env that only declares the model's spaces: enough to rebuild ``VecNormalize`` statistics."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space):
        self.observation_space = observation_space
        self.action_space = action_space


def _load_vec_normalize(stats_path: Path, model: Any, allow_pickle: bool) -> Any:
    """Normalisation statistics to fold in; a pickled ``vecnormalize.pkl`` only with ``allow_pickle``."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sb3_sac_ext.common.persistence import load_vec_normalize

    venv = DummyVecEnv([lambda: _SpacesEnv(model.observation_space, model.action_space)])
    return load_vec_normalize(stats_path, venv, allow_pickle=allow_pickle)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(export_main())


__all__ = [
    "FORMATS",
    "ExportDependencyError",
    "ExportFormatError",
    "ExportVerificationError",
    "ExportedPolicy",
    "actor_export_outputs",
    "export_main",
    "export_policy",
    "find_model",
    "read_metadata",
    "recurrent_actor_export_outputs",
    "recurrent_actor_rnn",
    "resolve_format",
    "space_to_json",
    "to_model_layout",
]
