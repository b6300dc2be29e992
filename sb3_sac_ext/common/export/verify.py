"""
Verification of an exported file against the model it came from: the file is run (onnxruntime, or
``torch.jit.load``) on sampled observations and its outputs are compared with ``model.predict``
(deterministic export) or with the distribution parameters computed by the actor's own methods.
A recurrent policy is checked step by step over a short sequence with episode starts, states included.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces

from sb3_sac_ext.common.errors import SB3SacExtError
from sb3_sac_ext.common.export.graph import ExportedPolicy
from sb3_sac_ext.common.export.layout import example_inputs, to_model_layout
from sb3_sac_ext.common.export.writers import load_torchscript

# Batch size of the verification inputs and steps of the sequence that verifies a recurrent export
VERIFY_BATCH = 5
VERIFY_STEPS = 4

# One verification call: the inputs of the file and the outputs it must return
Step = tuple[list[np.ndarray], list[np.ndarray]]


class ExportVerificationError(SB3SacExtError, ValueError):
    """The exported file does not reproduce the model's outputs."""


def verification_steps(model: Any, policy: ExportedPolicy, input_space: spaces.Space, normalize: Any) -> list[Step]:
    """
    ``(inputs, expected outputs)`` of the calls that verify the exported file: one batch for a feed-forward policy;
    for a recurrent one a short sequence from a random state, with episode starts (envs 0 and 1 at steps 0 and 2),
    each step fed the state that ``model.predict`` returned at the step before.
    """
    if not policy.recurrent:
        inputs = example_inputs(input_space, VERIFY_BATCH, seed=2)
        return [(inputs, _reference_outputs(model, policy, inputs, normalize))]
    steps = []
    *state, _ = policy.initial_state(VERIFY_BATCH, seed=3)
    for t in range(VERIFY_STEPS):
        episode_start = np.zeros(VERIFY_BATCH, dtype=np.float32)
        if t in (0, 2):
            episode_start[t // 2] = 1.0
        inputs = [*example_inputs(input_space, VERIFY_BATCH, seed=2 + t), *state, episode_start]
        expected = _reference_outputs(model, policy, inputs, normalize)
        steps.append((inputs, expected))
        state = expected[len(expected) - len(policy.state_names) :]
    return steps


def _model_obs(policy: ExportedPolicy, inputs: list[np.ndarray], normalize: Any) -> Any:
    obs: Any = dict(zip(policy.keys, inputs, strict=True)) if policy.is_dict else inputs[0]
    if normalize is not None:
        obs = normalize.normalize_obs(obs)
    if policy.channels_last:
        obs = to_model_layout(policy.observation_space, obs)
    return obs


def _reference_outputs(model: Any, policy: ExportedPolicy, inputs: list[np.ndarray], normalize: Any) -> list[np.ndarray]:
    """What the exported file must return, computed by the model itself."""
    n_obs = len(policy.keys)
    obs = _model_obs(policy, inputs[:n_obs], normalize)
    n_states = len(policy.state_names)
    state = None
    if policy.recurrent:
        h = inputs[n_obs]
        state = (h, inputs[n_obs + 1] if n_states > 1 else np.zeros_like(h))  # predict carries a zero c for a GRU
    if policy.deterministic:
        if not policy.recurrent:
            return [model.predict(obs, deterministic=True)[0]]
        action, new_state = model.predict(obs, state=state, episode_start=inputs[-1], deterministic=True)
        return [action, *new_state[:n_states]]
    model.policy.set_training_mode(False)
    obs_tensor, _ = model.policy.obs_to_tensor(obs)
    actor = model.policy.actor
    with th.no_grad():
        if policy.recurrent:
            device = model.policy.device
            states = tuple(th.as_tensor(s, device=device) for s in state)  # type: ignore[union-attr]
            latent, new_state = actor.step(obs_tensor, states, th.as_tensor(inputs[-1], device=device))
            outputs = _recurrent_distribution(actor, latent)
            return [output.cpu().numpy() for output in outputs] + [s.cpu().numpy() for s in new_state[:n_states]]
        outputs = _distribution(actor, obs_tensor)
    return [output.cpu().numpy() for output in outputs]


def _distribution(actor: Any, obs: Any) -> tuple[th.Tensor, ...]:
    """``(mean, log_std)`` before tanh (SAC, gSDE included) or ``(logits,)`` (DiscreteSAC), by the actor's methods."""
    if isinstance(actor.action_space, spaces.Discrete):
        return (actor.logits(obs),)
    mean, log_std, extra = actor.get_action_dist_params(obs)
    if getattr(actor, "use_sde", False):
        distribution = actor.action_dist.proba_distribution(mean, log_std, extra["latent_sde"]).distribution
        return mean, th.log(distribution.stddev)
    return mean, log_std


def _recurrent_distribution(actor: Any, latent: th.Tensor) -> tuple[th.Tensor, ...]:
    if isinstance(actor.action_space, spaces.Discrete):
        return (actor.logits_net(latent).float(),)
    return tuple(actor.dist_params(latent))


def _check_close(names: Sequence[str], actual: Sequence[np.ndarray], expected: Sequence[np.ndarray], path: str) -> None:
    for output, got, want in zip(names, actual, expected, strict=True):
        got = np.asarray(got).reshape(np.shape(want))
        if not np.allclose(got, want, atol=1e-4, rtol=1e-4):
            raise ExportVerificationError(
                f"{path}: output {output!r} differs from the model's by up to {np.max(np.abs(got - want)):.3g}"
            )


def verify_onnx(target: Any, policy: ExportedPolicy, steps: list[Step], path: str) -> bool:
    """
    Run the ONNX file ``target`` on ``steps`` with onnxruntime (CPU).

    :param path: Name of the file in error messages
    :return: False when onnxruntime is not installed (nothing checked)
    :raise ExportVerificationError: On a mismatch
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    for inputs, expected in steps:
        actual = session.run(policy.output_names, dict(zip(policy.input_names, inputs, strict=True)))
        _check_close(policy.output_names, actual, expected, path)
    return True


def verify_torchscript(target: Any, policy: ExportedPolicy, steps: list[Step], path: str) -> None:
    """
    Run the TorchScript file ``target`` on ``steps``.

    :param path: Name of the file in error messages
    :raise ExportVerificationError: On a mismatch
    """
    module = load_torchscript(target)
    n_obs = len(policy.keys)
    for inputs, expected in steps:
        tensors = [th.as_tensor(array) for array in inputs]
        with th.no_grad():
            if policy.is_dict:
                actual = module(dict(zip(policy.keys, tensors[:n_obs], strict=True)), *tensors[n_obs:])
            else:
                actual = module(*tensors)
        _check_close(policy.output_names, [tensor.numpy() for tensor in actual], expected, path)
