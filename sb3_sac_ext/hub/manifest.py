"""
``sha256sums.json``: the sha256 of every file of a pushed repository, written by the push and checked by the pull.

Its layout (``{"format": "sb3-sac-ext-sha256sums", "version": 1, "algorithm": "sha256", "files": {path: sha256}}``)
is fixed by the repositories already on the Hub; the digests are those of
:func:`sb3_sac_ext.common.persistence.files.sha256_files`, as in checkpoints.
"""

from __future__ import annotations

import json
import os
import pathlib

from sb3_sac_ext.common.errors import ChecksumMismatchError
from sb3_sac_ext.common.persistence.files import sha256_file, sha256_files, write_text

MANIFEST_FILE = "sha256sums.json"
MANIFEST_FORMAT = "sb3-sac-ext-sha256sums"
MANIFEST_VERSION = 1


def write_manifest(folder: str | os.PathLike) -> dict[str, str]:
    """
    Write ``sha256sums.json``: the sha256 of every file under ``folder`` (paths relative to it, ``/``-separated).

    :param folder: The packaged repository
    :return: path -> sha256
    """
    sums = sha256_files(folder, exclude=MANIFEST_FILE)
    content = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "algorithm": "sha256", "files": sums}
    write_text(pathlib.Path(folder) / MANIFEST_FILE, json.dumps(content, indent=2, sort_keys=True) + "\n")
    return sums


def read_manifest(path: pathlib.Path, repo_id: str) -> dict[str, str]:
    """
    :param path: A downloaded ``sha256sums.json``
    :param repo_id: Its repository, for error messages
    :return: path -> sha256
    :raise ChecksumMismatchError: when it cannot be read (the files then cannot be verified)
    """
    try:
        content = json.loads(path.read_text())
        files = content["files"]
        if content.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError("unknown format")
        if int(content.get("version", 0)) > MANIFEST_VERSION:
            raise ValueError(f"version {content['version']} is newer than this sb3-sac-ext reads ({MANIFEST_VERSION})")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ChecksumMismatchError(
            f"{MANIFEST_FILE} of {repo_id!r} cannot be read ({e}): the files cannot be verified"
        ) from None
    return {str(key): str(value) for key, value in files.items()}


def verify_file(path: pathlib.Path, name: str, manifest: dict[str, str], repo_id: str, revision: str) -> None:
    """
    :param path: The downloaded file
    :param name: Its path in the repository
    :param manifest: What :func:`read_manifest` returned
    :param repo_id: The repository, for error messages
    :param revision: The commit, for error messages
    :raise ChecksumMismatchError: when the file is not listed or its sha256 differs
    """
    if name not in manifest:
        raise ChecksumMismatchError(
            f"{name} of {repo_id!r}@{revision} is not listed in {MANIFEST_FILE}: it cannot be verified"
        )
    actual = sha256_file(path)
    if actual != manifest[name]:
        raise ChecksumMismatchError(
            f"{name} of {repo_id!r}@{revision} does not match {MANIFEST_FILE}: sha256 {actual}, expected {manifest[name]}. "
            f"The file was altered or damaged (local copy: {path}); it was not loaded. If the repository is trusted, "
            "download again with force_download=True."
        )
