"""
Checkpoints of long runs: model, replay buffer, ``VecNormalize`` statistics and every RNG state (Python, numpy,
torch, the action space, the envs) as one atomic folder, and :class:`SafeCheckpointCallback`, which writes them
during ``learn()`` (also on Ctrl-C / SIGTERM) and rotates old ones.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pathlib
import random
import shutil
import signal
import tempfile
import threading
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from sb3_sac_ext.common.errors import (
    ChecksumMismatchError,
    CorruptedFileError,
    FormatVersionError,
    MissingMemberError,
    ModelFileError,
)
from sb3_sac_ext.common.persistence.codec import Decoder, Encoder, dumps, import_path, resolve_import, to_base64
from sb3_sac_ext.common.persistence.container import FORMAT_NAME, FORMAT_VERSION
from sb3_sac_ext.common.persistence.files import atomic_write, fsync_dir, sha256_file, sha256_files
from sb3_sac_ext.common.persistence.models import algorithm_name
from sb3_sac_ext.common.persistence.vec_normalize import load_vec_normalize
from sb3_sac_ext.common.persistence.vec_normalize import save_vec_normalize as save_vec_normalize_file


def get_rng_state(model: Any = None) -> dict[str, Any]:
    """
    :param model: The model whose action space's RNG is included, if any
    :return: Python ``random``, numpy's global RNG, torch (CPU and CUDA) and the action-space RNG, as JSON data
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": to_base64(th.get_rng_state().numpy().tobytes()),
    }
    if th.cuda.is_available():
        state["cuda"] = [to_base64(s.numpy().tobytes()) for s in th.cuda.get_rng_state_all()]
    space = getattr(model, "action_space", None)
    if space is not None and getattr(space, "_np_random", None) is not None:
        state["action_space"] = _jsonable_bitgen(space.np_random.bit_generator.state)
    return state


def _jsonable_bitgen(state: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(state, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else int(o)))


def set_rng_state(state: dict[str, Any], model: Any = None) -> None:
    """
    Restore what :func:`get_rng_state` returned.

    :param state: The state
    :param model: The model whose action space's RNG is restored, if any
    """
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
            save_vec_normalize_file(vec_normalize, tmp / "vec_normalize.zip")
            members.append("vec_normalize.zip")
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "kind": "checkpoint",
            "algorithm": algorithm_name(type(model)),
            "class": import_path(type(model)),
            "num_timesteps": int(model.num_timesteps),
            "members": sha256_files(tmp, members),
            "rng": get_rng_state(model),
            "env": _venv_states(model.get_env()),
        }
        with atomic_write(tmp / CHECKPOINT_META) as file:
            file.write(dumps(meta))
        fsync_dir(tmp)
        if final.exists():
            old = pathlib.Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


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
            if sha256_file(folder / member) != sha:
                raise ChecksumMismatchError(f"{folder / member} does not match its sha256 in {CHECKPOINT_META}")
    return meta


def list_checkpoints(folder: str | os.PathLike) -> list[pathlib.Path]:
    """
    :param folder: A folder of checkpoints
    :return: The complete checkpoints directly in it (those with a readable ``checkpoint.json``), oldest first
    """
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
        if not isinstance(env, VecEnv):
            env = model_class._wrap_env(gym.make(env) if isinstance(env, str) else env, 0)
        if "vec_normalize.zip" in meta["members"]:
            env = load_vec_normalize(folder / "vec_normalize.zip", env)
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
