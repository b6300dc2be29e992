"""
The algorithms of sb3-sac-ext, in one place: the name used by the command line, the hyperparameter files and the
Hub, the class, and the RL Zoo key.

- ``sac``: :class:`~sb3_sac_ext.SAC`, RL Zoo key ``sac_ext``, ``hyperparams/sac.yml``
- ``discrete_sac``: :class:`~sb3_sac_ext.DiscreteSAC`, RL Zoo key ``discrete_sac``, ``hyperparams/discrete_sac.yml``

Our ``SAC`` registers in RL Zoo as ``sac_ext`` so that RL Zoo's own ``sac`` (SB3's) is never replaced; everywhere
else (``sb3-sac-ext --algo``, Hub repositories ``<org>/sac-<EnvId>``) the name is ``sac``. Every module that maps a
name to a class uses :func:`get_algorithm`.
"""

from dataclasses import dataclass

from sb3_sac_ext.common.errors import UnknownAlgorithmError
from sb3_sac_ext.discrete_sac import DiscreteSAC
from sb3_sac_ext.sac import SAC


@dataclass(frozen=True)
class Algorithm:
    """
    One algorithm of the package.

    :param name: Name on the command line, in hyperparameter file names and in Hub repository names
    :param cls: The algorithm class
    :param zoo_key: Key under which :func:`sb3_sac_ext.zoo.register` adds the class to RL Zoo
    """

    name: str
    cls: type
    zoo_key: str

    @property
    def hyperparams_file(self) -> str:
        """File name of the packaged hyperparameters (in ``sb3_sac_ext/hyperparams/``)."""
        return f"{self.name}.yml"

    @property
    def class_name(self) -> str:
        return self.cls.__name__


#: The one table of algorithms: name -> :class:`Algorithm` (class, RL Zoo key), for the command line, hyperparameter
#: files, Hub repositories and RL Zoo.
ALGORITHMS: dict[str, Algorithm] = {
    "sac": Algorithm("sac", SAC, "sac_ext"),
    "discrete_sac": Algorithm("discrete_sac", DiscreteSAC, "discrete_sac"),
}


def get_algorithm(key: "str | type") -> Algorithm:
    """
    :param key: A name (``"sac"``), an RL Zoo key (``"sac_ext"``), a class name (``"DiscreteSAC"``, any case) or
        a class (subclasses included)
    :return: The algorithm
    :raise UnknownAlgorithmError: (a ``ValueError``) for an unknown key, naming the known ones
    """
    if isinstance(key, type):
        for algorithm in ALGORITHMS.values():
            if issubclass(key, algorithm.cls):
                return algorithm
    else:
        wanted = str(key).lower()
        for algorithm in ALGORITHMS.values():
            if wanted in (algorithm.name, algorithm.zoo_key, algorithm.class_name.lower()):
                return algorithm
    raise UnknownAlgorithmError(
        f"unknown algorithm {getattr(key, '__name__', key)!r}; choose one of {sorted(ALGORITHMS)} "
        f"(RL Zoo keys: {sorted(a.zoo_key for a in ALGORITHMS.values())})"
    )


def algorithm_of(model: object) -> Algorithm:
    """:return: The algorithm of a model instance (``SAC``, ``DiscreteSAC`` or a subclass)."""
    return get_algorithm(type(model))


__all__ = ["ALGORITHMS", "Algorithm", "algorithm_of", "get_algorithm"]
