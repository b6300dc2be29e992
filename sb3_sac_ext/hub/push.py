"""
Pushing to the Hub: a packaged folder uploaded in one commit (:func:`push_folder`), or a model evaluated, packaged
and uploaded (:func:`push_to_hub`). The repository is created right before the commit and deleted again if the
commit fails, so that no empty repository is left behind.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import warnings
from typing import Any

from sb3_sac_ext.common.errors import HubError
import sb3_sac_ext.hub.transport as transport
from sb3_sac_ext.hub.package import LIBRARY_NAME, algo_name, package_model
from sb3_sac_ext.hub.transport import bounded_timeout, call_hub, describe, hub_module, resolve_token, status_code


def _repo_exists(api: Any, repo_id: str, endpoint: str | None) -> bool:
    hub = hub_module()

    def probe() -> bool:
        try:
            api.model_info(repo_id, timeout=transport.TIMEOUT)
        except (hub.errors.RepositoryNotFoundError, hub.errors.RemoteEntryNotFoundError):
            return False
        return True

    return call_hub(probe, f"Looking up the repository {repo_id!r}", repo_id, None, endpoint)


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    commit_message: str,
    token: str | None = None,
    private: bool = False,
    endpoint: str | None = None,
) -> str:
    """
    Upload every file of ``folder`` to ``repo_id`` in one commit. The repository is created only right before the
    commit when it does not exist, and deleted again if the commit fails (no empty repository is left behind).

    :return: The commit sha
    :raise HubAuthError: without a token (before anything is sent) or when the server refuses it
    :raise HubConnectionError: network down or HTTP 5xx after :data:`RETRIES` attempts
    """
    hub = hub_module()
    token = resolve_token(token)
    folder = pathlib.Path(folder)
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    api = hub.HfApi(endpoint=endpoint, token=token)
    created = False
    if not _repo_exists(api, repo_id, endpoint):

        def create() -> bool:
            try:
                api.create_repo(repo_id, private=private, exist_ok=False, repo_type="model")
            except hub.errors.HfHubHTTPError as e:
                if status_code(e) == 409:  # it exists (e.g. private, invisible to model_info): never delete it later
                    return False
                raise
            return True

        created = call_hub(create, f"Creating the repository {repo_id!r}", repo_id, None, endpoint)

    def commit() -> Any:
        # fresh operations for every attempt: huggingface_hub marks them as used
        operations = [hub.CommitOperationAdd(path.relative_to(folder).as_posix(), str(path)) for path in files]
        return api.create_commit(repo_id, operations, commit_message=commit_message, repo_type="model")

    try:
        info = call_hub(commit, f"Uploading to {repo_id!r}", repo_id, None, endpoint)
    except BaseException as e:
        if created:
            try:
                with bounded_timeout(transport.TIMEOUT):
                    api.delete_repo(repo_id, missing_ok=True, repo_type="model")
            except Exception as cleanup_error:
                warnings.warn(
                    f"The commit failed and the repository {repo_id!r} created for it could not be deleted "
                    f"({describe(cleanup_error)}): delete it on the Hub.",
                    UserWarning,
                    stacklevel=2,
                )
            else:
                if isinstance(e, HubError):
                    e.args = (f"{e.args[0]} The repository created for this push was deleted again.",)
        raise
    return str(info.oid)


def push_to_hub(
    model: Any,
    repo_id: str,
    env_id: str,
    eval_env: Any = None,
    n_eval_episodes: int = 10,
    video: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
    private: bool = False,
    endpoint: str | None = None,
    video_length: int = 1000,
    deterministic: bool = True,
) -> str:
    """
    Evaluate ``model``, package it locally (:func:`~sb3_sac_ext.hub.package.package_model`) and upload everything in
    one commit.

    :param model: A trained SAC or DiscreteSAC model
    :param repo_id: ``<user or org>/<name>``; RL Zoo's naming is ``<org>/<algo>-<EnvId>``
    :param env_id: Gymnasium env id the model was trained on
    :param eval_env: Env to evaluate on (default: ``gym.make(env_id)`` with the model's normalisation statistics)
    :param n_eval_episodes: Evaluation episodes for ``results.json`` and the model card
    :param video: Record and upload a replay video (skipped with a warning when rendering or ffmpeg is unavailable)
    :param commit_message: Commit message (default: ``"Upload <algo> <EnvId> with sb3-sac-ext"``)
    :param token: Hugging Face token with write access (default: ``HF_TOKEN`` or the saved login)
    :param private: Create the repository as private (when it does not exist yet)
    :param endpoint: Hub URL (default: ``HF_ENDPOINT`` or https://huggingface.co)
    :param video_length: Steps in the video
    :param deterministic: Evaluate with deterministic actions
    :return: The sha of the commit: pass it as ``revision`` to :func:`load_from_hub`
    """
    hub_module()
    algo = algo_name(model)
    resolve_token(token)  # fail before the (slow) evaluation when there is no token
    with tempfile.TemporaryDirectory(prefix="sb3_sac_ext_push_") as folder:
        package_model(model, env_id, folder, repo_id, eval_env, n_eval_episodes, video, video_length, deterministic)
        message = commit_message or f"Upload {algo} {env_id} with {LIBRARY_NAME}"
        return push_folder(folder, repo_id, message, token=token, private=private, endpoint=endpoint)
