"""
A scikit-learn-style surface for SB3 algorithms: ``fit``, ``score``, ``get_params``, ``set_params``.

``get_params`` returns the constructor hyperparameters (never the weights: SB3's ``get_parameters`` keeps
its meaning), so ``sklearn.base.clone(model)`` gives an untrained copy with the same settings.
"""

from typing import Any, TypeVar

from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

SelfEstimator = TypeVar("SelfEstimator", bound="EstimatorMixin")

# Hyperparameters whose change keeps the trained weights; any other change rebuilds the model.
HOT_SWAPPABLE = frozenset(
    {
        "learning_rate",
        "qf_learning_rate",
        "ent_coef_learning_rate",
        "batch_size",
        "tau",
        "gamma",
        "train_freq",
        "gradient_steps",
        "learning_starts",
        "action_noise",
        "target_update_interval",
        "policy_delay",
        "max_grad_norm",
        "verbose",
        "tensorboard_log",
        "stats_window_size",
        "compile",
    }
)


class EstimatorMixin:
    """
    Mixin for algorithms whose ``__init__`` stored its arguments with :meth:`_store_init_params`.
    """

    _init_params: dict[str, Any]
    _init_env: Any

    def _store_init_params(self, params: dict[str, Any]) -> None:
        """Keep the constructor arguments (as passed, not converted) for ``get_params``."""
        params = {key: value for key, value in params.items() if key not in ("self", "__class__", "_init_setup_model")}
        self._init_env = params.pop("env", None)
        self._init_params = params

    def _init_params_from_attributes(self) -> None:
        """
        Rebuild the constructor hyperparameters from the model's attributes, for models whose file did not
        store them (zips written by Stable-Baselines3).
        """
        for name in self._init_params:
            if name == "policy":
                self._init_params[name] = self.policy_class  # type: ignore[attr-defined]
            elif name == "train_freq" and hasattr(self.train_freq, "unit"):  # type: ignore[attr-defined]
                self._init_params[name] = (self.train_freq.frequency, self.train_freq.unit.value)  # type: ignore[attr-defined]
            elif hasattr(self, name):
                self._init_params[name] = getattr(self, name)

    def fit(self: SelfEstimator, total_timesteps: int, **learn_kwargs: Any) -> SelfEstimator:
        """
        scikit-learn's name for ``learn``.

        :param total_timesteps: Number of environment steps to train for
        :param learn_kwargs: Any other argument of ``learn`` (callback, progress_bar, ...)
        :return: The trained model (``self``)
        """
        return self.learn(total_timesteps, **learn_kwargs)  # type: ignore[attr-defined]

    def score(self, env: Any = None, n_eval_episodes: int = 10, deterministic: bool = True) -> float:
        """
        Mean episode return of the current policy.

        :param env: Environment to evaluate on (gym env, VecEnv or env id); defaults to the training env
        :param n_eval_episodes: Number of episodes
        :param deterministic: Whether to use deterministic actions
        :return: Mean return over the episodes
        """
        if env is None:
            env = self.get_env()  # type: ignore[attr-defined]
            if env is None:
                raise ValueError("score() needs an env: the model has none (pass env=...)")
        elif isinstance(env, str):
            env = make_vec_env(env, n_envs=1)
        mean_return, _ = evaluate_policy(self, env, n_eval_episodes=n_eval_episodes, deterministic=deterministic)  # type: ignore[arg-type]
        return float(mean_return)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """
        Constructor hyperparameters, as passed (including ``policy`` and ``env``).

        :param deep: Accepted for scikit-learn compatibility (nested estimators do not exist here)
        :return: ``{argument name: value}``
        """
        return {"env": self._init_env, **self._init_params}

    def set_params(self: SelfEstimator, **params: Any) -> SelfEstimator:
        """
        Change hyperparameters. Learning rates, ``gamma``, ``tau``, ``batch_size``, ``train_freq``,
        ``gradient_steps``, ``policy_delay``, ``max_grad_norm`` and similar settings apply in place and keep
        the trained weights; any other change (``policy``, ``policy_kwargs``, ``buffer_size``, ``env``, ...)
        rebuilds an untrained model, as scikit-learn's ``set_params`` followed by ``fit`` would.

        :param params: ``name=value`` pairs; names must be constructor arguments
        :return: ``self``
        """
        valid = self.get_params()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(
                f"Invalid parameter(s) {unknown} for {type(self).__name__}. Valid parameters are: {sorted(valid)}"
            )
        merged = {**valid, **params}
        if set(params) <= HOT_SWAPPABLE:
            self._check_params(merged)  # type: ignore[attr-defined]
            for name, value in params.items():
                setattr(self, name, value)
            self._init_params.update(params)
            self._apply_hot_params()  # type: ignore[attr-defined]
        else:
            self.__init__(**merged)  # type: ignore[misc]
        return self
