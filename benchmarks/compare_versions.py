"""
Update speed of this checkout against another checkout of sb3-sac-ext (e.g. before a refactor), with SB3 as the
common yardstick: the three run in alternation, round after round, each measurement in a fresh worker process of
``benchmarks/throughput.py`` (same settings: MlpPolicy 256x256, batch 256, one env, 1 gradient step per env step).
Prints gradient updates/s per round and the median of the per-round ratios (the machine's speed drifts between
rounds; a ratio inside one round does not).

    git worktree add /tmp/before <commit>
    python benchmarks/compare_versions.py --baseline /tmp/before --env Pendulum-v1 --rounds 5
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure(checkout: Path, algo: str, env_id: str, threads: int, steps: int, warmup: int) -> float:
    """Updates/s of one run of ``algo`` ("ours" or "sb3") with ``checkout``'s package first on the path."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    command = [
        sys.executable,
        str(HERE / "throughput.py"),
        "--worker",
        algo,
        env_id,
        str(threads),
        "fp32",
        str(steps),
        str(warmup),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env, cwd=checkout).stdout
    return json.loads(output.strip().splitlines()[-1])["updates_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="root of the other checkout")
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=1000, help="measured env steps per run")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    current = HERE.parent
    ratios_current, ratios_baseline, ratios_versions = [], [], []
    print(f"{'round':>5} {'sb3':>8} {'baseline':>9} {'current':>8}  (updates/s, {args.env}, {args.threads} thread(s))")
    for round_index in range(args.rounds):
        sb3 = measure(current, "sb3", args.env, args.threads, args.steps, args.warmup)
        baseline = measure(args.baseline, "ours", args.env, args.threads, args.steps, args.warmup)
        ours = measure(current, "ours", args.env, args.threads, args.steps, args.warmup)
        ratios_current.append(ours / sb3)
        ratios_baseline.append(baseline / sb3)
        ratios_versions.append(ours / baseline)
        print(f"{round_index:>5} {sb3:>8.1f} {baseline:>9.1f} {ours:>8.1f}", flush=True)
    print(
        f"median per-round ratios: current/SB3 {statistics.median(ratios_current):.2f}, "
        f"baseline/SB3 {statistics.median(ratios_baseline):.2f}, current/baseline {statistics.median(ratios_versions):.3f}"
    )


if __name__ == "__main__":
    main()
