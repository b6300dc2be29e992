"""
Files on disk: the one atomic write, the one sha256 of a file, and SB3's path conventions (suffixes).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pathlib
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

# A file path, or a binary file object (SB3's save and load accept both)
PathLike = str | os.PathLike | io.BufferedIOBase

_CHUNK = 1 << 20


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
    fsync_dir(path.parent)


def write_text(path: str | os.PathLike, text: str) -> None:
    """
    Write ``text`` (UTF-8) to ``path`` with :func:`atomic_write`.

    :param path: Final path
    :param text: Content
    """
    with atomic_write(path) as file:
        file.write(text.encode())


def fsync_dir(folder: str | os.PathLike) -> None:
    """
    Fsync a folder, so that a rename inside it survives a power loss (a no-op where unsupported, e.g. Windows).

    :param folder: The folder
    """
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sha256_stream(file: IO[bytes]) -> str:
    """
    :param file: A binary file object, read to its end in chunks
    :return: The hexadecimal sha256 of what is read
    """
    digest = hashlib.sha256()
    for chunk in iter(lambda: file.read(_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """
    :param path: A file
    :return: Its hexadecimal sha256
    """
    with open(path, "rb") as file:
        return sha256_stream(file)


def sha256_files(folder: str | os.PathLike, names: Iterable[str] | None = None, exclude: str | None = None) -> dict[str, str]:
    """
    The sha256 of files in ``folder``, keyed by their ``/``-separated path relative to it: the digests that the
    checkpoint metadata (``checkpoint.json``) and the Hub's ``sha256sums.json`` list.

    :param folder: The folder
    :param names: Relative paths of the files to hash (default: every file below ``folder``, sorted)
    :param exclude: A file name to leave out when ``names`` is not given (the manifest itself)
    :return: relative path -> sha256
    """
    folder = pathlib.Path(folder)
    if names is None:
        paths = [path for path in sorted(folder.rglob("*")) if path.is_file() and path.name != exclude]
    else:
        paths = [folder / name for name in names]
    return {path.relative_to(folder).as_posix(): sha256_file(path) for path in paths}


def write_path(path: PathLike, suffix: str) -> PathLike:
    """
    SB3's convention: a path without suffix gets ``.<suffix>``.

    :param path: A path, or a file object (returned as it is)
    :param suffix: The suffix, without the dot
    :return: The path to write
    """
    if isinstance(path, (str, os.PathLike)):
        path = pathlib.Path(path)
        if path.suffix == "":
            path = pathlib.Path(f"{path}.{suffix}")
    return path


def read_path(path: PathLike, suffixes: tuple[str, ...]) -> PathLike:
    """
    SB3's convention: if ``path`` does not exist, try ``path.<suffix>``.

    :param path: A path, or a file object (returned as it is)
    :param suffixes: Suffixes to try, in order, without the dot
    :return: The existing path
    :raise FileNotFoundError: when neither ``path`` nor a suffixed path exists
    :raise IsADirectoryError: when ``path`` is a folder
    """
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


def file_name(path: PathLike) -> str:
    """
    :param path: A path or a file object
    :return: The name to show in error messages
    """
    return str(path) if isinstance(path, (str, os.PathLike)) else getattr(path, "name", repr(path))
