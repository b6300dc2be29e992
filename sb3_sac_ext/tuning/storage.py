"""
Where a study lives and how it is opened: Optuna storages (a journal file, no server; or an SQLAlchemy URL,
``sqlite:///...``, ``postgresql://...``, with Optuna's heartbeat so that several workers on several machines
share one study), the sampler and pruner, and the creation of the study (once, also when several workers start
together on an empty database).
"""

import importlib.util
import time
from pathlib import Path
from typing import Any

from sb3_sac_ext.common.errors import SB3SacExtError
from sb3_sac_ext.tuning.config import PRUNERS, SAMPLERS, TuneConfig, require_optuna


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
