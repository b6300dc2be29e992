"""
Trial bookkeeping and the recovery of crashed workers.

- Budget: ``n_trials`` counts the trials of the whole study (all workers, all runs together). A trial that
  was killed (stale) or interrupted is failed and retried: its retry takes its slot and its seed.
- Stale trials: database storages use Optuna's heartbeat; for journal files, a running trial whose worker
  process (same host, same process start time) is gone is failed explicitly.
"""

import os
import socket
from pathlib import Path
from typing import Any

from sb3_sac_ext.tuning.config import require_optuna


def slot(trial: Any) -> int:
    """The budget slot of a trial: its own number, or for a retry the number of the trial it replaces."""
    return int(trial.system_attrs.get("failed_trial", trial.number))


def _replaced(trials: list[Any]) -> set[int]:
    return {number for trial in trials for number in trial.system_attrs.get("retry_history", [])}


def counted_trials(trials: list[Any]) -> list[Any]:
    """
    The trials that use the study's budget: finished or running, not replaced by a retry, not surplus.

    :param trials: ``study.get_trials()``
    :return: Those trials
    """
    from optuna.trial import TrialState

    replaced = _replaced(trials)
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    return [t for t in trials if t.state in states and t.number not in replaced and not t.user_attrs.get("surplus")]


def budget_used(study: Any) -> int:
    """:return: How many of the study's ``n_trials`` are used (finished or running)."""
    return len({slot(t) for t in counted_trials(study.get_trials(deepcopy=False))})


def _process_start(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_info() -> dict[str, Any]:
    """:return: Who runs a trial: host, pid and process start time (to tell a dead worker from a reused pid)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def _worker_dead(info: Any) -> bool:
    if not isinstance(info, dict) or info.get("host") != socket.gethostname():
        return False  # another machine: only a database heartbeat can tell
    pid = int(info.get("pid", -1))
    if not _pid_alive(pid):
        return True
    return info.get("start") is not None and _process_start(pid) not in (None, info["start"])


def _retry(study: Any, trial: Any) -> None:
    """Enqueue a retry of a failed trial: same parameters and slot (so the same seed), as Optuna's retry callback."""
    optuna = require_optuna()
    system_attrs: dict[str, Any] = {"failed_trial": trial.number, "retry_history": [], **trial.system_attrs}
    system_attrs["retry_history"] = [*system_attrs["retry_history"], trial.number]
    if len(system_attrs["retry_history"]) > 3:
        return
    study.add_trial(
        optuna.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=trial.user_attrs,
            system_attrs=system_attrs,
        )
    )


def recover_trials(study: Any) -> list[int]:
    """
    Fail and retry the trials of dead workers, and retry interrupted (Ctrl-C) trials.

    Database storages use Optuna's heartbeat. For journal files, a running trial whose worker process
    (same host) is gone is failed explicitly.

    :param study: The study
    :return: Numbers of the trials that were failed and retried here
    """
    optuna = require_optuna()
    from optuna.trial import TrialState

    retried: list[int] = []
    storage = study._storage
    if optuna.storages.is_heartbeat_enabled(storage) if hasattr(optuna.storages, "is_heartbeat_enabled") else False:
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        optuna.storages.fail_stale_trials(study)
        after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        retried.extend(sorted(before - after))
    trials = study.get_trials(deepcopy=False)
    replaced = _replaced(trials)
    for trial in trials:
        if trial.number in replaced:
            continue
        if trial.state == TrialState.RUNNING and _worker_dead(trial.user_attrs.get("worker")):
            info = trial.user_attrs["worker"]
            storage.set_trial_user_attr(
                trial._trial_id, "fail_reason", f"stale: worker pid {info['pid']} on {info['host']} died"
            )
            try:
                storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            except Exception:  # finished meanwhile
                continue
            _retry(study, storage.get_trial(trial._trial_id))
            retried.append(trial.number)
        elif trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted"):
            _retry(study, trial)
            retried.append(trial.number)
    return retried
