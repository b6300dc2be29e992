"""
Model files: save and load SAC and DiscreteSAC without pickle, and Stable-Baselines3 zips (pickles) on request.

A model file is a container (:mod:`~sb3_sac_ext.common.persistence.container`) with ``data.json`` (settings as
tagged JSON, :mod:`~sb3_sac_ext.common.persistence.codec`), ``tensors.safetensors`` (every tensor) and
``tensors.json`` (the nesting around them: optimizer ``param_groups``, int keys, tuples).
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import pickletools
import warnings
import zipfile
from collections.abc import Callable
from typing import Any

import torch as th
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.save_util import recursive_getattr, recursive_setattr
from stable_baselines3.common.utils import check_for_correct_spaces, get_device

from sb3_sac_ext.common.errors import (
    CorruptedFileError,
    MissingMemberError,
    ModelFileError,
    PickleNotAllowedError,
    SB3SacExtError,
    WrongAlgorithmError,
)
from sb3_sac_ext.common.persistence.codec import Decoder, Encoder, Unencodable, dumps, import_path
from sb3_sac_ext.common.persistence.container import (
    READ_ERRORS,
    ContainerWriter,
    corrupted_error,
    is_our_format,
    open_container,
    open_zip,
    write_container,
)
from sb3_sac_ext.common.persistence.files import PathLike, file_name, read_path


def _pickle_globals(serialized: str) -> list[str]:
    """Module and qualnames that a pickle references, found by parsing its opcodes (nothing is executed)."""
    names: list[str] = []
    try:
        raw = base64.b64decode(serialized.encode())
        strings: list[str] = []
        for opcode, arg, _ in pickletools.genops(raw):
            if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(arg)
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            elif opcode.name == "GLOBAL":
                names.append(str(arg).replace(" ", "."))
    except Exception:
        pass
    return names


_SB3_POLICY_MODULES = {
    "stable_baselines3.sac.policies": "SAC",
    "stable_baselines3.td3.policies": "TD3",
    "stable_baselines3.dqn.policies": "DQN",
    "stable_baselines3.common.policies.ActorCriticPolicy": "PPO or A2C",
    "stable_baselines3.common.policies.ActorCriticCnnPolicy": "PPO or A2C",
    "stable_baselines3.common.policies.MultiInputActorCriticPolicy": "PPO or A2C",
    "sb3_contrib.tqc.policies": "TQC",
    "sb3_contrib.crossq.policies": "CrossQ",
}


def _sb3_algorithm(data: dict[str, Any]) -> str | None:
    """The SB3 algorithm a legacy zip holds, from its policy class reference and keys (no unpickling)."""
    policy = data.get("policy_class")
    if isinstance(policy, dict) and isinstance(policy.get(":serialized:"), str):
        for ref in _pickle_globals(policy[":serialized:"]):
            for prefix, algo in _SB3_POLICY_MODULES.items():
                if ref.startswith(prefix):
                    return algo
            if ref.startswith("sb3_sac_ext."):
                return None
    if "gae_lambda" in data:
        return "PPO" if "clip_range" in data else "A2C"
    if "exploration_rate" in data:
        return "DQN"
    return None


def algorithm_name(cls: type) -> str:
    """
    The name files record (manifest ``algorithm``): the first class of sb3-sac-ext in the MRO that subclasses SB3's
    ``OffPolicyAlgorithm`` directly, so that a subclass of ``SAC`` saves and loads as ``SAC``. (``common`` cannot use
    :mod:`sb3_sac_ext.registry`, which imports the algorithms.)

    :param cls: An algorithm class
    :return: ``SAC``, ``DiscreteSAC``, or the class name for any other class
    """
    for base in cls.__mro__:
        if base.__module__.startswith("sb3_sac_ext.") and OffPolicyAlgorithm in base.__bases__:
            return base.__name__
    return cls.__name__


def _legacy_serialized_items(data_json: str, name: str) -> tuple[dict[str, Any], list[str]]:
    try:
        data = json.loads(data_json)
    except json.JSONDecodeError as e:
        raise CorruptedFileError(f"{name}: member 'data' is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CorruptedFileError(f"{name}: member 'data' is not a JSON object")
    serialized = sorted(k for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v)
    return data, serialized


def _model_state(
    model: Any, exclude: Any = None, include: Any = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The same selection as SB3's ``BaseAlgorithm.save``: (data, state dicts, torch variables)."""
    data = model.__dict__.copy()
    exclude = set(exclude or []).union(model._excluded_save_params())
    if include is not None:
        exclude = exclude.difference(include)
    state_dicts_names, torch_variable_names = model._get_torch_save_params()
    for torch_var in state_dicts_names + torch_variable_names:
        exclude.add(torch_var.split(".")[0])
    for param_name in exclude:
        data.pop(param_name, None)
    variables = {name: recursive_getattr(model, name) for name in torch_variable_names}
    return data, model.get_parameters(), variables


