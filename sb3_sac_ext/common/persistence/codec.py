"""
Tagged JSON: Python values (settings, hyperparameters, spaces, schedules, classes) as JSON data, and back.

Values JSON lacks are ``{"::tag": ...}`` objects; classes and functions are import paths ``"module:qualname"``,
re-imported on load only from :data:`TRUSTED_MODULES`. Nothing here unpickles, except a ``:serialized:`` item
(SB3's cloudpickle) when the caller passes ``allow_pickle=True``. Spaces have one schema,
:func:`space_to_json` / :func:`space_from_json`.
"""

from __future__ import annotations

import base64
import collections
import enum
import importlib
import json
import types
from collections.abc import Callable
from typing import Any

import cloudpickle
import numpy as np
import torch as th
from gymnasium import spaces
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from sb3_sac_ext.common.errors import (
    CorruptedFileError,
    MissingMemberError,
    ModelFileError,
    PickleNotAllowedError,
    UntrustedImportError,
)
from sb3_sac_ext.common.schedules import SCHEDULES, BaseSchedule, ConstantSchedule, schedule_from_config

# Modules whose classes and functions a file may name (prefix match on the module path).
# Extend it (``TRUSTED_MODULES.append("my_package")``) to load files naming your own classes without pickle.
TRUSTED_MODULES: list[str] = ["torch.nn", "torch.optim", "stable_baselines3", "sb3_sac_ext"]


class Unencodable(TypeError):
    """A value that cannot be stored as data (the caller skips it with a warning, or refuses to save)."""


def import_path(obj: Any) -> str | None:
    """
    :param obj: A class or function
    :return: ``"module:qualname"`` if ``obj`` can be re-imported by that path, else ``None``
    """
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        return None
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except Exception:
        return None
    return f"{module}:{qualname}" if found is obj else None


def _is_trusted(module: str) -> bool:
    return any(module == trusted or module.startswith(trusted + ".") for trusted in TRUSTED_MODULES)


def resolve_import(path: str, allow_untrusted: bool = False, what: str = "") -> Any:
    """
    Import ``"module:qualname"``, only from :data:`TRUSTED_MODULES` unless ``allow_untrusted``.

    :param path: The import path
    :param allow_untrusted: Whether modules outside :data:`TRUSTED_MODULES` may be imported
    :param what: What names it (file and item), for error messages
    :return: The object
    :raise UntrustedImportError: for a module outside the allowlist
    :raise CorruptedFileError: if the path cannot be imported
    """
    if not isinstance(path, str) or ":" not in path:
        raise CorruptedFileError(f"{what}: {path!r} is not an import path 'module:qualname'")
    module, qualname = path.split(":", 1)
    if not allow_untrusted and not _is_trusted(module):
        raise UntrustedImportError(
            f"{what} names {path!r}, outside the trusted modules {TRUSTED_MODULES}. Importing it runs code chosen "
            "by the file. If you trust the file, load it with allow_pickle=True, add the module to "
            "sb3_sac_ext.common.persistence.TRUSTED_MODULES, or pass the object in custom_objects."
        )
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as e:
        raise CorruptedFileError(f"{what} names {path!r}, which cannot be imported: {e}") from None
    return found


def to_base64(raw: bytes) -> str:
    """:return: ``raw`` as base64 text."""
    return base64.b64encode(raw).decode("ascii")


