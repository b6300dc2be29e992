"""sb3-sac-ext: Soft Actor-Critic for Stable-Baselines3, continuous (``SAC``) and discrete (``DiscreteSAC``)."""

from sb3_sac_ext.discrete_sac import DiscreteSAC
from sb3_sac_ext.sac import SAC
from sb3_sac_ext.version import __version__

__all__ = ["SAC", "DiscreteSAC", "__version__"]
