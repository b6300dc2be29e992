"""
The hyperparameter search: storage, study, objective, worker loop and report.

- Storage: a journal file under the log folder by default (embedded, no server; the same command resumes
  an interrupted search), a ``*.log`` journal file, or any SQLAlchemy URL (``sqlite:///...``,
  ``postgresql://...``) with Optuna's heartbeat so that several workers on several machines share one study.
- Budget: ``n_trials`` counts the trials of the whole study (all workers, all runs together). A trial that
  was killed (stale) or interrupted is failed and retried: its retry takes its slot and its seed.
- Each trial trains ``n_seeds`` models in lockstep, evaluates them ``n_evaluations`` times and reports the
  mean over seeds to the pruner. A trial that raises or produces a non-finite value is marked FAIL with the
  reason in the ``fail_reason`` user attribute, and the study goes on.
"""

import math
import os
import socket
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sb3_sac_ext.common.errors import InvalidHyperparameterError, NonFiniteError, SB3SacExtError

SAMPLERS = ("tpe", "random", "cmaes", "qmc")
PRUNERS = ("median", "halving", "hyperband", "none")


def require_optuna() -> Any:
    """:return: The ``optuna`` module, or a one-line error naming the extra to install."""
    try:
        import optuna
    except ImportError:
        raise SB3SacExtError("tuning needs Optuna: pip install 'sb3-sac-ext[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own one-line trial messages instead
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


@dataclass
class TuneConfig:
    """
    Settings of ``sb3-sac-ext tune`` (see its ``--help`` for each one).

    :param algo: ``sac`` or ``discrete_sac``
    :param env_id: Gymnasium env id
    :param n_trials: Trials of the whole study (all workers and runs together)
    :param n_timesteps: Env steps per trial and seed (<= 0: the YAML entry's ``n_timesteps``)
    :param log_folder: Root log folder; the report goes to ``<log folder>/<algo>/tune/<study name>/``
    :param n_seeds: Models trained per trial; the trial's value is their mean return
    :param n_evaluations: Evaluations per trial (the pruner's steps)
    :param eval_episodes: Episodes per evaluation
    :param sampler: ``tpe``, ``random``, ``cmaes`` or ``qmc``
    :param pruner: ``median``, ``halving``, ``hyperband`` or ``none``
    :param storage: Journal file path (``*.log``) or database URL; None: ``<log folder>/<algo>/tune/optuna_journal.log``
    :param study_name: Study name; None: ``<algo>_<env id>``
    :param n_jobs: Trials run in parallel threads by this worker
    :param seed: Seed of the sampler and base of the trials' seeds
    :param hyperparams: Pinned hyperparameters (RL Zoo YAML values), not searched
    :param hyperparams_file: YAML file whose entry is the starting point (default: the packaged one)
    :param progress: Show a progress bar over the study's trials
    :param n_startup_trials: Random trials before TPE / CMA-ES and before the median pruner acts
    :param heartbeat_interval: Seconds between heartbeats of a running trial (database storages)
    :param device: Torch device of the models
    :param create_only: Create the study (before starting several workers) and stop
    :param plots: Write the PNG plots with the report
    """

    algo: str
    env_id: str
    n_trials: int = 10
    n_timesteps: int = -1
    log_folder: str = "logs"
    n_seeds: int = 1
    n_evaluations: int = 4
    eval_episodes: int = 5
    sampler: str = "tpe"
    pruner: str = "median"
    storage: str | None = None
    study_name: str | None = None
    n_jobs: int = 1
    seed: int = 0
    hyperparams: dict[str, Any] = field(default_factory=dict)
    hyperparams_file: str | None = None
    progress: bool = False
    n_startup_trials: int = 5
    heartbeat_interval: int = 30
    device: str = "auto"
    create_only: bool = False
    plots: bool = True

    @property
    def name(self) -> str:
        """:return: The study name."""
        return self.study_name or f"{self.algo}_{self.env_id}"

    @property
    def output_folder(self) -> Path:
        """:return: Folder of the report (best YAML, CSV, plots) and of the default storage."""
        return Path(self.log_folder) / self.algo / "tune" / self.name.replace("/", "_")

    @property
    def storage_location(self) -> str:
        """:return: The storage path or URL."""
        return self.storage or str(Path(self.log_folder) / self.algo / "tune" / "optuna_journal.log")


def mask_url(url: str) -> str:
    """:return: ``url`` with its password replaced by ``***``."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        if ":" in credentials:
            credentials = credentials.split(":", 1)[0] + ":***"
        return f"{scheme}://{credentials}@{host}"
    return url


def make_storage(location: str, heartbeat_interval: int = 30) -> Any:
    """
    :param location: A journal file path (``*.log`` / ``*.journal``) or a SQLAlchemy URL
    :param heartbeat_interval: Heartbeat of database storages, in seconds; stale after twice that
    :return: The Optuna storage
    """
    optuna = require_optuna()
    if "://" not in location:
        if not location.endswith((".log", ".journal")):
            raise SB3SacExtError(
                f"unsupported storage {location!r}: use a journal file ending in .log, sqlite:///file.db or postgresql://..."
            )
        from optuna.storages.journal import JournalFileBackend

        Path(location).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(location))
    engine_kwargs: dict[str, Any] = {}
    if location.startswith("sqlite:///"):
        Path(location[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    elif location.startswith(("postgresql", "postgres:")):
        engine_kwargs = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    retry_class = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if retry_class is not None:  # Optuna >= 4.9
        callback_kwargs = {"heartbeat_stale_trial_callback": retry_class(max_retry=3)}
    else:
        callback_kwargs = {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=3)}
    try:
        return optuna.storages.RDBStorage(
            _driver_url(location),
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=2 * heartbeat_interval,
            **callback_kwargs,
        )
    except ImportError as e:
        extra = "postgres" if location.startswith("postgresql") else "tune"
        raise SB3SacExtError(f"cannot open storage {mask_url(location)}: {e} (pip install 'sb3-sac-ext[{extra}]')") from None
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SB3SacExtError(f"cannot open storage {mask_url(location)}: {reason}") from None


def _driver_url(url: str) -> str:
    """
    ``postgresql://`` means psycopg (v3) to SQLAlchemy 2.1+: use psycopg2 when only psycopg2 is installed
    (``pip install 'sb3-sac-ext[postgres]'`` installs psycopg2-binary).
    """
    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres"):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return f"postgresql+psycopg2{sep}{rest}"
    return f"postgresql{sep}{rest}"


def make_sampler(name: str, seed: int, n_startup_trials: int) -> Any:
    """:return: The Optuna sampler ``name`` (``tpe``, ``random``, ``cmaes``, ``qmc``), seeded."""
    optuna = require_optuna()
    if name == "tpe":
        return optuna.samplers.TPESampler(n_startup_trials=n_startup_trials, seed=seed, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        # Categorical parameters (net_arch, ...) are sampled independently
        return optuna.samplers.CmaEsSampler(n_startup_trials=n_startup_trials, seed=seed, warn_independent_sampling=False)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    raise SB3SacExtError(f"unknown sampler {name!r}; choose one of {list(SAMPLERS)}")


def make_pruner(name: str, n_evaluations: int, n_startup_trials: int) -> Any:
    """:return: The Optuna pruner ``name`` (``median``, ``halving``, ``hyperband``, ``none``)."""
    optuna = require_optuna()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=n_evaluations // 3)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=4, min_early_stopping_rate=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(n_evaluations, 1), reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise SB3SacExtError(f"unknown pruner {name!r}; choose one of {list(PRUNERS)}")


def create_or_load_study(config: TuneConfig, storage: Any) -> Any:
    """
    Create the study, or load it when it exists (checking that it was made for the same algorithm and env).

    :param config: Tuning settings
    :param storage: Optuna storage
    :return: The study
    """
    optuna = require_optuna()
    sampler = make_sampler(config.sampler, config.seed, config.n_startup_trials)
    pruner = make_pruner(config.pruner, config.n_evaluations, config.n_startup_trials)
    last_error: Exception | None = None
    for attempt in range(5):
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=config.name,
                sampler=sampler,
                pruner=pruner,
                direction="maximize",
                load_if_exists=True,
            )
            break
        except Exception as e:  # concurrent creation on an empty database: the other worker won, load it
            last_error = e
            import time

            time.sleep(0.5 * (attempt + 1))
    else:
        raise SB3SacExtError(f"cannot create or load study {config.name!r}: {last_error}")
    attrs = study.user_attrs
    if "algo" not in attrs:
        study.set_user_attr("algo", config.algo)
        study.set_user_attr("env_id", config.env_id)
        study.set_user_attr("n_timesteps", config.n_timesteps)
        study.set_user_attr("n_seeds", config.n_seeds)
        study.set_user_attr("n_evaluations", config.n_evaluations)
        study.set_user_attr("seed", config.seed)
    elif (attrs["algo"], attrs["env_id"]) != (config.algo, config.env_id):
        raise SB3SacExtError(
            f"study {config.name!r} was created for {attrs['algo']} on {attrs['env_id']}, "
            f"not {config.algo} on {config.env_id}: "
            "use another --study-name"
        )
    return study


# --- trial bookkeeping -------------------------------------------------------------------------------------


def _slot(trial: Any) -> int:
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
    return len({_slot(t) for t in counted_trials(study.get_trials(deepcopy=False))})


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


# --- objective ---------------------------------------------------------------------------------------------


class _FixedHorizon:
    """SB3 callback keeping learning-rate schedules on the whole budget while ``learn`` runs in chunks."""

    def __new__(cls, total_timesteps: int) -> Any:
        from stable_baselines3.common.callbacks import BaseCallback

        class FixedHorizon(BaseCallback):
            def _on_training_start(self) -> None:
                self.model._total_timesteps = total_timesteps

            def _on_step(self) -> bool:
                return True

        return FixedHorizon()


def _merge(model_kwargs: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(model_kwargs)
    for key, value in overrides.items():
        if key == "policy_kwargs" and isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


class Objective:
    """
    The Optuna objective: sample, train ``n_seeds`` models in lockstep, report the mean evaluation.

    :param config: Tuning settings
    :param study: The study (to check the budget when a trial starts)
    """

    def __init__(self, config: TuneConfig, study: Any):
        from sb3_sac_ext.registry import get_algorithm
        from sb3_sac_ext.config import get_hyperparams, prepare_model_kwargs
        from sb3_sac_ext.tuning.samplers import HYPERPARAMS_SAMPLER

        self.config = config
        self.study = study
        self.algo_class = get_algorithm(config.algo).cls
        self.sampler = HYPERPARAMS_SAMPLER[config.algo]
        try:
            entry = get_hyperparams(config.algo, config.env_id, config.hyperparams_file)
        except InvalidHyperparameterError as e:
            if "has no entry" not in str(e):
                raise
            entry = {}
        self.entry = entry
        self.model_kwargs, self.settings = prepare_model_kwargs(entry)
        self.pinned_kwargs, pinned_settings = prepare_model_kwargs(config.hyperparams)
        self.settings.update(pinned_settings)
        self.n_timesteps = int(config.n_timesteps if config.n_timesteps > 0 else float(self.settings.get("n_timesteps", 1e6)))
        self.n_envs = int(self.settings.get("n_envs", 1))
        self.lock = threading.Lock()

    def _is_surplus(self, trial: Any) -> bool:
        """True when the budget was already used by others when this trial started (race between workers)."""
        trials = self.study.get_trials(deepcopy=False)
        me = next(t for t in trials if t.number == trial.number)
        counted = counted_trials(trials)
        slots = sorted({_slot(t) for t in counted})
        my_slot = _slot(me)
        if my_slot in slots and slots.index(my_slot) >= self.config.n_trials:
            return True
        return any(_slot(t) == my_slot and t.number < me.number for t in counted)

    def hyperparams(self, trial: Any) -> dict[str, Any]:
        """:return: The constructor arguments of a trial (entry, then sampled values, then pinned values)."""
        sampled = self.sampler(
            trial,
            0,
            self.n_envs,
            {"using_her_replay_buffer": False, "her_kwargs": {}, "pinned": set(self.config.hyperparams)},
        )
        return _merge(_merge(self.model_kwargs, sampled), self.pinned_kwargs)

    def yaml_entry(self, model_kwargs: dict[str, Any]) -> dict[str, Any]:
        """:return: An RL Zoo YAML entry (settings and constructor arguments) for ``model_kwargs``."""
        from sb3_sac_ext.config import to_yaml_value

        entry: dict[str, Any] = {key: to_yaml_value(value) for key, value in self.settings.items()}
        entry.setdefault("n_timesteps", self.n_timesteps)
        entry["policy"] = model_kwargs.get("policy", "MlpPolicy")
        for key in sorted(model_kwargs):
            if key != "policy":
                entry[key] = to_yaml_value(model_kwargs[key])
        return entry

    def __call__(self, trial: Any) -> float:
        """
        :param trial: The Optuna trial
        :return: Mean evaluation return over seeds; NaN (trial FAIL) with ``fail_reason`` when training fails
        """
        optuna = require_optuna()
        if self._is_surplus(trial):
            trial.set_user_attr("surplus", True)
            trial.set_user_attr("fail_reason", "surplus: the study's n_trials were used by other workers")
            return float("nan")
        trial.set_user_attr("worker", worker_info())
        for key in ("fail_reason", "interrupted"):
            if trial.user_attrs.get(key):  # inherited by a retry
                trial.set_user_attr(key, None)
        slot = int(trial.study._storage.get_trial_system_attrs(trial._trial_id).get("failed_trial", trial.number))
        seed = self.config.seed + 1000 * slot
        trial.set_user_attr("seed", seed)
        retry = f" (retry of trial {slot})" if slot != trial.number else ""
        print(f"Trial {trial.number} started{retry}: seed {seed}", flush=True)
        try:
            model_kwargs = self.hyperparams(trial)
            trial.set_user_attr("hyperparams", self.yaml_entry(model_kwargs))
            value = self._train_and_evaluate(trial, model_kwargs, seed)
        except optuna.TrialPruned:
            print(f"Trial {trial.number} pruned", flush=True)
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C); retried when the search resumes")
            raise
        except Exception as e:
            reason = f"{type(e).__name__}: {e}".strip().replace("\n", " ")[:500]
            trial.set_user_attr("fail_reason", reason)
            print(f"Trial {trial.number} failed: {reason}", flush=True)
            return float("nan")
        print(f"Trial {trial.number} finished: mean return {value:.2f}", flush=True)
        return value

    def _train_and_evaluate(self, trial: Any, model_kwargs: dict[str, Any], seed: int) -> float:
        optuna = require_optuna()
        from stable_baselines3.common.evaluation import evaluate_policy
        from stable_baselines3.common.vec_env import sync_envs_normalization

        from sb3_sac_ext.experiment import make_env

        kwargs = dict(model_kwargs)
        policy = kwargs.pop("policy", "MlpPolicy")
        config = self.config
        models, eval_envs = [], []
        try:
            for i in range(config.n_seeds):
                env = make_env(config.env_id, self.n_envs, seed + i, self.settings)
                models.append(self.algo_class(policy, env, seed=seed + i, verbose=0, device=config.device, **kwargs))
                eval_envs.append(make_env(config.env_id, 1, seed + i + 500, self.settings, training=False))
            value = float("nan")
            for k in range(config.n_evaluations):
                target = round(self.n_timesteps * (k + 1) / config.n_evaluations)
                returns = []
                for model, eval_env in zip(models, eval_envs, strict=True):
                    if target > model.num_timesteps:
                        model.learn(
                            target - model.num_timesteps,
                            callback=_FixedHorizon(self.n_timesteps),
                            reset_num_timesteps=(k == 0),
                        )
                    if model.get_vec_normalize_env() is not None:
                        sync_envs_normalization(model.get_env(), eval_env)
                    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=config.eval_episodes, deterministic=True)
                    returns.append(float(mean))  # type: ignore[arg-type]
                value = float(np.mean(returns))
                if not math.isfinite(value):
                    raise NonFiniteError(f"non-finite mean return {value} at evaluation {k + 1} (returns per seed: {returns})")
                trial.report(value, k + 1)
                if config.n_seeds > 1:
                    trial.set_user_attr("returns_per_seed", returns)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return value
        finally:
            for model in models:
                if model.env is not None:
                    model.env.close()
            for eval_env in eval_envs:
                eval_env.close()


# --- running and reporting ---------------------------------------------------------------------------------


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
    with tqdm(total=n_trials, desc="trials", unit="trial") as bar:
        while not stop.wait(1.0):
            from optuna.trial import TrialState

            done = len({_slot(t) for t in counted_trials(study.get_trials(deepcopy=False)) if t.state != TrialState.RUNNING})
            bar.n = min(done, n_trials)
            bar.refresh()


def run_tuning(config: TuneConfig) -> int:
    """
    Run (or resume) the search and write the report.

    :param config: Tuning settings
    :return: Exit status: 0, 1 when no trial completed, 130 when interrupted
    """
    from sb3_sac_ext.experiment import check_env_id
    from sb3_sac_ext.registry import get_algorithm

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


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_report(study: Any, config: TuneConfig) -> dict[str, Path]:
    """
    Write the best hyperparameters (RL Zoo YAML entry), a CSV of all trials and the plots.

    :param study: The study
    :param config: Tuning settings
    :return: Paths of the files written (``best``, ``csv``, ``history``, ``importances``)
    """
    import yaml

    folder = config.output_folder
    folder.mkdir(parents=True, exist_ok=True)
    best = study.best_trial
    paths: dict[str, Path] = {}

    entry = best.user_attrs.get("hyperparams", {})
    header = (
        f"# Best hyperparameters of study {config.name!r} (sb3-sac-ext tune): trial {best.number}, "
        f"mean return {best.value:.2f}\n# Train with: sb3-sac-ext train --algo {config.algo} --env {config.env_id} "
        f"--hyperparams-file {folder / 'best.yml'}\n"
    )
    text = header + yaml.safe_dump({config.env_id: entry}, sort_keys=False, default_flow_style=None)
    paths["best"] = folder / "best.yml"
    _atomic_write(paths["best"], lambda p: p.write_text(text))

    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    dataframe = study.trials_dataframe(
        attrs=(
            "number",
            "value",
            "datetime_start",
            "datetime_complete",
            "duration",
            "params",
            "user_attrs",
            "system_attrs",
            "state",
        )
    )
    dataframe = dataframe[dataframe["number"].isin([t.number for t in trials])]
    dataframe = dataframe.drop(columns=[c for c in dataframe.columns if c in ("user_attrs_hyperparams", "user_attrs_worker")])
    paths["csv"] = folder / "trials.csv"
    _atomic_write(paths["csv"], lambda p: dataframe.to_csv(p, index=False))

    if config.plots:
        paths.update(_write_plots(study, folder))
    print(f"Best trial: {best.number} (mean return {best.value:.2f})")
    for key, path in paths.items():
        print(f"{key + ':':13s}{path}")
    return paths


def _write_plots(study: Any, folder: Path) -> dict[str, Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as optuna_plots
    except ImportError as e:
        print(f"Plots skipped: {e} (pip install 'sb3-sac-ext[tune]')")
        return {}
    written: dict[str, Path] = {}
    for key, function, filename in (
        ("history", optuna_plots.plot_optimization_history, "optimization_history.png"),
        ("importances", optuna_plots.plot_param_importances, "param_importances.png"),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = function(study)
                figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
                figure.tight_layout()
                path = folder / filename
                _atomic_write(path, lambda p, f=figure: f.savefig(p, format="png", dpi=100))
                plt.close(figure)
            written[key] = path
        except Exception as e:  # e.g. importances need two completed trials with varying parameters
            print(f"Plot {filename} skipped: {type(e).__name__}: {e}")
    return written
