"""
Learning check: sb3-sac-ext's SAC against Stable-Baselines3's SAC with identical settings, side by side.

Default: Pendulum-v1, 20k env steps, seeds 0 1 2, RL Zoo's hyperparameters (learning_rate 1e-3), final mean
return over 10 deterministic evaluation episodes. Also runs ours in each requested precision, to show that
bf16 leaves learning unchanged (where the hardware runs it natively).

    python benchmarks/learning.py
    python benchmarks/learning.py --seeds 0 --steps 20000 --runs sb3 ours-fp32 ours-bf16
"""

import argparse
import statistics
import time

import gymnasium as gym
import torch as th
from stable_baselines3.common.evaluation import evaluate_policy


def train_and_evaluate(run: str, env_id: str, steps: int, seed: int) -> tuple[float, float]:
    if run == "sb3":
        from stable_baselines3 import SAC

        model = SAC("MlpPolicy", env_id, learning_rate=1e-3, seed=seed)
    else:
        from sb3_sac_ext import SAC

        model = SAC("MlpPolicy", env_id, learning_rate=1e-3, seed=seed, precision=run.split("-", 1)[1])  # type: ignore[assignment]
    start = time.perf_counter()
    model.learn(steps)
    elapsed = time.perf_counter() - start
    eval_env = gym.make(env_id)
    eval_env.reset(seed=10_000 + seed)
    mean_return, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    return float(mean_return), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--runs", nargs="+", default=["sb3", "ours-fp32"], help="sb3, ours-fp32, ours-bf16")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    th.set_num_threads(args.threads)

    results: dict[str, list[float]] = {run: [] for run in args.runs}
    for seed in args.seeds:
        for run in args.runs:  # alternate the runs within each seed
            mean_return, elapsed = train_and_evaluate(run, args.env, args.steps, seed)
            results[run].append(mean_return)
            print(f"seed {seed} {run:<10} return {mean_return:8.1f}  ({elapsed:.0f} s)", flush=True)

    print(f"\n{args.env}, {args.steps} steps, seeds {args.seeds}")
    print(f"{'run':<10} {'mean':>8} {'std':>7}  per seed")
    for run, returns in results.items():
        std = statistics.stdev(returns) if len(returns) > 1 else 0.0
        print(f"{run:<10} {statistics.mean(returns):8.1f} {std:7.1f}  {' '.join(f'{r:.1f}' for r in returns)}")


if __name__ == "__main__":
    main()
