"""
Drop-in conformance: Stable-Baselines3's own tests, run with our ``SAC`` and ``DiscreteSAC`` in place of SB3's.

The tests of the installed SB3 version come from its source distribution (``pip download --no-binary :all:``),
cached outside the repository (``$SB3_SAC_EXT_CACHE``, default ``~/.cache/sb3-sac-ext``); no SB3 test code is
copied here. ``SB3_SAC_EXT_SB3_SDIST=/path/to/stable_baselines3-X.tar.gz`` uses a local copy instead of pip.

One pytest process runs SB3's SAC and DQN selections with ours swapped in (``tests/_sb3_conformance_plugin.py``),
another runs the same selection on SB3's own classes, at the same time (one core each): SB3's result on this
machine is the baseline. Every test must pass with ours, and every test SB3 passes must pass with ours. SB3's result
depends only on the versions of SB3, torch, gymnasium, numpy and Python and on the selection: it is kept in the cache
under that key, and later runs run ours alone, over two processes that get files of about the same total cost
(``SB3_FILE_SECONDS``; ``SB3_SAC_EXT_CONFORMANCE_BASELINE=rerun`` runs SB3's classes again).

Run alone: ``python -m pytest tests/test_sb3_conformance.py``.
"""

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from importlib.metadata import version
from pathlib import Path

import pytest

SB3_VERSION = version("stable-baselines3")
TESTS_DIR = Path(__file__).parent
CACHE = Path(os.environ.get("SB3_SAC_EXT_CACHE", Path.home() / ".cache" / "sb3-sac-ext"))

# SB3's test files that exercise SAC or off-policy algorithms (the selection of the compatibility promise)
SB3_TEST_FILES = [
    "test_run.py",
    "test_save_load.py",
    "test_predict.py",
    "test_spaces.py",
    "test_deterministic.py",
    "test_train_eval_mode.py",
    "test_identity.py",
    "test_callbacks.py",
    "test_dict_env.py",
    "test_cnn.py",
    "test_her.py",
    "test_sde.py",
    "test_n_step_replay.py",
    "test_custom_policy.py",
    "test_tensorboard.py",
    "test_vec_normalize.py",
    "test_gae.py",
]

# What each file's selection costs with ours (seconds: SB3 2.9.2, one process on a shared core; any other file counts
# 10 s): only used to split the files over the two pytest processes so that both finish together
SB3_FILE_SECONDS = {
    "test_dict_env.py": 99,
    "test_cnn.py": 67,
    "test_identity.py": 58,
    "test_her.py": 49,
    "test_spaces.py": 48,
    "test_save_load.py": 36,
    "test_deterministic.py": 15,
    "test_gae.py": 14,
    "test_sde.py": 9,
    "test_custom_policy.py": 7,
    "test_run.py": 6,
    "test_train_eval_mode.py": 5,
    "test_callbacks.py": 5,
    "test_predict.py": 4,
    "test_tensorboard.py": 3,
    "test_vec_normalize.py": 1,
    "test_n_step_replay.py": 1,
}

# SB3's tests that are about DQN itself, not about an off-policy algorithm with discrete actions: they run with our
# DiscreteSAC in DQN's place only where the test is algorithm-generic. Matched against the test function's name.
DQN_ONLY_TESTS = {
    "test_dqn": "DQN's own hyperparameters (exploration schedule, target_update_interval in env steps)",
    "test_warn_dqn_multi_env": "a warning about DQN's env-step target update with several envs",
    "test_dqn_target_update_interval": "DQN's target update counted in env steps",
    "test_dqn_epsilon_greedy": "DQN's epsilon-greedy exploration",
    "test_dqn_train_with_batch_norm": "DQN's hard target copy of batch-norm statistics (DiscreteSAC's is Polyak)",
    "test_dqn_custom_policy": "DQN's QNetwork arguments",
    "test_save_load_q_net": "DQN's QNetwork policy, which acts by argmax over Q (DiscreteSAC acts with its actor)",
}

# SB3 tests that fail with SB3's own classes on these machines, deselected by name with the reason. None today:
# stock SB3 passes the whole selection; a test added here must say why.
STOCK_FAILURES: dict[str, str] = {}

SELECTION = "SAC or DQN"  # pytest's -k is case-insensitive: also test_sac, test_dqn_..., ...


