"""
Paired comparison of two variants saved by ``benchmarks/recurrent.py --save-dir DIR``: every model is evaluated on
the same deterministic episodes (an env seeded ``--eval-seed``, so episode k starts from the same state for every
model), and the per-episode differences give the comparison's standard error.

    python benchmarks/recurrent_paired.py --save-dir DIR --env PendulumNoVel-v1 --variants lstm framestack
"""

import argparse
import os

import numpy as np
import torch as th
from recurrent import EVAL_SEED, SETTINGS, make_env, saved_name
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_sac_ext.common.persistence import load_vec_normalize


def episode_returns(save_dir: str, env_id: str, variant: str, seed: int, n_episodes: int, eval_seed: int) -> np.ndarray:
    """Returns of ``n_episodes`` deterministic episodes of one saved model."""
    name = saved_name(save_dir, env_id, variant, seed)
    if not os.path.isfile(name + ".zip"):
        raise SystemExit(f"{name}.zip does not exist: run benchmarks/recurrent.py --save-dir {save_dir} for it first")
    model = SETTINGS[env_id]["algo"].load(name + ".zip", device="cpu")
    env = make_env(env_id, variant, eval_seed)
    if os.path.isfile(name + "_vec_normalize.zip"):
        env = load_vec_normalize(name + "_vec_normalize.zip", env)  # pickle-free, frozen
        env.training, env.norm_reward = False, False
    returns, _ = evaluate_policy(model, env, n_eval_episodes=n_episodes, deterministic=True, return_episode_rewards=True)
    return np.asarray(returns, dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--save-dir", required=True)
    parser.add_argument("--env", default="PendulumNoVel-v1", choices=list(SETTINGS))
    parser.add_argument("--variants", nargs=2, default=["lstm", "framestack"], choices=["lstm", "mlp", "framestack"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--eval-seed", type=int, default=EVAL_SEED, help="as recurrent.py's final evaluation")
    args = parser.parse_args()
    th.set_num_threads(1)
    first, second = (
        np.stack([episode_returns(args.save_dir, args.env, v, s, args.eval_episodes, args.eval_seed) for s in args.seeds])
        for v in args.variants
    )
    for seed, a, b in zip(args.seeds, first, second):
        a_name, b_name = args.variants
        print(f"seed {seed}: {a_name} {a.mean():.2f}, {b_name} {b.mean():.2f}, difference {a.mean() - b.mean():+.2f}")
    diff = first.mean(axis=0) - second.mean(axis=0)  # per episode, the seeds' mean returns
    sem = diff.std(ddof=1) / np.sqrt(len(diff))
    print(f"{args.variants[0]} mean {first.mean():.2f}, {args.variants[1]} mean {second.mean():.2f}")
    print(f"paired difference ({args.variants[0]} - {args.variants[1]}): {diff.mean():+.2f} +/- {sem:.2f} (standard error)")


if __name__ == "__main__":
    main()
