"""RL Zoo integration: registration under new keys and the zoo_scripts entry points."""

import subprocess
import sys

import pytest

rl_zoo3 = pytest.importorskip("rl_zoo3", reason="the RL Zoo tests need the zoo extra: pip install 'sb3-sac-ext[zoo]'")

from tests._tune_helpers import REPO, env_vars  # noqa: E402


def test_register_adds_new_keys_only():
    import rl_zoo3.hyperparams_opt as zoo_opt
    from rl_zoo3.exp_manager import ExperimentManager
    from rl_zoo3.utils import ALGOS
    from stable_baselines3 import SAC as SB3SAC

    import sb3_sac_ext
    from sb3_sac_ext.zoo import hyperparams_path, register

    register()
    register()  # idempotent
    assert ALGOS["sac"] is SB3SAC and ALGOS["sac_ext"] is sb3_sac_ext.SAC and ALGOS["discrete_sac"] is sb3_sac_ext.DiscreteSAC
    for key in ("sac_ext", "discrete_sac"):
        assert key in zoo_opt.HYPERPARAMS_SAMPLER and key in zoo_opt.HYPERPARAMS_CONVERTER
    assert hyperparams_path("sac_ext").name == "sac.yml" and hyperparams_path("discrete_sac").is_file()
    assert getattr(ExperimentManager.__init__, "_sb3_sac_ext", False)


def zoo(script, *args, timeout=150):
    return subprocess.run(
        [sys.executable, str(REPO / "zoo_scripts" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env_vars(),
        cwd=str(REPO),
    )


def test_zoo_train_enjoy_and_optimize(tmp_path):
    tiny = ["-params", "policy_kwargs:dict(net_arch=[32,32])", "learning_starts:100", "batch_size:32"]
    result = zoo("train.py", "--algo", "discrete_sac", "--env", "CartPole-v1", "-n", "300", "-f", str(tmp_path), *tiny)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "discrete_sac.yml" in result.stdout  # rl_zoo3 found our packaged YAML
    assert (tmp_path / "discrete_sac" / "CartPole-v1_1" / "CartPole-v1.zip").is_file()
    from sb3_sac_ext.zoo import zoo_main

    assert (
        zoo_main("enjoy", ["--algo", "discrete_sac", "--env", "CartPole-v1", "-f", str(tmp_path), "--no-render", "-n", "50"])
        == 0
    )


def test_zoo_optimize_in_process(tmp_path, capsys):
    from sb3_sac_ext.zoo import zoo_main

    argv = [
        "--algo",
        "sac_ext",
        "--env",
        "Pendulum-v1",
        "-n",
        "200",
        "-f",
        str(tmp_path),
        "-optimize",
        "--n-trials",
        "2",
        "--n-evaluations",
        "1",
        "--eval-episodes",
        "1",
        "--no-optim-plots",
        "--pruner",
        "none",
        "--num-threads",
        "1",
    ]
    assert zoo_main("train", argv) == 0
    out = capsys.readouterr().out
    assert "Best trial" in out and "qf_learning_rate" in out


def test_zoo_train_and_enjoy_recurrent_policy_with_several_envs(tmp_path, capsys):
    """RL Zoo's enjoy carries our recurrent policy's state (its lstm_states loop) over several envs, unchanged."""
    params = ["-params", "policy:'MlpLstmPolicy'", "policy_kwargs:dict(net_arch=[16], lstm_hidden_size=8, sequence_length=4)"]
    tiny = [*params, "learning_starts:100", "batch_size:32"]
    result = zoo("train.py", "--algo", "discrete_sac", "--env", "CartPole-v1", "-n", "300", "-f", str(tmp_path), *tiny)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    from sb3_sac_ext import DiscreteSAC
    from sb3_sac_ext.zoo import zoo_main

    model = DiscreteSAC.load(tmp_path / "discrete_sac" / "CartPole-v1_1" / "CartPole-v1.zip")
    assert model.policy.lstm_hidden_size == 8
    argv = ["--algo", "discrete_sac", "--env", "CartPole-v1", "-f", str(tmp_path), "--no-render", "-n", "60"]
    assert zoo_main("enjoy", [*argv, "--n-envs", "3"]) == 0
    assert zoo_main("enjoy", argv) == 0
    assert "Episode Reward" in capsys.readouterr().out
