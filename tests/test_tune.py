"""``sb3-sac-ext tune``: a tiny study end to end, resume, failures, Ctrl-C and PostgreSQL workers."""

import signal
import subprocess
import time

import pytest

optuna = pytest.importorskip("optuna", reason="tuning needs the tune extra: pip install 'sb3-sac-ext[tune]'")

from sb3_sac_ext.cli import main  # noqa: E402
from sb3_sac_ext.config import get_hyperparams  # noqa: E402
from sb3_sac_ext.tuning import HYPERPARAMS_SAMPLER  # noqa: E402
from sb3_sac_ext.tuning.study import counted_trials  # noqa: E402
from tests._tune_helpers import (  # noqa: E402
    SHORT_ENV,
    TINY,
    TINY_HYPERPARAMS,
    cli,
    popen_cli,
    postgres_url,  # noqa: F401 (fixture)
    register_test_envs,
    wait_for_line,
)

FAST = ["-n", "300", "--n-evaluations", "2", "--eval-episodes", "2", "--pruner", "none", "--hyperparams", *TINY_HYPERPARAMS]


def load(storage, name):
    if "://" not in storage:
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(storage))
    return optuna.load_study(study_name=name, storage=storage)


@pytest.mark.parametrize("algo", ["sac", "discrete_sac"])
def test_samplers_cover_new_arguments(algo):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    params = HYPERPARAMS_SAMPLER[algo](trial, 1, 1, {"using_her_replay_buffer": False, "her_kwargs": {}})
    for key in ("qf_learning_rate", "ent_coef_learning_rate", "n_steps", "policy_delay", "gamma", "batch_size"):
        assert key in params
    assert ("target_entropy_scale" in params) == (algo == "discrete_sac")
    # Pinned values are not searched
    trial = study.ask()
    params = HYPERPARAMS_SAMPLER[algo](trial, 1, 1, {"pinned": {"gamma", "policy_kwargs"}})
    assert "gamma" not in params and "one_minus_gamma" not in trial.params and "net_arch" not in trial.params


