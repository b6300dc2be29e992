"""
Data-parallel SAC (torch.distributed, gloo on CPU): aggregate throughput and learning with 1 and 2 processes.

Each configuration runs as its own job (``WORLD_SIZE`` processes started with torchrun's environment variables,
one intra-op thread each). The job trains SAC on Pendulum-v1 for the same *total* number of env steps
(``--total-steps``: each of the N ranks collects total / N steps), then rank 0 evaluates the deterministic policy.
Reported per configuration: aggregate env-steps/s (all ranks), aggregate sample-updates/s (gradient steps x
ranks: every rank's half of the global batch counts), optimizer steps/s (what the replicas do together), and
the final evaluation return. Then the machine's ceiling: as many independent single-process runs side by side (no
process group; what the cores give two busy processes, shared caches and memory included), so that the data-parallel
run can be read against what this machine allows rather than against an ideal 2x.

    python benchmarks/distributed.py --total-steps 2000                 # a quick look (shared machines)
    python benchmarks/distributed.py --total-steps 20000 --world-sizes 1 2 4 --eval-episodes 10
    python benchmarks/distributed.py --collectives      # latency of one gradient exchange

``--collectives`` times, in 2 processes, gloo's ``all_reduce`` of one flat tensor and a whole gradient exchange
(``DistributedState.average_gradients``: flatten, ``all_reduce``, divide, copy back) at the sizes of SAC's
gradients (idle ranks: inside training, where the ranks also compute, an exchange costs more).
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from functools import partial


def worker(total_steps: int, learning_starts: int, eval_episodes: int, out: str, independent: bool = False) -> None:
    import torch as th

    th.set_num_threads(1)
    from stable_baselines3.common.evaluation import evaluate_policy

    from sb3_sac_ext import SAC

    import gymnasium as gym
    from stable_baselines3.common.callbacks import BaseCallback

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    # independent: the machine's ceiling, N single-process runs side by side (no process group, no exchanges)
    model = SAC(
        "MlpPolicy",
        "Pendulum-v1",
        learning_starts=learning_starts,
        seed=rank if independent else 0,
        device="cpu",
        precision="fp32",
        distributed=False if independent else "auto",
    )
    steps = total_steps // world

    class Curve(BaseCallback):
        """Learning curve (runs on rank 0 only): 5 deterministic episodes every sixth of the run, time excluded."""

        def __init__(self) -> None:
            super().__init__()
            self.points: list[tuple[int, float]] = []
            self.seconds = 0.0
            self.env = gym.make("Pendulum-v1")
            self.env.reset(seed=123)

        def _on_step(self) -> bool:
            if self.num_timesteps % max(steps // 6, 1) == 0:
                begin = time.perf_counter()
                mean, _ = evaluate_policy(self.model, self.env, n_eval_episodes=5, deterministic=True)
                self.points.append((self.num_timesteps * world, float(mean)))  # env steps of the whole job
                self.seconds += time.perf_counter() - begin
            return True

    curve = None if independent else Curve()  # the ceiling's processes need no curve
    start = time.perf_counter()
    model.learn(steps, callback=curve)
    # the other ranks wait while rank 0 evaluates: its evaluation time is excluded
    elapsed = time.perf_counter() - start - (curve.seconds if curve is not None else 0.0)
    if independent:
        with open(f"{out}.{rank}", "w") as file:
            json.dump({"env_steps_per_s": steps / elapsed, "optimizer_steps_per_s": model._n_updates / elapsed}, file)
        return
    if rank != 0:
        return
    mean_return, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=eval_episodes, deterministic=True)
    result = {
        "world_size": world,
        "seconds": elapsed,
        "env_steps_per_s": steps * world / elapsed,
        "optimizer_steps_per_s": model._n_updates / elapsed,
        "sample_updates_per_s": model._n_updates * world / elapsed,
        "final_eval_return": float(mean_return),
        "curve": curve.points if curve is not None else [],
    }
    with open(out, "w") as file:
        json.dump(result, file)


def collectives_worker(out: str) -> None:
    import torch as th

    th.set_num_threads(1)
    import torch.distributed as dist

    from sb3_sac_ext.common import distributed

    distributed.init_process_group(th.device("cpu"))
    state = distributed.DistributedState(owned=False)
    rows = []
    for size in (1, 1_000, 70_000, 140_000):
        # Gradients of a network with this many parameters, in two tensors as a layer's weight and bias
        params = [th.nn.Parameter(th.zeros(size - size // 100)), th.nn.Parameter(th.zeros(size // 100))]
        for param in params:
            param.grad = th.randn_like(param)
        optimizers = [th.optim.SGD(params, lr=0.1)]
        bad = th.zeros(1, dtype=th.bool)
        rows.append(
            {
                "size": size,
                "all_reduce": _time_reduction(dist.all_reduce, th.randn(size)),
                "average_gradients": _time_reduction(partial(state.average_gradients, optimizers), bad),
            }
        )
    if state.rank == 0:
        with open(out, "w") as file:
            json.dump(rows, file)
    dist.destroy_process_group()


def _time_reduction(reduce, argument) -> float:
    """:return: Milliseconds per call of ``reduce(argument)`` (300 calls after 20 warm-up calls, ranks aligned first)"""
    import torch.distributed as dist

    for _ in range(20):
        reduce(argument)
    dist.barrier()
    start = time.perf_counter()
    for _ in range(300):
        reduce(argument)
    return (time.perf_counter() - start) / 300 * 1e3


def run_job(world: int, args: argparse.Namespace, independent: bool = False) -> dict:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "result.json")
        procs = []
        for rank in range(world):
            env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world))
            command = [sys.executable, __file__, "--worker", "--total-steps", str(args.total_steps), "--out", out]
            command += ["--collectives"] if args.collectives else []
            command += ["--independent"] if independent else []
            command += ["--learning-starts", str(args.learning_starts), "--eval-episodes", str(args.eval_episodes)]
            procs.append(subprocess.Popen(command, env=env))
        codes = [proc.wait() for proc in procs]
        if any(codes):
            raise RuntimeError(f"world size {world}: exit codes {codes}")
        if independent:
            parts = []
            for rank in range(world):
                with open(f"{out}.{rank}") as file:
                    parts.append(json.load(file))
            return {
                "world_size": f"{world} independent",
                "env_steps_per_s": sum(part["env_steps_per_s"] for part in parts),
                "optimizer_steps_per_s": sum(part["optimizer_steps_per_s"] for part in parts),
            }
        with open(out) as file:
            return json.load(file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--total-steps", type=int, default=2000, help="env steps of the whole job (all ranks)")
    parser.add_argument("--learning-starts", type=int, default=100, help="per rank")
    parser.add_argument("--eval-episodes", type=int, default=3)
    parser.add_argument("--world-sizes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--collectives", action="store_true", help="time one gradient all-reduce instead")
    parser.add_argument(
        "--no-ceiling",
        action="store_true",
        help="skip the machine's ceiling (N independent single-process runs side by side, N = largest world size)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--independent", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker and args.collectives:
        collectives_worker(args.out)
        return
    if args.collectives:
        print("One gradient exchange (float32, gloo, 2 processes, 1 thread each), ms per call")
        print("| elements | all_reduce | average_gradients |")
        print("|---|---|---|")
        for row in run_job(2, args):
            print(f"| {row['size']} | {row['all_reduce']:.3f} | {row['average_gradients']:.3f} |")
        return
    if args.worker:
        worker(args.total_steps, args.learning_starts, args.eval_episodes, args.out, args.independent)
        return
    rows = [run_job(world, args) for world in args.world_sizes]
    largest = max(args.world_sizes)
    ceiling = None if args.no_ceiling or largest < 2 else run_job(largest, args, independent=True)
    print(
        f"SAC Pendulum-v1, {args.total_steps} total env steps, learning_starts={args.learning_starts} per rank, 1 thread/rank"
    )
    header = (
        "| ranks | wall s | env-steps/s (all ranks) | optimizer steps/s | sample-updates/s (x ranks) | final eval return |"
    )
    print(header)
    print("|" + "---|" * 6)
    for row in rows:
        print(
            f"| {row['world_size']} | {row['seconds']:.1f} | {row['env_steps_per_s']:.0f} "
            f"| {row['optimizer_steps_per_s']:.0f} "
            f"| {row['sample_updates_per_s']:.0f} | {row['final_eval_return']:.1f} |"
        )
    single = next((row for row in rows if row["world_size"] == 1), None)
    if ceiling is not None:
        print(
            f"| {ceiling['world_size']} (the machine's ceiling: no process group) | | {ceiling['env_steps_per_s']:.0f} "
            f"| {ceiling['optimizer_steps_per_s']:.0f} (each process its own) | | |"
        )
    if single is not None:
        print("\nenv-steps/s relative to 1 rank" + (" (and to the ceiling)" if ceiling else "") + ":")
        for row in rows:
            ratio = row["env_steps_per_s"] / single["env_steps_per_s"]
            of_ceiling = f", {row['env_steps_per_s'] / ceiling['env_steps_per_s']:.0%} of the ceiling" if ceiling else ""
            print(f"  {row['world_size']} rank(s): {ratio:.2f}x{of_ceiling if row['world_size'] == largest else ''}")
        if ceiling is not None:
            print(f"  {ceiling['world_size']}: {ceiling['env_steps_per_s'] / single['env_steps_per_s']:.2f}x")
    print("\nLearning curve (5 deterministic episodes; x = env steps of the whole job, all ranks):")
    for row in rows:
        points = ", ".join(f"{x}: {y:.0f}" for x, y in row["curve"])
        print(f"  {row['world_size']} rank(s): {points}")


if __name__ == "__main__":
    main()
