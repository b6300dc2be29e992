"""
:func:`export_policy`: build the graph of a model's actor, write it (ONNX or TorchScript) with its metadata,
verify the written file against the model, then move it to its final path atomically.
"""

import copy
import json
import os
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch as th

from sb3_sac_ext.common.persistence import atomic_write
from sb3_sac_ext.common.export.graph import ExportedPolicy
from sb3_sac_ext.common.export.layout import detect_channels_last, example_inputs, space_to_json, transpose_space
from sb3_sac_ext.common.export.verify import verification_steps, verify_onnx, verify_torchscript
from sb3_sac_ext.common.export.writers import add_onnx_metadata, require, resolve_format, write_onnx, write_torchscript
from sb3_sac_ext.version import __version__

# Batch size of the example inputs traced at export time
_EXPORT_BATCH = 2


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def _metadata(model: Any, policy: ExportedPolicy, kind: str, input_space: Any, normalize: Any) -> dict[str, Any]:
    """The metadata stored in the exported file (and in the ``<path>.json`` side file of TorchScript)."""
    metadata: dict[str, Any] = {
        "producer": "sb3_sac_ext.export",
        "algorithm": type(model).__name__,
        "format": kind,
        "deterministic": json.dumps(bool(policy.deterministic)),
        "channels_last": json.dumps(bool(policy.channels_last)),
        "vec_normalize_folded": json.dumps(normalize is not None and bool(normalize.norm_obs)),
        "observation_space": space_to_json(input_space),
        "model_observation_space": space_to_json(model.observation_space),
        "action_space": space_to_json(model.action_space),
        "input_names": policy.input_names,
        "output_names": policy.output_names,
        "recurrent": json.dumps(policy.recurrent),
        "sb3_sac_ext_version": __version__,
        "stable_baselines3_version": _version("stable_baselines3"),
        "torch_version": th.__version__,
    }
    if policy.state_shape is not None:
        n_layers, hidden_size = policy.state_shape
        metadata.update(
            rnn_type=policy.rnn_type,
            state_names=policy.state_names,
            state_output_names=[f"{name}_out" for name in policy.state_names],
            state_shape=[n_layers, "batch", hidden_size],
            episode_start_input="episode_start",
        )
    return metadata


def _frozen_copy(actor: Any) -> Any:
    """
    A CPU copy of ``actor`` in eval mode without gradients: the model is left untouched, and outputs of the
    TorchScript module carry no grad_fn. gSDE's sampled exploration matrices (computed tensors, which deepcopy
    refuses, and the distribution they were drawn from) are left out of the copy: the exported distribution needs
    only ``log_std``.
    """
    dist = getattr(actor, "action_dist", None)
    sampled = {
        id(value): None
        for value in (vars(dist).values() if dist is not None else ())
        if isinstance(value, th.distributions.Distribution) or (isinstance(value, th.Tensor) and not value.is_leaf)
    }
    return copy.deepcopy(actor, sampled).cpu().eval().requires_grad_(False)


def _copy_into_place(source: Path, path: Path) -> None:
    with atomic_write(path) as file, open(source, "rb") as written:
        shutil.copyfileobj(written, file)


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
    Export the policy of a SAC or DiscreteSAC model, preprocessing included (see :mod:`sb3_sac_ext.export`).

    Inputs are named ``obs`` (one input) or after the keys of a Dict observation space; the batch dimension is
    dynamic. ONNX is run with ``session.run(None, {"obs": obs})``; TorchScript with ``module(obs)``
    (a ``{key: tensor}`` dict for Dict observations). Both return a tuple of outputs. Recurrent policies
    (``*LstmPolicy``) also take the RNN state and ``episode_start`` and return the new state: ONNX
    ``session.run(None, {"obs": obs, "h": h, "c": c, "episode_start": starts})``, TorchScript
    ``module(obs, h, c, episode_start)`` -> ``(action, h_out, c_out)`` (GRU: no ``c``, no ``c_out``).

    :param model: A SAC or DiscreteSAC model (any SB3 algorithm whose ``policy.actor`` has the same layers)
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
        states included); raise :class:`~sb3_sac_ext.export.ExportVerificationError` on a mismatch
    :return: The path of the written file
    """
    kind = resolve_format(path, format)
    if kind == "onnx":
        require("onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if channels_last is None:
        channels_last = detect_channels_last(model, normalize)
    obs_space = model.observation_space
    input_space = transpose_space(obs_space) if channels_last else obs_space
    if normalize is not None and normalize.norm_obs:
        # VecNormalize outputs float32: its input space is the env's, with the env's dtype
        input_space = normalize.observation_space

    actor = _frozen_copy(model.policy.actor)
    policy = ExportedPolicy(actor, obs_space, model.action_space, deterministic, bool(channels_last), normalize)
    example_arrays = example_inputs(input_space, _EXPORT_BATCH, seed=1)
    if policy.recurrent:
        example_arrays += policy.initial_state(_EXPORT_BATCH, seed=None)
    example = tuple(th.as_tensor(array) for array in example_arrays)
    metadata = _metadata(model, policy, kind, input_space, normalize)

    # Written and verified in a scratch folder next to ``path``, then moved in place: no partial file at ``path``
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as scratch:
        target = Path(scratch) / path.name
        with th.no_grad():
            if kind == "onnx":
                metadata["exporter"] = write_onnx(policy, example, target, opset)
                add_onnx_metadata(target, metadata)
            else:
                metadata["exporter"] = "torch.jit.trace"
                write_torchscript(policy, example, target, metadata)
        if verify:
            steps = verification_steps(model, policy, input_space, normalize)
            if kind == "onnx":
                verify_onnx(target, policy, steps, os.fspath(path))
            else:
                verify_torchscript(target, policy, steps, os.fspath(path))
        if kind == "torchscript":
            with atomic_write(f"{path}.json") as side:
                side.write(json.dumps(metadata, indent=2).encode())
        _copy_into_place(target, path)
    return path
