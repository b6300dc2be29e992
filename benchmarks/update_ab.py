"""
The update path of this checkout against another checkout of sb3-sac-ext (e.g. before a refactor), and SB3's SAC, in
ONE process: the other checkout's package is copied under another name (``sb3_sac_ext_baseline``), the three models
are trained a little, then ``train(gradient_steps=N)`` runs in interleaved chunks over several rounds. Prints the median
updates/s and the median of the per-round ratios (robust to the machine's drifts between rounds).

    git worktree add /tmp/before <commit>
    python benchmarks/update_ab.py --baseline /tmp/before --rounds 10
"""

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PACKAGE = "sb3_sac_ext"
RENAMED = "sb3_sac_ext_baseline"


def import_baseline(checkout: Path) -> Any:
    """Copy the other checkout's package under another name and import its ``SAC``."""
    folder = Path(tempfile.mkdtemp(prefix="update_ab_"))
    target = folder / RENAMED
    shutil.copytree(checkout / PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__"))
    for path in target.rglob("*.py"):
        path.write_text(re.sub(rf"\b{PACKAGE}\b", RENAMED, path.read_text()))
    sys.path.insert(0, str(folder))
    module = __import__(RENAMED)
    return module.SAC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="root of the other checkout")
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=40, help="gradient steps per measurement")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    if not (args.baseline / PACKAGE / "__init__.py").is_file():
        parser.error(f"--baseline {args.baseline} is not a checkout of sb3-sac-ext (no {PACKAGE}/__init__.py in it)")

    import torch as th
    from stable_baselines3 import SAC as SB3SAC

    from sb3_sac_ext import SAC

    th.set_num_threads(args.threads)
    classes = {"sb3": SB3SAC, "baseline": import_baseline(args.baseline), "current": SAC}
    models = {}
    for name, cls in classes.items():
        kwargs = {} if name == "sb3" else {"precision": "fp32"}
        models[name] = cls("MlpPolicy", args.env, learning_starts=0, seed=0, **kwargs)
        models[name].learn(600)  # a filled buffer, a logger, warm caches

    def updates_per_s(model: Any, steps: int) -> float:
        start = time.perf_counter()
        model.train(gradient_steps=steps, batch_size=256)
        return steps / (time.perf_counter() - start)

    for model in models.values():
        updates_per_s(model, 5)
    rounds: dict[str, list[float]] = {name: [] for name in models}
    for round_index in range(args.rounds):
        # The order alternates from round to round: no model always runs right after the same one
        order = list(models) if round_index % 2 == 0 else list(reversed(models))
        for name in order:
            rounds[name].append(updates_per_s(models[name], args.chunk))

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(rounds[a], rounds[b]))

    medians = {name: round(statistics.median(values), 1) for name, values in rounds.items()}
    print(f"updates/s (median of {args.rounds} rounds of {args.chunk}, {args.env}, {args.threads} thread(s)): {medians}")
    print(
        f"median per-round ratios: current/baseline {ratio('current', 'baseline'):.3f}, "
        f"current/SB3 {ratio('current', 'sb3'):.2f}, baseline/SB3 {ratio('baseline', 'sb3'):.2f}"
    )


if __name__ == "__main__":
    main()
