"""
Per-network learning rates: one schedule per optimizer (``actor``, ``critic``, ``ent_coef``), and the ``"rnn"``
parameter groups of recurrent policies with ``rnn_learning_rate``.
"""

from typing import Any

import torch as th
from stable_baselines3.common.utils import update_learning_rate

from sb3_sac_ext.common.schedules import BaseSchedule, make_schedule

# Optimizer name -> hyperparameter that holds its learning rate (``None`` falls back to ``learning_rate``)
LEARNING_RATE_ARGS = {"actor": "learning_rate", "critic": "qf_learning_rate", "ent_coef": "ent_coef_learning_rate"}


class LearningRates:
    """
    The learning-rate schedules of a model. The actor's, and that of every network without its own argument, is
    the model's ``lr_schedule`` at the time of the call (passed in as ``default``): code written for SB3 that assigns
    ``model.lr_schedule`` changes them, as it changes every optimizer in SB3.

    :param rates: Hyperparameter name -> its value (``qf_learning_rate``, ``ent_coef_learning_rate``; ``None``
        falls back to ``learning_rate``)
    """

    def __init__(self, rates: dict[str, Any]):
        self.own: dict[str, BaseSchedule] = {
            name: make_schedule(rates[arg], arg)
            for name, arg in LEARNING_RATE_ARGS.items()
            if name != "actor" and rates.get(arg) is not None
        }

    def schedules(self, default: Any) -> dict[str, Any]:
        """:return: The schedule of each optimizer, ``default`` where the network has none of its own."""
        return {name: self.own.get(name, default) for name in LEARNING_RATE_ARGS}

    def apply(
        self,
        optimizers: dict[str, th.optim.Optimizer],
        default: Any,
        progress: float,
        logger: Any = None,
        rnn_schedule: BaseSchedule | None = None,
    ) -> None:
        """
        Set each optimizer's rate (and the RNN groups') from its schedule at ``progress`` (1 -> 0).

        :param optimizers: The optimizers by name
        :param default: The model's ``lr_schedule``
        :param progress: Progress remaining, as SB3 counts it
        :param logger: When given, each rate is logged as ``train/<name>_learning_rate`` (and ``train/learning_rate``,
            SB3's key, for the actor)
        :param rnn_schedule: Schedule of the ``"rnn"`` parameter groups of recurrent policies with
            ``rnn_learning_rate``, or ``None``
        """
        schedules = self.schedules(default)
        for name, optimizer in optimizers.items():
            rate = schedules[name](progress)
            update_learning_rate(optimizer, rate)
            if logger is not None:
                logger.record(f"train/{name}_learning_rate", rate)
        if logger is not None:
            logger.record("train/learning_rate", schedules["actor"](progress))
        if rnn_schedule is not None:
            rate = rnn_schedule(progress)
            for optimizer in optimizers.values():
                for group in optimizer.param_groups:
                    if group.get("name") == "rnn":
                        group["lr"] = rate
            if logger is not None:
                logger.record("train/rnn_learning_rate", rate)
