"""
Typed errors raised by sb3-sac-ext.

Every error a user can trigger with bad input or a bad file is a subclass of ``ValueError``
(so ``except ValueError`` keeps working) and of :class:`SB3SacExtError` (to catch ours only).
They are raised explicitly, never through ``assert``, so they also hold under ``python -O``.
"""


class SB3SacExtError(Exception):
    """Base class of every error raised on purpose by sb3-sac-ext."""


class InvalidHyperparameterError(SB3SacExtError, ValueError):
    """A constructor argument or hyperparameter has an invalid value."""


class UnsupportedSpaceError(SB3SacExtError, ValueError):
    """The observation or action space is not supported by the algorithm."""


class NonFiniteError(SB3SacExtError, ValueError):
    """A NaN or infinite value was found in an observation, a reward or a loss."""


class ModelFileError(SB3SacExtError, ValueError):
    """A saved model, replay buffer or checkpoint cannot be read."""


class PickleNotAllowedError(ModelFileError):
    """The file contains pickled objects, and loading them was not allowed (``allow_pickle=False``)."""


class WrongAlgorithmError(ModelFileError):
    """The file holds a model of another algorithm."""


__all__ = [
    "InvalidHyperparameterError",
    "ModelFileError",
    "NonFiniteError",
    "PickleNotAllowedError",
    "SB3SacExtError",
    "UnsupportedSpaceError",
    "WrongAlgorithmError",
]
