"""
The report of a study: the best hyperparameters as an RL Zoo YAML entry (``best.yml``, ready for
``sb3-sac-ext train --hyperparams-file``), a CSV of all trials and the Optuna plots.
"""

import warnings
from pathlib import Path
from typing import Any

import yaml

from sb3_sac_ext.common.persistence import atomic_write
from sb3_sac_ext.tuning.config import TuneConfig


def write_report(study: Any, config: TuneConfig) -> dict[str, Path]:
    """
    Write the best hyperparameters (RL Zoo YAML entry), a CSV of all trials and the plots.

    :param study: The study
    :param config: Tuning settings
    :return: Paths of the files written (``best``, ``csv``, ``history``, ``importances``)
    """
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
    with atomic_write(paths["best"]) as file:
        file.write(text.encode())

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
    with atomic_write(paths["csv"]) as file:
        file.write(dataframe.to_csv(index=False).encode())

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
                with atomic_write(path) as file:
                    figure.savefig(file, format="png", dpi=100)
                plt.close(figure)
            written[key] = path
        except Exception as e:  # e.g. importances need two completed trials with varying parameters
            print(f"Plot {filename} skipped: {type(e).__name__}: {e}")
    return written
