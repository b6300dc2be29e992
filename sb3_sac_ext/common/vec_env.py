"""
``SafeSubprocVecEnv``: SB3's ``SubprocVecEnv`` whose workers send an env's exception back to the main process.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import traceback
from collections.abc import Callable
from typing import Any

import cloudpickle
from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnv
from stable_baselines3.common.vec_env.base_vec_env import CloudpickleWrapper
from stable_baselines3.common.vec_env.subproc_vec_env import _worker


class _RemoteError:
    """An exception raised in a worker, sent to the main process."""

    def __init__(self, error: BaseException):
        self.traceback = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        try:
            cloudpickle.dumps(error)
            self.error: BaseException = error
        except Exception:
            self.error = RuntimeError(f"{type(error).__name__}: {error}")


def _safe_worker(remote: Any, parent_remote: Any, env_fn_wrapper: CloudpickleWrapper) -> None:
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

    :param env_fns: Functions that create the envs
    :param start_method: ``multiprocessing`` start method (default: ``forkserver`` where available, else ``spawn``)
    """

    def __init__(self, env_fns: list[Callable[[], Any]], start_method: str | None = None):
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


__all__ = ["SafeSubprocVecEnv"]
