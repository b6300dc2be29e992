"""
Recurrent SAC / DiscreteSAC (``MlpLstmPolicy``) vs ``MlpPolicy`` vs ``MlpPolicy`` with frame stacking (VecFrameStack 4),
same budget and MLP sizes, on partially observable tasks (issue 8), plus the update speed of each path.

    python benchmarks/recurrent.py                                   # all envs, variants, 3 seeds (hours on a CPU)
    python benchmarks/recurrent.py --envs PendulumNoVel-v1 --seeds 0 --timesteps 20000 --variants lstm mlp
    python benchmarks/recurrent.py --speed-only                      # updates/s only
    python benchmarks/recurrent.py --envs PendulumNoVel-v1 --no-speed --log-dir logs/recurrent
    sb3-sac-ext plot -f logs/recurrent --env PendulumNoVel-v1 -o docs/_static/plots/recurrent_pendulum.png

``--log-dir DIR``: RL Zoo's run folders ``DIR/<variant>/<EnvId>_<seed + 1>`` (variant: lstm, mlp, framestack) with the
training env's ``0.monitor.csv`` and ``evaluations.npz`` (the evaluation every ``--eval-every`` steps, 10 episodes),
which ``sb3-sac-ext plot`` draws.

Targets: PendulumNoVel-v1 @50k: lstm >= -300 and >= framestack, mlp far below; CartPoleNoVel-v1 @100k (DiscreteSAC):
lstm >= 400, mlp <= 100; popgym-RepeatFirstEasy-v0 @100k (whole episodes): lstm >= 0.5, mlp and framestack ~ -0.5.
"""

import argparse
import copy
import json
import os
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from run_logs import run_folder
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize

from sb3_sac_ext import SAC, DiscreteSAC
from sb3_sac_ext.common.persistence import save_vec_normalize

LSTM = dict(lstm_hidden_size=64, net_arch=[64, 64])
MLP = dict(net_arch=[64, 64])
SETTINGS: dict[str, dict[str, Any]] = {
    "PendulumNoVel-v1": dict(
        algo=SAC,
        timesteps=50_000,
        lstm=dict(sequence_length=16, burn_in=8),
        kwargs=dict(learning_rate=1e-3, buffer_size=50_000, learning_starts=1000, batch_size=256, gamma=0.98),
    ),
    "CartPoleNoVel-v1": dict(
        algo=DiscreteSAC,
        timesteps=100_000,
        lstm=dict(sequence_length=16, burn_in=8),
        # observations normalised (VecNormalize, for every variant) as in hyperparams/discrete_sac_lstm.yml: unscaled,
        # CartPole's small positions and angles barely move the LSTM's output and the actor's ReLUs can die (seed 1 did)
        normalize=True,
        kwargs=dict(
            learning_rate=1e-3,
            buffer_size=100_000,
            learning_starts=1000,
            # batch 128 and tau 0.01 as CartPole-v1 in hyperparams/discrete_sac.yml: with batch 256 and tau 0.005 the
            # recurrent policy (seed 0) stayed at 180-200 up to 50k steps and reached 296 at 70k; with these, 500 at 10k
            batch_size=128,
            tau=0.01,
            gamma=0.99,
            target_entropy_scale=0.5,  # as CartPole-v1 in hyperparams/discrete_sac.yml (0.89 keeps it too random)
        ),
    ),
    "popgym-RepeatFirstEasy-v0": dict(
        algo=DiscreteSAC,
        timesteps=100_000,
        lstm=dict(sequence_length=None),
        kwargs=dict(
            learning_rate=1e-3, buffer_size=100_000, learning_starts=1000, batch_size=256, gamma=0.99, target_entropy_scale=0.5
        ),
    ),
}


def register_envs(env_id: str) -> None:
    if env_id.startswith("popgym"):
        import popgym  # noqa: F401  (pip install popgym: registers the envs, no torch dependency)
    else:
        import rl_zoo3.import_envs  # noqa: F401  (registers PendulumNoVel-v1, CartPoleNoVel-v1)


