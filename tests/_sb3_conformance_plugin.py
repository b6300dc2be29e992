"""
A pytest plugin for running Stable-Baselines3's own test suite against sb3-sac-ext (see test_sb3_conformance.py).

Loaded with ``-p _sb3_conformance_plugin`` by the pytest process that runs SB3's tests. When
``SB3_SAC_EXT_CONFORMANCE=ours``, before SB3's test modules are imported (they bind ``from stable_baselines3 import
SAC, DQN`` at import), it puts:

- our ``SAC`` in place of ``stable_baselines3.SAC``, unchanged;
- ``DiscreteSACAsDQN`` in place of ``stable_baselines3.DQN``: our ``DiscreteSAC`` minus DQN's exploration arguments,
  which have no meaning for a stochastic policy, with DQN's network names (``q_net``, ``q_net_target``) as read-only
  aliases of the critic, so that SB3's algorithm-generic tests (save/load, spaces, callbacks, CNN, HER, batch norm,
  ...) reach our networks. The behaviour under test is ours; only names are adapted.

With ``SB3_SAC_EXT_CONFORMANCE=stock`` it changes nothing: the same selection runs on SB3's own classes (the baseline).
"""

import os
from typing import Any

import stable_baselines3
import stable_baselines3.dqn
import stable_baselines3.sac

# DQN's constructor arguments that DiscreteSAC does not have: epsilon-greedy exploration (DiscreteSAC explores by
# sampling its stochastic policy). Every other argument SB3's tests pass to DQN exists in DiscreteSAC.
DQN_ONLY_ARGUMENTS = ("exploration_fraction", "exploration_initial_eps", "exploration_final_eps")


def _install_ours() -> None:
    from sb3_sac_ext import SAC, DiscreteSAC
    from sb3_sac_ext.discrete_sac.policies import DiscreteSACPolicy

    class DiscreteSACAsDQN(DiscreteSAC):
        """``DiscreteSAC`` under DQN's name in SB3's tests: DQN-only arguments dropped, DQN's network names aliased."""

        def __init__(self, *args: Any, **kwargs: Any):
            for name in DQN_ONLY_ARGUMENTS:
                kwargs.pop(name, None)
            super().__init__(*args, **kwargs)

        @property
        def q_net(self) -> Any:
            return self.critic

        @property
        def q_net_target(self) -> Any:
            return self.critic_target

    # The policy-level names: a property, so no second registration of the module in the state dict
    DiscreteSACPolicy.q_net = property(lambda self: self.critic)  # type: ignore[attr-defined]
    DiscreteSACPolicy.q_net_target = property(lambda self: self.critic_target)  # type: ignore[attr-defined]

    stable_baselines3.SAC = stable_baselines3.sac.SAC = SAC  # type: ignore[misc]
    stable_baselines3.DQN = stable_baselines3.dqn.DQN = DiscreteSACAsDQN  # type: ignore[misc]


def pytest_configure(config: Any) -> None:
    mode = os.environ.get("SB3_SAC_EXT_CONFORMANCE", "")
    if mode == "ours":
        _install_ours()
    elif mode != "stock":
        raise RuntimeError(f"SB3_SAC_EXT_CONFORMANCE must be 'ours' or 'stock', got {mode!r}")
