"""
Writing and reading exported files: ONNX through ``torch.onnx.export`` (metadata as ONNX metadata properties) and
TorchScript through ``torch.jit.trace`` (metadata as the extra file ``metadata.json`` inside the archive).

ONNX export uses the TorchScript-based exporter, ``torch.onnx.export(..., dynamo=False)``: with torch 2.13 it
is still available (deprecated), needs no ``onnxscript`` and exports SB3's networks reliably and quickly.
When a later torch removes it, the torch.export-based exporter (``dynamo=True``, which needs ``onnxscript``)
is used instead, with a dynamic batch dimension declared through ``dynamic_shapes``.
"""

import importlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch as th
from torch import nn

from sb3_sac_ext.common.errors import SB3SacExtError
from sb3_sac_ext.common.export.graph import DictInputPolicy, ExportedPolicy

FORMATS = {".onnx": "onnx", ".pt": "torchscript"}
INSTALL_HINT = 'pip install "sb3-sac-ext[export]"'


class ExportFormatError(SB3SacExtError, ValueError):
    """The export format (file suffix or ``format`` argument) is not one of the accepted ones."""


class ExportDependencyError(SB3SacExtError, ImportError):
    """A package needed to export (onnx, onnxscript) is not installed."""


def require(*modules: str) -> None:
    """Import the optional export dependencies, or raise :class:`ExportDependencyError` with the pip command."""
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


def write_onnx(policy: ExportedPolicy, example: tuple[th.Tensor, ...], target: Path, opset: int | None) -> str:
    """
    Write ``policy`` to ``target`` as ONNX, batch dimension dynamic.

    :param policy: The graph
    :param example: Example inputs, in ``policy.input_names`` order
    :param target: Output file
    :param opset: ONNX opset version (``None``: the exporter's default)
    :return: The name of the exporter used
    """
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
    require("onnxscript")
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


def add_onnx_metadata(target: Path, metadata: dict[str, Any]) -> None:
    """Replace the metadata properties of the ONNX file ``target`` (non-string values as JSON)."""
    import onnx

    proto = onnx.load(str(target))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value)
    onnx.save(proto, str(target))


def write_torchscript(policy: ExportedPolicy, example: tuple[th.Tensor, ...], target: Path, metadata: dict[str, Any]) -> None:
    """
    Trace ``policy`` and save it to ``target`` with ``metadata.json`` inside; Dict observations are taken as
    ``{key: tensor}`` like ``predict`` takes them.
    """
    module: nn.Module = DictInputPolicy(policy) if policy.is_dict else policy
    n_obs = len(policy.keys)
    inputs: Any = (dict(zip(policy.keys, example[:n_obs], strict=True)), *example[n_obs:]) if policy.is_dict else example
    with warnings.catch_warnings():
        # torch >= 2.10 flags TorchScript as deprecated; it still is the format torch.jit.load reads
        warnings.simplefilter("ignore", th.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = th.jit.trace(module, inputs, strict=False, check_trace=False)
        th.jit.save(traced, str(target), _extra_files={"metadata.json": json.dumps(metadata)})


def load_torchscript(path: str | os.PathLike, extra_files: dict[str, Any] | None = None) -> Any:
    """``torch.jit.load`` without its deprecation warning (torch >= 2.10)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return th.jit.load(str(path), _extra_files=extra_files)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """
    :param path: A file written by :func:`~sb3_sac_ext.export.export_policy`
    :return: Its metadata (JSON values decoded)
    """
    path = Path(path)
    if resolve_format(path) == "onnx":
        require("onnx")
        import onnx

        raw = {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
    else:
        extra = {"metadata.json": ""}
        load_torchscript(path, extra)
        raw = json.loads(extra["metadata.json"])
    decoded = {}
    for key, value in raw.items():
        try:
            decoded[key] = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            decoded[key] = value
    return decoded
