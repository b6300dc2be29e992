"""
Pulling from the Hub: every file downloaded from one commit through ``huggingface_hub``'s cache and checked against
``sha256sums.json`` (:func:`download_from_hub`), then loaded with the safe loader (:func:`load_from_hub`).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import warnings
from dataclasses import dataclass, field
from typing import Any

from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from sb3_sac_ext.common.errors import HubFileNotFoundError
from sb3_sac_ext.common.persistence import load_vec_normalize
import sb3_sac_ext.hub.transport as transport
from sb3_sac_ext.hub.manifest import MANIFEST_FILE, read_manifest, verify_file
from sb3_sac_ext.hub.package import LIBRARY_NAME, VEC_NORMALIZE_FILE
from sb3_sac_ext.hub.transport import call_hub, hub_module
from sb3_sac_ext.registry import ALGORITHMS, get_algorithm


@dataclass
class HubDownload:
    """Files downloaded and verified by :func:`download_from_hub` (paths in huggingface_hub's cache)."""

    repo_id: str
    revision: str
    model: pathlib.Path
    files: dict[str, pathlib.Path] = field(default_factory=dict)
    verified: bool = False
    config: dict[str, Any] | None = None

    def path(self, name: str) -> pathlib.Path | None:
        """:return: The local path of the repository file ``name`` when it was downloaded."""
        return self.files.get(name)


def download_from_hub(
    repo_id: str,
    filename: str | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    extra_files: tuple[str, ...] = (),
) -> HubDownload:
    """
    Download the model file (and the normalisation statistics, ``config.json``, ``results.json``, ``extra_files``)
    through ``huggingface_hub``'s cache, all from one commit, and verify each against ``sha256sums.json``.

    :param repo_id: ``<user or org>/<name>``
    :param filename: Model file (default: ``config.json``'s ``model_file``, else ``<repo name>.zip``, else the only zip)
    :param revision: Commit sha (recommended), branch or tag; a ``UserWarning`` says when none pins the download
    :param endpoint: Hub URL (default: ``HF_ENDPOINT`` or https://huggingface.co)
    :param token: Token for private repositories
    :param cache_dir: huggingface_hub cache folder
    :param force_download: Download again even when cached
    :param extra_files: Other repository files to download and verify
    :return: The local paths
    :raise HubRepositoryNotFoundError, HubRevisionNotFoundError, HubFileNotFoundError: distinct messages
    :raise ChecksumMismatchError: a file does not match the manifest
    """
    hub = hub_module()
    if revision is None:
        warnings.warn(
            f"No revision pins the download of {repo_id!r}: the latest commit of 'main' is used, and it may change. "
            "Pass revision=<commit sha> (printed by push_to_hub) for a reproducible, reviewed download.",
            UserWarning,
            stacklevel=2,
        )
    api = hub.HfApi(endpoint=endpoint, token=token)
    info = call_hub(
        lambda: api.model_info(repo_id, revision=revision, timeout=transport.TIMEOUT),
        f"Looking up {repo_id!r}",
        repo_id,
        revision,
        endpoint,
    )
    commit = info.sha or revision or "main"
    names = {sibling.rfilename for sibling in (info.siblings or [])}

    def fetch(name: str) -> pathlib.Path:
        if info.siblings is not None and name not in names:
            raise HubFileNotFoundError(f"File {name!r} does not exist in {repo_id!r} at revision {commit}.")
        return pathlib.Path(
            call_hub(
                lambda: hub.hf_hub_download(
                    repo_id,
                    name,
                    revision=commit,
                    endpoint=endpoint,
                    token=token,
                    cache_dir=cache_dir,
                    force_download=force_download,
                    etag_timeout=transport.TIMEOUT,
                ),
                f"Downloading {name} from {repo_id!r}",
                repo_id,
                commit,
                endpoint,
                filename=name,
            )
        )

    files: dict[str, pathlib.Path] = {}
    manifest: dict[str, str] | None = None
    if MANIFEST_FILE in names or info.siblings is None:  # file list unknown: try the manifest anyway
        with contextlib.suppress(HubFileNotFoundError):
            files[MANIFEST_FILE] = fetch(MANIFEST_FILE)
            manifest = read_manifest(files[MANIFEST_FILE], repo_id)
    if manifest is None:
        warnings.warn(
            f"{repo_id!r} has no {MANIFEST_FILE} (it was not pushed by {LIBRARY_NAME}): the downloaded files cannot be "
            "verified beyond what the Hub reports.",
            UserWarning,
            stacklevel=2,
        )

    def get(name: str) -> pathlib.Path:
        path = fetch(name)
        if manifest is not None:
            verify_file(path, name, manifest, repo_id, commit)
        files[name] = path
        return path

    if info.siblings is None and manifest is not None:
        names = set(manifest)
    config = None
    if "config.json" in names:
        try:
            config = json.loads(get("config.json").read_text())
        except json.JSONDecodeError:
            config = None
    if filename is None:
        filename = _default_filename(repo_id, names, config)
    model_path = get(filename)
    if isinstance(config, dict) and config.get("vec_normalize_file") in names:
        get(config["vec_normalize_file"])
    for name in ("results.json", *extra_files):
        if name in names or name in extra_files:
            get(name)
    return HubDownload(repo_id, commit, model_path, files, verified=manifest is not None, config=config)


def _default_filename(repo_id: str, names: set[str], config: Any) -> str:
    if isinstance(config, dict) and isinstance(config.get("model_file"), str):
        return config["model_file"]
    rl_zoo_name = repo_id.split("/")[-1] + ".zip"
    if rl_zoo_name in names:
        return rl_zoo_name
    zips = sorted(name for name in names if name.endswith(".zip") and name != VEC_NORMALIZE_FILE)
    if len(zips) == 1:
        return zips[0]
    raise HubFileNotFoundError(
        f"Cannot tell which file of {repo_id!r} is the model (no config.json, no {rl_zoo_name}, zips: {zips}): "
        "pass filename=..."
    )


def _algorithm_class(algo: Any, download: HubDownload) -> type:
    """
    :param algo: A class (returned as it is), a name of :mod:`sb3_sac_ext.registry`, or None: ``config.json``'s
        ``algo``, else the file name's prefix (RL Zoo's ``<algo>-<EnvId>.zip``), else ``sac``
    :param download: The downloaded files
    :return: The class that loads the model
    :raise UnknownAlgorithmError: (a ``ValueError``) for an unknown name
    """
    if isinstance(algo, type):
        return algo
    if algo is None and isinstance(download.config, dict):
        algo = download.config.get("algo")
    if algo is None:
        stem = download.model.name.split("-")[0].lower()
        algo = stem if stem in ALGORITHMS else "sac"
    return get_algorithm(algo).cls


def load_from_hub(
    repo_id: str,
    filename: str | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
    algo: Any = None,
    env: Any = None,
    allow_pickle: bool = False,
    token: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    device: Any = "auto",
    custom_objects: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """
    Download (see :func:`download_from_hub`), verify and load a model with the safe loader.

    :param repo_id: ``<user or org>/<name>``
    :param filename: Model file (default: from ``config.json``, else ``<repo name>.zip``)
    :param revision: Commit sha (recommended), branch or tag; a ``UserWarning`` says when none pins the download
    :param endpoint: Hub URL (default: ``HF_ENDPOINT`` or https://huggingface.co)
    :param algo: ``"sac"``, ``"discrete_sac"`` or the class (default: from ``config.json`` or the file name)
    :param env: Env to attach; when the repository holds normalisation statistics, a ``VecEnv`` built from it is
        wrapped in a frozen ``VecNormalize`` with them
    :param allow_pickle: Allow unpickling (Stable-Baselines3 zips need it); only for repositories you trust
    :param token: Token for private repositories
    :param cache_dir: huggingface_hub cache folder
    :param force_download: Download again even when cached
    :param device: Torch device
    :param custom_objects: As in ``SAC.load``
    :param kwargs: Passed to ``load``
    :return: The model
    """
    download = download_from_hub(repo_id, filename, revision, endpoint, token, cache_dir, force_download)
    cls = _algorithm_class(algo, download)
    stats_name = download.config.get("vec_normalize_file") if isinstance(download.config, dict) else None
    if env is not None and stats_name and download.path(stats_name) is not None:
        venv = env if isinstance(env, VecEnv) else DummyVecEnv([lambda: env])
        env = load_vec_normalize(download.path(stats_name), venv, allow_pickle=allow_pickle)  # type: ignore[arg-type]
        env.training = False
        env.norm_reward = False
    return cls.load(download.model, env=env, device=device, custom_objects=custom_objects, allow_pickle=allow_pickle, **kwargs)
