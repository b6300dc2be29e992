"""
Logs of the learning benchmarks in RL Zoo's layout, which ``sb3-sac-ext plot`` reads: ``<log dir>/<algo>/<EnvId>_<n>/``
with ``evaluations.npz`` (``EvalCallback``'s format: ``timesteps``, ``results``, ``ep_lengths``) and ``*.monitor.csv``
(SB3's ``Monitor`` files of the training env). Imported by the benchmark scripts as a sibling module
(``python benchmarks/x.py`` puts ``benchmarks/`` on ``sys.path``).
"""

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback


def run_folder(log_dir: str | None, algo: str, env_id: str, seed: int) -> str | None:
    """
    :param log_dir: Root log folder (None: no logs)
    :param algo: The algorithm's folder (the plot's line label)
    :param env_id: The env id
    :param seed: The run's seed (the folder is numbered ``seed + 1``, as ``benchmarks/learning.py`` does)
    :return: ``<log dir>/<algo>/<EnvId>_<seed + 1>``, created; None without ``log_dir``
    """
    if not log_dir:
        return None
    path = os.path.join(log_dir, algo, f"{env_id}_{seed + 1}")
    os.makedirs(path, exist_ok=True)
    return path


def make_monitored_env(env_id: str, log_path: str | None) -> Any:
    """
    The env SB3 makes from an env id (``gym.make`` with ``render_mode="rgb_array"`` where the env takes it, in a
    ``Monitor``), with the Monitor's file ``<log_path>/train.monitor.csv``: training is the same as with the env id.
    """
    import gymnasium as gym
    from stable_baselines3.common.monitor import Monitor

    try:
        env = gym.make(env_id, render_mode="rgb_array")
    except TypeError:
        env = gym.make(env_id)
    return Monitor(env, filename=os.path.join(log_path, "train") if log_path else None)


@contextmanager
def unrecorded(monitor: Any) -> Iterator[None]:
    """Episodes run inside this block (an evaluation on the training env) are left out of ``monitor``'s file."""
    writer, monitor.results_writer = monitor.results_writer, None
    try:
        yield
    finally:
        monitor.results_writer = writer


class Evaluations:
    """The evaluations of one run, written to ``<log_path>/evaluations.npz`` after each (nothing without ``log_path``)."""

    def __init__(self, log_path: str | None) -> None:
        self.log_path = log_path
        self.timesteps: list[int] = []
        self.results: list[list[float]] = []
        self.ep_lengths: list[list[int]] = []

    def add(self, timesteps: int, returns: list[float], lengths: list[int]) -> None:
        self.timesteps.append(int(timesteps))
        self.results.append([float(r) for r in returns])
        self.ep_lengths.append([int(n) for n in lengths])
        if self.log_path:
            path = os.path.join(self.log_path, "evaluations.npz")
            np.savez(path, timesteps=self.timesteps, results=self.results, ep_lengths=self.ep_lengths)


class PeriodicEval(BaseCallback):
    """
    Calls ``evaluate(model) -> (episode returns, episode lengths)`` every ``every`` env steps (one env), prints the
    point after ``label``, keeps it in ``points`` and writes ``evaluations.npz`` into ``log_path``. ``eval_seconds``:
    the time the evaluations took.
    """

    def __init__(
        self, evaluate: Callable[[Any], tuple[list[float], list[int]]], every: int, log_path: str | None, label: str
    ) -> None:
        super().__init__()
        self.evaluate, self.every, self.label = evaluate, every, label
        self.evaluations = Evaluations(log_path)
        self.points: list[tuple[int, float]] = []
        self.eval_seconds = 0.0

    def _on_step(self) -> bool:
        if self.every > 0 and self.num_timesteps % self.every == 0:
            start = time.perf_counter()
            returns, lengths = self.evaluate(self.model)
            self.evaluations.add(self.num_timesteps, returns, lengths)
            mean, std = float(np.mean(returns)), float(np.std(returns))
            self.points.append((self.num_timesteps, mean))
            print(f"  {self.label}: {self.num_timesteps} steps, eval {mean:.2f} +/- {std:.2f}", flush=True)
            self.eval_seconds += time.perf_counter() - start
        return True
