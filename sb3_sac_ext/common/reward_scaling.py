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
one ``train()`` call), on the eager and the compiled update alike. The statistics are buffers of the policy: saved and
loaded with it; the per-env returns are not (a loaded model starts them at 0, as a new episode).
"""

import math

import numpy as np
import torch as th
from torch import nn

from sb3_sac_ext.common.errors import InvalidHyperparameterError

_EPS = 1e-8


class RewardScaler(nn.Module):
    """
    Running statistics of the discounted return, and the reward scale they give (see the module docstring).

    :param g_max: The largest return, in absolute value, that the scaled rewards may give (the paper's ``G_max``: 5)
    """

    def __init__(self, g_max: float = 5.0):
        super().__init__()
        self.g_max = float(g_max)
        self.register_buffer("count", th.zeros((), dtype=th.float64))
        self.register_buffer("mean", th.zeros((), dtype=th.float64))
        self.register_buffer("var", th.ones((), dtype=th.float64))
        self.register_buffer("reward_abs_max", th.zeros((), dtype=th.float64))
        # Running discounted return of each env: host-side, not saved
        self._returns: np.ndarray | None = None

    @th.no_grad()
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
        # Welford's parallel update of the mean and variance with this step's n_envs returns
        batch_mean, batch_var, batch_count = self._returns.mean(), self._returns.var(), rewards.size
        count = float(self.count)
        total = count + batch_count
        delta = batch_mean - float(self.mean)
        mean = float(self.mean) + delta * batch_count / total
        m2 = float(self.var) * count + batch_var * batch_count + delta**2 * count * batch_count / total
        self.count.fill_(total)
        self.mean.fill_(mean)
        self.var.fill_(m2 / total)
        self.reward_abs_max.fill_(max(float(self.reward_abs_max), float(np.abs(rewards).max(initial=0.0))))
        self._returns[np.asarray(dones, dtype=bool).reshape(-1)] = 0.0

    def scale(self, gamma: float) -> float:
        """
        :param gamma: The discount factor (with ``gamma = 1`` only the variance bounds ``sigma``)
        :return: ``1 / sigma``: the factor of the rewards of the critics' targets (1 before any update)
        """
        if float(self.count) == 0:
            return 1.0
        sigma = float(th.sqrt(self.var + _EPS))
        if gamma < 1.0:
            sigma = max(sigma, float(self.reward_abs_max) / ((1.0 - gamma) * self.g_max))
        return 1.0 / sigma

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
