"""The one algorithm registry: names, classes and RL Zoo keys, and a typed error for anything else."""

import pytest

from sb3_sac_ext import SAC, DiscreteSAC
from sb3_sac_ext.common.errors import UnknownAlgorithmError
from sb3_sac_ext.registry import ALGORITHMS, algorithm_of, get_algorithm


class MySAC(SAC):
    pass


@pytest.mark.parametrize(
    "key, cls",
    [
        ("sac", SAC),
        ("sac_ext", SAC),
        ("SAC", SAC),
        (SAC, SAC),
        (MySAC, SAC),
        ("discrete_sac", DiscreteSAC),
        ("DiscreteSAC", DiscreteSAC),
    ],
)
def test_every_way_of_naming_an_algorithm(key, cls):
    assert get_algorithm(key).cls is cls


def test_table():
    assert {name: (a.cls, a.zoo_key, a.hyperparams_file) for name, a in ALGORITHMS.items()} == {
        "sac": (SAC, "sac_ext", "sac.yml"),
        "discrete_sac": (DiscreteSAC, "discrete_sac", "discrete_sac.yml"),
    }
    # RL Zoo's own "sac" (SB3's) is never one of our RL Zoo keys
    assert "sac" not in {a.zoo_key for a in ALGORITHMS.values()}
    assert algorithm_of(DiscreteSAC("MlpPolicy", "CartPole-v1", buffer_size=100)).name == "discrete_sac"


@pytest.mark.parametrize("key", ["ppo", "", "sac2", int])
def test_unknown_algorithm_is_a_typed_error_naming_the_choices(key):
    with pytest.raises(UnknownAlgorithmError, match="choose one of") as info:
        get_algorithm(key)
    assert isinstance(info.value, ValueError) and "discrete_sac" in str(info.value) and "sac_ext" in str(info.value)
