"""
The entropy temperature (``ent_coef``, alpha in the papers) as one small object shared by SAC and DiscreteSAC.

Fixed: ``alpha`` is a constant. Automatic (``"auto"`` or ``"auto_<init>"``): ``log(alpha)`` is learned by
minimising ``-log(alpha) * (E[log pi] + target_entropy)`` (Haarnoja et al. 2018, https://arxiv.org/abs/1812.05905,
eq. 18, optimised in log space as discussed in https://github.com/rail-berkeley/softlearning/issues/37).
Its fixed point is ``entropy == target_entropy``.
"""

from typing import Any

import torch as th

from sb3_sac_ext.common.errors import InvalidHyperparameterError


def parse_ent_coef(ent_coef: Any) -> tuple[bool, float]:
    """
    Parse SB3's ``ent_coef`` mini-language.

    :param ent_coef: ``"auto"``, ``"auto_<initial value>"`` or a positive number
    :return: ``(learned, initial value)``
    """
    accepted = "Accepted values: 'auto', 'auto_<initial value>' (e.g. 'auto_0.1') or a number > 0."
    if isinstance(ent_coef, str) and ent_coef.startswith("auto"):
        if ent_coef == "auto":
            return True, 1.0
        try:
            prefix, init = ent_coef.split("_", 1)
            value = float(init)
        except ValueError:
            raise InvalidHyperparameterError(f"ent_coef={ent_coef!r} is malformed. {accepted}") from None
        if prefix != "auto" or not value > 0 or value == float("inf"):
            raise InvalidHyperparameterError(f"ent_coef={ent_coef!r}: the initial value must be > 0. {accepted}")
        return True, value
    try:
        value = float(ent_coef)
    except (TypeError, ValueError):
        raise InvalidHyperparameterError(f"ent_coef={ent_coef!r} is not valid. {accepted}") from None
    if not value >= 0 or value == float("inf"):
        raise InvalidHyperparameterError(f"ent_coef={ent_coef!r} must be a finite number >= 0. {accepted}")
    return False, value


class EntropyTemperature:
    """
    The entropy coefficient, fixed or learned.

    :param ent_coef: ``"auto"``, ``"auto_<initial value>"`` or a number
    :param target_entropy: Entropy the automatic tuning aims for
    :param device: Torch device of the coefficient
    """

    def __init__(self, ent_coef: Any, target_entropy: float, device: th.device):
        self.learned, init_value = parse_ent_coef(ent_coef)
        self.target_entropy = float(target_entropy)
        self.log_ent_coef: th.Tensor | None = None
        self.ent_coef_tensor: th.Tensor | None = None
        if self.learned:
            self.log_ent_coef = th.log(th.full((1,), init_value, device=device)).requires_grad_(True)
        else:
            self.ent_coef_tensor = th.tensor(init_value, device=device)

    @property
    def value(self) -> th.Tensor:
        """:return: alpha as a tensor without gradient (no host sync)."""
        if self.log_ent_coef is not None:
            return self.log_ent_coef.detach().exp()
        assert self.ent_coef_tensor is not None
        return self.ent_coef_tensor

    def loss(self, log_prob: th.Tensor) -> th.Tensor | None:
        """
        Temperature loss, or ``None`` when the temperature is fixed.

        :param log_prob: ``log pi(a|s)`` of sampled actions (continuous), or the exact
            expectation ``sum_a pi(a|s) log pi(a|s)`` (discrete), shape ``(batch,)`` or ``(batch, 1)``
        :return: ``-mean(log(alpha) * (log_prob + target_entropy))`` with no gradient into ``log_prob``
        """
        if self.log_ent_coef is None:
            return None
        return temperature_loss(self.log_ent_coef, log_prob, self.target_entropy)


def temperature_loss(log_ent_coef: th.Tensor, log_prob: th.Tensor, target_entropy: float) -> th.Tensor:
    """
    The temperature loss ``-mean(log(alpha) * (log pi + target_entropy))`` (eq. 18, in log space), shared by SAC
    (sampled ``log pi(a|s)``) and DiscreteSAC (the exact ``sum_a pi(a|s) log pi(a|s)``).

    :param log_ent_coef: ``log(alpha)``, the learned parameter
    :param log_prob: ``log pi`` of the batch; no gradient flows into it
    :param target_entropy: The entropy the tuning aims for
    :return: Scalar loss
    """
    return -(log_ent_coef * (log_prob.detach() + target_entropy)).mean()
