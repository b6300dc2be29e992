"""
The package's layers point one way: no import cycle and no upward import, imports inside functions included
(``../shared/tools/import_graph.py``, the project's checker, beside the repository as in CI).
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKER = ROOT.parent / "shared" / "tools" / "import_graph.py"
# Bottom to top; the same list as in the README's development section
LAYERS = "common; sac, discrete_sac, registry; config, experiment; export, hub, tuning, zoo, plotting; commands, cli"


def test_layers_point_one_way():
    if not CHECKER.is_file():
        pytest.skip(f"the import checker is not beside this repository ({CHECKER})")
    result = subprocess.run(
        [sys.executable, str(CHECKER), "sb3_sac_ext", "--layers", LAYERS], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
