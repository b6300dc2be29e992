"""``python -m sb3_sac_ext.commands``: the ``sb3-sac-ext`` command line (torchrun relaunches ``train`` this way)."""

import sys

from sb3_sac_ext.commands import main

sys.exit(main())