def make_env(
    env_id: str, variant: str, seed: int, normalize: bool = False, training: bool = True, monitor_dir: str | None = None
) -> Any:
    """
    One env (a VecEnv, frame-stacked for the ``framestack`` variant), seeded; ``normalize``: observations normalised
    by ``VecNormalize`` (rewards untouched; ``training=False`` for evaluation envs, whose statistics are copied in);
    ``monitor_dir``: the Monitor's file ``0.monitor.csv`` goes there (episode returns before normalisation).
    """
    register_envs(env_id)
    if variant != "framestack":
        env = make_vec_env(env_id, n_envs=1, seed=seed, monitor_dir=monitor_dir)
    else:
        # VecFrameStack takes Box observations: Discrete ones (RepeatFirst) become the one-hot vectors the MLP sees
        box = isinstance(gym.make(env_id).observation_space, gym.spaces.Box)
        wrapper = None if box else gym.wrappers.FlattenObservation
        env = VecFrameStack(make_vec_env(env_id, n_envs=1, seed=seed, wrapper_class=wrapper, monitor_dir=monitor_dir), 4)
    return VecNormalize(env, norm_reward=False, training=training) if normalize else env


def saved_name(save_dir: str, env_id: str, variant: str, seed: int) -> str:
    """Path (without extension) of a model saved with ``--save-dir``; its statistics: ``<name>_vec_normalize.zip``."""
    return os.path.join(save_dir, f"{env_id}_{variant}_{seed}")


def evaluate_episodes(model: Any, env: Any, n_episodes: int) -> tuple[list[float], list[int]]:
    """
    Deterministic evaluation on ``env``, with the model's observation statistics (if normalised), frozen.

    :return: The episodes' returns and lengths
    """
    train_norm = model.get_vec_normalize_env()
    if train_norm is not None:
        env.obs_rms = copy.deepcopy(train_norm.obs_rms)
        env.training = False
    return evaluate_policy(model, env, n_eval_episodes=n_episodes, deterministic=True, return_episode_rewards=True)


def evaluate(model: Any, env: Any, n_episodes: int) -> tuple[float, float]:
    """Deterministic evaluation on ``env`` (see :func:`evaluate_episodes`): mean and std of the returns."""
    returns, _ = evaluate_episodes(model, env, n_episodes)
    return float(np.mean(returns)), float(np.std(returns))


def curve_callback(
    env_id: str, variant: str, seed: int, every: int, normalize: bool = False, log_path: str | None = None
) -> Any:
    """
    Evaluates the deterministic policy (10 episodes, on its own env) every ``every`` env steps, prints the learning
    curve and writes it to ``<log_path>/evaluations.npz``. Deterministic evaluation draws no random numbers from the
    model, so training is the same with or without it.
    """
    from run_logs import PeriodicEval

    eval_env = make_env(env_id, variant, 20_000 + seed, normalize, training=False)
    return PeriodicEval(
        lambda model: evaluate_episodes(model, eval_env, 10), every, log_path, f"{env_id} {variant} seed {seed}"
    )


EVAL_SEED = 10_000  # env seed of the final evaluation (and of recurrent_paired.py's)

# --set keys that go to the recurrent policy's policy_kwargs
RNN_KEYS = ("lstm_hidden_size", "n_lstm_layers", "rnn_type", "sequence_length", "burn_in", "shared_lstm")


def make_model(
    env_id: str, variant: str, seed: int, overrides: dict[str, Any] | None = None, monitor_dir: str | None = None
) -> Any:
    """The model of one variant; ``overrides``: hyperparameters replacing the env's settings (``lstm`` keys for the
    recurrent policy's kwargs, the rest for the algorithm), for tuning runs; ``monitor_dir``: the training env's
    monitor file goes there."""
    setting = SETTINGS[env_id]
    overrides = dict(overrides or {})
    lstm_overrides = {key: overrides.pop(key) for key in list(overrides) if key in RNN_KEYS}
    normalize = bool(overrides.pop("normalize", setting.get("normalize", False)))
    env = make_env(env_id, variant, seed, normalize, monitor_dir=monitor_dir)
    policy, policy_kwargs = "MlpPolicy", dict(MLP)
    if variant == "lstm":
        policy, policy_kwargs = "MlpLstmPolicy", {**LSTM, **setting["lstm"], **lstm_overrides}
    kwargs = {**setting["kwargs"], **overrides}
    return setting["algo"](policy, env, policy_kwargs=policy_kwargs, seed=seed, **kwargs)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """
    ``key=value`` pairs (values as Python literals, e.g. ``tau=0.01``, ``rnn_type='gru'``; ``normalize=True``:
    observations normalised by ``VecNormalize``).
    """
    import ast

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise SystemExit(f"--set {key}: {value!r} is not a Python literal (e.g. 0.01, 'gru', True)") from None
    return overrides