def _fetch_sb3_tests() -> Path:
    """The ``tests`` folder of the installed SB3's sdist, fetched once into the cache."""
    target = CACHE / f"stable-baselines3-{SB3_VERSION}"
    if (target / "tests" / "test_run.py").is_file():
        return target
    local = os.environ.get("SB3_SAC_EXT_SB3_SDIST")
    with tempfile.TemporaryDirectory() as download:
        if local:
            archive = Path(local)
            if not archive.is_file() or not tarfile.is_tarfile(archive):
                pytest.fail(
                    f"SB3_SAC_EXT_SB3_SDIST={local} is not a .tar.gz file (expected stable_baselines3-{SB3_VERSION}.tar.gz)",
                    pytrace=False,
                )
        else:
            command = [
                sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
                "-d", download, f"stable-baselines3=={SB3_VERSION}",
            ]  # fmt: skip
            completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
            archives = sorted(Path(download).glob("*.tar.gz"))
            if completed.returncode != 0 or not archives:
                pytest.fail(
                    f"Cannot fetch the source distribution of stable-baselines3=={SB3_VERSION}, which holds SB3's tests: "
                    f"`{' '.join(command)}` failed (exit {completed.returncode}):\n{completed.stderr[-2000:]}\n"
                    "Check the access to the package index, or set SB3_SAC_EXT_SB3_SDIST to a local copy of "
                    f"stable_baselines3-{SB3_VERSION}.tar.gz.",
                    pytrace=False,
                )
            archive = archives[0]
        CACHE.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=CACHE, prefix=".partial-"))
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if "/tests/" in m.name or m.name.endswith("/pyproject.toml")]
            tar.extractall(staging, members=members, filter="data")
        (root,) = staging.iterdir()
        if not (root / "tests" / "test_run.py").is_file():
            pytest.fail(f"{archive} holds no tests/test_run.py: not an SB3 source distribution", pytrace=False)
        # Another run may have finished first; either copy is the same
        if not target.exists():
            root.rename(target)
    return target


def _split(files: list[str], n: int) -> list[list[str]]:
    """``files`` in ``n`` groups of about the same cost (``SB3_FILE_SECONDS``): the costliest first, each to the
    group that costs least so far. Every file is in exactly one group."""
    groups: list[list[str]] = [[] for _ in range(n)]
    costs = [0.0] * n
    for name in sorted(files, key=lambda name: -SB3_FILE_SECONDS.get(name, 10)):
        cheapest = costs.index(min(costs))
        groups[cheapest].append(name)
        costs[cheapest] += SB3_FILE_SECONDS.get(name, 10)
    return groups


def _outcomes(junit_xml: Path) -> dict[str, str]:
    """Test id -> ``passed``, ``failed``, ``error`` or ``skipped``, from pytest's JUnit XML report."""
    outcomes = {}
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        test_id = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
        # Our DiscreteSAC stands in DQN's place: compare under the same id as the baseline's
        outcomes[test_id.replace("DiscreteSACAsDQN", "DQN")] = outcome
    return outcomes


def _start(mode: str, sb3_root: Path, workdir: Path, files: list[str], tag: str) -> tuple[subprocess.Popen, Path, Path]:
    """Start SB3's selection of ``files`` in a pytest process, with ours (``mode="ours"``) or SB3's classes (``"stock"``)."""
    junit = workdir / f"{tag}.xml"
    log = workdir / f"{tag}.log"
    command = [
        sys.executable, "-m", "pytest", "-p", "_sb3_conformance_plugin", "-p", "no:cacheprovider",
        "-c", str(sb3_root / "pyproject.toml"), "--rootdir", str(sb3_root), "-q", "-rfE",
        "-k", _keyword_expression(), f"--junitxml={junit}",
        *(str(sb3_root / "tests" / name) for name in files),
    ]  # fmt: skip
    env = {
        **os.environ,
        "SB3_SAC_EXT_CONFORMANCE": mode,
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
        # Two pytest processes side by side: one core each
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    return process, junit, log


def _keyword_expression() -> str:
    deselect = " and ".join(f"not {name}" for name in sorted({*DQN_ONLY_TESTS, *STOCK_FAILURES}))
    return f"({SELECTION}) and {deselect}"


def _finish(runs: dict[str, tuple[subprocess.Popen, Path, Path]]) -> dict[str, dict[str, str]]:
    """Wait for the pytest processes and read their outcomes."""
    results = {}
    for tag, (process, junit, log) in runs.items():
        try:
            process.wait(timeout=1200)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"SB3's tests ({tag}) did not finish in 20 minutes; log: {log.read_text()[-3000:]}")
        if not junit.is_file():
            pytest.fail(f"SB3's tests ({tag}) wrote no report (exit {process.returncode}):\n{log.read_text()[-3000:]}")
        results[tag] = _outcomes(junit)
    return results


