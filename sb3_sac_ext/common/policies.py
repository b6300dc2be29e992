"""Pieces shared by the policies of SAC and DiscreteSAC (feed-forward and recurrent)."""

from typing import Any


class TrainingModeMixin:
    """
    ``set_training_mode`` for policies made of an ``actor`` and a ``critic`` (the target critic stays in evaluation
    mode). SB3 calls it twice per env step (evaluation mode to act, training mode to train), and each call walks
    every submodule; here a call that would change nothing returns at once (about 0.5 ms per env step on a CPU).
    """

    actor: Any
    critic: Any
    training: bool

    def set_training_mode(self, mode: bool) -> None:
        """
        Put the actor and the critic in training or evaluation mode. Dropout in the Q-networks (DroQ) follows the
        mode in the target critic too, as in the DroQ authors' code and SBX; the rest of the target stays in
        evaluation mode.

        :param mode: ``True`` for training mode
        """
        target_dropout = self._target_dropout_module()
        if (
            self.actor.training is mode
            and self.critic.training is mode
            and self.training is mode
            and (target_dropout is None or target_dropout.training is mode)
        ):
            return
        self.actor.set_training_mode(mode)
        self.critic.set_training_mode(mode)
        if target_dropout is not None:
            target_dropout.train(mode)
        self.training = mode

    def _target_dropout_module(self) -> Any:
        """:return: The target critic's Q-network ensemble when it has dropout, else ``None``"""
        qf = getattr(getattr(self, "critic_target", None), "qf", None)
        return qf if getattr(qf, "dropout_rate", 0.0) > 0.0 else None
