"""
Learning curves from a log folder, as RL Zoo's plot scripts draw them (the ``sb3-sac-ext plot`` command).

    sb3-sac-ext plot -f logs --env Pendulum-v1                 # every algorithm under logs/
    sb3-sac-ext plot -f logs --env CartPole-v1 --algo discrete_sac sac_ext -o cartpole.png

Runs are RL Zoo's folders ``<log folder>/<algo>/<EnvId>_<n>`` (written by ``sb3-sac-ext train`` and by
RL Zoo). Evaluation returns come from ``evaluations.npz`` (``EvalCallback``), training returns from the
``*.monitor.csv`` files. Each algorithm gets one line: the mean over its runs (seeds) and a band of one
standard deviation, against env steps; ``--per-run`` draws one line per run instead.

``sb3-sac-ext plot --speed speed.json`` draws the training speed measured by ``benchmarks/throughput.py --out``
instead: gradient updates/s of each implementation relative to the first one (SB3), per env and thread count.
"""

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from sb3_sac_ext.common.errors import SB3SacExtError


def _monitor_curve(run: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """:return: (env steps at the end of each episode, episode return), episodes of all envs in time order."""
    rows = []
    for path in sorted(run.glob("*.monitor.csv")) + sorted(run.glob("*/*.monitor.csv")):
        with open(path) as file:
            file.readline()  # JSON header
            rows.extend((float(row["t"]), float(row["l"]), float(row["r"])) for row in csv.DictReader(file))
    if not rows:
        return None
    rows.sort()
    lengths = np.array([row[1] for row in rows])
    return np.cumsum(lengths), np.array([row[2] for row in rows])


def _eval_curve(run: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """:return: (env steps, mean evaluation return) from ``evaluations.npz``."""
    path = run / "evaluations.npz"
    if not path.is_file():
        return None
    data = np.load(path)
    return data["timesteps"].astype(float), data["results"].mean(axis=1)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def find_runs(log_folder: str, env_id: str | None, algos: list[str] | None) -> dict[str, list[Path]]:
    """
    :param log_folder: Root log folder
    :param env_id: Only runs of this env (None: all envs, labelled ``algo/env``)
    :param algos: Only these algorithm folders (None: all)
    :return: Line label -> run folders
    """
    root = Path(log_folder)
    if not root.is_dir():
        raise SB3SacExtError(f"log folder {root} does not exist")
    groups: dict[str, list[Path]] = {}
    for algo_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if algos and algo_dir.name not in algos:
            continue
        for run in sorted(p for p in algo_dir.iterdir() if p.is_dir()):
            env_name, _, suffix = run.name.rpartition("_")
            if not suffix.isdigit() or (env_id is not None and env_name != env_id):
                continue
            label = algo_dir.name if env_id is not None else f"{algo_dir.name}/{env_name}"
            groups.setdefault(label, []).append(run)
    return groups


def _plot_group(ax: Any, label: str, curves: list[tuple[np.ndarray, np.ndarray]], per_run: bool) -> None:
    if per_run or len(curves) == 1:
        for i, (x, y) in enumerate(curves):
            ax.plot(x, y, label=label if len(curves) == 1 else f"{label} #{i + 1}")
        return
    end = min(x[-1] for x, _ in curves)
    start = max(x[0] for x, _ in curves)
    grid = np.linspace(start, end, 100) if end > start else np.array([end])
    ys = np.stack([np.interp(grid, x, y) for x, y in curves])
    mean, std = ys.mean(axis=0), ys.std(axis=0)
    (line,) = ax.plot(grid, mean, label=f"{label} ({len(curves)} runs)")
    ax.fill_between(grid, mean - std, mean + std, alpha=0.25, color=line.get_color())


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SB3SacExtError("plotting needs matplotlib: pip install 'sb3-sac-ext[tune]'") from None
    return plt


def plot_learning_curves(
    log_folder: str,
    output: str,
    env_id: str | None = None,
    algos: list[str] | None = None,
    smooth: int = 10,
    per_run: bool = False,
) -> Path:
    """
    Draw evaluation and training returns against env steps into a PNG.

    :param log_folder: Root log folder
    :param output: PNG path
    :param env_id: Only runs of this env
    :param algos: Only these algorithms
    :param smooth: Moving-average window over training episodes
    :param per_run: One line per run instead of mean and spread per algorithm
    :return: The PNG path
    """
    plt = _pyplot()
    groups = find_runs(log_folder, env_id, algos)
    if not groups:
        raise SB3SacExtError(f"no runs found under {log_folder}" + (f" for {env_id}" if env_id else ""))
    figure, (eval_ax, train_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    drawn = 0
    for label, runs in groups.items():
        evals = [c for c in (_eval_curve(run) for run in runs) if c is not None and len(c[0]) > 0]
        if evals:
            _plot_group(eval_ax, label, evals, per_run)
            drawn += 1
        trains = []
        for run in runs:
            curve = _monitor_curve(run)
            if curve is not None:
                x, y = curve
                y_smooth = _smooth(y, smooth)
                trains.append((x[len(x) - len(y_smooth) :], y_smooth))
        if trains:
            _plot_group(train_ax, label, trains, per_run)
            drawn += 1
    if drawn == 0:
        plt.close(figure)
        raise SB3SacExtError(f"no evaluations.npz or monitor files in the runs under {log_folder}")
    title = env_id or "all envs"
    for ax, name in ((eval_ax, "evaluation return"), (train_ax, f"training return ({smooth}-episode moving average)")):
        ax.set_title(f"{title}: {name}", fontsize=11)
        ax.set_xlabel("Env steps")
        ax.set_ylabel("Return")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    return _save(plt, figure, output)


def _save(plt: Any, figure: Any, output: str) -> Path:
    """Lay out ``figure``, write it to the PNG ``output`` (creating its folder) and close it."""
    figure.tight_layout()
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _speed_results(results_file: str) -> tuple[dict[str, Any], list[tuple[str, dict[str, float]]]]:
    """:return: The file's object and, per env and thread count, (group label, implementation -> ratio against the base)."""
    path = Path(results_file)
    if not path.is_file():
        raise SB3SacExtError(f"speed results file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SB3SacExtError(f"{path} is not valid JSON ({e})") from None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list) or not results:
        raise SB3SacExtError(f"no results in {path} (write it with benchmarks/throughput.py --out)")
    groups = []
    for index, result in enumerate(results):
        try:
            ratios = {name: float(row["update_ratio"]) for name, row in result["implementations"].items()}
            label = f"{result['env']}\n{result['threads']} thread{'s' if result['threads'] != 1 else ''}"
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise SB3SacExtError(f"result {index} of {path} lacks a field ({e!r}): env, threads, implementations") from None
        if ratios:
            groups.append((label, ratios))
    if not groups:
        raise SB3SacExtError(f"no implementations in the results of {path}")
    return data, groups


def plot_speed(results_file: str, output: str) -> Path:
    """
    Draw the training speed that ``benchmarks/throughput.py --out`` measured into a PNG: grouped bars, one group per
    env and thread count, one bar per implementation, each the median ratio of its gradient updates/s to the base
    (SB3) with its value written on it, and a dashed line at 1 (as fast as the base).

    :param results_file: The JSON file of ``benchmarks/throughput.py --out``
    :param output: PNG path
    :return: The PNG path
    """
    data, groups = _speed_results(results_file)
    plt = _pyplot()
    names = list(dict.fromkeys(name for _, ratios in groups for name in ratios))
    width = 0.8 / len(names)
    figure, ax = plt.subplots(figsize=(max(6.0, 1.2 + len(groups) * (0.6 + 0.55 * len(names))), 4.5))
    for i, name in enumerate(names):
        xs = [g + (i - (len(names) - 1) / 2) * width for g, (_, ratios) in enumerate(groups) if name in ratios]
        heights = [ratios[name] for _, ratios in groups if name in ratios]
        bars = ax.bar(xs, heights, width, label=name)
        ax.bar_label(bars, labels=[f"{h:.2f}" for h in heights], padding=2, fontsize=8)
    base = data.get("base", names[0])
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(groups)), [label for label, _ in groups])
    ax.set_ylabel(f"Gradient updates/s (x {base})")
    ax.set_ylim(0, max(max(ratios.values()) for _, ratios in groups) * 1.15)
    torch_version = f", torch {data['torch']}" if data.get("torch") else ""
    ax.set_title(f"Training speed relative to {base}\n{data.get('cpu', 'unknown CPU')}{torch_version}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: never over a bar
    ax.grid(axis="y", alpha=0.3)
    return _save(plt, figure, output)


def __getattr__(name: str) -> Any:
    # The command line moved above the features it uses: a tombstone with the new place instead of an import upward
    if name == "plot_main":
        raise AttributeError("sb3_sac_ext.plotting.plot_main moved to sb3_sac_ext.commands.plot.plot_main")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
