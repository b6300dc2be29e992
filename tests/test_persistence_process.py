"""Fault tolerance across processes: SIGKILL during a save, resume in a new process, SIGTERM, env errors."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch as th

from sb3_sac_ext import SAC
from sb3_sac_ext.common import persistence

try:
    from sb3_sac_ext import DiscreteSAC
except ImportError:  # pragma: no cover - written concurrently
    try:
        from sb3_sac_ext.discrete_sac import DiscreteSAC
    except ImportError:
        DiscreteSAC = None

from _persistence_envs import PointEnv

# One pytest-xdist worker runs the whole module: its module-scoped fixtures (processes started once) are not repeated
pytestmark = pytest.mark.xdist_group("persistence_process")

MODELS = [SAC] + ([DiscreteSAC] if DiscreteSAC is not None else [])
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
TINY = "dict(buffer_size=1000, batch_size=32, learning_starts=30, policy_kwargs=dict(net_arch=[32, 32]), seed=0)"
PRELUDE = f"""
import sys, os, time
sys.path.insert(0, {TESTS_DIR!r})
import numpy as np, torch as th
th.set_num_threads(1)
from sb3_sac_ext import SAC
try:
    from sb3_sac_ext import DiscreteSAC
except ImportError:
    from sb3_sac_ext.discrete_sac import DiscreteSAC
