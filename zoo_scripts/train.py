"""
RL Zoo's train.py with sb3-sac-ext's algorithms registered (``--algo sac_ext`` or ``--algo discrete_sac``).

    python zoo_scripts/train.py --algo discrete_sac --env CartPole-v1 -n 10000
    python zoo_scripts/train.py --algo sac_ext --env Pendulum-v1 -optimize --n-trials 20 -n 5000
"""

import sys

from sb3_sac_ext.zoo import zoo_main

if __name__ == "__main__":
    sys.exit(zoo_main("train"))
