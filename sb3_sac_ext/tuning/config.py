"""
Settings of a hyperparameter search (:class:`TuneConfig`) and the optional Optuna import.

Optuna is an optional dependency (``pip install "sb3-sac-ext[tune]"``): :func:`require_optuna` imports it when a
search starts, never at import time.
"""

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sb3_sac_ext.common.errors import SB3SacExtError

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
