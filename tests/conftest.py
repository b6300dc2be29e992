"""Shared settings of the test suite."""

import torch as th

# The test machines are small and shared: one intra-op thread avoids oversubscription, which makes
# the tiny networks of the tests several times slower with the default thread count.
th.set_num_threads(1)

# The longest tests first: with pytest-xdist (``-n auto`` in pyproject.toml) they start at once and the many short
# tests fill the other workers around them, instead of a long test starting last and running alone
LONGEST_FIRST = ("tests/test_sb3_conformance.py", "tests/test_tune.py", "tests/test_zoo.py", "tests/test_distributed.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)
