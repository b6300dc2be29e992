"""
Training throughput: sb3-sac-ext's SAC against Stable-Baselines3's SAC, side by side in one invocation.

Identical settings for both (MlpPolicy 256x256, batch 256, one env, train_freq 1, gradient_steps 1).
Each measurement runs in its own subprocess (clean thread setting and peak-memory figure), and the runs
alternate ours / SB3 so that drifts of the machine hit both alike. Prints env-steps/s, gradient updates/s,
peak RSS, replay-buffer bytes per transition, and the ratio ours / SB3.

    python benchmarks/throughput.py                       # Pendulum-v1 and HalfCheetah-v5, 1 and 2 threads
    python benchmarks/throughput.py --envs Pendulum-v1 --threads 1 --steps 1000 --repeats 3
"""

import argparse
import json
import statistics
import subprocess
import sys
import time


def worker(algo: str, env_id: str, threads: int, precision: str, steps: int, warmup: int) -> dict:
    import resource

    import torch as th

    th.set_num_threads(threads)
    if algo == "sb3":
        from stable_baselines3 import SAC

        model = SAC("MlpPolicy", env_id, learning_starts=100, seed=0)
    elif algo == "ours-nochecks":
        model = _unchecked_sac()("MlpPolicy", env_id, learning_starts=100, seed=0, precision=precision)
    else:
        from sb3_sac_ext import SAC

        model = SAC("MlpPolicy", env_id, learning_starts=100, seed=0, precision=precision)  # type: ignore[assignment]
    model.learn(warmup)
    updates_before = model._n_updates
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    elapsed = time.perf_counter() - start
    buffer = model.replay_buffer
    buffer_bytes = sum(
        getattr(buffer, name).nbytes
        for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
        if getattr(buffer, name, None) is not None
    )
    return {
        "env_steps_per_s": steps / elapsed,
        "updates_per_s": (model._n_updates - updates_before) / elapsed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "buffer_bytes_per_transition": buffer_bytes / (buffer.buffer_size * buffer.n_envs),
    }


def _unchecked_sac() -> type:
    """Our SAC without the non-finite checks (observations, rewards, losses): to measure what they cost."""
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

    from sb3_sac_ext import SAC

    class UncheckedSAC(SAC):
        check_observations = False

        def _store_transition(self, *args, **kwargs) -> None:
            OffPolicyAlgorithm._store_transition(self, *args, **kwargs)

        def _optimizer_steps(self, steps) -> None:
            for name, loss in steps:
                optimizer = self.optimizers[name]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        def _check_nonfinite_losses(self) -> None:
            pass

    return UncheckedSAC


def run_one(algo: str, env_id: str, threads: int, precision: str, steps: int, warmup: int) -> dict:
    command = [sys.executable, __file__, "--worker", algo, env_id, str(threads), precision, str(steps), str(warmup)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["Pendulum-v1", "HalfCheetah-v5"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=None,
        help="ours' precisions to run (default: fp32, plus bf16 where the hardware runs it natively)",
    )
    parser.add_argument("--steps", type=int, default=1500, help="measured env steps per run")
    parser.add_argument("--warmup", type=int, default=300, help="env steps before timing (includes learning_starts=100)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per configuration")
    parser.add_argument(
        "--checks-overhead",
        action="store_true",
        help="instead: ours with and without the non-finite checks (observations, rewards, losses), alternating",
    )
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        algo, env_id, threads, precision, steps, warmup = args.worker
        print(json.dumps(worker(algo, env_id, int(threads), precision, int(steps), int(warmup))))
        return

    if args.precisions is None:
        import torch as th

        from sb3_sac_ext.common.precision import bf16_is_fast

        args.precisions = ["fp32", "bf16"] if bf16_is_fast(th.device("cpu")) else ["fp32"]
        if "bf16" not in args.precisions:
            print("note: this CPU has no native bf16 (no AMX): bf16 is emulated and skipped; pass --precisions fp32 bf16")

    if args.checks_overhead:
        measure_checks_overhead(args)
        return

    rows = []
    for env_id in args.envs:
        for threads in args.threads:
            results: dict[str, list[dict]] = {"sb3": [], **{f"ours-{p}": [] for p in args.precisions}}
            for _ in range(args.repeats):
                results["sb3"].append(run_one("sb3", env_id, threads, "fp32", args.steps, args.warmup))
                for precision in args.precisions:
                    results[f"ours-{precision}"].append(run_one("ours", env_id, threads, precision, args.steps, args.warmup))
            sb3_updates = statistics.median(r["updates_per_s"] for r in results["sb3"])
            for name, runs in results.items():
                updates = statistics.median(r["updates_per_s"] for r in runs)
                rows.append(
                    (
                        env_id,
                        threads,
                        name,
                        statistics.median(r["env_steps_per_s"] for r in runs),
                        updates,
                        updates / sb3_updates,
                        max(r["peak_rss_mb"] for r in runs),
                        runs[0]["buffer_bytes_per_transition"],
                    )
                )
            print(f"done: {env_id}, {threads} thread(s)", file=sys.stderr, flush=True)

    header = f"{'env':<16} {'thr':>3} {'run':<10} {'env-steps/s':>11} {'updates/s':>9} {'ratio':>6} "
    header += f"{'peak RSS MB':>11} {'buf B/trans':>11}"
    print(header)
    print("-" * len(header))
    for env_id, threads, name, env_steps, updates, ratio, rss, buffer_bytes in rows:
        print(
            f"{env_id:<16} {threads:>3} {name:<10} {env_steps:>11.1f} {updates:>9.1f} {ratio:>6.2f} "
            f"{rss:>11.0f} {buffer_bytes:>11.0f}"
        )
    print(f"(median of {args.repeats} alternating runs of {args.steps} env steps; ratio = ours / SB3 updates/s)")


def measure_checks_overhead(args: argparse.Namespace) -> None:
    """Updates/s of ours with and without the non-finite checks, alternating runs; prints the overhead."""
    print(f"{'env':<16} {'thr':>3} {'checked':>9} {'unchecked':>9} {'overhead':>8}")
    for env_id in args.envs:
        for threads in args.threads:
            checked, unchecked = [], []
            for _ in range(args.repeats):
                checked.append(run_one("ours", env_id, threads, "fp32", args.steps, args.warmup)["updates_per_s"])
                unchecked.append(run_one("ours-nochecks", env_id, threads, "fp32", args.steps, args.warmup)["updates_per_s"])
            with_checks, without = statistics.median(checked), statistics.median(unchecked)
            print(f"{env_id:<16} {threads:>3} {with_checks:>9.1f} {without:>9.1f} {100 * (without / with_checks - 1):>7.1f}%")
    print(f"(updates/s, median of {args.repeats} alternating runs of {args.steps} env steps)")


if __name__ == "__main__":
    main()
