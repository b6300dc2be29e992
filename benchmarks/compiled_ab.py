"""
The compiled update against the eager one, in ONE process, for the settings that the throughput benchmark does not
cover: recurrent policies and the network variants. Two models of the same preset (the same seed and settings,
``compile=False`` and ``compile=True``) are trained a little (the compiled one compiles then: its compile time is
printed), then ``train(gradient_steps=N)`` runs in interleaved chunks over several rounds. Prints the median updates/s
of each and the median of the per-round ratios (robust to the machine's drifts between rounds).

    taskset -c 0 python benchmarks/compiled_ab.py --setting lstm --rounds 8
    taskset -c 0 python benchmarks/compiled_ab.py --setting discrete-gru
    taskset -c 0 python benchmarks/compiled_ab.py --setting simba --env Hopper-v5 --critic-width 256
    taskset -c 0 python benchmarks/compiled_ab.py --setting crossq
"""

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# hyperparams/sac_lstm.yml (PendulumNoVel-v1), and the same network sizes on CartPoleNoVel-v1
_RECURRENT = dict(lstm_hidden_size=64, net_arch=[64, 64], sequence_length=16, burn_in=8)
RECURRENT: dict[str, tuple[str, str, dict[str, Any]]] = {
    "lstm": ("sac", "PendulumNoVel-v1", dict(learning_rate=1e-3, buffer_size=50_000, batch_size=256, gamma=0.98)),
    "gru": ("sac", "PendulumNoVel-v1", dict(learning_rate=1e-3, buffer_size=50_000, batch_size=256, gamma=0.98)),
    "discrete-lstm": ("discrete", "CartPoleNoVel-v1", dict(buffer_size=50_000, batch_size=256)),
    "discrete-gru": ("discrete", "CartPoleNoVel-v1", dict(buffer_size=50_000, batch_size=256)),
}
# The network variants of benchmarks/variants.py (their presets, on --env)
VARIANTS = ("sac", "simba", "simbav2", "crossq", "droq")


def build(setting: str, env_id: str, critic_width: int | None, compile: bool) -> Any:
    """A model of ``setting`` with ``compile``, its buffer filled past ``learning_starts``."""
    from sb3_sac_ext import SAC, DiscreteSAC

    if setting in RECURRENT:
        import rl_zoo3.import_envs  # noqa: F401  (registers the NoVel envs)

        algo, env_id, settings = RECURRENT[setting]
        policy_kwargs = dict(_RECURRENT, rnn_type=setting.rsplit("-", 1)[-1])
        cls = SAC if algo == "sac" else DiscreteSAC
        kwargs = dict(policy="MlpLstmPolicy", policy_kwargs=policy_kwargs, **settings)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from variants import settings as variant_settings

        cls = SAC
        kwargs = dict(variant_settings(setting, env_id, 1_000_000, critic_width=critic_width, gradient_steps=1))
        kwargs["policy_delay"] = 1  # every step updates both networks: the per-update cost of the whole program
    kwargs.update(learning_starts=1_000, seed=0, compile=compile)
    model = cls(env=env_id, **kwargs)
    model.learn(1_100)  # a filled buffer, a logger; the compiled model compiles at its first update
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=[*RECURRENT, *VARIANTS], default="lstm")
    parser.add_argument("--env", default="Pendulum-v1", help="the variants' env (recurrent settings: their own)")
    parser.add_argument("--critic-width", type=int, help="the variants' critic width (default: the preset's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=30, help="gradient steps per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import torch as th

    th.set_num_threads(args.threads)
    models = {
        name: build(args.setting, args.env, args.critic_width, compile)
        for name, compile in (("eager", False), ("compiled", True))
    }
    update = models["compiled"]._compiled_update
    if update is None:
        raise SystemExit("the compiled model trains eagerly (see the warning above)")
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
    print(f"{args.setting} updates/s (median of {args.rounds} rounds of {args.chunk}): {medians}")
    print(f"median per-round ratio compiled/eager: {ratio:.2f}")


if __name__ == "__main__":
    main()
