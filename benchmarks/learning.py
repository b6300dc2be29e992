"""
Learning check: sb3-sac-ext's SAC against Stable-Baselines3's SAC with identical settings, side by side.

Default: Pendulum-v1, 20k env steps, seeds 0 1 2, RL Zoo's hyperparameters (Pendulum: learning_rate 1e-3;
HalfCheetah: learning_starts 10000), final mean return over 10 deterministic evaluation episodes, and the
evaluation return every ``--eval-every`` steps. ``ours`` is what a user gets by default: ``precision="auto"``
(bf16 where the CPU/GPU runs it natively) and the compiled update (``compile="auto"`` compiles runs of 5k+ updates).
``ours-eager`` is the eager fp32 update; ``ours-fp32``/``ours-bf16`` force a precision on the fast path.
The runs are sequential (one at a time), alternating within each seed.

    python benchmarks/learning.py
    python benchmarks/learning.py --env HalfCheetah-v5 --steps 100000 --seeds 0 1
    python benchmarks/learning.py --seeds 0 --runs sb3 ours ours-eager --log-dir logs/learning
    sb3-sac-ext plot -f logs/learning --env Pendulum-v1 -o docs/_static/plots/learning_pendulum.png
"""

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.evaluation import evaluate_policy


# RL Zoo's settings per env (hyperparams/sac.yml), identical for every run
ENV_KWARGS = {"Pendulum-v1": {"learning_rate": 1e-3}, "HalfCheetah-v5": {"learning_starts": 10_000}}
OURS = {
    "ours": {},
    "ours-eager": {"compile": False, "precision": "fp32"},
    "ours-fp32": {"compile": True, "precision": "fp32"},
    "ours-bf16": {"compile": True, "precision": "bf16"},
}


def train_and_evaluate(run: str, env_id: str, steps: int, seed: int, eval_every: int, log_dir: str | None) -> dict:
    from run_logs import run_folder
    from stable_baselines3.common.callbacks import EvalCallback
    from stable_baselines3.common.monitor import Monitor

    kwargs = ENV_KWARGS.get(env_id, {})
    # RL Zoo's layout <log dir>/<algo>/<EnvId>_<n>, which `sb3-sac-ext plot` reads: evaluations.npz and monitor files
    log_path = run_folder(log_dir, run, env_id, seed)
    env = Monitor(gym.make(env_id), filename=f"{log_path}/train" if log_path else None)
    if run == "sb3":
        from stable_baselines3 import SAC

        model = SAC("MlpPolicy", env, seed=seed, **kwargs)
    else:
        from sb3_sac_ext import SAC

        model = SAC("MlpPolicy", env, seed=seed, **kwargs, **OURS[run])  # type: ignore[assignment]
    eval_env = Monitor(gym.make(env_id))
    eval_env.reset(seed=10_000 + seed)
    callback = EvalCallback(eval_env, n_eval_episodes=5, eval_freq=eval_every, log_path=log_path, verbose=0)
    start = time.perf_counter()
    model.learn(steps, callback=callback)
    elapsed = time.perf_counter() - start
    mean_return, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    curve = [float(np.mean(r)) for r in callback.evaluations_results]
    return {"return": float(mean_return), "seconds": elapsed, "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--runs", nargs="+", default=["sb3", "ours"], help="sb3, " + ", ".join(OURS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-every", type=int, default=5_000, help="env steps between evaluations (5 episodes)")
    parser.add_argument("--log-dir", help="write EvalCallback's evaluations.npz per run under this folder")
    args = parser.parse_args()
    th.set_num_threads(args.threads)

    results: dict[str, list[dict]] = {run: [] for run in args.runs}
    for seed in args.seeds:
        for run in args.runs:  # alternate the runs within each seed
            result = train_and_evaluate(run, args.env, args.steps, seed, args.eval_every, args.log_dir)
            results[run].append(result)
            curve = " ".join(f"{r:.0f}" for r in result["curve"])
            print(
                f"seed {seed} {run:<10} return {result['return']:8.1f}  ({result['seconds']:.0f} s)  curve: {curve}",
                flush=True,
            )

    print(f"\n{args.env}, {args.steps} steps, seeds {args.seeds}, {args.threads} thread(s)")
    print("| run | final return (mean +- std) | per seed | wall-clock (s, mean) |")
    print("|---|---|---|---|")
    for run, runs in results.items():
        returns = [r["return"] for r in runs]
        std = statistics.stdev(returns) if len(returns) > 1 else 0.0
        seconds = statistics.mean(r["seconds"] for r in runs)
        per_seed = " ".join(f"{r:.1f}" for r in returns)
        print(f"| {run} | {statistics.mean(returns):.1f} +- {std:.1f} | {per_seed} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
