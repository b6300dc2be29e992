"""Helpers shared by the tuning, CLI and RL Zoo tests: tiny settings, subprocess runner, a PostgreSQL server."""

import glob
import os
import shutil
import socket
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# Tiny and fast: 2 evaluations of 1 episode, [32, 32] nets, 100 updates of batch 32
TINY_HYPERPARAMS = [
    "policy_kwargs:dict(net_arch=[32, 32])",
    "learning_starts:200",
    "batch_size:32",
    "train_freq:1",
    "n_steps:1",
]
TINY = ["-n", "300", "--n-evaluations", "2", "--eval-episodes", "1", "--pruner", "none", "--hyperparams", *TINY_HYPERPARAMS]


def env_vars() -> dict[str, str]:
    """Environment of the subprocesses: one torch thread (shared 2-core machines), the repo importable."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli(*args: str, timeout: float = 120, cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m sb3_sac_ext.cli ARGS`` and return the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "sb3_sac_ext.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env_vars(),
        cwd=cwd,
    )


def _as_from_a_terminal() -> None:
    """
    In the child before ``exec``: SIGINT handled by default and not blocked, as for a command started from a shell
    (an ignored or blocked SIGINT is inherited through ``exec``, and Python then installs no KeyboardInterrupt handler;
    the test worker's own disposition must not decide what Ctrl-C does to the command under test).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def popen_cli(*args: str) -> subprocess.Popen:
    """Start ``python -m sb3_sac_ext.cli ARGS`` with stdout piped (stderr merged), SIGINT as from a terminal."""
    return subprocess.Popen(
        [sys.executable, "-m", "sb3_sac_ext.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env_vars(),
        preexec_fn=_as_from_a_terminal,
    )


def wait_for_line(process: subprocess.Popen, text: str, timeout: float = 90) -> list[str]:
    """Read the process's output until a line contains ``text``; return the lines read."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    process.kill()
    raise AssertionError(f"{text!r} not printed in time; output:\n{''.join(lines)}")


class ShortBoxEnv(gym.Env):
    """
    A 20-step continuous env; with ``nan_seed`` its rewards are NaN after a reset with that seed
    (the tuner seeds the training envs of trial 0 with 0, of trial 1 with 1000).
    """

    def __init__(self, nan_seed: int | None = None):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.nan_seed = nan_seed
        self.bad = False
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.bad = seed == self.nan_seed
        self.t = 0
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), {}

    def step(self, action):
        self.t += 1
        reward = float("nan") if self.bad else -float(np.abs(action).sum())
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), reward, False, self.t >= 20, {}


def register_test_envs() -> None:
    """Register ``ShortBox-v0`` and ``NanOnSeed0-v0`` with gymnasium (idempotent)."""
    if "ShortBox-v0" not in gym.registry:
        gym.register("ShortBox-v0", entry_point=ShortBoxEnv)
        gym.register("NanOnSeed0-v0", entry_point=ShortBoxEnv, kwargs={"nan_seed": 0})


register_test_envs()
SHORT_ENV = "tests._tune_helpers:ShortBox-v0"  # importable by subprocesses


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """
    A throwaway PostgreSQL server on 127.0.0.1 in a temp dir (initdb/pg_ctl refuse root: run as ``postgres``).
    Skipped only when the PostgreSQL server binaries are absent (CI installs them with .ci/setup-postgres.sh).
    """
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    bindir = (
        Path(candidates[-1]).parent
        if candidates
        else (Path(shutil.which("initdb")).parent if shutil.which("initdb") else None)
    )
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: run .ci/setup-postgres.sh")
    pytest.importorskip("psycopg2", reason="psycopg2 missing: pip install 'sb3-sac-ext[postgres]'")
    as_postgres: list[str] = []
    tmp = tempfile.mkdtemp(prefix="sb3_sac_ext_pg_")
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as the postgres user")
        as_postgres = ["runuser", "-u", "postgres", "--"]
        shutil.chown(tmp, "postgres", "postgres")
    data, port = os.path.join(tmp, "data"), _free_port()
    run = lambda *cmd: subprocess.run([*as_postgres, *cmd], check=True, capture_output=True, text=True, timeout=120)  # noqa: E731
    try:
        run(str(bindir / "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        run(
            str(bindir / "pg_ctl"),
            "-D",
            data,
            "-l",
            os.path.join(tmp, "log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-k {tmp} -p {port} -h 127.0.0.1",
            "start",
        )
    except subprocess.CalledProcessError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL failed to start: {e.stderr or e.stdout}") from e
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_postgres, str(bindir / "pg_ctl"), "-D", data, "-m", "immediate", "stop"], capture_output=True, timeout=60
        )
        shutil.rmtree(tmp, ignore_errors=True)