class Encoder:
    """
    Python values -> JSON-compatible values, with ``{"::tag": ...}`` objects for what JSON lacks.

    :param tensor_sink: When given, tensors are stored there (for safetensors) and referenced by key
    :param array_sink: When given, numpy arrays of at least ``array_min_size`` elements are stored there
    :param progress_remaining: For callables that are not data: the point at which their value is frozen
    """

    def __init__(
        self,
        tensor_sink: dict[str, th.Tensor] | None = None,
        array_sink: dict[str, np.ndarray] | None = None,
        array_min_size: int = 64,
        progress_remaining: float = 1.0,
    ):
        self.tensor_sink = tensor_sink
        self.array_sink = array_sink
        self.array_min_size = array_min_size
        self.progress_remaining = progress_remaining
        self.frozen_callables: list[str] = []

    def __call__(self, value: Any, where: str = "") -> Any:  # noqa: C901
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int) and not isinstance(value, enum.Enum):
            return value
        if isinstance(value, float):
            return value
        if isinstance(value, np.generic):
            return {"::np_scalar": [value.dtype.str, value.item()]}
        if isinstance(value, np.ndarray):
            return self._array(value, where)
        if isinstance(value, th.Tensor):
            return self._tensor(value, where)
        if isinstance(value, th.device):
            return {"::torch_device": str(value)}
        if isinstance(value, th.dtype):
            return {"::torch_dtype": str(value).replace("torch.", "")}
        if isinstance(value, np.dtype):
            return {"::np_dtype": value.str}
        if isinstance(value, spaces.Space):
            return {"::space": self._space(value, where)}
        if isinstance(value, BaseSchedule) and value.name in SCHEDULES:
            return {"::schedule": value.to_config()}
        if isinstance(value, enum.Enum):
            return {"::enum": [self._path(type(value), where), self(value.value, where)]}
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            fields = {name: self(item, f"{where}.{name}") for name, item in zip(value._fields, value)}
            return {"::namedtuple": [self._path(type(value), where), fields]}
        if isinstance(value, tuple):
            return {"::tuple": [self(item, f"{where}[{i}]") for i, item in enumerate(value)]}
        if isinstance(value, list):
            return [self(item, f"{where}[{i}]") for i, item in enumerate(value)]
        if isinstance(value, collections.deque):
            return {"::deque": [[self(item, where) for item in value], value.maxlen]}
        if isinstance(value, (set, frozenset)):
            return {"::set": [self(item, where) for item in value]}
        if isinstance(value, dict):
            if all(isinstance(key, str) and not key.startswith("::") for key in value):
                return {key: self(item, f"{where}.{key}") for key, item in value.items()}
            return {"::dict": [[self(key, where), self(item, f"{where}[{key!r}]")] for key, item in value.items()]}
        if isinstance(value, type) or _is_function(value):
            path = import_path(value)
            if path is not None:
                return {"::import": path}
        elif hasattr(value, "__dict__"):
            path = import_path(type(value))
            if path is not None and _is_trusted(path.split(":")[0]):
                try:
                    return {"::object": [path, self(dict(vars(value)), where)]}
                except (Unencodable, TypeError):
                    pass
        if callable(value):
            # A lambda or closure used as a schedule: freeze its current value (documented above)
            try:
                current = float(value(self.progress_remaining))
            except Exception:
                raise Unencodable(f"{where}: {value!r} is a callable that cannot be stored as data") from None
            self.frozen_callables.append(where)
            return {"::schedule": ConstantSchedule(current).to_config()}
        raise Unencodable(f"{where}: {type(value).__name__} cannot be stored as data")

    def _path(self, cls: type, where: str) -> str:
        path = import_path(cls)
        if path is None:
            raise Unencodable(f"{where}: {cls!r} cannot be re-imported")
        return path

    def _array(self, array: np.ndarray, where: str) -> Any:
        if array.dtype.hasobject:
            # e.g. HER's per-transition info dicts: each element encoded as data (never pickled)
            elements = [self(item, f"{where}[{i}]") for i, item in enumerate(array.reshape(-1).tolist())]
            return {"::object_array": [list(array.shape), elements]}
        if self.array_sink is not None and array.size >= self.array_min_size:
            key = f"a{len(self.array_sink)}"
            self.array_sink[key] = array
            return {"::ndarray_ref": key}
        return {"::ndarray": [array.dtype.str, list(array.shape), to_base64(np.ascontiguousarray(array).tobytes())]}

    def _tensor(self, tensor: th.Tensor, where: str) -> Any:
        tensor = tensor.detach().cpu().contiguous().clone()
        if self.tensor_sink is not None:
            key = f"t{len(self.tensor_sink)}"
            self.tensor_sink[key] = tensor
            return {"::tensor_ref": key}
        return {"::tensor": to_base64(save_safetensors({"t": tensor}))}

    def _space(self, space: spaces.Space, where: str) -> dict[str, Any]:
        if isinstance(space, spaces.Box):
            return {
                "type": "Box",
                "low": self._array(space.low, where),
                "high": self._array(space.high, where),
                "shape": list(space.shape),
                "dtype": np.dtype(space.dtype).str,
            }
        if isinstance(space, spaces.Discrete):
            return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
        if isinstance(space, spaces.MultiDiscrete):
            return {
                "type": "MultiDiscrete",
                "nvec": self._array(space.nvec, where),
                "start": self._array(space.start, where),
                "dtype": np.dtype(space.dtype).str,
            }
        if isinstance(space, spaces.MultiBinary):
            return {"type": "MultiBinary", "n": self(space.n, where)}
        if isinstance(space, spaces.Dict):
            return {"type": "Dict", "spaces": [[key, self._space(sub, where)] for key, sub in space.spaces.items()]}
        if isinstance(space, spaces.Tuple):
            return {"type": "Tuple", "spaces": [self._space(sub, where) for sub in space.spaces]}
        raise Unencodable(f"{where}: the space {space} cannot be stored as data")


