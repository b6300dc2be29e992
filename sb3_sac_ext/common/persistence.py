"""
Safe persistence and fault tolerance for SAC and DiscreteSAC (issue 5).

File format (``format_version`` 1), a ``.zip`` container like SB3's, that never needs pickle:

- ``manifest.json``: format name and version, what the file holds (``kind``: model, replay_buffer,
  vec_normalize), the algorithm, library versions, and the sha256 and size of every other member;
- ``data.json``: settings and hyperparameters as tagged JSON (see :func:`encode`): spaces as data,
  schedules as ``{"name", "args"}``, classes and functions (policy class, activation functions, replay
  buffer class, ...) as import paths ``"module:qualname"`` that are re-imported on load only from
  :data:`TRUSTED_MODULES`;
- ``tensors.safetensors`` + ``tensors.json``: every tensor (policy weights, every optimizer's state,
  the temperature) in safetensors, and the nesting around them (optimizer ``param_groups``, int keys,
  tuples such as ``betas``) in tagged JSON, so optimizer state dicts round-trip exactly;
- replay buffers and normalisation statistics: one ``.npy`` member per array (read with
  ``allow_pickle=False``) + JSON.

Why safetensors rather than ``torch.load(weights_only=True)``: safetensors has no unpickler at all (a
restricted unpickler is still a parser of a code-carrying format), it is tiny, and it is what the Hub
expects. The nesting it cannot hold goes to JSON.

Schedules: the built-in schedule classes are stored as data. An arbitrary callable (a lambda) cannot be
stored as data: it is stored as a constant schedule with its *current* value and a ``UserWarning`` says
so (refusing would make every SB3-style ``learning_rate=lambda p: ...`` model unsaveable).

Loading refuses pickles by default: a Stable-Baselines3 zip (whose ``data`` always has cloudpickled
``:serialized:`` items) raises :class:`PickleNotAllowedError` naming those items, and is loaded through
SB3's own path only with ``allow_pickle=True``. Every damaged file raises one typed error (subclasses of
``ValueError``) naming the file and the problem.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import enum
import hashlib
import importlib
import io
import json
import os
import pathlib
import pickletools
import random
import shutil
import signal
import tempfile
import threading
import traceback
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.save_util import recursive_getattr, recursive_setattr
from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnv, VecNormalize
from stable_baselines3.common.vec_env.base_vec_env import CloudpickleWrapper

from sb3_sac_ext.common.errors import (
    ChecksumMismatchError,
    CorruptedFileError,
    FormatVersionError,
    MissingMemberError,
    ModelFileError,
    NonFiniteError,
    PickleNotAllowedError,
    SB3SacExtError,
    UntrustedImportError,
    WrongAlgorithmError,
)
from sb3_sac_ext.common.schedules import SCHEDULES, BaseSchedule, ConstantSchedule, schedule_from_config

FORMAT_NAME = "sb3-sac-ext"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"

# Modules whose classes and functions a file may name (prefix match on the module path).
# Extend it (``TRUSTED_MODULES.append("my_package")``) to load files naming your own classes without pickle.
TRUSTED_MODULES: list[str] = ["torch.nn", "torch.optim", "stable_baselines3", "sb3_sac_ext"]

PathLike = str | os.PathLike | io.BufferedIOBase


# ====================================================================== atomic writes


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[io.BufferedWriter]:
    """
    Open a temporary file in the folder of ``path`` for writing; on success it is flushed, fsynced and
    moved onto ``path`` with ``os.replace`` (atomic on POSIX and Windows), then the folder is fsynced.
    On any error (or if the process dies) ``path`` keeps its previous content.

    :param path: Final path
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            yield file  # type: ignore[misc]
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: pathlib.Path) -> None:
    with contextlib.suppress(OSError):  # not supported on every platform (Windows)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_path(path: PathLike, suffix: str) -> PathLike:
    """SB3's convention: a path without suffix gets ``.<suffix>``."""
    if isinstance(path, (str, os.PathLike)):
        path = pathlib.Path(path)
        if path.suffix == "":
            path = pathlib.Path(f"{path}.{suffix}")
    return path


def _read_path(path: PathLike, suffixes: tuple[str, ...]) -> PathLike:
    """SB3's convention: if ``path`` does not exist, try ``path.<suffix>``."""
    if isinstance(path, (str, os.PathLike)):
        path = pathlib.Path(path)
        if not path.exists():
            for suffix in suffixes:
                candidate = pathlib.Path(f"{path}.{suffix}")
                if candidate.exists():
                    return candidate
            raise FileNotFoundError(f"No such file: {path} (also tried the suffixes {list(suffixes)})")
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder, not a saved file")
    return path


# ====================================================================== tagged JSON


class _Unencodable(TypeError):
    pass


def _import_path(obj: Any) -> str | None:
    """``"module:qualname"`` if ``obj`` can be re-imported by that path, else ``None``."""
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


def _b64(raw: bytes) -> str:
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
            path = _import_path(value)
            if path is not None:
                return {"::import": path}
        elif hasattr(value, "__dict__"):
            path = _import_path(type(value))
            if path is not None and _is_trusted(path.split(":")[0]):
                try:
                    return {"::object": [path, self(dict(vars(value)), where)]}
                except (_Unencodable, TypeError):
                    pass
        if callable(value):
            # A lambda or closure used as a schedule: freeze its current value (documented above)
            try:
                current = float(value(self.progress_remaining))
            except Exception:
                raise _Unencodable(f"{where}: {value!r} is a callable that cannot be stored as data") from None
            self.frozen_callables.append(where)
            return {"::schedule": ConstantSchedule(current).to_config()}
        raise _Unencodable(f"{where}: {type(value).__name__} cannot be stored as data")

    def _path(self, cls: type, where: str) -> str:
        path = _import_path(cls)
        if path is None:
            raise _Unencodable(f"{where}: {cls!r} cannot be re-imported")
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
        return {"::ndarray": [array.dtype.str, list(array.shape), _b64(np.ascontiguousarray(array).tobytes())]}

    def _tensor(self, tensor: th.Tensor, where: str) -> Any:
        tensor = tensor.detach().cpu().contiguous().clone()
        if self.tensor_sink is not None:
            key = f"t{len(self.tensor_sink)}"
            self.tensor_sink[key] = tensor
            return {"::tensor_ref": key}
        from safetensors.torch import save

        return {"::tensor": _b64(save({"t": tensor}))}

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
        raise _Unencodable(f"{where}: the space {space} cannot be stored as data")