def test_tiny_study_end_to_end_and_train_from_best(tmp_path, capsys):
    register_test_envs()
    rc = main(
        [
            "tune",
            "--algo",
            "sac",
            "--env",
            "ShortBox-v0",
            "--n-trials",
            "2",
            "-f",
            str(tmp_path),
            "--n-seeds",
            "2",
            "--sampler",
            "random",
            *FAST,
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    folder = tmp_path / "sac" / "tune" / "sac_ShortBox-v0"
    for name in ("best.yml", "trials.csv", "optimization_history.png", "param_importances.png"):
        assert (folder / name).is_file(), name
        assert str(folder / name) in out  # the command prints where the outputs are
    study = load(str(tmp_path / "sac" / "tune" / "optuna_journal.log"), "sac_ShortBox-v0")
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 2
    assert [t.user_attrs["seed"] for t in complete] == [0, 1000]  # seeded from the trial's slot
    assert all(len(t.user_attrs["returns_per_seed"]) == 2 for t in complete)  # --n-seeds 2: mean of two models
    assert len(complete[0].intermediate_values) == 2
    entry = get_hyperparams("sac", "ShortBox-v0", folder / "best.yml")
    assert entry["batch_size"] == 32 and "qf_learning_rate" in entry
    # Train from the best YAML entry
    rc = main(
        [
            "train",
            "--algo",
            "sac",
            "--env",
            "ShortBox-v0",
            "--hyperparams-file",
            str(folder / "best.yml"),
            "-n",
            "250",
            "-f",
            str(tmp_path / "train"),
            "--no-progress",
            "--eval-episodes",
            "1",
        ]
    )
    assert rc == 0
    assert (tmp_path / "train" / "sac" / "ShortBox-v0_1" / "ShortBox-v0.zip").is_file()


def test_failed_and_nan_trials_do_not_stop_the_study(tmp_path, capsys):
    register_test_envs()
    # NanOnSeed0: trial 0 (seed 0) gets NaN rewards, so its losses are NaN; trial 1 (seed 1000) is fine
    rc = main(["tune", "--algo", "sac", "--env", "NanOnSeed0-v0", "--n-trials", "2", "-f", str(tmp_path), *FAST])
    assert rc == 0, capsys.readouterr()
    study = load(str(tmp_path / "sac" / "tune" / "optuna_journal.log"), "sac_NanOnSeed0-v0")
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert "NaN" in study.trials[0].user_attrs["fail_reason"] or "non-finite" in study.trials[0].user_attrs["fail_reason"]
    csv = (tmp_path / "sac" / "tune" / "sac_NanOnSeed0-v0" / "trials.csv").read_text()
    assert "FAIL" in csv and "user_attrs_fail_reason" in csv
    # A trial whose constructor raises: FAIL with the reason; no trial completed -> one-line message, exit 1
    capsys.readouterr()
    rc = main(
        ["tune", "--algo", "sac", "--env", "ShortBox-v0", "--n-trials", "1", "-f", str(tmp_path), *FAST, "policy_delay:0"]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "no trial completed" in err and "policy_delay" in err
    study = load(str(tmp_path / "sac" / "tune" / "optuna_journal.log"), "sac_ShortBox-v0")
    assert (
        study.trials[0].state == optuna.trial.TrialState.FAIL and "policy_delay" in study.trials[0].user_attrs["fail_reason"]
    )


def test_resume_after_killed_worker(tmp_path):
    args = ["tune", "--algo", "sac", "--env", SHORT_ENV, "--n-trials", "2", "-f", str(tmp_path), "--no-optim-plots", *TINY]
    process = popen_cli(*args)
    try:
        wait_for_line(process, "Trial 1 started")
        process.kill()  # SIGKILL: trial 1 stays RUNNING in the journal file
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    storage = str(tmp_path / "sac" / "tune" / "optuna_journal.log")
    assert load(storage, f"sac_{SHORT_ENV}").trials[1].state == optuna.trial.TrialState.RUNNING
    # Same command again: the finished trial is kept, the stale one failed and retried (same slot, same seed)
    result = cli(*args, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "retry of trial 1" in result.stdout
    study = load(storage, f"sac_{SHORT_ENV}")
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE"], states
    assert "stale" in study.trials[1].user_attrs["fail_reason"]
    assert study.trials[2].user_attrs["seed"] == study.trials[1].user_attrs["seed"] == 1000
    assert len({t.number for t in counted_trials(study.trials)}) == 2


def test_ctrl_c_before_any_trial_completes(tmp_path):
    process = popen_cli(
        "tune",
        "--algo",
        "sac",
        "--env",
        "Pendulum-v1",
        "--n-trials",
        "2",
        "-f",
        str(tmp_path),
        "-n",
        "100000",
        "--hyperparams",
        *TINY_HYPERPARAMS,
        # Eager: 100k steps would compile the update first (compile="auto"), and a signal that arrives while
        # inductor compiles is handled when the compilation returns (up to a minute on a loaded CI core)
        "compile:False",
    )
    try:
        wait_for_line(process, "Trial 0 started")
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0
    assert "interrupted before any trial completed" in output and "Traceback" not in output
    study = load(str(tmp_path / "sac" / "tune" / "optuna_journal.log"), "sac_Pendulum-v1")
    assert study.trials[0].user_attrs.get("interrupted") is True  # retried when the search resumes


def test_postgres_two_workers_share_one_study(postgres_url, tmp_path):  # noqa: F811 (pytest fixture)
    common = [
        "tune",
        "--algo",
        "sac",
        "--env",
        SHORT_ENV,
        "--n-trials",
        "3",
        "--storage",
        postgres_url,
        "--study-name",
        "shared",
        "--heartbeat-interval",
        "5",
        "--no-optim-plots",
        *TINY,
    ]
    # Create the study once, then start the workers (concurrent creation on an empty database can crash)
    created = cli(*common, "-f", str(tmp_path / "create"), "--create-only", timeout=60)
    assert created.returncode == 0, created.stdout + created.stderr
    workers = [
        subprocess.Popen(
            [*cli_command(), *common, "-f", str(tmp_path / f"w{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(),
        )
        for i in range(2)
    ]
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=150)[0])
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert all(w.returncode == 0 for w in workers), "\n".join(outputs)
    from sb3_sac_ext.tuning.study import make_storage

    study = optuna.load_study(study_name="shared", storage=make_storage(postgres_url))
    counted = counted_trials(study.trials)
    assert len(counted) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in counted)
    hosts_pids = {t.user_attrs["worker"]["pid"] for t in counted}
    assert len(hosts_pids) == 2, "both workers ran trials"
    assert (tmp_path / "w0" / "sac" / "tune" / "shared" / "best.yml").is_file()


def cli_command():
    import sys

    return [sys.executable, "-m", "sb3_sac_ext.cli"]


def _env():
    from tests._tune_helpers import env_vars

    return env_vars()


def test_search_spaces_follow_the_registry():
    from sb3_sac_ext.registry import ALGORITHMS
    from sb3_sac_ext.tuning import HYPERPARAMS_CONVERTER

    assert set(HYPERPARAMS_SAMPLER) == set(HYPERPARAMS_CONVERTER) == set(ALGORITHMS)
