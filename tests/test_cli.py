"""``sb3-sac-ext train / enjoy / plot``, the subcommands' help and one-line errors for bad input."""

import subprocess
import sys

import pytest

from sb3_sac_ext.cli import main
from sb3_sac_ext.config import default_hyperparams_file, get_env_wrapper, get_hyperparams
from tests._tune_helpers import TINY_HYPERPARAMS

YAML = """
CartPole-v1:
  policy: MlpPolicy
  learning_starts: 100
  batch_size: 32
  qf_learning_rate: lin_1e-3
  ent_coef_learning_rate: lin_1e-3
  policy_kwargs: "dict(net_arch=[32, 32])"
  env_wrapper:
    - gymnasium.wrappers.TimeLimit: {max_episode_steps: 50}
    - gymnasium.wrappers.ClipReward: {min_reward: -1.0, max_reward: 1.0}
"""


def test_packaged_hyperparams():
    for algo in ("sac", "discrete_sac"):
        assert default_hyperparams_file(algo).is_file()
    assert get_hyperparams("sac", "Pendulum-v1")["n_timesteps"] > 0


def test_env_wrapper_formats():
    import gymnasium as gym

    assert get_env_wrapper(None) is None
    env = get_env_wrapper("gymnasium.wrappers.FlattenObservation")(gym.make("CartPole-v1"))
    assert isinstance(env, gym.wrappers.FlattenObservation)
    env = get_env_wrapper([{"gymnasium.wrappers.TimeLimit": {"max_episode_steps": 5}}])(gym.make("CartPole-v1"))
    assert env._max_episode_steps == 5