def _is_function(value: Any) -> bool:
    import types

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
            import cloudpickle

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
            from safetensors.torch import load

            return load(base64.b64decode(arg))["t"]
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


def _dumps(value: Any) -> bytes:
    return json.dumps(value, indent=1, allow_nan=True).encode()


# ====================================================================== container


class _HashingWriter(io.RawIOBase):
    def __init__(self, raw: Any):
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        self.sha.update(data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)


class ContainerWriter:
    """Writes members into a zip and, on close, a manifest with each member's sha256."""

    def __init__(self, file: Any, kind: str, meta: dict[str, Any]):
        self.zip = zipfile.ZipFile(file, "w", allowZip64=True)
        self.kind, self.meta, self.members = kind, meta, {}

    def write(self, name: str, data: bytes | Callable[[Any], None], compress: bool = False) -> None:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        with self.zip.open(info, "w", force_zip64=True) as raw:
            writer = _HashingWriter(raw)
            if callable(data):
                data(writer)
            else:
                writer.write(data)
        self.members[name] = {"sha256": writer.sha.hexdigest(), "size": writer.size}

    def close(self) -> None:
        from sb3_sac_ext.version import __version__

        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            **self.meta,
            "versions": {"sb3_sac_ext": __version__, "torch": th.__version__, "numpy": np.__version__},
            "members": self.members,
        }
        info = zipfile.ZipInfo(MANIFEST, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, _dumps(manifest))
        self.zip.close()


def _write_container(
    path: PathLike, kind: str, meta: dict[str, Any], fill: Callable[[ContainerWriter], None], suffix: str = "zip"
) -> None:
    path = _write_path(path, suffix)
    if isinstance(path, pathlib.Path):
        with atomic_write(path) as file:
            writer = ContainerWriter(file, kind, meta)
            fill(writer)
            writer.close()
    else:
        writer = ContainerWriter(path, kind, meta)
        fill(writer)
        writer.close()


_KIND_NAMES = {"model": "a model", "replay_buffer": "a replay buffer", "vec_normalize": "VecNormalize statistics"}


class Container:
    """
    A verified sb3-sac-ext file: the manifest is checked (format, version, kind) and every member's
    sha256 is verified on open. Use :func:`open_container`.
    """

    def __init__(self, zip_file: zipfile.ZipFile, name: str, manifest: dict[str, Any]):
        self.zip, self.name, self.manifest = zip_file, name, manifest

    def read(self, member: str) -> bytes:
        try:
            return self.zip.read(member)
        except KeyError:
            raise MissingMemberError(f"{self.name}: member {member!r} is missing") from None
        except Exception as e:
            raise _corrupted(self.name, e, member) from None

    def json(self, member: str) -> Any:
        try:
            return json.loads(self.read(member).decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CorruptedFileError(f"{self.name}: member {member!r} is not valid JSON ({e})") from None

    def array(self, member: str) -> np.ndarray:
        try:
            with self.zip.open(member) as file:
                return np.lib.format.read_array(file, allow_pickle=False)
        except KeyError:
            raise MissingMemberError(f"{self.name}: member {member!r} is missing") from None
        except ValueError as e:
            if "allow_pickle" in str(e):
                raise PickleNotAllowedError(f"{self.name}: member {member!r} is a pickled (object) array; refused") from None
            raise CorruptedFileError(f"{self.name}: member {member!r} is not a valid .npy array ({e})") from None
        except Exception as e:
            raise _corrupted(self.name, e, member) from None


def _corrupted(name: str, error: BaseException, member: str | None = None) -> CorruptedFileError:
    where = f"{name}: member {member!r}" if member else name
    if isinstance(error, zipfile.BadZipFile) and "CRC" in str(error):
        return ChecksumMismatchError(f"{where} is damaged: its zip CRC does not match ({error})")
    return CorruptedFileError(
        f"{where} cannot be read: truncated, damaged or not a saved file ({type(error).__name__}: {error})"
    )


_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    NotImplementedError,
    UnicodeDecodeError,
    IndexError,
    OverflowError,
    RuntimeError,
)


def _file_name(path: PathLike) -> str:
    return str(path) if isinstance(path, (str, os.PathLike)) else getattr(path, "name", repr(path))


def _open_zip(path: PathLike) -> tuple[zipfile.ZipFile, str]:
    """Open ``path`` as a zip archive, raising :class:`CorruptedFileError` for empty or non-zip files."""
    name = _file_name(path)
    if isinstance(path, pathlib.Path) and path.stat().st_size == 0:
        raise CorruptedFileError(f"{name} is empty (0 bytes): the save did not complete, or this is not a saved file")
    try:
        return zipfile.ZipFile(path), name  # type: ignore[arg-type]
    except _READ_ERRORS as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise CorruptedFileError(
            f"{name} is not a valid zip archive (truncated, damaged, or not a saved file): {type(e).__name__}: {e}"
        ) from None


