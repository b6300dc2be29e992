from sb3_sac_ext.discrete_sac.discrete_sac import DiscreteSAC
from sb3_sac_ext.discrete_sac.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["CnnPolicy", "DiscreteSAC", "MlpPolicy", "MultiInputPolicy"]