def _baseline_path() -> Path:
    """
    Where SB3's own result on this selection is kept: it depends only on the versions below and the selection, so a
    machine runs it once per combination (``SB3_SAC_EXT_CONFORMANCE_BASELINE=rerun`` runs it again).
    """
    versions = {name: version(name) for name in ("stable-baselines3", "torch", "gymnasium", "numpy")}
    key = json.dumps([versions, sys.version_info[:2], SB3_TEST_FILES, _keyword_expression()], sort_keys=True)
    return CACHE / f"baseline-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def test_sb3_test_suite_passes_with_ours(tmp_path):
    sb3_root = _fetch_sb3_tests()
    baseline_file = _baseline_path()
    rerun = os.environ.get("SB3_SAC_EXT_CONFORMANCE_BASELINE") == "rerun" or not baseline_file.is_file()
    if rerun:
        # Ours and SB3's own classes side by side, one core each
        runs = {
            "ours": _start("ours", sb3_root, tmp_path, SB3_TEST_FILES, "ours"),
            "stock": _start("stock", sb3_root, tmp_path, SB3_TEST_FILES, "stock"),
        }
        results = _finish(runs)
        stock = results["stock"]
        if not any(outcome in ("failed", "error") for outcome in stock.values()):
            staging = baseline_file.with_suffix(".partial")
            staging.write_text(json.dumps(stock, indent=1, sort_keys=True))
            os.replace(staging, baseline_file)
        ours = results["ours"]
    else:
        # SB3's result on this machine is known: ours alone, the files split over two processes of about the same cost
        groups = _split(SB3_TEST_FILES, 2)
        assert sorted(groups[0] + groups[1]) == sorted(SB3_TEST_FILES)
        runs = {f"ours{i}": _start("ours", sb3_root, tmp_path, group, f"ours{i}") for i, group in enumerate(groups)}
        results = _finish(runs)
        ours = {**results["ours0"], **results["ours1"]}
        stock = json.loads(baseline_file.read_text())
    results = {"ours": ours, "stock": stock}
    logs = "\n".join(log.read_text()[-3000:] for tag, (_, _, log) in runs.items() if tag.startswith("ours"))

    kinds = ("passed", "failed", "error", "skipped")
    summary = {mode: {kind: sum(v == kind for v in res.values()) for kind in kinds} for mode, res in results.items()}
    print(f"SB3 {SB3_VERSION} conformance selection: {summary}")
    # Both algorithms were really exercised (a selection that matched nothing would pass vacuously)
    assert sum(outcome == "passed" and "SAC" in test_id.upper() for test_id, outcome in ours.items()) >= 60, summary
    assert sum(outcome == "passed" and "[" in test_id and "DQN" in test_id for test_id, outcome in ours.items()) >= 40, summary

    broken_ours = {test_id: outcome for test_id, outcome in ours.items() if outcome in ("failed", "error")}
    assert not broken_ours, (
        f"SB3's tests fail with sb3-sac-ext in place of SB3 ({summary}); stock SB3 on the same tests: "
        f"{ {test_id: stock.get(test_id, 'not run') for test_id in broken_ours} }\n"
        f"Log: {logs}"
    )
    broken_stock = {test_id: outcome for test_id, outcome in stock.items() if outcome in ("failed", "error")}
    assert not broken_stock, (
        f"SB3's own classes fail these tests on this machine: {broken_stock}. Deselect them by name in STOCK_FAILURES "
        f"with the reason (baseline: {baseline_file}; rerun it with SB3_SAC_EXT_CONFORMANCE_BASELINE=rerun)"
    )
    # Nothing that passes with SB3 is skipped or missing with ours
    not_passing = {test_id: ours.get(test_id, "not run") for test_id, outcome in stock.items() if outcome == "passed"}
    assert {test_id: outcome for test_id, outcome in not_passing.items() if outcome != "passed"} == {}
