"""
Network variants against plain SAC with the same env-step budget: DroQ, SimBa, SimbaV2, CrossQ and parameter resets,
each with the settings of its preset (``hyperparams/sac_<variant>.yml``) where the env has one, else the variant's
options on top of plain SAC's entry. Reports the evaluation return every ``--eval-every`` env steps (half of
``--eval-episodes`` deterministic episodes), the final return (``--eval-episodes``, 10) and the wall-clock time of
training and evaluation. One run at a time. ``--critic-width``, ``--gradient-steps`` and ``--learning-starts`` scale
the presets (written for a GPU: 512-2048-wide critics, up to 20 updates per env step) to what a small CPU can run.

    python benchmarks/variants.py
    python benchmarks/variants.py --env Hopper-v5 --steps 100000 --seeds 0 1 --variants sac droq simba
    python benchmarks/variants.py --log-dir logs/variants
    python benchmarks/variants.py --env Hopper-v5 --steps 50000 --seeds 0 --variants sac crossq simba droq \
        --critic-width 256 --gradient-steps 1 --learning-starts 5000 --eval-every 10000
    sb3-sac-ext plot -f logs/variants --env Pendulum-v1 -o docs/_static/plots/variants_pendulum.png
"""

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from run_logs import Evaluations, make_monitored_env, run_folder, unrecorded
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_sac_ext import SAC
from sb3_sac_ext.config import get_hyperparams, prepare_model_kwargs

HYPERPARAMS = Path(__file__).resolve().parent.parent / "sb3_sac_ext" / "hyperparams"
# Variant -> (preset file stem, options added to plain SAC's entry when the preset has no entry for the env)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "sac": ("sac", {}),
    "droq": (
        "sac_droq",
        {"gradient_steps": 20, "policy_delay": 20, "policy_kwargs": {"layer_norm": True, "dropout_rate": 0.01}},
    ),
    "simba": ("sac_simba", {"policy": "SimbaPolicy"}),
    "simbav2": ("sac_simbav2", {"policy": "SimbaV2Policy"}),
    "simbav2_linear": ("sac_simbav2", {"policy": "SimbaV2Policy"}),
    "crossq": ("sac_crossq", {"policy_delay": 3, "policy_kwargs": {"batch_norm": True}}),
    "crossq_actor": ("sac_crossq", {"policy_delay": 3, "policy_kwargs": {"batch_norm": True}}),
    "resets": ("sac", {"param_resets": "halves"}),
}
# Variant -> policy options set on top of the preset: CrossQ with the critics renormalised only (the configuration
# measured on the variants page) or the actor too (the preset's, as SBX's and sb3-contrib's CrossQ), SimbaV2 with a
# linear Q-head instead of the paper's categorical critic (the default)
POLICY_OVERRIDES: dict[str, dict[str, Any]] = {
    "crossq": {"batch_norm_actor": False},
    "crossq_actor": {"batch_norm_actor": True},
    "simbav2_linear": {"num_bins": None},
}


