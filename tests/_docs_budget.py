"""
Short budgets for the examples of the documentation (``tests/test_docs.py``): imported by a ``sitecustomize`` in
every Python process that an example starts, when ``SB3_SAC_EXT_DOCS_STEPS`` is set.

Every ``learn()`` of every SB3 / sb3-sac-ext algorithm runs at most ``learning_starts + SB3_SAC_EXT_DOCS_STEPS`` env
steps (so each example still trains a little), and a tuning study runs at most 2 trials. Nothing else changes: the
examples run as written, on the real package, envs, files, servers and processes.
"""

import os

TRIALS = 2


def _cap_learn(cls: type, steps: int) -> None:
    original = cls.__dict__["learn"]
    if getattr(original, "_docs_budget", False):
        return

    def learn(self, total_timesteps, *args, **kwargs):
        budget = int(getattr(self, "learning_starts", 0) or 0) + steps
        return original(self, min(int(total_timesteps), budget), *args, **kwargs)

    learn._docs_budget = True  # type: ignore[attr-defined]
    learn.__doc__ = original.__doc__
    cls.learn = learn  # type: ignore[attr-defined]


def _subclasses(cls: type) -> list[type]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found


def install() -> None:
    """Cap ``learn()`` and tuning studies when ``SB3_SAC_EXT_DOCS_STEPS`` is set (a no-op otherwise)."""
    steps = int(os.environ.get("SB3_SAC_EXT_DOCS_STEPS", "0") or 0)
    if steps <= 0:
        return
    import stable_baselines3  # noqa: F401  (registers SB3's algorithms as subclasses)
    from stable_baselines3.common.base_class import BaseAlgorithm

    import sb3_sac_ext  # noqa: F401
    from sb3_sac_ext.tuning import config as tune_config

    for cls in _subclasses(BaseAlgorithm):
        if "learn" in cls.__dict__:
            _cap_learn(cls, steps)

    original_init = tune_config.TuneConfig.__init__
    if not getattr(original_init, "_docs_budget", False):

        def __init__(self, *args, **kwargs):
            original_init(self, *args, **kwargs)
            self.n_trials = min(self.n_trials, TRIALS)

        __init__._docs_budget = True  # type: ignore[attr-defined]
        tune_config.TuneConfig.__init__ = __init__  # type: ignore[method-assign]