def update_speed(env_id: str, variant: str, n_updates: int = 200) -> float:
    """Gradient updates per second (batch of 256 transitions), after 2000 steps of data."""
    model = make_model(env_id, variant, seed=0)
    model.learning_starts = 10**9
    model.learn(2000)
    model.train(gradient_steps=10, batch_size=256)  # warm-up
    start = time.perf_counter()
    model.train(gradient_steps=n_updates, batch_size=256)
    return n_updates / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--variants", nargs="+", default=["lstm", "mlp", "framestack"], choices=["lstm", "mlp", "framestack"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--timesteps", type=int, default=None, help="override the per-env budget")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument(
        "--eval-seed", type=int, default=EVAL_SEED, help="env seed of the final evaluation (the same episodes for every run)"
    )
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-speed", action="store_true", help="skip the update-speed table (e.g. when sharing the machine)")
    parser.add_argument(
        "--eval-every",
        type=int,
        default=None,
        help="evaluate (10 episodes) every N steps for a learning curve (default: timesteps / 20 with --log-dir, else none)",
    )
    parser.add_argument("--log-dir", default=None, help="write RL Zoo's run folders (sb3-sac-ext plot reads them) here")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override settings (tuning runs)")
    parser.add_argument("--save-dir", default=None, help="save each trained model (and its VecNormalize statistics) here")
    parser.add_argument("--out", default=None, help="append one JSON line per learning run to this file")
    args = parser.parse_args()
    th.set_num_threads(args.threads)

    if not args.no_speed:
        print("| env | variant | updates/s |")
        print("|---|---|---|")
        for env_id in args.envs:
            for variant in args.variants:
                print(f"| {env_id} | {variant} | {update_speed(env_id, variant):.0f} |", flush=True)
    if args.speed_only:
        return
    print("\n| env | variant | timesteps | seed | mean return | std | train time (s) |")
    print("|---|---|---|---|---|---|---|")
    for env_id in args.envs:
        timesteps = args.timesteps or SETTINGS[env_id]["timesteps"]
        eval_every = args.eval_every if args.eval_every is not None else (max(timesteps // 20, 1) if args.log_dir else 0)
        for variant in args.variants:
            means = []
            for seed in args.seeds:
                log_path = run_folder(args.log_dir, variant, env_id, seed)  # the variant is the plot's "algo"
                model = make_model(env_id, variant, seed, parse_overrides(args.set), monitor_dir=log_path)
                normalize = model.get_vec_normalize_env() is not None
                curve = curve_callback(env_id, variant, seed, eval_every, normalize, log_path) if eval_every else None
                start = time.perf_counter()
                model.learn(timesteps, callback=curve)
                elapsed = time.perf_counter() - start  # includes the curve's evaluations, if any
                if args.save_dir:
                    name = saved_name(args.save_dir, env_id, variant, seed)
                    model.save(name + ".zip")
                    if normalize:  # the project's pickle-free statistics file
                        save_vec_normalize(model.get_vec_normalize_env(), name + "_vec_normalize.zip")
                eval_env = make_env(env_id, variant, args.eval_seed, normalize, training=False)
                mean, std = evaluate(model, eval_env, args.eval_episodes)
                means.append(mean)
                print(f"| {env_id} | {variant} | {timesteps} | {seed} | {mean:.2f} | {std:.2f} | {elapsed:.0f} |", flush=True)
                if args.out:
                    row = dict(env=env_id, variant=variant, timesteps=timesteps, seed=seed, mean=mean, std=std)
                    row["normalize"] = normalize
                    if args.set:
                        row["set"] = args.set
                    if curve is not None:
                        row["curve"] = curve.points
                    with open(args.out, "a") as file:
                        file.write(json.dumps({**row, "train_seconds": elapsed}) + "\n")
            print(f"| {env_id} | {variant} | {timesteps} | mean | {np.mean(means):.2f} | {np.std(means):.2f} | |", flush=True)


if __name__ == "__main__":
    gym.logger.min_level = 40
    main()