def settings(
    variant: str,
    env_id: str,
    steps: int,
    critic_width: int | None = None,
    gradient_steps: int | None = None,
    learning_starts: int | None = None,
) -> dict[str, Any]:
    """
    The constructor arguments of ``variant`` on ``env_id`` (the budget is the benchmark's, not the preset's).

    :param critic_width: Every critic layer (SimBa: residual block) this wide, their number kept; default: the preset's
    :param gradient_steps: Updates per env step (DroQ's ``policy_delay`` the same, as in its preset); default: the
        preset's
    :param learning_starts: The same for every variant; default: the preset's (at most a tenth of ``steps``)
    """
    stem, options = VARIANTS[variant]
    try:
        kwargs, _ = prepare_model_kwargs(get_hyperparams(stem, env_id, HYPERPARAMS / f"{stem}.yml"))
    except Exception:
        kwargs, _ = prepare_model_kwargs(get_hyperparams("sac", env_id, HYPERPARAMS / "sac.yml"))
        kwargs = {**kwargs, **{key: value for key, value in options.items() if key != "policy_kwargs"}}
        kwargs["policy_kwargs"] = {**kwargs.get("policy_kwargs", {}), **options.get("policy_kwargs", {})}
    kwargs["policy_kwargs"] = {**kwargs.get("policy_kwargs", {}), **POLICY_OVERRIDES.get(variant, {})}
    if critic_width is not None:
        net_arch = kwargs.get("policy_kwargs", {}).get("net_arch", [256, 256])
        layers = net_arch if isinstance(net_arch, list) else net_arch["qf"]
        actor = [256, 256] if isinstance(net_arch, list) else net_arch["pi"]
        kwargs["policy_kwargs"] = {
            **kwargs.get("policy_kwargs", {}),
            "net_arch": {"pi": actor, "qf": [critic_width] * len(layers)},
        }
    if gradient_steps is not None:
        kwargs["gradient_steps"] = gradient_steps
        if variant == "droq":
            kwargs["policy_delay"] = gradient_steps
    if variant == "resets":
        kwargs["param_resets"] = [steps // 2]  # one reset halfway (Nikishin et al. reset periodically)
    kwargs["learning_starts"] = min(int(kwargs.get("learning_starts", 100)), max(steps // 10, 1))
    if learning_starts is not None:
        kwargs["learning_starts"] = learning_starts
    return kwargs


def run(
    variant: str,
    env_id: str,
    steps: int,
    seed: int,
    eval_every: int,
    episodes: int,
    log_dir: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """
    Train and evaluate one variant (the evaluations run on the training env, as they always did here). ``log_dir``:
    RL Zoo's run folder ``<log_dir>/<variant>/<env_id>_<seed + 1>`` gets the training episodes' monitor file (the
    evaluation episodes left out) and ``evaluations.npz`` with the curve and the final evaluation, one mean return per
    evaluation (``results`` and ``ep_lengths`` of shape (evaluations, 1): the final one has twice the episodes).
    """
    log_path = run_folder(log_dir, variant, env_id, seed)
    env = make_monitored_env(env_id, log_path)  # what SB3 makes from the env id, with a monitor file
    model = SAC(env=env, seed=seed, verbose=0, **settings(variant, env_id, steps, **overrides))
    evaluations = Evaluations(log_path)

    def evaluate(n_episodes: int) -> float:
        with unrecorded(env):
            returns, lengths = evaluate_policy(
                model, model.get_env(), n_eval_episodes=n_episodes, deterministic=True, return_episode_rewards=True
            )
        evaluations.add(model.num_timesteps, [float(np.mean(returns))], [round(float(np.mean(lengths)))])
        return float(np.mean(returns))

    curve = []
    start = time.perf_counter()
    done = 0
    while done < steps:
        chunk = min(eval_every, steps - done)
        model.learn(chunk, reset_num_timesteps=done == 0)
        done += chunk
        if done < steps:
            curve.append((done, evaluate(max(episodes // 2, 1))))
    seconds = time.perf_counter() - start
    final = evaluate(episodes)
    return {"variant": variant, "seed": seed, "final": float(final), "curve": curve, "seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=10, help="final evaluation (half of it for the curve)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-dir", default=None, help="write RL Zoo's run folders (sb3-sac-ext plot reads them) here")
    parser.add_argument("--critic-width", type=int, help="every critic layer/block this wide (default: the presets')")
    parser.add_argument("--gradient-steps", type=int, help="updates per env step (default: the presets')")
    parser.add_argument("--learning-starts", type=int, help="the same for every variant (default: the presets')")
    args = parser.parse_args(argv)
    overrides = {
        "critic_width": args.critic_width,
        "gradient_steps": args.gradient_steps,
        "learning_starts": args.learning_starts,
    }
    th.set_num_threads(args.threads)
    results: dict[str, list[dict[str, Any]]] = {}
    for seed in args.seeds:
        for variant in args.variants:  # one run at a time, alternating within each seed
            result = run(variant, args.env, args.steps, seed, args.eval_every, args.eval_episodes, args.log_dir, **overrides)
            results.setdefault(variant, []).append(result)
            curve = " ".join(f"{step}:{value:.1f}" for step, value in result["curve"])
            print(f"{variant:8s} seed {seed}: final {result['final']:.1f} in {result['seconds']:.1f} s  [{curve}]", flush=True)
    print(f"\n{args.env}, {args.steps} env steps, seeds {args.seeds}")
    for variant, runs in results.items():
        finals = [r["final"] for r in runs]
        spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
        seconds = np.mean([r["seconds"] for r in runs])
        print(f"{variant:8s} final {statistics.mean(finals):8.1f} +- {spread:6.1f}   {seconds:7.1f} s per run")


if __name__ == "__main__":
    main()
