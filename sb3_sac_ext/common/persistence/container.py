"""
The zip container of every sb3-sac-ext file (model, replay buffer, VecNormalize statistics).

``manifest.json`` names the format and its version, what the file holds (``kind``), and the sha256 and size of
every other member; :func:`open_container` verifies all of it and raises one typed error (a subclass of
:class:`~sb3_sac_ext.common.errors.ModelFileError`, a ``ValueError``) naming the file and what is wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pathlib
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th

from sb3_sac_ext.common.errors import (
    ChecksumMismatchError,
    CorruptedFileError,
    FormatVersionError,
    MissingMemberError,
    PickleNotAllowedError,
    WrongAlgorithmError,
)
from sb3_sac_ext.common.persistence.codec import dumps
from sb3_sac_ext.common.persistence.files import PathLike, atomic_write, file_name, sha256_stream, write_path
from sb3_sac_ext.version import __version__

FORMAT_NAME = "sb3-sac-ext"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


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
    """
    Writes members into a zip and, on close, the manifest with each member's sha256 and size.

    :param file: A writable binary file
    :param kind: What the file holds: ``model``, ``replay_buffer`` or ``vec_normalize``
    :param meta: More manifest entries (e.g. the algorithm)
    """

    def __init__(self, file: Any, kind: str, meta: dict[str, Any]):
        self.zip = zipfile.ZipFile(file, "w", allowZip64=True)
        self.kind, self.meta, self.members = kind, meta, {}

    def write(self, name: str, data: bytes | Callable[[Any], None], compress: bool = False) -> None:
        """
        :param name: Member name
        :param data: Its bytes, or a function that writes them into the file object it is given
        :param compress: Deflate the member (JSON); arrays and tensors are stored as they are
        """
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
        """Write the manifest and close the zip."""
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
        self.zip.writestr(info, dumps(manifest))
        self.zip.close()


def write_container(
    path: PathLike, kind: str, meta: dict[str, Any], fill: Callable[[ContainerWriter], None], suffix: str = "zip"
) -> None:
    """
    Write a container atomically (:func:`~sb3_sac_ext.common.persistence.files.atomic_write`) when ``path`` is a path.

    :param path: File path (``.<suffix>`` is appended when it has none) or a writable binary file
    :param kind: What the file holds: ``model``, ``replay_buffer`` or ``vec_normalize``
    :param meta: More manifest entries (e.g. the algorithm)
    :param fill: Writes the members with :meth:`ContainerWriter.write`
    :param suffix: Suffix of a path without one
    """
    path = write_path(path, suffix)
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

    :param zip_file: The open archive
    :param name: The file's name, for error messages
    :param manifest: Its verified manifest
    """

    def __init__(self, zip_file: zipfile.ZipFile, name: str, manifest: dict[str, Any]):
        self.zip, self.name, self.manifest = zip_file, name, manifest

    def read(self, member: str) -> bytes:
        """:return: The bytes of ``member`` (typed errors when it is missing or damaged)."""
        try:
            return self.zip.read(member)
        except KeyError:
            raise MissingMemberError(f"{self.name}: member {member!r} is missing") from None
        except Exception as e:
            raise corrupted_error(self.name, e, member) from None

    def json(self, member: str) -> Any:
        """:return: ``member`` parsed as JSON (typed errors when it is missing, damaged or not JSON)."""
        try:
            return json.loads(self.read(member).decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CorruptedFileError(f"{self.name}: member {member!r} is not valid JSON ({e})") from None

    def array(self, member: str) -> np.ndarray:
        """:return: The ``.npy`` member ``member``, read with ``allow_pickle=False``."""
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
            raise corrupted_error(self.name, e, member) from None


def corrupted_error(name: str, error: BaseException, member: str | None = None) -> CorruptedFileError:
    """
    :param name: The file
    :param error: What reading it raised
    :param member: The member being read, if any
    :return: The typed error to raise (a CRC failure is a :class:`ChecksumMismatchError`)
    """
    where = f"{name}: member {member!r}" if member else name
    if isinstance(error, zipfile.BadZipFile) and "CRC" in str(error):
        return ChecksumMismatchError(f"{where} is damaged: its zip CRC does not match ({error})")
    return CorruptedFileError(
        f"{where} cannot be read: truncated, damaged or not a saved file ({type(error).__name__}: {error})"
    )


READ_ERRORS = (
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


def open_zip(path: PathLike) -> tuple[zipfile.ZipFile, str]:
    """
    :param path: A path or a readable binary file
    :return: The open zip archive and the file's name
    :raise CorruptedFileError: for an empty file or one that is not a zip archive
    """
    name = file_name(path)
    if isinstance(path, pathlib.Path) and path.stat().st_size == 0:
        raise CorruptedFileError(f"{name} is empty (0 bytes): the save did not complete, or this is not a saved file")
    try:
        return zipfile.ZipFile(path), name  # type: ignore[arg-type]
    except READ_ERRORS as e:
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
        try:
            with archive.open(member) as file:
                actual = sha256_stream(file)
        except READ_ERRORS as e:
            raise corrupted_error(name, e, member) from None
        if actual != expected["sha256"]:
            raise ChecksumMismatchError(
                f"{name}: member {member!r} does not match its sha256 in manifest.json "
                f"(expected {expected['sha256'][:16]}..., got {actual[:16]}...): the file was damaged or altered"
            )


def open_container(path: PathLike, kind: str, required: tuple[str, ...] = ()) -> Container:
    """
    Open and verify an sb3-sac-ext file (format, version, kind, every member's sha256).

    :param path: A path or a readable binary file
    :param kind: What it must hold: ``model``, ``replay_buffer`` or ``vec_normalize``
    :param required: Members it must list
    :return: The verified container (close ``container.zip`` when done)
    :raise CorruptedFileError, ChecksumMismatchError, MissingMemberError, FormatVersionError, WrongAlgorithmError:
    """
    archive, name = open_zip(path)
    try:
        names = archive.namelist()
        if MANIFEST not in names:
            raise MissingMemberError(f"{name}: manifest.json is missing: not an {FORMAT_NAME} file")
        try:
            manifest = json.loads(archive.read(MANIFEST).decode())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CorruptedFileError(f"{name}: manifest.json is not valid JSON ({e})") from None
        except READ_ERRORS as e:
            raise corrupted_error(name, e, MANIFEST) from None
        _check_manifest(name, manifest, kind)
        _verify_members(archive, name, manifest, required)
    except BaseException:
        archive.close()
        raise
    return Container(archive, name, manifest)


def is_our_format(path: PathLike) -> bool | None:
    """
    :param path: A path or a binary file object (rewound afterwards)
    :return: True for our format, False for another zip (SB3's), None when it is not a readable zip
    """
    try:
        with zipfile.ZipFile(path) as archive:  # type: ignore[arg-type]
            return MANIFEST in archive.namelist()
    except Exception:
        return None
    finally:
        if not isinstance(path, (str, os.PathLike)):
            with contextlib.suppress(Exception):
                path.seek(0)  # type: ignore[union-attr]


def refuse_pickle_file(path: PathLike, name: str, what: str, allow_pickle: bool) -> None:
    """
    For a file that is not in our format: raise unless ``allow_pickle`` (then the caller reads it with SB3's reader).

    :param path: The file
    :param name: Its name, for error messages
    :param what: What it should hold, for error messages
    :param allow_pickle: Whether the caller may unpickle it
    :raise PickleNotAllowedError: for a pickle
    :raise CorruptedFileError: for an empty file or one that is neither a zip nor a pickle
    """
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
