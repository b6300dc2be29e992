"""
The objective of one trial: sample hyperparameters, build and train ``n_seeds`` models in lockstep, evaluate
them ``n_evaluations`` times and report the mean over seeds to the pruner. A trial that raises or produces a
non-finite value is marked FAIL with the reason in the ``fail_reason`` user attribute, and the study goes on.
"""

import math
import threading
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import sync_envs_normalization

from sb3_sac_ext.common.errors import InvalidHyperparameterError, NonFiniteError
from sb3_sac_ext.config import get_hyperparams, prepare_model_kwargs, to_yaml_value
from sb3_sac_ext.experiment import make_env
from sb3_sac_ext.registry import get_algorithm
from sb3_sac_ext.tuning.config import TuneConfig, require_optuna
from sb3_sac_ext.tuning.recovery import counted_trials, slot, worker_info
from sb3_sac_ext.tuning.samplers import HYPERPARAMS_SAMPLER


class FixedHorizon(BaseCallback):
    """
    SB3 callback keeping learning-rate schedules on the whole budget while ``learn`` runs in chunks.

    :param total_timesteps: The whole budget of the model
    """

    def __init__(self, total_timesteps: int):
        super().__init__()
        self.total_timesteps = total_timesteps

    def _on_training_start(self) -> None:
        self.model._total_timesteps = self.total_timesteps

    def _on_step(self) -> bool:
        return True


def _merge(model_kwargs: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(model_kwargs)
    for key, value in overrides.items():
        if key == "policy_kwargs" and isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


class Objective:
    """
    The Optuna objective: sample, train ``n_seeds`` models in lockstep, report the mean evaluation.

    :param config: Tuning settings
    :param study: The study (to check the budget when a trial starts)
    """

    def __init__(self, config: TuneConfig, study: Any):
        self.config = config
        self.study = study
        self.algo_class = get_algorithm(config.algo).cls
        self.sampler = HYPERPARAMS_SAMPLER[config.algo]
        try:
            entry = get_hyperparams(config.algo, config.env_id, config.hyperparams_file)
        except InvalidHyperparameterError as e:
            if "has no entry" not in str(e):
                raise
            entry = {}
        self.entry = entry
        self.model_kwargs, self.settings = prepare_model_kwargs(entry)
        self.pinned_kwargs, pinned_settings = prepare_model_kwargs(config.hyperparams)
        self.settings.update(pinned_settings)
        self.n_timesteps = int(config.n_timesteps if config.n_timesteps > 0 else float(self.settings.get("n_timesteps", 1e6)))
        self.n_envs = int(self.settings.get("n_envs", 1))
        self.lock = threading.Lock()

    def _is_surplus(self, trial: Any) -> bool:
        """True when the budget was already used by others when this trial started (race between workers)."""
        trials = self.study.get_trials(deepcopy=False)
        me = next(t for t in trials if t.number == trial.number)
        counted = counted_trials(trials)
        slots = sorted({slot(t) for t in counted})
        my_slot = slot(me)
        if my_slot in slots and slots.index(my_slot) >= self.config.n_trials:
            return True
        return any(slot(t) == my_slot and t.number < me.number for t in counted)

    def hyperparams(self, trial: Any) -> dict[str, Any]:
        """:return: The constructor arguments of a trial (entry, then sampled values, then pinned values)."""
        sampled = self.sampler(
            trial,
            0,
            self.n_envs,
            {"using_her_replay_buffer": False, "her_kwargs": {}, "pinned": set(self.config.hyperparams)},
        )
        return _merge(_merge(self.model_kwargs, sampled), self.pinned_kwargs)

    def yaml_entry(self, model_kwargs: dict[str, Any]) -> dict[str, Any]:
        """:return: An RL Zoo YAML entry (settings and constructor arguments) for ``model_kwargs``."""
        entry: dict[str, Any] = {key: to_yaml_value(value) for key, value in self.settings.items()}
        entry.setdefault("n_timesteps", self.n_timesteps)
        entry["policy"] = model_kwargs.get("policy", "MlpPolicy")
        for key in sorted(model_kwargs):
            if key != "policy":
                entry[key] = to_yaml_value(model_kwargs[key])
        return entry

    def __call__(self, trial: Any) -> float:
        """
        :param trial: The Optuna trial
        :return: Mean evaluation return over seeds; NaN (trial FAIL) with ``fail_reason`` when training fails
        """
        optuna = require_optuna()
        if self._is_surplus(trial):
            trial.set_user_attr("surplus", True)
            trial.set_user_attr("fail_reason", "surplus: the study's n_trials were used by other workers")
            return float("nan")
        trial.set_user_attr("worker", worker_info())
        for key in ("fail_reason", "interrupted"):
            if trial.user_attrs.get(key):  # inherited by a retry
                trial.set_user_attr(key, None)
        slot = int(trial.study._storage.get_trial_system_attrs(trial._trial_id).get("failed_trial", trial.number))
        seed = self.config.seed + 1000 * slot
        trial.set_user_attr("seed", seed)
        retry = f" (retry of trial {slot})" if slot != trial.number else ""
        print(f"Trial {trial.number} started{retry}: seed {seed}", flush=True)
        try:
            model_kwargs = self.hyperparams(trial)
            trial.set_user_attr("hyperparams", self.yaml_entry(model_kwargs))
            value = self._train_and_evaluate(trial, model_kwargs, seed)
        except optuna.TrialPruned:
            print(f"Trial {trial.number} pruned", flush=True)
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C); retried when the search resumes")
            raise
        except Exception as e:
            reason = f"{type(e).__name__}: {e}".strip().replace("\n", " ")[:500]
            trial.set_user_attr("fail_reason", reason)
            print(f"Trial {trial.number} failed: {reason}", flush=True)
            return float("nan")
        print(f"Trial {trial.number} finished: mean return {value:.2f}", flush=True)
        return value

    def _train_and_evaluate(self, trial: Any, model_kwargs: dict[str, Any], seed: int) -> float:
        optuna = require_optuna()
        kwargs = dict(model_kwargs)
        policy = kwargs.pop("policy", "MlpPolicy")
        config = self.config
        models, eval_envs = [], []
        try:
            for i in range(config.n_seeds):
                env = make_env(config.env_id, self.n_envs, seed + i, self.settings)
                models.append(self.algo_class(policy, env, seed=seed + i, verbose=0, device=config.device, **kwargs))
                eval_envs.append(make_env(config.env_id, 1, seed + i + 500, self.settings, training=False))
            value = float("nan")
            for k in range(config.n_evaluations):
                target = round(self.n_timesteps * (k + 1) / config.n_evaluations)
                returns = []
                for model, eval_env in zip(models, eval_envs, strict=True):
                    if target > model.num_timesteps:
                        model.learn(
                            target - model.num_timesteps,
                            callback=FixedHorizon(self.n_timesteps),
                            reset_num_timesteps=(k == 0),
                        )
                    if model.get_vec_normalize_env() is not None:
                        sync_envs_normalization(model.get_env(), eval_env)
                    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=config.eval_episodes, deterministic=True)
                    returns.append(float(mean))  # type: ignore[arg-type]
                value = float(np.mean(returns))
                if not math.isfinite(value):
                    raise NonFiniteError(f"non-finite mean return {value} at evaluation {k + 1} (returns per seed: {returns})")
                trial.report(value, k + 1)
                if config.n_seeds > 1:
                    trial.set_user_attr("returns_per_seed", returns)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return value
        finally:
            for model in models:
                if model.env is not None:
                    model.env.close()
            for eval_env in eval_envs:
                eval_env.close()
