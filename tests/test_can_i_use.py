"""The "can I use" table of the documentation (docs/can_i_use.md) says what the code does: each cell is checked."""

import re
from pathlib import Path

import pytest
import torch as th

from sb3_sac_ext import SAC, DiscreteSAC
from sb3_sac_ext.common.compiled_update import unsupported_reason
from sb3_sac_ext.common.errors import SB3SacExtError

PAGE = Path(__file__).resolve().parent.parent / "docs" / "can_i_use.md"
SMALL = dict(net_arch=[16, 16])
# Row of the table -> (policy or None for the default of the column, constructor arguments)
ROWS = {
    "`SimbaPolicy`, `SimbaV2Policy`": ("SimbaPolicy", {}),
    "`layer_norm`, `dropout_rate` (DroQ)": (None, {"policy_kwargs": {"layer_norm": True, "dropout_rate": 0.01}}),
    "`batch_norm`, `batch_norm_actor` (CrossQ)": (None, {"policy_kwargs": {"batch_norm": True, "batch_norm_actor": True}}),
    "`param_resets`": (None, {"param_resets": [1_000]}),
    "`max_grad_norm`, `policy_delay`": (None, {"max_grad_norm": 1.0, "policy_delay": 2}),
    "`n_steps > 1`": (None, {"n_steps": 3}),
    '`objective="minimize"`': (None, {"objective": "minimize"}),
    "`use_sde=True` (gSDE)": (None, {"use_sde": True}),
    '`precision="bf16"`': (None, {"precision": "bf16"}),
    "optimizers other than Adam/AdamW, or `amsgrad`": (None, {"policy_kwargs": {"optimizer_class": th.optim.SGD}}),
}
COLUMNS = {
    "`SAC`": (SAC, "MlpPolicy", "Pendulum-v1"),
    "`DiscreteSAC`": (DiscreteSAC, "MlpPolicy", "CartPole-v1"),
    "recurrent policies (`*LstmPolicy`)": (SAC, "MlpLstmPolicy", "Pendulum-v1"),
    "compiled update": (SAC, "MlpPolicy", "Pendulum-v1"),
}


def _table() -> dict[str, dict[str, str]]:
    lines = [line for line in PAGE.read_text().split("\n## ")[1].splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header[1:], cells[1:], strict=True))
    return rows


def _build(column: str, row: str):
    cls, policy, env = COLUMNS[column]
    row_policy, kwargs = ROWS[row]
    kwargs = {**kwargs, "policy_kwargs": {**SMALL, **kwargs.get("policy_kwargs", {})}}
    if policy == "MlpLstmPolicy":
        kwargs["policy_kwargs"]["lstm_hidden_size"] = 8
    return cls(row_policy if row_policy and policy == "MlpPolicy" else policy, env, learning_starts=10, **kwargs)


CASES = [(row, column) for row in ROWS for column in COLUMNS]


def test_every_checked_row_is_in_the_table():
    assert set(ROWS) <= set(_table()), set(ROWS) - set(_table())


@pytest.mark.parametrize(("row", "column"), CASES, ids=[f"{r}|{c}" for r, c in CASES])
def test_cell(row: str, column: str):
    cell = _table()[row][column]
    if column == "recurrent policies (`*LstmPolicy`)" and ROWS[row][0] is not None:
        pytest.skip("a policy choice: the recurrent column is about the options")
    if cell.startswith("no"):
        expected = TypeError if "no such argument" in cell else (SB3SacExtError, AssertionError)
        with pytest.raises(expected):
            _build(column, row)
        return
    model = _build(column, row)
    if column == "compiled update":
        reason = unsupported_reason(model)
        if cell.startswith("eager"):
            assert reason is not None, f"{row}: the table says eager, but the compiled update supports it"
        else:
            assert cell.startswith("yes") and reason is None, f"{row}: the table says {cell!r}, the code says {reason!r}"
    else:
        assert cell.startswith("yes"), f"{row} / {column}: builds, but the table says {cell!r}"


def test_table_cells_are_known_words():
    for row, cells in _table().items():
        for column, cell in cells.items():
            if column not in COLUMNS:
                continue
            assert cell == "" or re.match(r"^(yes|no|eager)\b", cell), f"{row} / {column}: {cell!r}"
