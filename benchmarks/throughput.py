"""
Training speed of sb3-sac-ext's SAC against Stable-Baselines3's SAC and, when installed (``pip install
"sb3-sac-ext[bench]"``), SBX (the JAX port), all in ONE process, interleaved in chunks over several rounds.

Identical settings for all (MlpPolicy 256x256, batch 256, one env, ``train_freq=1``, ``gradient_steps=1``). Each
round runs a chunk of every implementation in turn (the order alternates between rounds), so that the machine's
drifts (its speed swings by 2x from minute to minute) hit all alike; the figures are medians over rounds, and the
ratios are medians of the per-round ratios. A process per thread count (JAX fixes its threads at import).

The process is pinned to ``THREADS`` cores (``--cores``), so that every implementation gets the same cores: unpinned,
SBX with one XLA thread keeps a second core busy too. Printed per env and thread count:

- gradient updates/s: ``model.train(gradient_steps=1, batch_size=256)`` called ``--chunk`` times per round, as
  ``learn()`` calls it (replay sampling and logging included);
- end-to-end env-steps/s: ``model.learn(--e2e-chunk)`` per round (env, action selection, storage, update);
- the first compiled call's time (compilation), for ours with ``compile=True``;
- with ``--memory``: the peak RSS of a separate process per implementation that trains 2,000 steps (RSS cannot be
  split between models of one process).

    python benchmarks/throughput.py                                  # Pendulum-v1, HalfCheetah-v5; 1 and 2 threads
    python benchmarks/throughput.py --envs Pendulum-v1 --threads 1 --rounds 5
    python benchmarks/throughput.py --envs CartPole-v1 --threads 1 --names "discrete eager" "discrete fp32"
    python benchmarks/throughput.py --threads 1 --cores 0 --out speed.json    # then: sb3-sac-ext plot --speed speed.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

# Our variants: label -> constructor arguments
OURS = {
    "ours eager fp32": {"compile": False, "precision": "fp32"},
    "ours fp32": {"compile": True, "precision": "fp32"},
    "ours bf16": {"compile": True, "precision": "bf16"},
}
# DiscreteSAC, eager and compiled (its speed-up from the fast path): --names "discrete eager" "discrete fp32"
DISCRETE = {"discrete eager": {"compile": False, "precision": "fp32"}, "discrete fp32": {"compile": True, "precision": "fp32"}}


def _make(name: str, env_id: str, seed: int) -> Any:
    common = {"learning_starts": 100, "seed": seed, "batch_size": 256}
    if name == "sb3":
        from stable_baselines3 import SAC

        return SAC("MlpPolicy", env_id, **common)
    if name == "sbx":
        import sbx

        return sbx.SAC("MlpPolicy", env_id, **common)
    from sb3_sac_ext import SAC, DiscreteSAC

    if name in DISCRETE:
        return DiscreteSAC("MlpPolicy", env_id, **common, **DISCRETE[name])
    return SAC("MlpPolicy", env_id, **common, **OURS[name])  # type: ignore[arg-type]


def run_process(
    env_id: str, threads: int, names: list[str], chunk: int, e2e_chunk: int, rounds: int, args_cores: list[int] | None = None
) -> dict:
    """Everything for one env and thread count, in this process."""
    import torch as th

    # "threads" cores, pinned: JAX's runtime threads then share them too (unpinned, SBX with one XLA thread keeps a
    # second core busy, 1.7-1.9 cores in all on our 2-core machine)
    cores = sorted(os.sched_getaffinity(0))[:threads] if args_cores is None else args_cores
    os.sched_setaffinity(0, set(cores))
    th.set_num_threads(threads)
    models, compile_s = {}, {}
    for name in names:
        model = _make(name, env_id, seed=0)
        model.learn(600)  # a filled buffer; the compiled update compiles during this call
        compiled = getattr(model, "_compiled_update", None)
        if compiled is not None:
            compile_s[name] = compiled.compile_seconds
        models[name] = model

    def timed(fn: Any, n: int) -> float:
        start = time.perf_counter()
        fn()
        return n / (time.perf_counter() - start)

    updates: dict[str, list[float]] = {name: [] for name in names}
    e2e: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        order = names if index % 2 == 0 else list(reversed(names))
        for name in order:
            model = models[name]
            updates[name].append(
                timed(lambda m=model: [m.train(gradient_steps=1, batch_size=256) for _ in range(chunk)], chunk)
            )
        for name in order:
            model = models[name]
            e2e[name].append(timed(lambda m=model: m.learn(e2e_chunk, reset_num_timesteps=False), e2e_chunk))

    def ratios(values: dict[str, list[float]]) -> dict[str, float]:
        # Against the first implementation (SB3 by default)
        return {name: statistics.median(a / b for a, b in zip(values[name], values[names[0]])) for name in names}

    return {
        "env": env_id,
        "threads": threads,
        "updates_per_s": {name: statistics.median(v) for name, v in updates.items()},
        "update_ratio": ratios(updates),
        "env_steps_per_s": {name: statistics.median(v) for name, v in e2e.items()},
        "e2e_ratio": ratios(e2e),
        "compile_s": compile_s,
        "cores": cores,
    }


def peak_rss(name: str, env_id: str) -> float:
    """Peak RSS (MiB) of a fresh process that trains ``name`` for 2,000 steps."""
    folder = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import resource, sys; sys.path.insert(0, {folder!r}); from throughput import _make; import torch; "
        f"torch.set_num_threads(1); _make({name!r}, {env_id!r}, 0).learn(2000); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _available(names: list[str]) -> list[str]:
    from sb3_sac_ext.common.precision import bf16_is_fast
    import torch as th

    kept = []
    for name in names:
        if name == "sbx":
            try:
                import sbx  # noqa: F401
            except ImportError:
                print("SBX is not installed (pip install 'sb3-sac-ext[bench]'): its column is left out", file=sys.stderr)
                continue
        if name == "ours bf16" and not bf16_is_fast(th.device("cpu")):
            print("This CPU has no native bf16 (AMX or AVX512_BF16): 'ours bf16' is left out", file=sys.stderr)
            continue
        kept.append(name)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["Pendulum-v1", "HalfCheetah-v5"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    known = ", ".join(["sb3", "sbx", *map(repr, [*OURS, *DISCRETE])])
    parser.add_argument(
        "--names", nargs="+", default=["sb3", *OURS, "sbx"], help=f"the ratios' base first, then any of {known}"
    )
    parser.add_argument("--chunk", type=int, default=60, help="gradient updates per chunk")
    parser.add_argument("--e2e-chunk", type=int, default=60, help="env steps per end-to-end chunk")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--memory", action="store_true", help="also measure each one's peak RSS in its own process")
    parser.add_argument("--cores", nargs="+", type=int, help="CPU cores to pin to (default: the first THREADS ones)")
    parser.add_argument(
        "--out", "--json", dest="out", help="write the results to this JSON file (after each env and thread count)"
    )
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._child:
        env_id, threads = args._child.split(",")
        cores = args.cores[: int(threads)] if args.cores else None
        result = run_process(env_id, int(threads), args.names, args.chunk, args.e2e_chunk, args.rounds, cores)
        print("RESULT " + json.dumps(result))
        return

    names = _available(args.names)
    import platform

    print(f"CPU: {_cpu_name()} | {platform.python_version()} | chunks of {args.chunk} updates, {args.rounds} rounds\n")
    results: list[dict] = []
    for env_id in args.envs:
        for threads in args.threads:
            env = dict(os.environ)
            # JAX/XLA: as many threads as torch gets
            env["XLA_FLAGS"] = (
                f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} intra_op_parallelism_threads={threads}"
            )
            command = [sys.executable, __file__, "--_child", f"{env_id},{threads}", "--names", *names]
            command += ["--chunk", str(args.chunk), "--e2e-chunk", str(args.e2e_chunk), "--rounds", str(args.rounds)]
            if args.cores:
                command += ["--cores", *map(str, args.cores)]
            out = subprocess.run(command, capture_output=True, text=True, env=env)
            lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
            if out.returncode != 0 or not lines:
                sys.exit(f"{env_id}, {threads} thread(s) failed:\n{out.stderr[-3000:]}")
            result = json.loads(lines[-1][len("RESULT ") :])
            if args.memory:
                result["peak_rss_mb"] = {name: peak_rss(name, env_id) for name in names}
            results.append(result)
            _print(result, names)
            if args.out:  # rewritten after each run: an interrupted benchmark keeps what it measured
                _write(args.out, results, names, args)


def _print(result: dict, names: list[str]) -> None:
    print(f"## {result['env']}, {result['threads']} thread(s), pinned to core(s) {result['cores']}")
    print("| | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    base = names[0]
    print(
        f"| updates/s (x {base}) | "
        + " | ".join(f"{result['updates_per_s'][n]:.0f} ({result['update_ratio'][n]:.2f})" for n in names)
        + " |"
    )
    print(
        f"| env-steps/s (x {base}) | "
        + " | ".join(f"{result['env_steps_per_s'][n]:.0f} ({result['e2e_ratio'][n]:.2f})" for n in names)
        + " |"
    )
    print(
        "| compile (s) | "
        + " | ".join(f"{result['compile_s'][n]:.0f}" if result["compile_s"].get(n) else "-" for n in names)
        + " |"
    )
    if "peak_rss_mb" in result:
        print("| peak RSS (MiB) | " + " | ".join(f"{result['peak_rss_mb'][n]:.0f}" for n in names) + " |")
    print(flush=True)


def _write(path: str, results: list[dict], names: list[str], args: argparse.Namespace) -> None:
    """
    The results as one JSON object, which ``sb3-sac-ext plot --speed FILE`` draws::

        {"cpu": model name, "cpu_isa": [...], "torch": version, "python": version, "base": "sb3",
         "chunk": .., "e2e_chunk": .., "rounds": .., "results": [{"env": .., "threads": .., "cores": [..],
         "implementations": {name: {"updates_per_s", "update_ratio", "env_steps_per_s", "e2e_ratio",
                                    "compile_s" (null: eager), "peak_rss_mb" (with --memory)}}}]}

    Rates are medians over rounds, ratios medians of the per-round ratios against ``base`` (the first name).
    """
    import platform

    import torch as th

    rows = []
    for result in results:
        implementations = {}
        for name in names:
            row = {
                "updates_per_s": result["updates_per_s"][name],
                "update_ratio": result["update_ratio"][name],
                "env_steps_per_s": result["env_steps_per_s"][name],
                "e2e_ratio": result["e2e_ratio"][name],
                "compile_s": result["compile_s"].get(name),
            }
            if "peak_rss_mb" in result:
                row["peak_rss_mb"] = result["peak_rss_mb"][name]
            implementations[name] = row
        rows.append(
            {"env": result["env"], "threads": result["threads"], "cores": result["cores"], "implementations": implementations}
        )
    model, isa = _cpu_info()
    data = {
        "cpu": model,
        "cpu_isa": isa,
        "torch": th.__version__,
        "python": platform.python_version(),
        "base": names[0],
        "chunk": args.chunk,
        "e2e_chunk": args.e2e_chunk,
        "rounds": args.rounds,
        "results": rows,
    }
    with open(path, "w") as file:
        json.dump(data, file, indent=2)


def _cpu_info() -> tuple[str, list[str]]:
    """The CPU's model name (``/proc/cpuinfo``) and which of the vector extensions that matter here it has."""
    try:
        with open("/proc/cpuinfo") as file:
            info = file.read()
        model = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        flags = next(line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags"))
        return model, [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    except (OSError, StopIteration):
        import platform

        return platform.processor() or "unknown", []


def _cpu_name() -> str:
    model, isa = _cpu_info()
    return f"{model} ({', '.join(isa)})" if isa else model


if __name__ == "__main__":
    main()
