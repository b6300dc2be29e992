"""
The recurrent update, eager against compiled, in ONE process: two models of the recurrent preset (the same seed and
settings, ``compile=False`` and ``compile=True``) are trained a little (the compiled one compiles then), then
``train(gradient_steps=N)`` runs in interleaved chunks over several rounds. Prints the median updates/s of each and
the median of the per-round ratios (robust to the machine's drifts between rounds).

    taskset -c 0 python benchmarks/recurrent_update_ab.py --rnn-type lstm --rounds 8
    taskset -c 0 python benchmarks/recurrent_update_ab.py --algo discrete --rnn-type gru
"""

import argparse
import statistics
import time
from typing import Any

SETTINGS: dict[str, dict[str, Any]] = {
    # hyperparams/sac_lstm.yml (PendulumNoVel-v1)
    "sac": dict(env="PendulumNoVel-v1", learning_rate=1e-3, buffer_size=50_000, batch_size=256, gamma=0.98),
    # the same network sizes on CartPoleNoVel-v1
    "discrete": dict(env="CartPoleNoVel-v1", buffer_size=50_000, batch_size=256),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=list(SETTINGS), default="sac")
    parser.add_argument("--rnn-type", choices=["lstm", "gru"], default="lstm")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=30, help="gradient steps per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import rl_zoo3.import_envs  # noqa: F401  (registers the NoVel envs)
    import torch as th

    from sb3_sac_ext import SAC, DiscreteSAC

    th.set_num_threads(args.threads)
    settings = dict(SETTINGS[args.algo])
    env = settings.pop("env")
    policy_kwargs = dict(lstm_hidden_size=64, net_arch=[64, 64], sequence_length=16, burn_in=8, rnn_type=args.rnn_type)
    cls = SAC if args.algo == "sac" else DiscreteSAC
    models = {}
    for name, compile in (("eager", False), ("compiled", True)):
        model = cls(
            "MlpLstmPolicy", env, learning_starts=1_000, seed=0, compile=compile, policy_kwargs=policy_kwargs, **settings
        )
        model.learn(1_100)  # a filled buffer, a logger; the compiled model compiles at its first update
        models[name] = model
    update = models["compiled"]._compiled_update
    assert update is not None, "the compiled model trains eagerly"
    print(f"compiled in {update.compile_seconds:.0f} s", flush=True)

    def updates_per_s(model: Any, steps: int) -> float:
        start = time.perf_counter()
        model.train(gradient_steps=steps, batch_size=model.batch_size)
        return steps / (time.perf_counter() - start)

    for model in models.values():
        updates_per_s(model, args.chunk)
    rounds: dict[str, list[float]] = {name: [] for name in models}
    for round_index in range(args.rounds):
        # The order alternates from round to round: no model always runs right after the other
        order = list(models) if round_index % 2 == 0 else list(reversed(models))
        for name in order:
            rounds[name].append(updates_per_s(models[name], args.chunk))
        print(f"round {round_index}: " + ", ".join(f"{n} {v[-1]:.1f}/s" for n, v in rounds.items()), flush=True)
    medians = {name: round(statistics.median(values), 1) for name, values in rounds.items()}
    ratio = statistics.median(c / e for c, e in zip(rounds["compiled"], rounds["eager"]))
    print(f"{args.algo} {args.rnn_type} updates/s (median of {args.rounds} rounds of {args.chunk}): {medians}")
    print(f"median per-round ratio compiled/eager: {ratio:.2f}")


if __name__ == "__main__":
    main()
