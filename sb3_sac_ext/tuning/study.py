"""
The hyperparameter search: run (or resume) a study with this worker's threads, then write the report.

Modules: :mod:`~sb3_sac_ext.tuning.config` (settings), :mod:`~sb3_sac_ext.tuning.storage` (storage, sampler,
pruner, study creation), :mod:`~sb3_sac_ext.tuning.recovery` (budget, stale and interrupted trials),
:mod:`~sb3_sac_ext.tuning.objective` (one trial) and :mod:`~sb3_sac_ext.tuning.report`.
"""

import sys
import threading
from typing import Any

from sb3_sac_ext.common.errors import SB3SacExtError
from sb3_sac_ext.experiment import check_env_id
from sb3_sac_ext.registry import get_algorithm
from sb3_sac_ext.tuning.config import PRUNERS, SAMPLERS, TuneConfig, require_optuna
from sb3_sac_ext.tuning.objective import Objective
from sb3_sac_ext.tuning.recovery import budget_used, counted_trials, recover_trials, slot, worker_info
from sb3_sac_ext.tuning.report import write_report
from sb3_sac_ext.tuning.storage import create_or_load_study, make_pruner, make_sampler, make_storage, mask_url


def _worker_loop(study: Any, objective: Objective, n_trials: int, errors: list[BaseException]) -> None:
    try:
        while True:
            recover_trials(study)
            if budget_used(study) >= n_trials:
                return
            study.optimize(objective, n_trials=1, gc_after_trial=True)
    except BaseException as e:  # reported by the main thread
        errors.append(e)


def _progress_bar(study: Any, n_trials: int, stop: threading.Event) -> None:
    try:
        from tqdm import tqdm
    except ImportError:
        print("Progress bar skipped: tqdm is not installed")
        return
    from optuna.trial import TrialState

    with tqdm(total=n_trials, desc="trials", unit="trial") as bar:
        while not stop.wait(1.0):
            done = len({slot(t) for t in counted_trials(study.get_trials(deepcopy=False)) if t.state != TrialState.RUNNING})
            bar.n = min(done, n_trials)
            bar.refresh()


def run_tuning(config: TuneConfig) -> int:
    """
    Run (or resume) the search and write the report.

    :param config: Tuning settings
    :return: Exit status: 0, 1 when no trial completed, 130 when interrupted
    """
    require_optuna()
    get_algorithm(config.algo)
    check_env_id(config.env_id)
    for name, value, minimum in (
        ("--n-trials", config.n_trials, 0),
        ("--n-seeds", config.n_seeds, 1),
        ("--n-evaluations", config.n_evaluations, 1),
        ("--eval-episodes", config.eval_episodes, 1),
        ("--n-jobs", config.n_jobs, 1),
    ):
        if value < minimum:
            raise SB3SacExtError(f"{name} must be >= {minimum}, got {value}")
    # Validates the YAML entry and the pinned values before touching the storage
    objective = Objective(config, None)
    storage = make_storage(config.storage_location, config.heartbeat_interval)
    study = create_or_load_study(config, storage)
    print(f"Study {config.name!r} in {mask_url(config.storage_location)}", flush=True)
    if config.create_only:
        print("Study created; start the workers with the same --storage and --study-name", flush=True)
        return 0
    objective.study = study
    errors: list[BaseException] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_worker_loop, args=(study, objective, config.n_trials, errors), daemon=True)
        for _ in range(config.n_jobs)
    ]
    if config.progress:
        threads.append(threading.Thread(target=_progress_bar, args=(study, config.n_trials, stop), daemon=True))
    interrupted = False
    try:
        if config.n_jobs == 1 and not config.progress:
            _worker_loop(study, objective, config.n_trials, errors)
        else:
            for thread in threads:
                thread.start()
            for thread in threads[: config.n_jobs]:
                while thread.is_alive():
                    thread.join(0.5)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        stop.set()
    if any(isinstance(e, KeyboardInterrupt) for e in errors):
        interrupted = True
    other_errors = [e for e in errors if not isinstance(e, KeyboardInterrupt)]
    if other_errors:
        raise other_errors[0]
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        if interrupted:
            print(
                "sb3-sac-ext tune: interrupted before any trial completed; nothing to report. "
                "Run the same command again to resume the study.",
                file=sys.stderr,
            )
            return 130
        reasons = [t.user_attrs.get("fail_reason") for t in counted_trials(study.get_trials(deepcopy=False))]
        reasons = [r for r in reasons if r]
        detail = f" (first failure: {reasons[0]})" if reasons else ""
        print(f"sb3-sac-ext tune: no trial completed{detail}", file=sys.stderr)
        return 1
    write_report(study, config)
    if interrupted:
        print("sb3-sac-ext tune: interrupted; report written for the completed trials. Run the same command to resume.")
        return 130
    return 0


# Names of the single-module study kept importable from here
__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "TuneConfig",
    "budget_used",
    "counted_trials",
    "create_or_load_study",
    "make_pruner",
    "make_sampler",
    "make_storage",
    "mask_url",
    "recover_trials",
    "require_optuna",
    "run_tuning",
    "worker_info",
    "write_report",
]
