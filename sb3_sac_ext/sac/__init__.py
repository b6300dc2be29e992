from sb3_sac_ext.sac.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_sac_ext.sac.sac import SAC

__all__ = ["SAC", "CnnPolicy", "MlpPolicy", "MultiInputPolicy"]
