"""
Share models on the Hugging Face Hub, built on ``huggingface_hub`` directly (``pip install "sb3-sac-ext[hub]"``).

Push (:func:`push_to_hub`, ``sb3-sac-ext push``) packages everything in a local folder first, then uploads it in
**one commit** and returns the commit sha. The repository (RL Zoo naming: ``<org>/<algo>-<EnvId>``) holds:

- ``<algo>-<EnvId>.zip``: the model in sb3-sac-ext's pickle-free format (``algo`` is ``sac`` or ``discrete_sac``);
- ``vec_normalize.zip``: the normalisation statistics, when the model's env is wrapped in ``VecNormalize``;
- ``config.json``: hyperparameters, file names, library and Stable-Baselines3 versions;
- ``results.json``: mean and std return, number of episodes, deterministic flag, date;
- ``hyperparams.yml``: the hyperparameters as an RL Zoo YAML entry (``<EnvId>: {...}``);
- ``README.md``: a model card whose metadata the Hub understands (``library_name``, tags, ``model-index``);
- ``replay.mp4`` when ``video=True`` and recording is possible (otherwise skipped with a warning);
- ``sha256sums.json``: the sha256 of every other file, so that a pull verifies every file it downloads.

Pull (:func:`load_from_hub`, ``sb3-sac-ext pull``) downloads through ``huggingface_hub``'s cache, pinned to one
commit, verifies each file against ``sha256sums.json`` and loads the model with the safe loader: no pickle unless
``allow_pickle=True``. Models pushed by Stable-Baselines3 users (``huggingface_sb3`` / RL Zoo, e.g.
``sb3/sac-Pendulum-v1`` holding ``sac-Pendulum-v1.zip``) have no manifest and contain pickles: they load into
:class:`~sb3_sac_ext.SAC` only with ``allow_pickle=True``.

Failures are typed (:mod:`sb3_sac_ext.common.errors`): :class:`HubAuthError` (no token, checked before anything is
sent; or HTTP 401/403), :class:`HubConnectionError` (network down, timeout, HTTP 5xx after a bounded retry),
:class:`HubRepositoryNotFoundError` / :class:`HubRevisionNotFoundError` / :class:`HubFileNotFoundError`, and
:class:`~sb3_sac_ext.common.errors.ChecksumMismatchError`. A push never leaves an empty repository behind: the
repository is created right before the commit, and deleted again if the commit then fails.

Every request has a bounded timeout (:data:`TIMEOUT`); retries are bounded by :data:`RETRIES` and :data:`RETRY_WAIT`.

Modules: :mod:`.transport` (timeout, retry, typed errors), :mod:`.package` (the files of a repository),
:mod:`.manifest` (``sha256sums.json``), :mod:`.push`, :mod:`.pull`, :mod:`.command_line` (``push`` and ``pull``
of the command line). Every name is re-exported here.
"""

import sys
import types
from typing import Any

import sb3_sac_ext.hub.transport as transport
from sb3_sac_ext.common.persistence.files import sha256_file
from sb3_sac_ext.hub.command_line import (
    add_pull_arguments,
    add_push_arguments,
    pull_command,
    pull_main,
    push_command,
    push_main,
)
from sb3_sac_ext.hub.manifest import MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, write_manifest
from sb3_sac_ext.hub.package import (
    LIBRARY_NAME,
    VEC_NORMALIZE_FILE,
    VIDEO_FILE,
    algo_name,
    model_filename,
    model_hyperparameters,
    package_model,
)
from sb3_sac_ext.hub.pull import HubDownload, download_from_hub, load_from_hub
from sb3_sac_ext.hub.push import push_folder, push_to_hub
from sb3_sac_ext.hub.transport import INSTALL_HINT

# Settings read by every request, kept in :mod:`.transport`: reading or setting ``sb3_sac_ext.hub.TIMEOUT``
# (``RETRIES``, ``RETRY_WAIT``) reads or sets the value there, as when they were attributes of one module.
_SETTINGS = ("TIMEOUT", "RETRIES", "RETRY_WAIT")


class _HubModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name in _SETTINGS:
            return getattr(transport, name)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SETTINGS:
            setattr(transport, name, value)
        else:
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _HubModule

__all__ = [
    "INSTALL_HINT",
    "LIBRARY_NAME",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "RETRIES",
    "RETRY_WAIT",
    "TIMEOUT",
    "VEC_NORMALIZE_FILE",
    "VIDEO_FILE",
    "HubDownload",
    "add_pull_arguments",
    "add_push_arguments",
    "algo_name",
    "download_from_hub",
    "load_from_hub",
    "model_filename",
    "model_hyperparameters",
    "package_model",
    "pull_command",
    "pull_main",
    "push_command",
    "push_folder",
    "push_main",
    "push_to_hub",
    "sha256_file",
    "write_manifest",
]
