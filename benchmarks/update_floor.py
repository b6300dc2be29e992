"""
How fast one SAC update could be on this CPU: the matrix products of one update alone (the "GEMM floor"), timed in
ONE process interleaved with SB3's update and ours (compiled, fp32), in chunks over several rounds. Prints the median
updates/s of each and the median per-round ratios to SB3. ``SB3 / floor`` bounds the speed-up over SB3 that any
implementation doing the same fp32 products could reach on this CPU: nothing but the products left.

The products are those of SAC's default update (MlpPolicy 256x256, 2 critics, batch 256, ``policy_delay=1``), in
the layouts PyTorch runs them (``torch.mm`` into preallocated outputs, one call per critic):

- critic update: the actor on the next observations, the 2 target critics, the 2 critics forward, their backward
  (weight gradients of every layer, input gradients of the hidden ones);
- actor update: the actor forward, the 2 critics forward, their backward to the action (input gradients only), the
  actor's backward (weight gradients, input gradients of the hidden layers).

That is 16 products of 256x256x256 and the thin ones of the input and output layers; elementwise work, Adam, the
target update, sampling and logging are left out.

    taskset -c 1 python benchmarks/update_floor.py --env HalfCheetah-v5 --rounds 5
"""

import argparse
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from throughput import _make as throughput_model


def products(obs_dim: int, action_dim: int, hidden: int = 256, batch: int = 256) -> list[tuple[int, int, int]]:
    """
    :return: ``(m, k, n)`` of each product ``(m, k) @ (k, n)`` of one update, in the order of the update
    """
    actor = [(obs_dim, hidden), (hidden, hidden), (hidden, 2 * action_dim)]  # (in, out) per layer; mean and log-std
    critic = [(obs_dim + action_dim, hidden), (hidden, hidden), (hidden, 1)]
    forward = lambda layers: [(batch, i, o) for i, o in layers]  # noqa: E731
    weight_grads = lambda layers: [(o, batch, i) for i, o in layers]  # noqa: E731  dW = dY^T X
    input_grads = lambda layers: [(batch, o, i) for i, o in layers]  # noqa: E731  dX = dY W
    shapes = forward(actor) + 2 * forward(critic) + 2 * forward(critic)  # next actions, targets, critics
    shapes += 2 * (weight_grads(critic) + input_grads(critic[1:]))  # critics' backward
    shapes += forward(actor) + 2 * forward(critic) + 2 * input_grads(critic)  # actor loss to the action
    shapes += weight_grads(actor) + input_grads(actor[1:])  # actor's backward
    return shapes


class GemmFloor:
    """``train()`` runs the products of ``gradient_steps`` updates and nothing else."""

    def __init__(self, obs_dim: int, action_dim: int):
        generator = th.Generator().manual_seed(0)
        self.operands = [
            (th.randn(m, k, generator=generator), th.randn(k, n, generator=generator), th.empty(m, n))
            for m, k, n in products(obs_dim, action_dim)
        ]
        self.gflop_per_update = sum(2 * m * k * n for m, k, n in products(obs_dim, action_dim)) / 1e9

    def train(self, gradient_steps: int, batch_size: int) -> None:
        for _ in range(gradient_steps):
            for a, b, out in self.operands:
                th.mm(a, b, out=out)


def _make(name: str, env_id: str) -> Any:
    if name == "gemm floor":
        env = gym.make(env_id)
        return GemmFloor(int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape)))
    model = throughput_model(name, env_id, seed=0)  # throughput.py's settings: SB3's, and ours compiled in fp32
    model.learn(600)  # a filled buffer; ours compiles here
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=60, help="updates per chunk")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    names = ["sb3", "ours fp32", "gemm floor"]
    models = {name: _make(name, args.env) for name in names}
    rates: dict[str, list[float]] = {name: [] for name in names}
    for index in range(args.rounds):
        for name in names if index % 2 == 0 else reversed(names):
            start = time.perf_counter()
            for _ in range(args.chunk):
                models[name].train(gradient_steps=1, batch_size=256)
            rates[name].append(args.chunk / (time.perf_counter() - start))
    floor = models["gemm floor"]
    print(f"{args.env}, {args.threads} thread(s), chunks of {args.chunk} updates, {args.rounds} rounds")
    print(f"products per update: {len(products(1, 1))}, {floor.gflop_per_update:.3f} GFLOP")
    for name in names:
        ratio = statistics.median(a / b for a, b in zip(rates[name], rates["sb3"]))
        median = statistics.median(rates[name])
        print(f"{name:>12}: {median:7.1f} updates/s  ({ratio:.2f}x SB3)  {median * floor.gflop_per_update:6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