from sb3_sac_ext.common import persistence
from _persistence_envs import PointEnv
"""


def run_child(code, timeout=120, **popen):
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)], timeout=timeout, capture_output=True, text=True, **popen
    )


def params_of(model):
    return {k: v.clone() for k, v in model.policy.state_dict().items()}


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_sigkill_while_overwriting_keeps_previous_file(cls, tmp_path):
    path = tmp_path / "model.zip"
    model = cls(
        "MlpPolicy", PointEnv(discrete=cls is not SAC), buffer_size=1000, policy_kwargs=dict(net_arch=[32, 32]), seed=0
    )
    model.save(path)
    original = path.read_bytes()
    flag = tmp_path / "writing"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            PRELUDE
            + textwrap.dedent(f"""
            model = {cls.__name__}.load({str(path)!r})
            with th.no_grad():
                for p in model.policy.parameters():
                    p.add_(1.0)
            original_write = persistence.ContainerWriter.write
            def slow_write(self, name, data, compress=False):
                original_write(self, name, data, compress)
                open({str(flag)!r}, "w").close()
                time.sleep(60)  # killed here, in the middle of the overwrite
            persistence.ContainerWriter.write = slow_write
            model.save({str(path)!r})
        """),
        ],
    )
    try:
        deadline = time.time() + 90
        while not flag.exists() and time.time() < deadline and child.poll() is None:
            time.sleep(0.1)
        assert flag.exists(), "the child never started writing"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert path.read_bytes() == original, "the final path was modified"
    loaded = cls.load(path)
    for key, value in params_of(model).items():
        assert th.equal(value, loaded.policy.state_dict()[key]), key
    # the partial file is a hidden temporary beside it, never at the final path
    assert all(p.name.startswith(".model.zip.") for p in tmp_path.iterdir() if p.name not in ("model.zip", "writing"))


RESUME_STEPS = 100, 60  # steps before the checkpoint, steps after it


@pytest.fixture(scope="module")
def resumed_folders(tmp_path_factory):
    """
    Every model class trained in one process and checkpointed, then resumed in a second, new process (one process per
    phase for all the classes: process start-up is the slow part).

    :return: Folder of each class's checkpoint and ``resumed.zip``
    """
    n, m = RESUME_STEPS
    folders = {cls: tmp_path_factory.mktemp(f"resume_{cls.__name__}") for cls in MODELS}
    first = run_child(
        "".join(
            f"""
        model = {cls.__name__}("MlpPolicy", PointEnv(discrete={cls is not SAC}), **{TINY})
        model.learn({n})
        persistence.save_checkpoint(model, {str(folder / "ckpt")!r})
        """
            for cls, folder in folders.items()
        )
    )
    assert first.returncode == 0, first.stderr
    second = run_child(
        "".join(
            f"""
        model = persistence.load_checkpoint({str(folder)!r}, env=PointEnv(discrete={cls is not SAC}))
        assert model.num_timesteps == {n}
        model.learn({m}, reset_num_timesteps=False)
        model.save({str(folder / "resumed.zip")!r})
        """
            for cls, folder in folders.items()
        )
    )
    assert second.returncode == 0, second.stderr
    return folders


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_resume_in_new_process_is_identical(cls, resumed_folders):
    n, m = RESUME_STEPS
    discrete = cls is not SAC
    tmp_path = resumed_folders[cls]
    th.set_num_threads(1)
    one_go = cls("MlpPolicy", PointEnv(discrete=discrete), **eval(TINY))
    one_go.learn(n + m)
    resumed = cls.load(tmp_path / "resumed.zip")
    assert resumed.num_timesteps == one_go.num_timesteps
    for key, value in params_of(one_go).items():
        assert th.equal(value, resumed.policy.state_dict()[key]), key
    for name, optimizer in one_go.optimizers.items():
        for state, other in zip(
            optimizer.state_dict()["state"].values(), resumed.optimizers[name].state_dict()["state"].values()
        ):
            assert all(th.equal(state[k], other[k]) for k in state), name


def test_checkpoint_callback_rotates_and_picks_newest(tmp_path):
    model = SAC(
        "MlpPolicy",
        PointEnv(),
        buffer_size=1000,
        batch_size=32,
        learning_starts=30,
        policy_kwargs=dict(net_arch=[32, 32]),
        seed=0,
    )
    callback = persistence.SafeCheckpointCallback(save_freq=20, save_path=tmp_path, keep_last=2)
    model.learn(100, callback=callback)
    checkpoints = persistence.list_checkpoints(tmp_path)
    assert [c.name for c in checkpoints] == ["checkpoint_80_steps", "checkpoint_100_steps"]
    # an incomplete (temporary) folder and a damaged newest checkpoint are skipped
    (tmp_path / ".checkpoint_120_steps.xyz.tmp").mkdir()
    (checkpoints[-1] / "model.zip").write_bytes(b"broken")
    with pytest.warns(UserWarning, match="damaged"):
        loaded = persistence.load_checkpoint(tmp_path, env=PointEnv())
    assert loaded.num_timesteps == 80 and loaded.replay_buffer.pos == 80


def test_sigterm_during_learn_leaves_a_checkpoint(tmp_path):
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            PRELUDE
            + textwrap.dedent(f"""
            # Eager updates: learn(1_000_000) would compile the update (compile="auto") before the first checkpoint,
            # 10+ s that say nothing about signals (test_checkpoint_of_a_model_with_a_compiled_program checks that a
            # checkpoint leaves the compiled program out)
            model = SAC("MlpPolicy", PointEnv(), compile=False, **{TINY})
            callback = persistence.SafeCheckpointCallback(save_freq=50, save_path={str(tmp_path)!r}, keep_last=2)
            model.learn(1_000_000, callback=callback)
            print("interrupted", callback.interrupted, model.num_timesteps, flush=True)
        """),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 90
        while not persistence_ready(tmp_path) and time.time() < deadline and child.poll() is None:
            time.sleep(0.2)
        assert persistence_ready(tmp_path), child.stderr.read() if child.poll() is not None else "no checkpoint"
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err
    assert f"interrupted {int(signal.SIGTERM)}" in out
    steps = int(out.split()[-1])
    loaded = persistence.load_checkpoint(tmp_path, env=PointEnv())
    assert loaded.num_timesteps == steps


def persistence_ready(folder):
    return any(persistence.list_checkpoints(folder))


def test_env_exception_reaches_caller_through_subprocess_env():
    from _persistence_envs import make_raising_env

    venv = persistence.SafeSubprocVecEnv([make_raising_env], start_method="fork")
    try:
        model = SAC("MlpPolicy", venv, buffer_size=1000, learning_starts=100, policy_kwargs=dict(net_arch=[8]))
        with pytest.raises(ValueError, match="boom at step 5"):
            model.learn(50)
    finally:
        venv.close()
    # SB3's SubprocVecEnv loses it (documents why the wrapper exists)
    from stable_baselines3.common.vec_env import SubprocVecEnv

    venv = SubprocVecEnv([make_raising_env], start_method="fork")
    try:
        venv.reset()
        with pytest.raises(EOFError):
            for _ in range(10):
                venv.step(np.zeros((1, 2), np.float32))
    finally:
        for process in venv.processes:
            process.terminate()
