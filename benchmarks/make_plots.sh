#!/usr/bin/env bash
# Remakes the figures of the documentation (docs/_static/plots/*.png): each benchmark writes its logs (RL Zoo's
# layout, or the speed results as JSON), then `sb3-sac-ext plot` draws them. One benchmark at a time on one core
# (hours in total on a small CPU). The budgets are those the guide pages state next to each figure.
#
#   bash benchmarks/make_plots.sh [LOG_DIR]        # default LOG_DIR: logs/benchmarks
set -euo pipefail
cd "$(dirname "$0")/.."
LOGS=${1:-logs/benchmarks}
OUT=docs/_static/plots
mkdir -p "$OUT"

# SAC vs SB3 (docs/guide/speed.md, "Learning is unchanged")
taskset -c 0 python benchmarks/learning.py --seeds 0 --log-dir "$LOGS/learning"
taskset -c 0 python benchmarks/learning.py --env HalfCheetah-v5 --steps 100000 --seeds 0 1 --eval-every 10000 --log-dir "$LOGS/learning"
sb3-sac-ext plot -f "$LOGS/learning" --env Pendulum-v1 -o "$OUT/learning_pendulum.png"
sb3-sac-ext plot -f "$LOGS/learning" --env HalfCheetah-v5 -o "$OUT/learning_halfcheetah.png"

# Updates/s against SB3 (docs/guide/speed.md)
python benchmarks/throughput.py --threads 1 --cores 0 --rounds 3 --out "$LOGS/speed.json"
sb3-sac-ext plot --speed "$LOGS/speed.json" -o "$OUT/speed.png"

# DiscreteSAC vs DQN (docs/guide/discrete_sac.md)
taskset -c 0 python benchmarks/discrete.py --envs CartPole-v1 --seeds 1 --log-dir "$LOGS/discrete"
sb3-sac-ext plot -f "$LOGS/discrete" --env CartPole-v1 -o "$OUT/discrete_cartpole.png"

# Network variants (docs/guide/variants.md)
taskset -c 0 python benchmarks/variants.py --env Pendulum-v1 --steps 10000 --seeds 0 --variants sac crossq simba simbav2 \
    --eval-every 1000 --log-dir "$LOGS/variants"
sb3-sac-ext plot -f "$LOGS/variants" --env Pendulum-v1 -o "$OUT/variants_pendulum.png"
MUJOCO="--steps 30000 --gradient-steps 1 --learning-starts 5000 --eval-every 5000"
taskset -c 0 python benchmarks/variants.py --env Hopper-v5 --seeds 0 1 $MUJOCO --variants sac crossq droq --critic-width 256 \
    --log-dir "$LOGS/variants"
taskset -c 0 python benchmarks/variants.py --env Hopper-v5 --seeds 0 1 $MUJOCO --variants simba --critic-width 128 \
    --log-dir "$LOGS/variants"
taskset -c 0 python benchmarks/variants.py --env Hopper-v5 --seeds 0 $MUJOCO --variants simbav2 --critic-width 128 \
    --log-dir "$LOGS/variants"
sb3-sac-ext plot -f "$LOGS/variants" --env Hopper-v5 -o "$OUT/variants_hopper.png"
taskset -c 0 python benchmarks/variants.py --env HalfCheetah-v5 --seeds 0 1 $MUJOCO --variants sac crossq droq --critic-width 256 \
    --log-dir "$LOGS/variants"
taskset -c 0 python benchmarks/variants.py --env HalfCheetah-v5 --seeds 0 1 $MUJOCO --variants simba --critic-width 128 \
    --log-dir "$LOGS/variants"
taskset -c 0 python benchmarks/variants.py --env HalfCheetah-v5 --seeds 0 $MUJOCO --variants simbav2 --critic-width 128 \
    --log-dir "$LOGS/variants"
sb3-sac-ext plot -f "$LOGS/variants" --env HalfCheetah-v5 -o "$OUT/variants_halfcheetah.png"

# Recurrent vs memoryless (docs/guide/recurrent.md)
taskset -c 0 python benchmarks/recurrent.py --envs PendulumNoVel-v1 --seeds 0 --timesteps 20000 --no-speed --set compile=True \
    --log-dir "$LOGS/recurrent"
sb3-sac-ext plot -f "$LOGS/recurrent" --env PendulumNoVel-v1 -o "$OUT/recurrent_pendulumnovel.png"
