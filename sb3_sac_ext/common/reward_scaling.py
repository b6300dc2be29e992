"""
SimbaV2's reward scaling (Lee et al. 2025, https://arxiv.org/abs/2503.15256, Section 4.5): the critics learn the
values of ``r / sigma``, where ``sigma`` keeps the returns within about ``+-g_max`` whatever the scale of the env's
rewards. A network whose last hidden layer is a unit-norm vector (SimbaV2's) cannot output large values quickly, so
without it the critics chase returns of hundreds or thousands and learning is unstable.

Statistics, updated with each env step's rewards (``update``, as gymnasium's ``NormalizeReward``): the running
discounted return of each env ``G <- gamma * G + r`` (set to 0 when its episode ends), the running variance of ``G``
over all envs and steps, and the largest ``|r|`` seen. Then

    ``sigma = max(sqrt(var(G) + eps), max|r| / ((1 - gamma) * g_max))``

(the second term bounds ``|r / sigma| / (1 - gamma)``, the largest return, by ``g_max``). The training loop multiplies
the rewards of every sampled batch by :meth:`RewardScaler.scale` (``1 / sigma``, the same for all the gradient steps of
one ``train()`` call), on the eager and the compiled update alike. The statistics are in the policy's state dict:
saved and loaded with it; the per-env returns are not (a loaded model starts them at 0, as a new episode).

SB3's ``VecNormalize(norm_reward=True)`` is the same idea without the ``max|r|`` bound, as an env wrapper the user
adds; here the scale belongs to the policy that needs it, so ``SAC("SimbaV2Policy", env)`` gets it without a wrapper.
"""

import math

import numpy as np
import torch as th
from stable_baselines3.common.running_mean_std import RunningMeanStd
from torch import nn

from sb3_sac_ext.common.errors import InvalidHyperparameterError

#: The paper's bound of the scaled returns (``G_max``)
DEFAULT_G_MAX = 5.0
_EPS = 1e-8


class RewardScaler(nn.Module):
    """
    Running statistics of the discounted return, and the reward scale they give (see the module docstring).

    The statistics live on the host (SB3's :class:`~stable_baselines3.common.running_mean_std.RunningMeanStd` of
    ``G``, and ``reward_abs_max``), so that the update of every env step neither syncs with nor launches work on the
    policy's device; they enter the policy's state dict as one float64 tensor (``get_extra_state``).

    :param g_max: The largest return, in absolute value, that the scaled rewards may give (the paper's ``G_max``: 5)
    """

    def __init__(self, g_max: float = DEFAULT_G_MAX):
        super().__init__()
        self.g_max = float(g_max)
        self.return_rms = RunningMeanStd(epsilon=0.0, shape=())
        self.reward_abs_max = 0.0
        # Running discounted return of each env: not saved
        self._returns: np.ndarray | None = None

    def update(self, rewards: np.ndarray, dones: np.ndarray, gamma: float) -> None:
        """
        Add one env step of every env.

        :param rewards: ``(n_envs,)`` rewards as they are stored in the replay buffer
        :param dones: ``(n_envs,)`` whether each episode ended at this step (terminated or truncated)
        :param gamma: The discount factor
        """
        rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if self._returns is None or self._returns.shape != rewards.shape:
            self._returns = np.zeros_like(rewards)
        self._returns = gamma * self._returns + rewards
        self.return_rms.update(self._returns)
        self.reward_abs_max = max(self.reward_abs_max, float(np.abs(rewards).max(initial=0.0)))
        self._returns[np.asarray(dones, dtype=bool).reshape(-1)] = 0.0

    def scale(self, gamma: float) -> float:
        """
        :param gamma: The discount factor (with ``gamma = 1`` only the variance bounds ``sigma``)
        :return: ``1 / sigma``: the factor of the rewards of the critics' targets (1 before any update)
        """
        if self.return_rms.count == 0:
            return 1.0
        sigma = math.sqrt(float(self.return_rms.var) + _EPS)
        if gamma < 1.0:
            sigma = max(sigma, self.reward_abs_max / ((1.0 - gamma) * self.g_max))
        return 1.0 / sigma

    def get_extra_state(self) -> th.Tensor:
        """:return: The statistics ``[count, mean, var, max|r|]`` of ``G``, saved with the policy"""
        rms = self.return_rms
        return th.tensor([rms.count, float(rms.mean), float(rms.var), self.reward_abs_max], dtype=th.float64)

    def set_extra_state(self, state: th.Tensor) -> None:
        """:param state: What :meth:`get_extra_state` returned"""
        count, mean, var, self.reward_abs_max = (float(value) for value in state)
        self.return_rms.count, self.return_rms.mean, self.return_rms.var = count, np.float64(mean), np.float64(var)

    def extra_repr(self) -> str:
        return f"g_max={self.g_max}"


def make_reward_scaler(normalize_reward: object, normalized_g_max: object) -> RewardScaler | None:
    """
    The reward scaler of a policy's options (``SimbaV2Policy``'s ``normalize_reward`` and ``normalized_g_max``,
    named as in the SimbaV2 authors' configuration).

    :return: A :class:`RewardScaler`, or ``None`` when ``normalize_reward`` is False
    :raise InvalidHyperparameterError: When ``normalize_reward`` is not a bool or ``normalized_g_max`` not a positive
        number
    """
    if not isinstance(normalize_reward, bool):
        raise InvalidHyperparameterError(f"normalize_reward must be True or False, got {normalize_reward!r}")
    number = isinstance(normalized_g_max, int | float) and not isinstance(normalized_g_max, bool)
    if not number or not 0 < normalized_g_max < math.inf:  # type: ignore[operator]
        raise InvalidHyperparameterError(
            f"normalized_g_max must be a finite positive number (the bound of the scaled returns, SimbaV2's 5.0), "
            f"got {normalized_g_max!r}"
        )
    return RewardScaler(float(normalized_g_max)) if normalize_reward else None