def _check_manifest(name: str, manifest: Any, kind: str) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise CorruptedFileError(f"{name}: manifest.json does not describe an {FORMAT_NAME} file")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CorruptedFileError(f"{name}: manifest.json has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise FormatVersionError(
            f"{name} was written with format version {version} by a newer sb3-sac-ext "
            f"({manifest.get('versions', {}).get('sb3_sac_ext', '?')}); this version reads up to format version "
            f"{FORMAT_VERSION}: upgrade sb3-sac-ext (pip install -U sb3-sac-ext)"
        )
    if manifest.get("kind") != kind:
        held = _KIND_NAMES.get(str(manifest.get("kind")), repr(manifest.get("kind")))
        raise WrongAlgorithmError(f"{name} holds {held}, not {_KIND_NAMES.get(kind, kind)}")
    members = manifest.get("members")
    if not isinstance(members, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in members.values()
    ):
        raise CorruptedFileError(f"{name}: manifest.json has no valid member list")
    return manifest


def _verify_members(archive: zipfile.ZipFile, name: str, manifest: dict[str, Any], required: tuple[str, ...]) -> None:
    members = manifest["members"]
    for member in required:
        if member not in members:
            raise MissingMemberError(f"{name}: required member {member!r} is not listed in manifest.json")
    present = set(archive.namelist())
    for member, expected in members.items():
        if member not in present:
            raise MissingMemberError(f"{name}: member {member!r} listed in manifest.json is missing from the file")
        sha = hashlib.sha256()
        try:
            with archive.open(member) as file:
                for chunk in iter(lambda: file.read(1 << 20), b""):
                    sha.update(chunk)
        except _READ_ERRORS as e:
            raise _corrupted(name, e, member) from None
        if sha.hexdigest() != expected["sha256"]:
            raise ChecksumMismatchError(
                f"{name}: member {member!r} does not match its sha256 in manifest.json "
                f"(expected {expected['sha256'][:16]}..., got {sha.hexdigest()[:16]}...): the file was damaged or altered"
            )


def open_container(path: PathLike, kind: str, required: tuple[str, ...] = ()) -> Container:
    """
    Open and verify an sb3-sac-ext file (format, version, kind, every member's sha256).

    :raise CorruptedFileError, ChecksumMismatchError, MissingMemberError, FormatVersionError, WrongAlgorithmError:
    """
    archive, name = _open_zip(path)
    try:
        names = archive.namelist()
        if MANIFEST not in names:
            raise MissingMemberError(f"{name}: manifest.json is missing: not an {FORMAT_NAME} file")
        try:
            manifest = json.loads(archive.read(MANIFEST).decode())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CorruptedFileError(f"{name}: manifest.json is not valid JSON ({e})") from None
        except _READ_ERRORS as e:
            raise _corrupted(name, e, MANIFEST) from None
        _check_manifest(name, manifest, kind)
        _verify_members(archive, name, manifest, required)
    except BaseException:
        archive.close()
        raise
    return Container(archive, name, manifest)


# ====================================================================== SB3 zips


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


def _algorithm_name(cls: type) -> str:
    """The sb3-sac-ext algorithm a class is (``SAC``, ``DiscreteSAC``), subclasses included."""
    for base in cls.__mro__:
        if (
            base.__module__.startswith("sb3_sac_ext.")
            and base.__module__ != __name__
            and "OffPolicyAlgorithm" in {b.__name__ for b in base.__bases__}
        ):
            return base.__name__
    return cls.__name__


def _sb3_equivalents(cls: type) -> set[str]:
    return set(getattr(cls, "_sb3_algorithms", ("SAC",) if _algorithm_name(cls) == "SAC" else ()))