def save_model(model: Any, path: PathLike, exclude: Any = None, include: Any = None) -> None:
    """
    Save ``model`` without pickle, atomically (the format is described in :mod:`sb3_sac_ext.common.persistence`).

    :param model: A SAC or DiscreteSAC model
    :param path: File path (``.zip`` is appended when it has no suffix) or a writable binary file
    :param exclude: Attribute names not to save, in addition to the default ones
    :param include: Attribute names to save even if excluded by default
    """
    data, params, variables = _model_state(model, exclude, include)
    encoder = Encoder(progress_remaining=float(getattr(model, "_current_progress_remaining", 1.0)))
    encoded: dict[str, Any] = {}
    skipped = []
    for key, value in data.items():
        try:
            encoded[key] = encoder(value, key)
        except Unencodable as e:
            skipped.append(f"{key} ({e})")
    if skipped:
        warnings.warn(f"These attributes cannot be stored as data and were not saved: {skipped}", UserWarning)
    if encoder.frozen_callables:
        warnings.warn(
            f"{encoder.frozen_callables} are arbitrary callables (e.g. a lambda learning rate), which cannot be stored "
            "as data: their current value was saved as a constant. Use the schedules of sb3_sac_ext.common.schedules "
            "(or strings such as 'lin_3e-4') to save a schedule.",
            UserWarning,
        )
    tensors: dict[str, th.Tensor] = {}
    tensor_tree = Encoder(tensor_sink=tensors)({"params": params, "pytorch_variables": variables}, "tensors")
    meta = {"algorithm": algorithm_name(type(model)), "class": import_path(type(model)) or type(model).__qualname__}

    def fill(writer: ContainerWriter) -> None:
        writer.write("data.json", dumps(encoded), compress=True)
        writer.write("tensors.json", dumps(tensor_tree), compress=True)
        writer.write("tensors.safetensors", save_safetensors(tensors))

    write_container(path, "model", meta, fill)


def _check_model_manifest(name: str, manifest: dict[str, Any], cls: type) -> None:
    held, wanted = manifest.get("algorithm"), algorithm_name(cls)
    if held != wanted:
        raise WrongAlgorithmError(f"{name} holds a {held} model, not {wanted}: load it with {held}.load")