def test_train_enjoy_plot(tmp_path, capsys):
    hyperparams = tmp_path / "cartpole.yml"
    hyperparams.write_text(YAML)
    common = [
        "--algo",
        "discrete_sac",
        "--env",
        "CartPole-v1",
        "-f",
        str(tmp_path / "logs"),
        "--hyperparams-file",
        str(hyperparams),
    ]
    assert (
        main(
            [
                "train",
                *common,
                "-n",
                "300",
                "--eval-freq",
                "150",
                "--eval-episodes",
                "2",
                "--save-freq",
                "150",
                "--no-progress",
            ]
        )
        == 0
    )
    run = tmp_path / "logs" / "discrete_sac" / "CartPole-v1_1"
    for name in ("CartPole-v1.zip", "progress.csv", "evaluations.npz", "0.monitor.csv", "checkpoints"):
        assert (run / name).exists(), name
    assert "train/critic_loss" in (run / "progress.csv").read_text().splitlines()[0]
    assert list(run.glob("events.out.tfevents.*")), "TensorBoard events"
    assert main(["enjoy", *common, "--n-episodes", "2", "--video", "--video-length", "20"]) == 0
    out = capsys.readouterr().out
    assert "Mean return over 2 episodes" in out
    assert "Saved video to" in out or "Video skipped:" in out
    assert main(["plot", "-f", str(tmp_path / "logs"), "--env", "CartPole-v1", "-o", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--algo", "ppo"], "unknown algorithm"),
        (["tune", "--algo", "ppo"], "unknown algorithm"),
        (["tune", "--env", "NoSuchEnv-v0"], "unknown environment"),
        (["enjoy", "--env", "NoSuchEnv-v0"], "unknown environment"),
        (["tune", "--hyperparams", "gamma"], "malformed --hyperparams"),
        (["tune", "--hyperparams", "gamma:[0.9,"], "malformed --hyperparams"),
        (["tune", "--hyperparams", "policy_kwargs:dict(net_arch=os.system)"], "Cannot parse"),
        (["tune", "--storage", "study.txt"], "unsupported storage"),
        (["tune", "--storage", "postgresql://user:secret@127.0.0.1:1/db"], "cannot open storage"),
        (["plot", "-f", "does/not/exist"], "does not exist"),
    ],
)
def test_bad_input_one_line_error(argv, message, tmp_path, capsys):
    if "postgresql" in argv[-1]:
        pytest.importorskip("psycopg2")
    pytest.importorskip("optuna")
    argv = [*argv, "-f", str(tmp_path)] if argv[0] != "plot" else argv
    assert main([*argv, "-n", "10"] if argv[0] == "tune" else argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert "secret" not in err


def _env_without_its_package(**kwargs):
    import gymnasium as gym

    raise gym.error.DependencyNotInstalled("FakeSim is not installed, run `pip install fakesim`")


def test_env_with_a_missing_package_is_a_one_line_error(tmp_path, capsys):
    """An env id that is registered but whose package is missing (as LunarLander without Box2D): no traceback."""
    import gymnasium as gym

    gym.register("NeedsFakeSim-v0", entry_point=_env_without_its_package)
    try:
        assert main(["train", "--env", "NeedsFakeSim-v0", "-n", "10", "-f", str(tmp_path)]) == 2
    finally:
        gym.registry.pop("NeedsFakeSim-v0")
    err = capsys.readouterr().err
    assert "pip install fakesim" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_tiny_hyperparams_are_valid():
    from sb3_sac_ext.commands.tune import parse_pinned

    assert parse_pinned(TINY_HYPERPARAMS)["policy_kwargs"] == "dict(net_arch=[32, 32])"


def test_train_with_normalize_writes_pickle_free_statistics(tmp_path, capsys):
    """``normalize: true`` in the YAML: train saves vec_normalize.zip (no pickle), enjoy and export read it."""
    from sb3_sac_ext.common.persistence import load_vec_normalize

    hyperparams = tmp_path / "pendulum.yml"
    hyperparams.write_text(
        "Pendulum-v1:\n  policy: MlpPolicy\n  normalize: true\n  learning_starts: 50\n  batch_size: 32\n"
        '  policy_kwargs: "dict(net_arch=[16, 16])"\n'
    )
    common = ["--algo", "sac", "--env", "Pendulum-v1", "-f", str(tmp_path / "logs"), "--hyperparams-file", str(hyperparams)]
    assert main(["train", *common, "-n", "120", "--eval-episodes", "1", "--no-progress"]) == 0
    run = tmp_path / "logs" / "sac" / "Pendulum-v1_1"
    assert (run / "vec_normalize.zip").is_file() and not (run / "vecnormalize.pkl").exists()
    from stable_baselines3.common.env_util import make_vec_env

    stats = load_vec_normalize(run / "vec_normalize.zip", make_vec_env("Pendulum-v1", n_envs=1))  # never unpickles
    assert stats.obs_rms.count > 100
    assert main(["enjoy", *common, "--n-episodes", "1"]) == 0
    pytest.importorskip("onnxruntime")
    out = tmp_path / "actor.onnx"
    assert main(["export", "--algo", "sac", "--model", str(run / "Pendulum-v1.zip"), "-o", str(out)]) == 0
    assert "VecNormalize statistics from" in capsys.readouterr().out


def _packaged_entries() -> list[tuple[str, str]]:
    from sb3_sac_ext.config import HYPERPARAMS_DIR, load_yaml

    return [(path.stem, key) for path in sorted(HYPERPARAMS_DIR.glob("*.yml")) for key in load_yaml(path)]


@pytest.mark.parametrize(("file_stem", "entry"), _packaged_entries())
def test_every_packaged_preset_builds_a_model(file_stem, entry):
    """Each entry of the shipped YAML files (hyperparams/*.yml) builds its model and predicts on its env."""
    from sb3_sac_ext import SAC, DiscreteSAC
    from sb3_sac_ext.experiment import check_env_id, make_env
    from sb3_sac_ext.common.errors import SB3SacExtError
    from sb3_sac_ext.config import HYPERPARAMS_DIR, prepare_model_kwargs

    env_id = {"default": "Pendulum-v1", "atari": "PongNoFrameskip-v4"}.get(entry, entry)
    try:
        check_env_id(env_id)
    except SB3SacExtError as e:
        pytest.skip(f"{env_id} is not installed here ({e})")
    algo = DiscreteSAC if file_stem.startswith("discrete_sac") else SAC
    kwargs, settings = prepare_model_kwargs(get_hyperparams(file_stem, entry, HYPERPARAMS_DIR / f"{file_stem}.yml"))
    kwargs["buffer_size"] = min(int(kwargs.get("buffer_size", 1000)), 1000)  # the preset's own size is not the point
    import gymnasium as gym

    missing = (ImportError, gym.error.DependencyNotInstalled)  # e.g. opencv for AtariWrapper, Box2D for LunarLander
    try:
        env = make_env(env_id, int(settings.get("n_envs", 1)), 0, settings)
    except missing as e:
        pytest.skip(f"{entry}: {e}")
    try:
        model = algo(kwargs.pop("policy"), env, device="cpu", **kwargs)
        action, _ = model.predict(env.reset(), deterministic=True)
        assert env.action_space.contains(action[0])
        assert int(settings["n_timesteps"]) > 0
    except missing as e:
        pytest.skip(f"{entry}: {e}")
    finally:
        env.close()


def test_help_lists_every_subcommand(capsys):
    """``sb3-sac-ext --help`` lists the seven subcommands; each has its own ``--help``, push and pull included."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("train", "enjoy", "tune", "plot", "push", "pull", "export"):
        assert f"    {name}  " in out or f"    {name}\n" in out, out
    for name, option in (("push", "--repo-id"), ("pull", "--revision"), ("export", "--output"), ("tune", "--n-trials")):
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: sb3-sac-ext {name}" in out and option in out


def test_console_script_help():
    """The console script's target (pyproject.toml) runs, here as ``python -m sb3_sac_ext.commands``."""
    from tests._tune_helpers import REPO, env_vars

    result = subprocess.run(
        [sys.executable, "-m", "sb3_sac_ext.commands", "--help"], capture_output=True, text=True, env=env_vars(), timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "{train,enjoy,tune,plot,export,push,pull}" in result.stdout
    assert 'sb3-sac-ext = "sb3_sac_ext.commands:main"' in (REPO / "pyproject.toml").read_text()


def test_unknown_algorithm_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", "--algo", "ppo", "-f", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown algorithm 'ppo'" in err and len(err.strip().splitlines()) == 1


def _speed_results(**overrides):
    def row(ratio):
        return {"updates_per_s": 100 * ratio, "update_ratio": ratio, "env_steps_per_s": 90 * ratio, "e2e_ratio": ratio}

    results = [
        {"env": env, "threads": threads, "cores": [0], "implementations": {"sb3": row(1.0), "ours fp32": row(ratio)}}
        for env, threads, ratio in (("Pendulum-v1", 1, 2.5), ("Pendulum-v1", 2, 1.75))
    ]
    return {"cpu": "Test CPU 9000", "torch": "2.5.0", "base": "sb3", "results": results, **overrides}


def test_plot_speed(tmp_path, capsys, monkeypatch):
    """``plot --speed``: bars of the ratios, their values written on them, a line at 1, the CPU in the title."""
    import json

    from matplotlib.figure import Figure

    path = tmp_path / "speed.json"
    path.write_text(json.dumps(_speed_results()))
    drawn = []
    savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (drawn.append(self), savefig(self, *a, **k))[1])
    assert main(["plot", "--speed", str(path), "-f", "does/not/exist", "--env", "Nope-v0"]) == 0  # -f, --env unused
    png = tmp_path / "speed.png"  # next to the JSON file by default
    assert f"Saved plot to {png}" in capsys.readouterr().out
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 0
    (ax,) = drawn[0].axes
    heights = sorted(round(bar.get_height(), 3) for bar in ax.patches)
    assert heights == [1.0, 1.0, 1.75, 2.5]
    texts = {text.get_text() for text in ax.texts}
    assert {"1.00", "1.75", "2.50"} <= texts
    assert any(line.get_linestyle() == "--" and list(line.get_ydata()) == [1.0, 1.0] for line in ax.lines)
    assert "Test CPU 9000" in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["sb3", "ours fp32"]
    assert main(["plot", "--speed", str(path), "-o", str(tmp_path / "out" / "bars.png")]) == 0
    assert (tmp_path / "out" / "bars.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ("{not json", "is not valid JSON"),
        (_speed_results(results=[]), "no results in"),
        ([1, 2], "no results in"),
        (_speed_results(results=[{"env": "Pendulum-v1", "threads": 1}]), "lacks a field"),
    ],
)
def test_plot_speed_errors(content, message, tmp_path, capsys):
    import json

    path = tmp_path / "speed.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    assert main(["plot", "--speed", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "speed.png").exists()


def test_discrete_benchmark_logs_are_plotted(tmp_path, monkeypatch):
    """benchmarks/discrete.py --log-dir writes RL Zoo's run folders, which find_runs and plot read."""
    import importlib.util
    from pathlib import Path

    import numpy as np

    from sb3_sac_ext.plotting import find_runs, plot_learning_curves

    folder = Path(__file__).resolve().parent.parent / "benchmarks"
    monkeypatch.syspath_prepend(str(folder))  # the scripts import their sibling run_logs, as `python benchmarks/x.py` does
    spec = importlib.util.spec_from_file_location("discrete_benchmark", folder / "discrete.py")
    discrete = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(discrete)
    result = discrete.run_one("discrete_sac", "CartPole-v1", 0, 300, eval_every=100, log_dir=str(tmp_path))
    assert result["steps"] == 300
    runs = find_runs(str(tmp_path), "CartPole-v1", None)
    assert runs == {"discrete_sac": [tmp_path / "discrete_sac" / "CartPole-v1_1"]}
    run = runs["discrete_sac"][0]
    evaluations = np.load(run / "evaluations.npz")
    assert list(evaluations["timesteps"]) == [100, 200, 300] and evaluations["results"].shape == (3, 10)
    lengths = [int(line.split(",")[1]) for line in (run / "train.monitor.csv").read_text().splitlines()[2:]]
    assert lengths and sum(lengths) <= 300
    assert plot_learning_curves(str(tmp_path), str(tmp_path / "p.png"), "CartPole-v1").stat().st_size > 0
