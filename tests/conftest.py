"""Shared settings of the test suite."""

import torch as th

# The test machines are small and shared: one intra-op thread avoids oversubscription, which makes
# the tiny networks of the tests several times slower with the default thread count.
th.set_num_threads(1)
