"""
Data-parallel training on torch.distributed (gloo on CPU, real processes, each test with a hard timeout).

Every multi-process test starts its ranks as subprocesses with torchrun's environment variables and a
tcp://127.0.0.1:<free port> rendezvous (tests/_distributed_worker.py does the work of one rank).
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch as th

from sb3_sac_ext import SAC, DiscreteSAC
from sb3_sac_ext.common.errors import DistributedError, InvalidHyperparameterError, SB3SacExtError

# One pytest-xdist worker runs the whole module: its module-scoped fixtures (processes started once) are not repeated
pytestmark = pytest.mark.xdist_group("distributed")

WORKER = Path(__file__).with_name("_distributed_worker.py")
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_env(rank: int, world_size: int, port: int, collective_timeout: float) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        SB3_SAC_EXT_DIST_TIMEOUT=str(collective_timeout),
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    )
    return env


def start_ranks(scenarios: str, out: Path, world_size: int = 2, collective_timeout: float = 30.0) -> dict:
    """Start ``world_size`` ranks running ``scenarios`` (see :func:`finish_ranks`)."""
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), scenarios, str(out)],
            env=_rank_env(rank, world_size, port, collective_timeout),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(world_size)
    ]
    return {"scenarios": scenarios, "out": out, "procs": procs, "start": time.monotonic()}


def finish_ranks(job: dict, timeout: float = 60.0):
    """
    Wait for the ranks of a job from :func:`start_ranks`; kill them ``timeout`` seconds after their start.

    :return: ``([rank results: {scenario: result}], [exit codes])``
    """
    procs, out = job["procs"], job["out"]
    logs = []
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=max(timeout - (time.monotonic() - job["start"]), 1.0))[0])
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        pytest.fail(f"{job['scenarios']}: the ranks did not finish within {timeout} s (hang)")
    results = []
    for rank in range(len(procs)):
        path = out / f"rank{rank}.json"
        assert path.is_file(), f"rank {rank} wrote no result; its output:\n{logs[rank][-3000:]}"
        results.append(json.loads(path.read_text()))
    return results, [proc.returncode for proc in procs]


def run_ranks(scenarios: str, out: Path, world_size: int = 2, timeout: float = 60.0, collective_timeout: float = 30.0):
    """
    Start ``world_size`` ranks running ``scenarios``; kill them at ``timeout``.

    :return: ``([rank results: {scenario: result}], [exit codes])``
    """
    return finish_ranks(start_ranks(scenarios, out, world_size, collective_timeout), timeout)


# ---------------------------------------------------------------------- single process


def test_nothing_happens_without_torchrun(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    import torch.distributed as dist

    assert not dist.is_initialized()  # importing sb3_sac_ext formed no group
    model = SAC("MlpPolicy", "Pendulum-v1", learning_starts=10, device="cpu", policy_kwargs={"net_arch": [8]})
    assert model._distributed is None and model.is_main_process
    assert model.get_params()["distributed"] == "auto"
    with pytest.raises(DistributedError, match="torchrun") as info:
        SAC("MlpPolicy", "Pendulum-v1", device="cpu", distributed=True)
    assert isinstance(info.value, SB3SacExtError) and isinstance(info.value, RuntimeError)
    with pytest.raises(InvalidHyperparameterError):
        SAC("MlpPolicy", "Pendulum-v1", device="cpu", distributed="yes")
    assert SAC("MlpPolicy", "Pendulum-v1", device="cpu", distributed=False)._distributed is None
    assert not dist.is_initialized()


# ---------------------------------------------------------------------- two ranks


# One two-rank job runs every scenario (process start-up is the slow part); the crash comes last
MAIN = (
    "averaging,gradient:sac,gradient:discrete_sac,replicas:sac,replicas:discrete_sac,stop:sac,stop:discrete_sac,"
    "vecnormalize,mismatch,crash"
)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("two_ranks")
    results, codes = run_ranks(MAIN, out, timeout=85.0, collective_timeout=60.0)
    assert codes == [1, 1], results  # both ranks end with an error in the last scenario (crash)
    return out, results


def _scenario(two_ranks, name: str) -> list[dict]:
    results = [result[name] for result in two_ranks[1]]
    for result in results:
        assert result["ok"], result
    return results


@pytest.mark.timeout(90)
@pytest.mark.parametrize("algo", ["sac", "discrete_sac"])
def test_replicas_stay_identical(two_ranks, algo):
    zero, one = _scenario(two_ranks, f"replicas:{algo}")
    assert "world_size=2" in zero["distributed"] and "backend='gloo'" in zero["distributed"]
    assert zero["n_updates"] > 50 and zero["n_opt_tensors"] > 0
    # Every parameter, optimizer state and the temperature are bit-equal; the data each rank collected differs
    for key in ("params", "optimizers", "temperature", "num_timesteps", "n_updates"):
        assert zero[key] == one[key], key
    assert zero["log_ent_coef"] != 0.0  # the temperature was learned
    assert zero["buffer"] != one["buffer"]
    # Only rank 0 wrote; the model loads and predicts in this single process (no process group)
    out = two_ranks[0]
    assert (out / f"{algo}_rank0.zip").is_file() and not (out / f"{algo}_rank1.zip").exists()
    cls, env_id = (SAC, "Pendulum-v1") if algo == "sac" else (DiscreteSAC, "CartPole-v1")
    model = cls.load(out / f"{algo}_rank0.zip", device="cpu")
    assert model._distributed is None
    import gymnasium as gym

    obs, _ = gym.make(env_id).reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert gym.make(env_id).action_space.contains(action if algo == "sac" else int(action))


@pytest.mark.timeout(90)
@pytest.mark.parametrize("algo", ["sac", "discrete_sac"])
def test_averaged_gradient_equals_full_batch_gradient(two_ranks, algo):
    zero, one = _scenario(two_ranks, f"gradient:{algo}")
    assert zero["names"] == ["actor", "critic", "ent_coef"]
    assert zero["hash"] == one["hash"]  # both ranks stepped with the same averaged gradients
    for name, diff in zero["max_abs_diff"].items():
        assert diff <= 1e-5 * max(1.0, zero["max_abs"][name]), (name, diff, zero["max_abs"][name])


@pytest.mark.timeout(90)
@pytest.mark.parametrize("algo", ["sac", "discrete_sac"])
def test_callback_on_rank_zero_stops_every_rank(two_ranks, algo):
    zero, one = _scenario(two_ranks, f"stop:{algo}")
    # During the warm-up: every rank stops after the rollout in which rank 0's callback said stop, no update ran
    assert zero["warmup"]["n_updates"] == one["warmup"]["n_updates"] == 0
    assert zero["warmup"]["num_timesteps"] == 30 and one["warmup"]["num_timesteps"] == 32  # rollouts of 4 steps
    # While training: the round of updates after that rollout still runs on every rank, then all stop together
    assert zero["training"]["num_timesteps"] == 121 and one["training"]["num_timesteps"] == 124
    assert zero["training"]["n_updates"] == one["training"]["n_updates"] == 2 * ((124 - 52) // 4 + 1)
    for key in ("params", "optimizers", "temperature"):
        assert zero["training"][key] == one["training"][key], key


def _check_averaging(results: list[dict], world_size: int) -> None:
    for result in results:
        assert result["ok"] and result["world_size"] == world_size, result
    assert list(results[0]["checks"]) == ["1", "7", "70001", "300000"]
    for size, check in results[0]["checks"].items():
        for result in results:
            mine = result["checks"][size]
            # The mean of every rank's gradients (to rounding), bit-identical on every rank
            assert mine["close"] and mine["hash"] == check["hash"], (size, result)
            # The last rank's non-finite flag and rank 0's stop request reach every rank (the stop request is sticky)
            assert mine["flags"] == [size == "7", False], (size, result)
            assert mine["stop"] == (int(size) >= 70_001), (size, result)


@pytest.mark.timeout(90)
def test_gradient_average_two_ranks(two_ranks):
    _check_averaging([result["averaging"] for result in two_ranks[1]], 2)


@pytest.mark.timeout(120)
def test_gradient_average_four_ranks(tmp_path):
    # With more than two ranks the order of the additions matters: the replicas still get the same sum
    results, codes = run_ranks("averaging", tmp_path, world_size=4, timeout=110.0)
    assert codes == [0, 0, 0, 0], results
    _check_averaging([result["averaging"] for result in results], 4)


@pytest.mark.timeout(90)
def test_vec_normalize_statistics_are_merged(two_ranks):
    zero, one = _scenario(two_ranks, "vecnormalize")
    for key in ("stats", "obs_count", "ret_count", "params", "optimizers", "temperature"):
        assert zero[key] == one[key], key
    # The statistics of every observation of every rank (reset + 80 steps per rank), not of this rank's alone
    assert zero["n_seen"] == 2 * 81
    assert zero["obs_count"] == pytest.approx(2 * 81, abs=1e-3) and zero["ret_count"] == pytest.approx(2 * 80, abs=1e-3)
    for result in (zero, one):
        assert result["mean_close"] and result["var_close"] and result["local_differs"], result


@pytest.mark.timeout(90)
def test_settings_mismatch_is_reported(two_ranks):
    for result in (result["mismatch"] for result in two_ranks[1]):
        assert result["type"] == "DistributedSettingsError" and "ValueError" in result["mro"], result
        assert "learning_rate: rank 0 has 0.0003, rank 1 has 0.001" in result["error"]


@pytest.mark.timeout(90)
def test_one_rank_raising_ends_the_job(two_ranks):
    zero, one = (result["crash"] for result in two_ranks[1])
    assert one["error"] == "env exploded on rank 1"
    assert zero["type"] == "DistributedError", zero
    assert "rank 0/2" in zero["error"] and "Another rank probably crashed" in zero["error"]
    assert zero["seconds"] < 30.0  # the peer failed at once, well before the collective timeout (60 s)


@pytest.fixture(scope="module")
def failing_jobs(tmp_path_factory):
    """
    The two jobs that end in an error, started together: each spends most of its time waiting (a rank that lingers
    after its error, a rank asleep), so the two run side by side in the time of the longer one.
    """
    jobs = {
        "crash:linger": start_ranks("crash:linger", tmp_path_factory.mktemp("linger"), collective_timeout=60.0),
        "hang": start_ranks("hang", tmp_path_factory.mktemp("hang"), collective_timeout=5.0),
    }
    yield jobs
    for job in jobs.values():
        for proc in job["procs"]:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.mark.timeout(120)
def test_raising_rank_aborts_the_group_it_formed(failing_jobs):
    # The model formed the group (first in its process): rank 1 aborts it when its env raises, so rank 0's collective
    # fails at once although rank 1's process lives on for 8 s (and the collective timeout is 60 s)
    results, codes = finish_ranks(failing_jobs["crash:linger"], timeout=110.0)
    assert codes == [1, 1], results
    zero, one = (result["crash:linger"] for result in results)
    assert one["error"] == "env exploded on rank 1" and not one["group"]
    assert zero["type"] == "DistributedError" and "rank 0/2" in zero["error"], zero
    assert zero["seconds"] < one["seconds"] - 5.0  # rank 0 ended while rank 1's process still lived


@pytest.mark.timeout(120)
def test_silent_rank_ends_the_job_at_the_timeout(failing_jobs):
    # Rank 1's env sleeps 14 s: rank 0's collective gives up at the 5 s timeout, without waiting for rank 1
    results, codes = finish_ranks(failing_jobs["hang"], timeout=110.0)
    assert codes == [1, 1], results
    zero, one = (result["hang"] for result in results)
    assert zero["type"] == one["type"] == "DistributedError", results
    assert "rank 0/2" in zero["error"] and "within the timeout (5 s" in zero["error"]
    assert zero["seconds"] < one["seconds"] - 5.0  # rank 0 ended while rank 1 was still asleep (9 s before it woke)
    assert not zero["group"] and not one["group"]  # the models formed the group, and aborted it on the error


@pytest.mark.timeout(120)
def test_cli_nproc_end_to_end(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    command = [
        sys.executable,
        "-m",
        "sb3_sac_ext.cli",
        "train",
        "--nproc",
        "2",
        "--algo",
        "sac",
        "--env",
        "Pendulum-v1",
        "-n",
        "300",
        "-f",
        str(tmp_path),
        "--eval-episodes",
        "1",
        "--no-progress",
    ]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = list((tmp_path / "sac").glob("Pendulum-v1_*"))
    assert [run.name for run in runs] == ["Pendulum-v1_1"]  # one run folder, made by rank 0
    assert (runs[0] / "Pendulum-v1.zip").is_file()
    assert proc.stdout.count("Mean return over 1 episodes") == 1  # rank 0 alone evaluates
    model = SAC.load(runs[0] / "Pendulum-v1.zip", device="cpu")
    assert model.num_timesteps == 300 and model._distributed is None
    assert th.isfinite(model.log_ent_coef).all()
