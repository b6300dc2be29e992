"""
RL Zoo's enjoy.py with sb3-sac-ext's algorithms registered.

    python zoo_scripts/enjoy.py --algo discrete_sac --env CartPole-v1 -f logs --no-render -n 500
"""

import sys

from sb3_sac_ext.zoo import zoo_main

if __name__ == "__main__":
    sys.exit(zoo_main("enjoy"))
