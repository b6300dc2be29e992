"""
Typed errors raised by sb3-sac-ext.

Every error a user can trigger with bad input or a bad file is a subclass of ``ValueError``
(so ``except ValueError`` keeps working) and of :class:`SB3SacExtError` (to catch ours only).
They are raised explicitly, never through ``assert``, so they also hold under ``python -O``.

Where Stable-Baselines3 rejects the same input with ``assert`` (an unsupported action space, for example),
our error is also an ``AssertionError``: code and tests written against SB3 that catch ``AssertionError``
keep working, and unlike SB3's check, ours still runs under ``python -O``.
"""


class SB3SacExtError(Exception):
    """Base class of every error raised on purpose by sb3-sac-ext."""


class InvalidHyperparameterError(SB3SacExtError, ValueError, AssertionError):
    """
    A constructor argument or hyperparameter has an invalid value. Also an ``AssertionError``, which is what
    SB3 raises for the arguments it checks with ``assert``.
    """


class UnsupportedSpaceError(SB3SacExtError, ValueError, AssertionError):
    """
    The observation or action space is not supported by the algorithm. Also an ``AssertionError``, which is
    what SB3 raises (``supported_action_spaces``), so ``except AssertionError`` written for SB3 catches it.
    """


class UnknownAlgorithmError(SB3SacExtError, ValueError):
    """An algorithm name, RL Zoo key or class that is not one of :data:`sb3_sac_ext.registry.ALGORITHMS`."""


class NonFiniteError(SB3SacExtError, ValueError):
    """A NaN or infinite value was found in an observation, a reward or a loss."""


class ModelFileError(SB3SacExtError, ValueError):
    """A saved model, replay buffer or checkpoint cannot be read."""


class PickleNotAllowedError(ModelFileError):
    """The file contains pickled objects, and loading them was not allowed (``allow_pickle=False``)."""


class WrongAlgorithmError(ModelFileError):
    """The file holds a model of another algorithm (or another kind of file: a replay buffer, ...)."""


class CorruptedFileError(ModelFileError):
    """The file is empty, truncated, not a zip archive, or one of its members cannot be parsed."""


class ChecksumMismatchError(CorruptedFileError):
    """A member of the file does not match the sha256 (or zip CRC) recorded for it: the file was damaged or altered."""


class MissingMemberError(CorruptedFileError):
    """A member the format requires is missing from the file."""


class FormatVersionError(ModelFileError):
    """The file was written by a newer sb3-sac-ext (newer format version): upgrade sb3-sac-ext to read it."""


class UntrustedImportError(ModelFileError):
    """
    The file names a class or function outside the trusted modules; importing it would run code that the
    file chooses. Pass ``allow_pickle=True`` (trusted files only) or ``custom_objects`` to load it.
    """


class DistributedError(SB3SacExtError, RuntimeError):
    """
    Data-parallel training failed: no process group can be formed (``distributed=True`` outside torchrun), or a
    collective failed because another rank crashed or did not answer within the timeout.
    """


class DistributedSettingsError(DistributedError, ValueError):
    """The ranks were started with different settings (env id, hyperparameters, world size, ``total_timesteps``)."""


class HubError(SB3SacExtError):
    """Base class of the errors of :mod:`sb3_sac_ext.hub` (pushing to and pulling from the Hugging Face Hub)."""


class HubDependencyError(HubError, ImportError):
    """The optional dependencies of the Hub tools are missing: ``pip install "sb3-sac-ext[hub]"``."""


class HubAuthError(HubError, PermissionError):
    """No token was found (before any upload), or the server refused the token (HTTP 401/403)."""


class HubConnectionError(HubError, ConnectionError):
    """The Hub could not be reached (network down, timeout) or kept answering HTTP 5xx after the bounded retries."""


class HubNotFoundError(HubError, FileNotFoundError):
    """Something asked for on the Hub does not exist; the subclasses say what."""


class HubRepositoryNotFoundError(HubNotFoundError):
    """The repository does not exist (or is private and the token cannot see it)."""


class HubRevisionNotFoundError(HubNotFoundError):
    """The repository exists, but not the revision (branch, tag or commit sha)."""


class HubFileNotFoundError(HubNotFoundError):
    """The repository and revision exist, but the file is not in that revision."""


__all__ = [
    "ChecksumMismatchError",
    "CorruptedFileError",
    "DistributedError",
    "DistributedSettingsError",
    "FormatVersionError",
    "HubAuthError",
    "HubConnectionError",
    "HubDependencyError",
    "HubError",
    "HubFileNotFoundError",
    "HubNotFoundError",
    "HubRepositoryNotFoundError",
    "HubRevisionNotFoundError",
    "InvalidHyperparameterError",
    "MissingMemberError",
    "ModelFileError",
    "NonFiniteError",
    "PickleNotAllowedError",
    "SB3SacExtError",
    "UnknownAlgorithmError",
    "UnsupportedSpaceError",
    "UntrustedImportError",
    "WrongAlgorithmError",
]