def _is_function(value: Any) -> bool:
    return isinstance(value, (types.FunctionType, types.BuiltinFunctionType))


class Decoder:
    """
    The inverse of :class:`Encoder`. Never unpickles: a ``:serialized:`` item (SB3's cloudpickle) raises
    :class:`PickleNotAllowedError` unless ``allow_pickle``; imports are limited to :data:`TRUSTED_MODULES`.

    :param where: File and member, for error messages
    """

    def __init__(
        self,
        where: str,
        allow_pickle: bool = False,
        tensors: dict[str, th.Tensor] | None = None,
        arrays: Callable[[str], np.ndarray] | None = None,
    ):
        self.where = where
        self.allow_pickle = allow_pickle
        self.tensors = tensors or {}
        self.arrays = arrays

    def __call__(self, value: Any, key: str = "") -> Any:
        if isinstance(value, list):
            return [self(item, key) for item in value]
        if not isinstance(value, dict):
            return value
        if ":serialized:" in value:
            if not self.allow_pickle:
                raise PickleNotAllowedError(
                    f"{self.where}: item {key!r} is a pickled object; unpickling runs code from the file. "
                    "Load with allow_pickle=True only if you trust the file."
                )
            return cloudpickle.loads(base64.b64decode(value[":serialized:"].encode()))
        if len(value) != 1 or not next(iter(value)).startswith("::"):
            return {k: self(item, f"{key}.{k}" if key else k) for k, item in value.items()}
        tag, arg = next(iter(value.items()))
        try:
            return self._tagged(tag, arg, key)
        except ModelFileError:
            raise
        except Exception as e:
            raise CorruptedFileError(f"{self.where}: item {key!r} ({tag}) is invalid: {type(e).__name__}: {e}") from None

    def _tagged(self, tag: str, arg: Any, key: str) -> Any:  # noqa: C901
        if tag == "::np_scalar":
            return np.dtype(arg[0]).type(arg[1])
        if tag == "::ndarray":
            dtype = np.dtype(arg[0])
            if dtype.hasobject:
                raise PickleNotAllowedError(f"{self.where}: item {key!r} is an object array")
            return np.frombuffer(base64.b64decode(arg[2]), dtype=dtype).reshape(arg[1]).copy()
        if tag == "::object_array":
            shape, elements = arg
            array = np.empty(len(elements), dtype=object)
            for i, element in enumerate(elements):
                array[i] = self(element, key)
            return array.reshape(shape)
        if tag == "::ndarray_ref":
            if self.arrays is None:
                raise CorruptedFileError(f"{self.where}: item {key!r} refers to an array member that this file cannot hold")
            return self.arrays(arg)
        if tag == "::tensor_ref":
            if arg not in self.tensors:
                raise MissingMemberError(f"{self.where}: tensor {arg!r} (item {key!r}) is missing from tensors.safetensors")
            return self.tensors[arg]
        if tag == "::tensor":
            return load_safetensors(base64.b64decode(arg))["t"]
        if tag == "::torch_device":
            return th.device(arg)
        if tag == "::torch_dtype":
            dtype = getattr(th, arg)
            if not isinstance(dtype, th.dtype):
                raise ValueError(f"{arg!r} is not a torch dtype")
            return dtype
        if tag == "::np_dtype":
            return np.dtype(arg)
        if tag == "::space":
            return self._space(arg, key)
        if tag == "::schedule":
            return schedule_from_config(arg)
        if tag == "::enum":
            return self._import(arg[0], key)(self(arg[1], key))
        if tag == "::namedtuple":
            return self._import(arg[0], key)(**{k: self(v, key) for k, v in arg[1].items()})
        if tag == "::tuple":
            return tuple(self(item, key) for item in arg)
        if tag == "::deque":
            return collections.deque((self(item, key) for item in arg[0]), maxlen=arg[1])
        if tag == "::set":
            return {self(item, key) for item in arg}
        if tag == "::dict":
            return {self(k, key): self(v, f"{key}[{k!r}]") for k, v in arg}
        if tag == "::import":
            return self._import(arg, key)
        if tag == "::object":
            cls = self._import(arg[0], key)
            if not isinstance(cls, type):
                raise ValueError(f"{arg[0]!r} is not a class")
            obj = cls.__new__(cls)
            obj.__dict__.update(self(arg[1], key))
            return obj
        raise CorruptedFileError(f"{self.where}: item {key!r} has an unknown tag {tag!r} (written by a newer version?)")

    def _import(self, path: str, key: str) -> Any:
        return resolve_import(path, allow_untrusted=self.allow_pickle, what=f"{self.where}: item {key!r}")

    def _space(self, desc: dict[str, Any], key: str) -> spaces.Space:
        kind = desc["type"]
        if kind == "Box":
            return spaces.Box(
                low=self(desc["low"], key),
                high=self(desc["high"], key),
                shape=tuple(desc["shape"]),
                dtype=np.dtype(desc["dtype"]),
            )
        if kind == "Discrete":
            return spaces.Discrete(desc["n"], start=desc["start"])
        if kind == "MultiDiscrete":
            return spaces.MultiDiscrete(self(desc["nvec"], key), dtype=np.dtype(desc["dtype"]), start=self(desc["start"], key))
        if kind == "MultiBinary":
            n = self(desc["n"], key)
            return spaces.MultiBinary(list(n) if isinstance(n, (list, tuple)) else n)
        if kind == "Dict":
            return spaces.Dict({k: self._space(v, key) for k, v in desc["spaces"]})
        if kind == "Tuple":
            return spaces.Tuple([self._space(v, key) for v in desc["spaces"]])
        raise ValueError(f"unknown space type {kind!r}")


def dumps(value: Any) -> bytes:
    """:return: JSON data as the bytes of a member (NaN and inf allowed, as Python's ``json`` reads them)."""
    return json.dumps(value, indent=1, allow_nan=True).encode()


def space_to_json(space: spaces.Space) -> dict[str, Any]:
    """
    The one JSON schema of gymnasium spaces (``{"type": "Box", "low": ..., ...}``), as saved model files hold it.

    :param space: A Box, Discrete, MultiDiscrete, MultiBinary, or a Dict or Tuple of them
    :return: JSON data
    """
    return Encoder()(space, "space")["::space"]


def space_from_json(data: dict[str, Any], where: str = "space") -> spaces.Space:
    """
    The inverse of :func:`space_to_json`.

    :param data: JSON data
    :param where: What holds it, for error messages
    :return: The space
    :raise CorruptedFileError: for invalid data
    """
    return Decoder(where)({"::space": data}, "space")