def _legacy_serialized_items(data_json: str, name: str) -> tuple[dict[str, Any], list[str]]:
    try:
        data = json.loads(data_json)
    except json.JSONDecodeError as e:
        raise CorruptedFileError(f"{name}: member 'data' is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CorruptedFileError(f"{name}: member 'data' is not a JSON object")
    serialized = sorted(k for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v)
    return data, serialized


# ====================================================================== models


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
    Save ``model`` without pickle, atomically (see the module docstring for the format).

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
        except _Unencodable as e:
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
    from safetensors.torch import save as save_safetensors

    meta = {"algorithm": _algorithm_name(type(model)), "class": _import_path(type(model)) or type(model).__qualname__}

    def fill(writer: ContainerWriter) -> None:
        writer.write("data.json", _dumps(encoded), compress=True)
        writer.write("tensors.json", _dumps(tensor_tree), compress=True)
        writer.write("tensors.safetensors", save_safetensors(tensors))

    _write_container(path, "model", meta, fill)


def _check_model_manifest(name: str, manifest: dict[str, Any], cls: type) -> None:
    held, wanted = manifest.get("algorithm"), _algorithm_name(cls)
    if held != wanted:
        raise WrongAlgorithmError(f"{name} holds a {held} model, not {wanted}: load it with {held}.load")


def read_model_file(
    path: PathLike, cls: type, device: Any = "cpu", allow_pickle: bool = False, custom_objects: dict | None = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """
    Read and verify a model file of this format: ``(data, params, pytorch_variables)``.

    :raise ModelFileError: (a subclass) for every damaged or wrong file
    """
    from safetensors.torch import load as load_safetensors

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


def _is_our_format(path: PathLike) -> bool | None:
    """True for our format, False for another zip (SB3), None when not a readable zip."""
    try:
        with zipfile.ZipFile(path) as archive:  # type: ignore[arg-type]
            return MANIFEST in archive.namelist()
    except Exception:
        return None
    finally:
        if not isinstance(path, (str, os.PathLike)):
            with contextlib.suppress(Exception):
                path.seek(0)  # type: ignore[union-attr]


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
    Load a model of class ``cls``: our format without pickle, or a Stable-Baselines3 zip (only with
    ``allow_pickle=True``, through ``sb3_load``). See ``SAC.load``.
    """
    from stable_baselines3.common.utils import check_for_correct_spaces, get_device

    path = _read_path(path, ("zip",))
    name = _file_name(path)
    _open_zip(path)[0].close()  # typed errors for empty / non-zip files
    if isinstance(path, io.IOBase):
        path.seek(0)
    if not _is_our_format(path):
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
            pickletools.pickle.UnpicklingError,
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
    archive, _ = _open_zip(path)
    with archive:
        try:
            names = archive.namelist()
            if "data" not in names:
                raise MissingMemberError(f"{name}: neither manifest.json nor data is present: not a saved model")
            data_json = archive.read("data").decode()
        except ModelFileError:
            raise
        except _READ_ERRORS as e:
            raise _corrupted(name, e, "data") from None
    data, serialized = _legacy_serialized_items(data_json, name)
    held = _sb3_algorithm(data)
    wanted = _algorithm_name(cls)
    if held is not None and held not in _sb3_equivalents(cls):
        raise WrongAlgorithmError(f"{name} holds a Stable-Baselines3 {held} model, not {wanted}")
    if serialized and not allow_pickle:
        raise PickleNotAllowedError(
            f"{name} is a Stable-Baselines3 zip with pickled items {serialized}; unpickling runs code from the file. "
            f"If you trust the file, load it with {wanted}.load(path, allow_pickle=True), then model.save(path) "
            "to convert it to the pickle-free format."
        )


def read_parameters(path: PathLike, cls: type, device: Any = "auto") -> dict[str, Any]:
    """The state dicts of a file in our format (for ``set_parameters(path)``)."""
    from stable_baselines3.common.utils import get_device

    path = _read_path(path, ("zip",))
    _, params, _ = read_model_file(path, cls, get_device(device))
    return params


# ====================================================================== replay buffers

_BUFFER_EXCLUDED = ("env", "device")


def save_replay_buffer(buffer: Any, path: PathLike) -> None:
    """
    Save a replay buffer without pickle, atomically: arrays as ``.npy`` members, the rest as tagged JSON.
    ``HerReplayBuffer`` keeps no env reference in the file (set it again on load).
    """
    arrays: dict[str, np.ndarray] = {}
    encoder = Encoder(array_sink=arrays, array_min_size=1)
    state = {key: value for key, value in vars(buffer).items() if key not in _BUFFER_EXCLUDED}
    encoded = encoder(state, "replay_buffer")
    cls_path = _import_path(type(buffer))
    if cls_path is None:
        raise TypeError(f"{type(buffer)!r} cannot be re-imported by its module path; it cannot be saved as data")

    def fill(writer: ContainerWriter) -> None:
        writer.write("buffer.json", _dumps({"class": cls_path, "state": encoded}), compress=True)
        for key, array in arrays.items():
            writer.write(
                f"arrays/{key}.npy",
                lambda f, a=array: np.lib.format.write_array(f, np.ascontiguousarray(a), allow_pickle=False),
            )

    _write_container(path, "replay_buffer", {"class": cls_path}, fill)


def load_replay_buffer(path: PathLike, device: Any = "cpu", allow_pickle: bool = False) -> Any:
    """
    Read a replay buffer saved by :func:`save_replay_buffer`. An SB3 pickled buffer (``.pkl``) is read
    only with ``allow_pickle=True``.

    :raise PickleNotAllowedError: for a pickled buffer without ``allow_pickle``
    """
    path = _read_path(path, ("zip", "pkl"))
    name = _file_name(path)
    if _is_our_format(path) is not True:
        _refuse_pickle_file(path, name, "replay buffer", allow_pickle)
        from stable_baselines3.common.save_util import load_from_pkl

        return load_from_pkl(path)
    container = open_container(path, "replay_buffer", required=("buffer.json",))
    with container.zip:
        desc = container.json("buffer.json")
        if not isinstance(desc, dict) or "class" not in desc or "state" not in desc:
            raise CorruptedFileError(f"{name}: buffer.json lacks 'class' or 'state'")
        decoder = Decoder(f"{name} (buffer.json)", allow_pickle, arrays=lambda key: container.array(f"arrays/{key}.npy"))
        cls = decoder({"::import": desc["class"]}, "class")
        from stable_baselines3.common.buffers import BaseBuffer

        if not (isinstance(cls, type) and issubclass(cls, BaseBuffer)):
            raise CorruptedFileError(f"{name}: {desc['class']!r} is not a replay buffer class")
        buffer = cls.__new__(cls)
        state = decoder(desc["state"], "state")
        if not isinstance(state, dict):
            raise CorruptedFileError(f"{name}: the buffer state is not a JSON object")
        buffer.__dict__.update(state)
    buffer.device = th.device(device) if not isinstance(device, th.device) else device
    return buffer


def _refuse_pickle_file(path: PathLike, name: str, what: str, allow_pickle: bool) -> None:
    if allow_pickle:
        return
    if isinstance(path, pathlib.Path):
        with open(path, "rb") as file:
            head = file.read(2)
    else:
        head = path.read(2)  # type: ignore[union-attr]
        path.seek(0)  # type: ignore[union-attr]
    if not head:
        raise CorruptedFileError(f"{name} is empty (0 bytes)")
    if head[:1] == b"\x80":
        raise PickleNotAllowedError(
            f"{name} is a pickled {what} (Stable-Baselines3's format); unpickling runs code from the file. "
            "Load it with allow_pickle=True only if you trust the file."
        )
    raise CorruptedFileError(f"{name} is not an {FORMAT_NAME} {what} file (not a zip archive, not a pickle)")


# ====================================================================== VecNormalize

_VECNORM_SETTINGS = ("training", "norm_obs", "norm_reward", "clip_obs", "clip_reward", "gamma", "epsilon", "norm_obs_keys")


def save_vec_normalize(vec_normalize: VecNormalize, path: PathLike) -> None:
    """Save the statistics and settings of a ``VecNormalize`` without pickle, atomically."""
    encoder = Encoder(array_sink={}, array_min_size=1 << 62)
    state = {
        "settings": {key: getattr(vec_normalize, key) for key in _VECNORM_SETTINGS if hasattr(vec_normalize, key)},
        "obs_rms": _rms_state(vec_normalize.obs_rms),
        "ret_rms": _rms_state(vec_normalize.ret_rms),
        "returns": vec_normalize.returns,
    }
    encoded = encoder(state, "vec_normalize")
    _write_container(path, "vec_normalize", {}, lambda w: w.write("vec_normalize.json", _dumps(encoded), compress=True))


def _rms_state(rms: Any) -> Any:
    if isinstance(rms, dict):
        return {key: _rms_state(value) for key, value in rms.items()}
    return {"mean": np.asarray(rms.mean), "var": np.asarray(rms.var), "count": float(rms.count)}


def _set_rms(rms: Any, state: Any, name: str) -> None:
    if isinstance(rms, dict):
        if not isinstance(state, dict) or set(state) != set(rms):
            raise CorruptedFileError(f"{name}: the normalisation statistics do not match the env's observation keys")
        for key in rms:
            _set_rms(rms[key], state[key], name)
        return
    mean, var = np.asarray(state["mean"], dtype=np.float64), np.asarray(state["var"], dtype=np.float64)
    if mean.shape != np.shape(rms.mean) or var.shape != np.shape(rms.var):
        raise CorruptedFileError(f"{name}: statistics of shape {mean.shape} do not fit the env ({np.shape(rms.mean)})")
    rms.mean, rms.var, rms.count = mean, var, float(state["count"])


def load_vec_normalize(path: PathLike, venv: VecEnv, allow_pickle: bool = False) -> VecNormalize:
    """
    Wrap ``venv`` in a ``VecNormalize`` with the statistics saved by :func:`save_vec_normalize`. A file
    saved by SB3's ``VecNormalize.save`` (a pickle) is read only with ``allow_pickle=True``.
    """
    path = _read_path(path, ("zip", "pkl"))
    name = _file_name(path)
    if _is_our_format(path) is not True:
        _refuse_pickle_file(path, name, "VecNormalize", allow_pickle)
        return VecNormalize.load(str(path), venv)
    container = open_container(path, "vec_normalize", required=("vec_normalize.json",))
    with container.zip:
        state = Decoder(f"{name} (vec_normalize.json)")(container.json("vec_normalize.json"))
    try:
        settings = state["settings"]
        vec_normalize = VecNormalize(venv, **settings)
        _set_rms(vec_normalize.obs_rms, state["obs_rms"], name)
        _set_rms(vec_normalize.ret_rms, state["ret_rms"], name)
        returns = np.asarray(state["returns"])
        if returns.shape == vec_normalize.returns.shape:
            vec_normalize.returns = returns
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptedFileError(f"{name}: invalid VecNormalize state ({type(e).__name__}: {e})") from None
    return vec_normalize


# ====================================================================== non-finite checks


def _nonfinite_kind(array: Any) -> str | None:
    array = np.asarray(array)
    if array.dtype.kind not in "fc":
        return None
    if np.isnan(array).any():
        return "NaN"
    if not np.isfinite(array).all():
        return "inf"
    return None


def check_finite(value: Any, quantity: str, context: str) -> None:
    """Raise :class:`NonFiniteError` if ``value`` (array, or dict of arrays) holds NaN or inf."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_finite(item, f"{quantity}[{key!r}]", context)
        return
    kind = _nonfinite_kind(value)
    if kind is not None:
        raise NonFiniteError(f"{context}: the {quantity} contains {kind}")


def check_transition(new_obs: Any, reward: Any, infos: Any, num_timesteps: int) -> None:
    """Checks done in ``_store_transition``, before the transition reaches the replay buffer."""
    context = f"step {num_timesteps} (num_timesteps)"
    check_finite(reward, "reward", context)
    check_finite(new_obs, "observation", context)
    for info in infos or ():
        terminal = info.get("terminal_observation") if isinstance(info, dict) else None
        if terminal is not None:
            check_finite(terminal, "terminal observation", context)


def check_predict_observation(observation: Any, space: spaces.Space) -> None:
    """
    Validate what ``predict`` receives: a tuple ``(obs, info)``, strings, wrong shapes and NaN/inf
    raise ``TypeError`` / ``ValueError`` / :class:`NonFiniteError` giving the expected shape.
    """
    if isinstance(observation, tuple):
        hint = (
            " (the output of env.reset() is (obs, info): pass obs only)"
            if len(observation) == 2 and isinstance(observation[1], dict)
            else ""
        )
        raise TypeError(f"predict() got a tuple{hint}; expected an observation of shape {_expected(space)}")
    if isinstance(space, spaces.Dict):
        if not isinstance(observation, dict):
            raise TypeError(
                f"predict() expects a dict observation with keys {list(space.spaces)}, got {type(observation).__name__}"
            )
        for key, sub in space.spaces.items():
            if key not in observation:
                raise ValueError(f"predict(): observation lacks the key {key!r}; expected keys {list(space.spaces)}")
            _check_array(observation[key], sub, f"observation[{key!r}]")
        return
    _check_array(observation, space, "observation")


def _expected(space: spaces.Space) -> str:
    shape = getattr(space, "shape", None)
    return f"{shape} or (n_envs, *{shape})" if shape is not None else str(space)


def _box_shape_accepted(shape: tuple[int, ...], space: spaces.Box) -> bool:
    """Single or batched observation; images also channel-last, which SB3's ``predict`` transposes itself."""
    shapes = [space.shape]
    if is_image_space(space, check_channels=False) and len(space.shape) == 3:
        channels, height, width = space.shape
        shapes.append((height, width, channels))
    return any(shape == expected or shape[1:] == expected for expected in shapes)


def _check_array(observation: Any, space: spaces.Space, what: str) -> None:
    try:
        array = np.asarray(observation)
    except (ValueError, TypeError) as e:
        raise ValueError(f"predict(): the {what} is not an array ({e}); expected shape {_expected(space)}") from None
    if array.dtype.kind in "USOV":
        raise TypeError(f"predict(): the {what} has dtype {array.dtype}; expected numbers of shape {_expected(space)}")
    if isinstance(space, spaces.Box) and not _box_shape_accepted(array.shape, space):
        raise ValueError(f"predict(): the {what} has shape {array.shape}; expected {_expected(space)}")
    kind = _nonfinite_kind(array)
    if kind is not None:
        raise NonFiniteError(f"predict(): the {what} contains {kind}")


# ====================================================================== RNG and env states


def get_rng_state(model: Any = None) -> dict[str, Any]:
    """Python ``random``, numpy's global RNG, torch (CPU and CUDA) and the model's action-space RNG, as JSON."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": _b64(th.get_rng_state().numpy().tobytes()),
    }
    if th.cuda.is_available():
        state["cuda"] = [_b64(s.numpy().tobytes()) for s in th.cuda.get_rng_state_all()]
    space = getattr(model, "action_space", None)
    if space is not None and getattr(space, "_np_random", None) is not None:
        state["action_space"] = _jsonable_bitgen(space.np_random.bit_generator.state)
    return state


def _jsonable_bitgen(state: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(state, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else int(o)))


def set_rng_state(state: dict[str, Any], model: Any = None) -> None:
    """Restore what :func:`get_rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    th.set_rng_state(th.frombuffer(bytearray(base64.b64decode(state["torch"])), dtype=th.uint8))
    if "cuda" in state and th.cuda.is_available():
        th.cuda.set_rng_state_all([th.frombuffer(bytearray(base64.b64decode(s)), dtype=th.uint8) for s in state["cuda"]])
    space = getattr(model, "action_space", None)
    if "action_space" in state and space is not None:
        _set_bitgen(space.np_random, state["action_space"])


def _set_bitgen(generator: np.random.Generator, state: dict[str, Any]) -> None:
    generator.bit_generator.state = state


def _venv_states(venv: VecEnv | None) -> dict[str, Any]:
    """Per-env RNG state and, when the envs implement ``get_state()``, their state ("where possible")."""
    out: dict[str, Any] = {}
    if venv is None:
        return out
    with contextlib.suppress(Exception):
        out["np_random"] = [_jsonable_bitgen(g.bit_generator.state) for g in venv.get_attr("np_random")]
    with contextlib.suppress(Exception):
        if venv.has_attr("get_state"):
            out["state"] = Encoder()(venv.env_method("get_state"), "env_state")
    return out


def _restore_venv_states(venv: VecEnv | None, states: dict[str, Any]) -> bool:
    """Restore env states; returns whether the envs' full state came back (then no reset is needed)."""
    if venv is None:
        return False
    if "state" in states:
        venv.reset()  # wrappers such as Monitor must see a reset; the state set below replaces its effect
    for i, bitgen in enumerate(states.get("np_random", [])):
        with contextlib.suppress(Exception):
            generators = venv.get_attr("np_random", indices=[i])
            _set_bitgen(generators[0], bitgen)
            venv.set_attr("np_random", generators[0], indices=[i])
    if "state" in states:
        env_states = Decoder("checkpoint env state")(states["state"])
        for i, env_state in enumerate(env_states):
            venv.env_method("set_state", env_state, indices=[i])
        return True
    return False


# ====================================================================== checkpoints

CHECKPOINT_META = "checkpoint.json"


def save_checkpoint(
    model: Any, path: str | os.PathLike, save_replay_buffer: bool = True, save_vec_normalize: bool = True
) -> pathlib.Path:
    """
    Write model, replay buffer, VecNormalize statistics and every RNG state to the folder ``path`` as one
    atomic unit: everything is written to a temporary folder beside it, fsynced, then renamed.

    :return: The checkpoint folder
    """
    final = pathlib.Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        model.save(tmp / "model.zip")
        members = ["model.zip"]
        if save_replay_buffer and getattr(model, "replay_buffer", None) is not None:
            model.save_replay_buffer(tmp / "replay_buffer.zip")
            members.append("replay_buffer.zip")
        vec_normalize = model.get_vec_normalize_env()
        if save_vec_normalize and vec_normalize is not None:
            save_vec_normalize_fn(vec_normalize, tmp / "vec_normalize.zip")
            members.append("vec_normalize.zip")
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "kind": "checkpoint",
            "algorithm": _algorithm_name(type(model)),
            "class": _import_path(type(model)),
            "num_timesteps": int(model.num_timesteps),
            "members": {m: _sha256_file(tmp / m) for m in members},
            "rng": get_rng_state(model),
            "env": _venv_states(model.get_env()),
        }
        with atomic_write(tmp / CHECKPOINT_META) as file:
            file.write(_dumps(meta))
        _fsync_dir(tmp)
        if final.exists():
            old = pathlib.Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


save_vec_normalize_fn = save_vec_normalize


def _sha256_file(path: pathlib.Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _read_checkpoint_meta(folder: pathlib.Path, verify: bool = True) -> dict[str, Any]:
    meta_path = folder / CHECKPOINT_META
    if not meta_path.is_file():
        raise MissingMemberError(f"{folder}: {CHECKPOINT_META} is missing: not a complete checkpoint")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptedFileError(f"{meta_path} is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("kind") != "checkpoint" or not isinstance(meta.get("members"), dict):
        raise CorruptedFileError(f"{meta_path} does not describe a checkpoint")
    if isinstance(meta.get("format_version"), int) and meta["format_version"] > FORMAT_VERSION:
        raise FormatVersionError(f"{folder} was written with format version {meta['format_version']}: upgrade sb3-sac-ext")
    if verify:
        for member, sha in meta["members"].items():
            if not (folder / member).is_file():
                raise MissingMemberError(f"{folder}: {member} is missing")
            if _sha256_file(folder / member) != sha:
                raise ChecksumMismatchError(f"{folder / member} does not match its sha256 in {CHECKPOINT_META}")
    return meta


def list_checkpoints(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Complete checkpoints directly in ``folder`` (those with a readable ``checkpoint.json``), oldest first."""
    found = []
    for child in pathlib.Path(folder).iterdir():
        if child.is_dir() and not child.name.startswith(".") and (child / CHECKPOINT_META).is_file():
            try:
                meta = _read_checkpoint_meta(child, verify=False)
            except ModelFileError:
                continue
            found.append((int(meta.get("num_timesteps", 0)), child.stat().st_mtime, child))
    return [child for *_, child in sorted(found)]


def load_checkpoint(
    path: str | os.PathLike,
    env: Any = None,
    model_class: Any = None,
    device: Any = "auto",
    load_replay_buffer: bool = True,
    restore_rng: bool = True,
    allow_pickle: bool = False,
    **kwargs: Any,
) -> Any:
    """
    Load a checkpoint: ``path`` is a checkpoint folder, or a folder of checkpoints (the newest complete,
    undamaged one is used; damaged ones are skipped with a warning). Restores the model, its replay buffer,
    the VecNormalize statistics (``env`` is wrapped), every RNG state and, when the envs implement
    ``get_state()``/``set_state()``, the envs' state, so that ``learn(..., reset_num_timesteps=False)``
    continues as if uninterrupted.

    :param env: Env to continue training on (required to continue training or to restore VecNormalize)
    :param model_class: Class to load (default: the class recorded in the checkpoint, from the trusted modules)
    :return: The model
    """
    folder = pathlib.Path(path)
    if (folder / CHECKPOINT_META).is_file():
        candidates = [folder]
    elif folder.is_dir():
        candidates = list(reversed(list_checkpoints(folder)))
        if not candidates:
            raise FileNotFoundError(f"No complete checkpoint in {folder}")
    else:
        raise FileNotFoundError(f"No checkpoint at {folder}")
    errors = []
    for candidate in candidates:
        try:
            meta = _read_checkpoint_meta(candidate)
        except ModelFileError as e:
            if len(candidates) == 1:
                raise
            warnings.warn(f"Skipping the damaged checkpoint {candidate}: {e}")
            errors.append(str(e))
            continue
        return _load_checkpoint_folder(
            candidate, meta, env, model_class, device, load_replay_buffer, restore_rng, allow_pickle, **kwargs
        )
    raise CorruptedFileError(f"Every checkpoint in {folder} is damaged: {errors}")


def _load_checkpoint_folder(
    folder: pathlib.Path,
    meta: dict[str, Any],
    env: Any,
    model_class: Any,
    device: Any,
    load_replay_buffer: bool,
    restore_rng: bool,
    allow_pickle: bool,
    **kwargs: Any,
) -> Any:
    if model_class is None:
        model_class = resolve_import(meta.get("class", ""), allow_untrusted=allow_pickle, what=str(folder / CHECKPOINT_META))
    if env is not None:
        from stable_baselines3.common.vec_env import DummyVecEnv

        if not isinstance(env, VecEnv):
            env = (
                model_class._wrap_env(env, 0)
                if not isinstance(env, str)
                else model_class._wrap_env(__import__("gymnasium").make(env), 0)
            )
        if "vec_normalize.zip" in meta["members"]:
            env = load_vec_normalize(folder / "vec_normalize.zip", env)
        del DummyVecEnv
    full_env_state = False
    if env is not None and restore_rng:
        full_env_state = _restore_venv_states(env, meta.get("env", {}))
    model = model_class.load(
        folder / "model.zip", env=env, device=device, force_reset=not full_env_state, allow_pickle=allow_pickle, **kwargs
    )
    if load_replay_buffer and "replay_buffer.zip" in meta["members"]:
        model.load_replay_buffer(folder / "replay_buffer.zip", allow_pickle=allow_pickle)
    if restore_rng and "rng" in meta:
        set_rng_state(meta["rng"], model)
    return model


class SafeCheckpointCallback(BaseCallback):
    """
    Save a checkpoint (model, replay buffer, VecNormalize statistics, RNG states: one atomic unit, see
    :func:`save_checkpoint`) every ``save_freq`` calls, keeping the newest ``keep_last``.

    Checkpoints are written at a consistent point: after the ``train()`` that follows the due step
    (at the start of the next rollout), and at the end of training. With ``handle_signals`` (main thread
    only), Ctrl-C (SIGINT) or SIGTERM during ``learn()`` stops training cleanly: ``learn()`` returns,
    a checkpoint is written and ``self.interrupted`` holds the signal number. A second Ctrl-C interrupts
    at once.

    :param save_freq: Save every ``save_freq`` calls of the callback (env steps of the VecEnv)
    :param save_path: Folder of the checkpoints
    :param keep_last: How many checkpoints to keep (``None``: all)
    :param name_prefix: Checkpoint folders are ``<name_prefix>_<num_timesteps>_steps``
    :param save_replay_buffer: Whether to include the replay buffer
    :param save_vec_normalize: Whether to include the VecNormalize statistics
    :param save_on_end: Whether to write a checkpoint when ``learn()`` ends normally
    :param handle_signals: Whether to turn SIGINT/SIGTERM into a clean stop with a checkpoint
    """

    def __init__(
        self,
        save_freq: int,
        save_path: str | os.PathLike,
        keep_last: int | None = 3,
        name_prefix: str = "checkpoint",
        save_replay_buffer: bool = True,
        save_vec_normalize: bool = True,
        save_on_end: bool = True,
        handle_signals: bool = True,
        verbose: int = 0,
    ):
        super().__init__(verbose)
        if not isinstance(save_freq, int) or save_freq < 1:
            raise ValueError(f"save_freq must be an integer >= 1, got {save_freq!r}")
        if keep_last is not None and (not isinstance(keep_last, int) or keep_last < 1):
            raise ValueError(f"keep_last must be None or an integer >= 1, got {keep_last!r}")
        self.save_freq, self.save_path, self.keep_last, self.name_prefix = (
            save_freq,
            pathlib.Path(save_path),
            keep_last,
            name_prefix,
        )
        self.save_replay_buffer, self.save_vec_normalize, self.save_on_end = (
            save_replay_buffer,
            save_vec_normalize,
            save_on_end,
        )
        self.handle_signals = handle_signals
        self.interrupted: int | None = None
        self.last_checkpoint: pathlib.Path | None = None
        self._due = False
        self._previous_handlers: dict[int, Any] = {}

    def _on_training_start(self) -> None:
        self.interrupted = None
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.interrupted is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.interrupted = signum

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            self._due = True
        return self.interrupted is None

    def _on_rollout_start(self) -> None:
        if self._due:
            self.save()

    def _on_training_end(self) -> None:
        try:
            if self.interrupted is not None or self.save_on_end or self._due:
                self.save()
        finally:
            self._restore_handlers()

    def save(self) -> pathlib.Path:
        """Write a checkpoint now and rotate old ones."""
        self._due = False
        folder = self.save_path / f"{self.name_prefix}_{self.model.num_timesteps}_steps"
        self.last_checkpoint = save_checkpoint(self.model, folder, self.save_replay_buffer, self.save_vec_normalize)
        if self.verbose >= 2:
            print(f"Saving checkpoint to {folder}")
        if self.keep_last is not None:
            mine = [c for c in list_checkpoints(self.save_path) if c.name.startswith(f"{self.name_prefix}_")]
            for old in mine[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
        return self.last_checkpoint


# ====================================================================== subprocess envs


class _RemoteError:
    """An exception raised in a worker, sent to the main process."""

    def __init__(self, error: BaseException):
        self.traceback = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        try:
            import cloudpickle

            cloudpickle.dumps(error)
            self.error: BaseException = error
        except Exception:
            self.error = RuntimeError(f"{type(error).__name__}: {error}")


def _safe_worker(remote: Any, parent_remote: Any, env_fn_wrapper: CloudpickleWrapper) -> None:
    from stable_baselines3.common.vec_env.subproc_vec_env import _worker

    try:
        _worker(remote, parent_remote, env_fn_wrapper)
    except BaseException as e:  # forward the env's own exception instead of dying silently
        with contextlib.suppress(Exception):
            remote.send(_RemoteError(e))


class _ErrorForwardingRemote:
    def __init__(self, remote: Any):
        self._remote = remote

    def recv(self) -> Any:
        result = self._remote.recv()
        if isinstance(result, _RemoteError):
            error = result.error
            with contextlib.suppress(Exception):
                error.add_note(f"Raised in a SafeSubprocVecEnv worker:\n{result.traceback}")
            raise error
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._remote, name)


class SafeSubprocVecEnv(SubprocVecEnv):
    """
    ``SubprocVecEnv`` whose workers forward an exception raised by an env (in ``step``, ``reset``,
    ``env_method``, ...) to the main process, which re-raises it with its own type and message (the
    worker's traceback is attached as a note). SB3's ``SubprocVecEnv`` raises an empty ``EOFError`` instead.
    Same arguments as ``SubprocVecEnv``.
    """

    def __init__(self, env_fns: list[Callable[[], Any]], start_method: str | None = None):
        import multiprocessing as mp

        self.waiting = False
        self.closed = False
        n_envs = len(env_fns)
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(start_method)
        remotes, self.work_remotes = zip(*[ctx.Pipe() for _ in range(n_envs)])
        self.processes = []
        for work_remote, remote, env_fn in zip(self.work_remotes, remotes, env_fns):
            process = ctx.Process(target=_safe_worker, args=(work_remote, remote, CloudpickleWrapper(env_fn)), daemon=True)
            process.start()
            self.processes.append(process)
            work_remote.close()
        self.remotes = [_ErrorForwardingRemote(remote) for remote in remotes]
        self.remotes[0].send(("get_spaces", None))
        observation_space, action_space = self.remotes[0].recv()
        VecEnv.__init__(self, len(env_fns), observation_space, action_space)

    def step_wait(self) -> Any:
        try:
            return super().step_wait()
        finally:
            self.waiting = False

    def close(self) -> None:
        if self.closed:
            return
        for remote in self.remotes:
            with contextlib.suppress(Exception):
                remote.send(("close", None))
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
        self.closed = True


__all__ = [
    "TRUSTED_MODULES",
    "SafeCheckpointCallback",
    "SafeSubprocVecEnv",
    "atomic_write",
    "check_predict_observation",
    "get_rng_state",
    "list_checkpoints",
    "load_checkpoint",
    "load_model",
    "load_replay_buffer",
    "load_vec_normalize",
    "save_checkpoint",
    "save_model",
    "save_replay_buffer",
    "save_vec_normalize",
    "set_rng_state",
]