def read_model_file(
    path: PathLike, cls: type, device: Any = "cpu", allow_pickle: bool = False, custom_objects: dict | None = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """
    Read and verify a model file of this format.

    :param path: File path or readable binary file
    :param cls: The algorithm class that reads it (the file must hold the same algorithm)
    :param device: Torch device of the tensors
    :param allow_pickle: Whether untrusted import paths may be imported
    :param custom_objects: Attributes that replace those of the file (as in SB3)
    :return: ``(data, params, pytorch_variables)``
    :raise ModelFileError: (a subclass) for every damaged or wrong file
    """
    container = open_container(path, "model", required=("data.json", "tensors.json", "tensors.safetensors"))
    try:
        _check_model_manifest(container.name, container.manifest, cls)
        raw = container.read("tensors.safetensors")
        try:
            tensors = load_safetensors(raw)
        except Exception as e:
            raise CorruptedFileError(
                f"{container.name}: member 'tensors.safetensors' is not a valid safetensors file ({e})"
            ) from None
        device = th.device(device) if not isinstance(device, th.device) else device
        tensors = {key: value.to(device) for key, value in tensors.items()}
        tree = Decoder(f"{container.name} (tensors.json)", allow_pickle, tensors=tensors)(container.json("tensors.json"))
        if not isinstance(tree, dict) or not isinstance(tree.get("params"), dict):
            raise CorruptedFileError(f"{container.name}: tensors.json has no 'params'")
        raw_data = container.json("data.json")
        if not isinstance(raw_data, dict):
            raise CorruptedFileError(f"{container.name}: data.json is not a JSON object")
        decoder = Decoder(f"{container.name} (data.json)", allow_pickle)
        # As SB3's load: custom_objects replace attributes the file holds; a key the file lacks is ignored
        custom_objects = custom_objects or {}
        data = {key: custom_objects[key] if key in custom_objects else decoder(value, key) for key, value in raw_data.items()}
        return data, tree["params"], tree.get("pytorch_variables") or {}
    finally:
        container.zip.close()


def load_model(
    cls: Any,
    path: PathLike,
    env: Any = None,
    device: Any = "auto",
    custom_objects: dict[str, Any] | None = None,
    force_reset: bool = True,
    allow_pickle: bool = False,
    sb3_load: Callable[[PathLike], Any] | None = None,
    **kwargs: Any,
) -> Any:
    """
    Load a model of class ``cls``: a file in our format, without pickle, or a Stable-Baselines3 zip (only with
    ``allow_pickle=True``, through ``sb3_load``: SB3's own ``BaseAlgorithm.load``). See ``SAC.load``.

    For our format this repeats the steps of SB3's ``BaseAlgorithm.load`` (wrap the env, check its spaces, build
    with ``_init_setup_model=False``, restore the attributes, ``_setup_model``, ``set_parameters``, the PyTorch
    variables, ``reset_noise``) because SB3's ``load`` cannot be called with data it did not read itself: it reads
    the file with ``load_from_zip_file``, which unpickles ``data`` and ``torch.load``-s the ``.pth`` members. The
    SB3 pieces that stand alone are reused: ``check_for_correct_spaces``, ``get_device``, ``recursive_setattr``.

    :param cls: The algorithm class
    :param path: File path (``.zip`` is tried when it does not exist) or a readable binary file
    :param env: Env to attach (its spaces must match the saved ones)
    :param device: Torch device
    :param custom_objects: Attributes that replace those of the file (as in SB3)
    :param force_reset: Reset the env before the next ``learn`` (as in SB3)
    :param allow_pickle: Whether a Stable-Baselines3 zip (with pickled items) may be loaded
    :param sb3_load: SB3's load of ``cls``, for Stable-Baselines3 zips
    :param kwargs: Attributes to set on the model (as in SB3)
    :return: The model
    :raise ModelFileError: (a subclass) for every damaged, wrong or refused file
    """
    path = read_path(path, ("zip",))
    name = file_name(path)
    open_zip(path)[0].close()  # typed errors for empty / non-zip files
    if isinstance(path, io.IOBase):
        path.seek(0)
    if not is_our_format(path):
        _check_legacy_zip(cls, path, name, allow_pickle)
        if isinstance(path, io.IOBase):
            path.seek(0)
        if sb3_load is None:
            raise PickleNotAllowedError(f"{name} is a Stable-Baselines3 zip, which this class cannot load")
        try:
            return sb3_load(path)
        except SB3SacExtError:  # ours are typed already (some are also AssertionErrors, as SB3's checks)
            raise
        except (
            zipfile.BadZipFile,
            EOFError,
            KeyError,
            AssertionError,
            AttributeError,
            RuntimeError,
            pickle.UnpicklingError,
        ) as e:
            raise CorruptedFileError(f"{name}: cannot load this Stable-Baselines3 zip ({type(e).__name__}: {e})") from e
    device = get_device(device)
    data, params, variables = read_model_file(path, cls, device, allow_pickle, custom_objects)
    for required in ("policy_class", "observation_space", "action_space"):
        if required not in data:
            raise MissingMemberError(f"{name}: data.json lacks {required!r}")
    if isinstance(data.get("policy_kwargs"), dict):
        data["policy_kwargs"].pop("device", None)
    if "policy_kwargs" in kwargs and kwargs["policy_kwargs"] != data.get("policy_kwargs"):
        raise ValueError(
            f"The specified policy kwargs do not equal the stored policy kwargs. Stored: {data.get('policy_kwargs')}, "
            f"specified: {kwargs['policy_kwargs']}"
        )
    if env is not None:
        env = cls._wrap_env(env, data.get("verbose", 0))
        check_for_correct_spaces(env, data["observation_space"], data["action_space"])
        if force_reset:
            data["_last_obs"] = None
        data["n_envs"] = env.num_envs
    model = cls(policy=data["policy_class"], env=env, device=device, _init_setup_model=False)
    model.__dict__.update(data)
    model.__dict__.update(kwargs)
    model._setup_model()
    try:
        model.set_parameters(params, exact_match=True, device=device)
        for var_name, value in variables.items():
            if value is not None:
                recursive_setattr(model, f"{var_name}.data", value.data.to(device))
    except (RuntimeError, KeyError, ValueError, AttributeError, IndexError) as e:
        if isinstance(e, ModelFileError):
            raise
        raise CorruptedFileError(
            f"{name}: the saved weights do not fit the saved settings ({type(e).__name__}: {e})"
        ) from None
    if model.use_sde:
        model.policy.reset_noise()
    return model


def _check_legacy_zip(cls: Any, path: PathLike, name: str, allow_pickle: bool) -> None:
    """A zip without our manifest: SB3's format (``data`` + ``*.pth``). Check its algorithm, then its pickles."""
    archive, _ = open_zip(path)
    with archive:
        try:
            names = archive.namelist()
            if "data" not in names:
                raise MissingMemberError(f"{name}: neither manifest.json nor data is present: not a saved model")
            data_json = archive.read("data").decode()
        except ModelFileError:
            raise
        except READ_ERRORS as e:
            raise corrupted_error(name, e, "data") from None
    data, serialized = _legacy_serialized_items(data_json, name)
    held = _sb3_algorithm(data)
    wanted = algorithm_name(cls)
    # Only our SAC reads SB3's SAC zips (same attributes and state dicts)
    if held is not None and not (held == "SAC" == wanted):
        raise WrongAlgorithmError(f"{name} holds a Stable-Baselines3 {held} model, not {wanted}")
    if serialized and not allow_pickle:
        raise PickleNotAllowedError(
            f"{name} is a Stable-Baselines3 zip with pickled items {serialized}; unpickling runs code from the file. "
            f"If you trust the file, load it with {wanted}.load(path, allow_pickle=True), then model.save(path) "
            "to convert it to the pickle-free format."
        )


def read_parameters(path: PathLike, cls: type, device: Any = "auto") -> dict[str, Any]:
    """
    :param path: A model file in our format
    :param cls: The algorithm class that reads it
    :param device: Torch device
    :return: Its state dicts (for ``set_parameters(path)``)
    """
    path = read_path(path, ("zip",))
    _, params, _ = read_model_file(path, cls, get_device(device))
    return params
