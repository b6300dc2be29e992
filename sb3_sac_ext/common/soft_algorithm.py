"""
What SAC and DiscreteSAC share on top of SB3's ``OffPolicyAlgorithm``: per-network learning-rate schedules,
the entropy temperature, the single optimizer-step hook, mixed precision, sync-free logging and the save contract.

Both algorithms inherit ``(SoftOffPolicyMixin, OffPolicyAlgorithm)``; the mixin holds no learning rule.
"""

import contextlib
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.type_aliases import RolloutReturn, TrainFreq, TrainFrequencyUnit
from stable_baselines3.common.utils import get_parameters_by_name
from stable_baselines3.her.her_replay_buffer import HerReplayBuffer

from sb3_sac_ext.common.entropy import EntropyTemperature
from sb3_sac_ext.common.errors import CorruptedFileError, DistributedSettingsError, InvalidHyperparameterError
from sb3_sac_ext.common import distributed, persistence, running_stats, training, validation
from sb3_sac_ext.common.compiled_update import CompiledUpdate, check_compile_arg, compiled_step, estimate_updates
from sb3_sac_ext.common.estimator import EstimatorMixin
from sb3_sac_ext.common.export import export_policy
from sb3_sac_ext.common.learning_rates import LEARNING_RATE_ARGS, LearningRates
from sb3_sac_ext.common.network_options import check_distributed_statistics, check_policy_options
from sb3_sac_ext.common.optim import OptimizerStep
from sb3_sac_ext.common.precision import Precision
from sb3_sac_ext.common.recurrent import rollout
from sb3_sac_ext.common.recurrent.batch import SequenceBatches
from sb3_sac_ext.common.recurrent.policies import is_recurrent_policy
from sb3_sac_ext.common.resets import check_param_resets, check_resettable, reset_if_due
from sb3_sac_ext.common.schedules import make_schedule
from sb3_sac_ext.common.training import FeedForwardBatches, TrainLogs
from sb3_sac_ext.common.validation import check_common_args

# Where get_parameters()/set_parameters() find the optimizers (as in SB3's SAC)
_OPTIMIZER_ATTRIBUTES = ("actor.optimizer", "critic.optimizer", "ent_coef_optimizer")


def is_optimizer_state(state: Any) -> bool:
    """
    :param state: A value of a ``get_parameters()`` dict
    :return: Whether it is a complete ``optimizer.state_dict()`` (a dict with ``state`` and ``param_groups``)
    """
    return isinstance(state, dict) and isinstance(state.get("state"), dict) and isinstance(state.get("param_groups"), list)


class SoftOffPolicyMixin(EstimatorMixin):
    """Shared machinery of the soft actor-critic algorithms (see module docstring)."""

    # Set by OffPolicyAlgorithm / the algorithm class
    policy: Any
    device: th.device
    logger: Any
    learning_rate: Any
    qf_learning_rate: Any
    ent_coef_learning_rate: Any
    ent_coef: Any
    target_entropy: Any
    tau: float
    critic: Any
    critic_target: Any
    batch_norm_stats: list[th.Tensor]
    batch_norm_stats_target: list[th.Tensor]
    max_grad_norm: float | None
    policy_delay: int
    objective: str
    precision: str
    _current_progress_remaining: float
    compile: bool | str
    # The data-parallel state (see sb3_sac_ext.common.distributed), None outside data-parallel training
    _distributed: distributed.DistributedState | None = None
    # The compiled update once built (see _compiled_step); _eager_only once the model is known to train eagerly
    _compiled_update: CompiledUpdate | None = None
    _eager_only: bool = False
    # Gradient steps the current learn() call plans (compile="auto" compiles when they are many)
    _planned_updates: int = 0
    param_resets: list[int] | None = None
    reset_networks: list[str] | None = None
    _param_resets_done: int = 0

    # ----------------------------------------------------------------- construction

    def _check_params(self, params: dict[str, Any]) -> None:
        """Validate the hyperparameters shared by both algorithms (typed errors, no asserts)."""
        check_common_args(**{key: params[key] for key in _COMMON_CHECKED})
        for name in LEARNING_RATE_ARGS.values():
            if params.get(name) is not None:
                make_schedule(params[name], name)
        distributed.check_distributed_arg(params.get("distributed", "auto"))
        check_compile_arg(params.get("compile", "auto"))
        check_param_resets(params.get("param_resets"), params.get("reset_networks"))

    def _set_shared_hyperparameters(self) -> None:
        """Set the hyperparameters both algorithms add to ``OffPolicyAlgorithm``'s from the constructor arguments."""
        for name in _SHARED_HYPERPARAMETERS:
            setattr(self, name, self._init_params[name])
        self.log_ent_coef: th.Tensor | None = None
        self.ent_coef_optimizer: th.optim.Optimizer | None = None
        # How many of param_resets were done (saved: a loaded model does not redo them)
        self._param_resets_done = 0

    def _default_target_entropy(self) -> float:
        """:return: The target entropy that ``target_entropy="auto"`` stands for (set by each algorithm)."""
        raise NotImplementedError

    def _setup_model(self) -> None:
        """
        Build everything both algorithms share, after their own space checks: the recurrent configuration, the
        data-parallel setup (per-rank device and process group, see :mod:`sb3_sac_ext.common.distributed`), SB3's
        ``OffPolicyAlgorithm._setup_model`` (buffer, policy), the aliases, the temperature, each optimizer's initial
        learning rate and the precision.
        """

        if self.n_steps > 1 and isinstance(self.observation_space, spaces.Dict) and self.replay_buffer_class is None:  # type: ignore[attr-defined]
            raise InvalidHyperparameterError(
                "n_steps > 1 is not supported with Dict observations (SB3's NStepReplayBuffer has no Dict version); "
                "use n_steps=1"
            )
        check_policy_options(self.policy_class, self.policy_kwargs, self._is_recurrent)  # type: ignore[attr-defined]
        if self._is_recurrent:  # type: ignore[attr-defined]
            rollout.configure_recurrent(self)
        # The batch source of the one training loop: SB3's samples, or recurrent sequences turned into transitions
        self._batches = SequenceBatches() if self._is_recurrent else FeedForwardBatches()
        self._distributed: distributed.DistributedState | None = distributed.setup(self)
        super()._setup_model()  # type: ignore[misc]
        self._create_aliases()
        self.batch_norm_stats = get_parameters_by_name(self.critic, ["running_"])
        self.batch_norm_stats_target = get_parameters_by_name(self.critic_target, ["running_"])
        check_resettable(self)
        check_distributed_statistics(self)
        self._setup_temperature(self._default_target_entropy())
        # The policy builds its optimizers with the actor's initial rate: start each at its own schedule's
        self._learning_rates.apply(self.optimizers, self.lr_schedule, 1.0, rnn_schedule=self._rnn_lr_schedule)
        self._setup_precision()

    def set_random_seed(self, seed: int | None = None) -> None:
        """
        SB3's ``set_random_seed``; in data-parallel training, rank ``r`` uses ``seed + r * n_envs``, so that no two
        envs of the job share a seed (with one env per rank: ``seed + rank``).
        """
        state = self._distributed
        if state is not None and seed is not None:
            seed = int(seed) + state.rank * max(int(getattr(self, "n_envs", 1) or 1), 1)
        super().set_random_seed(seed)  # type: ignore[misc]

    def _setup_schedules(self) -> None:
        """Build the schedules from ``learning_rate``, ``qf_learning_rate`` and ``ent_coef_learning_rate``."""
        self.lr_schedule = make_schedule(self.learning_rate, "learning_rate")
        self._learning_rates = LearningRates({arg: getattr(self, arg) for arg in LEARNING_RATE_ARGS.values()})

    @property
    def lr_schedules(self) -> dict[str, Any]:
        """
        One schedule per optimizer (``actor``, ``critic``, ``ent_coef``). The actor's, and that of every network
        without its own learning-rate argument, is ``lr_schedule`` as it is now: code written for SB3 that assigns
        ``model.lr_schedule`` changes them, as it changes every optimizer in SB3.
        """
        return self._learning_rates.schedules(self.lr_schedule)

    def _apply_hot_params(self) -> None:
        """Re-derive what depends on hyperparameters changed in place by ``set_params``."""
        self._setup_schedules()
        self._convert_train_freq_again()

    def _convert_train_freq_again(self) -> None:
        if not isinstance(self.train_freq, TrainFreq):  # type: ignore[has-type]
            self._convert_train_freq()  # type: ignore[attr-defined]

    def _setup_lr_schedule(self) -> None:
        # Called by OffPolicyAlgorithm._setup_model: the policy is built with the actor's initial rate
        self._setup_schedules()

    def _setup_temperature(self, default_target_entropy: float) -> None:
        """
        Create the entropy temperature (and its optimizer when learned).

        :param default_target_entropy: Target entropy used when ``target_entropy == "auto"``
        """
        if isinstance(self.target_entropy, str):
            if self.target_entropy != "auto":
                raise InvalidHyperparameterError(f"target_entropy must be 'auto' or a number, got {self.target_entropy!r}")
            self.target_entropy = float(default_target_entropy)
        else:
            try:
                self.target_entropy = float(self.target_entropy)
            except (TypeError, ValueError):
                raise InvalidHyperparameterError(
                    f"target_entropy must be 'auto' or a number, got {self.target_entropy!r}"
                ) from None
        self.temperature = EntropyTemperature(self.ent_coef, self.target_entropy, self.device)
        # SB3's attribute names, kept for compatibility (saved zips, user code)
        self.log_ent_coef = self.temperature.log_ent_coef
        self.ent_coef_optimizer = None
        if self.temperature.log_ent_coef is not None:
            self.ent_coef_optimizer = th.optim.Adam(
                [self.temperature.log_ent_coef], lr=self.lr_schedules["ent_coef"](1), fused=True
            )
        else:
            self.ent_coef_tensor = self.temperature.ent_coef_tensor

    def _setup_precision(self) -> None:
        """Resolve ``precision`` ("auto" -> bf16 where the hardware runs it natively) and start the training state."""
        self._precision = Precision(self.precision, self.device)
        self._optimizer_stepper = OptimizerStep(tuple(LEARNING_RATE_ARGS))
        self._train_logs = TrainLogs()

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast for the network forward passes when enabled; losses are computed in fp32."""
        return self._precision.autocast()

    def _create_aliases(self) -> None:
        """``self.actor``, ``self.critic``, ``self.critic_target``: shortcuts to the policy's networks (saved as such)."""
        self.actor = self.policy.actor
        self.critic = self.policy.critic
        self.critic_target = self.policy.critic_target

    # ----------------------------------------------------------------- training

    def _update_target(self) -> None:
        """
        Polyak update ``target <- (1 - tau) * target + tau * online`` of the target critics, one foreach op for
        all tensors (``tau=1.0``: hard update). Batch-norm running statistics are copied (SB3 GH issue #996).
        Needs ``self.critic``, ``self.critic_target``, ``self.batch_norm_stats`` and ``self.batch_norm_stats_target``.
        """
        if getattr(getattr(self.critic, "qf", None), "batch_norm", False):
            return  # CrossQ: no target network
        with th.no_grad():
            th._foreach_lerp_(list(self.critic_target.parameters()), list(self.critic.parameters()), self.tau)
            for stat, target_stat in zip(self.batch_norm_stats, self.batch_norm_stats_target):
                running_stats.assign(target_stat, stat)

    @property
    def optimizers(self) -> dict[str, th.optim.Optimizer]:
        """The optimizers by name: ``actor``, ``critic`` and, when the temperature is learned, ``ent_coef``."""
        optimizers = {"actor": self.policy.actor.optimizer, "critic": self.policy.critic.optimizer}
        if self.ent_coef_optimizer is not None:
            optimizers["ent_coef"] = self.ent_coef_optimizer
        return optimizers

    def _update_learning_rates(self) -> None:
        """Set each optimizer's rate from its schedule and log it as ``train/<name>_learning_rate``."""
        self._learning_rates.apply(
            self.optimizers, self.lr_schedule, self._current_progress_remaining, self.logger, self._rnn_lr_schedule
        )

    @property
    def _rnn_lr_schedule(self) -> Any:
        """The schedule of the RNN parameter groups (recurrent policies with ``rnn_learning_rate``), else ``None``."""
        return getattr(self.policy, "rnn_lr_schedule", None)

    @property
    def _is_recurrent(self) -> bool:
        """Whether the policy declares itself recurrent (sequence replay buffer, sequence batches)."""
        return is_recurrent_policy(getattr(self, "policy_class", None))

    @property
    def _minimize(self) -> bool:
        """Whether rewards are costs (``objective="minimize"``)."""
        return self.objective == "minimize"

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """The update of both algorithms: see :func:`sb3_sac_ext.common.training.train`."""
        reset_if_due(self)  # param_resets
        training.train(self, gradient_steps, batch_size)

    def _compiled_step(self, batch: Any, update_actor: bool, update_target: bool) -> dict[str, th.Tensor] | None:
        """One gradient step on the fast path, or ``None`` for the eager step: see :func:`.compiled_update.compiled_step`."""
        return compiled_step(self, batch, update_actor, update_target)

    def __getstate__(self) -> dict[str, Any]:
        # A copy (copy.deepcopy, pickle) compiles its own program at its first gradient step: a compiled function
        # is bound to the networks it was traced with
        state = self.__dict__.copy()
        state.pop("_compiled_update", None)
        return state

    def _optimizer_steps(self, steps: list[tuple[str, th.Tensor]]) -> None:
        """
        Backpropagate and step the named optimizers through the one hook (:class:`~sb3_sac_ext.common.optim.OptimizerStep`:
        data-parallel averaging, clipping by ``max_grad_norm``, non-finite guard).

        :param steps: ``(name, loss)`` pairs, ``name`` one of ``"actor"``, ``"critic"``, ``"ent_coef"``
        """
        optimizers = self.optimizers
        self._optimizer_stepper(
            [(name, optimizers[name], loss) for name, loss in steps],
            self.max_grad_norm,
            self._distributed,
            self._train_logs,
            self._n_updates,
            self.num_timesteps,  # type: ignore[attr-defined]
        )

    def _check_nonfinite_losses(self) -> None:
        """One host sync per ``train()``: raise :class:`NonFiniteError` if a loss was NaN/inf (updates were skipped)."""
        self._optimizer_stepper.check(self._n_updates, self.num_timesteps)  # type: ignore[attr-defined]

    def _record_train_logs(self, logs: dict[str, list[th.Tensor]]) -> None:
        """Keep this ``train()`` call's statistics as tensors (see :class:`TrainLogs`), then check for NaN/inf."""
        self._train_logs.record(logs)
        self._check_nonfinite_losses()

    def dump_logs(self) -> None:
        """Write the pending training statistics, then SB3's usual log dump."""
        self._train_logs.flush(self.logger)
        super().dump_logs()  # type: ignore[misc]

    # ----------------------------------------------------------------- data-parallel training

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: Any = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> Any:
        state = self._distributed
        if state is not None:
            self._convert_train_freq_again()
            if self.train_freq.unit == TrainFrequencyUnit.EPISODE:  # type: ignore[has-type]
                raise InvalidHyperparameterError(
                    "train_freq in episodes is not supported in data-parallel training: the ranks would do different "
                    "numbers of updates; use a number of steps"
                )
            state.check_settings(distributed.model_settings(self, total_timesteps, reset_num_timesteps))
            state.broadcast_model(self)
            state.reset_stop()
            if state.rank != 0:
                # Rank 0 alone logs, evaluates, checkpoints and shows progress: callbacks run there only
                self.set_logger(Logger(folder=None, output_formats=[]))  # type: ignore[attr-defined]
                callback, progress_bar = None, False
        total_timesteps, callback = super()._setup_learn(  # type: ignore[misc]
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        self._convert_train_freq_again()
        self._planned_updates = estimate_updates(self, total_timesteps)
        return total_timesteps, callback

    def collect_rollouts(self, *args: Any, **kwargs: Any) -> Any:
        state = self._distributed
        if state is None:
            return super().collect_rollouts(*args, **kwargs)  # type: ignore[misc]
        if state.stop_agreed():
            # A rank (rank 0's callbacks) asked to stop during the last rollout: every rank ends here, together
            return RolloutReturn(0, 0, continue_training=False)
        # Once training runs after every rollout (learning_starts passed, a fixed number of gradient steps) and no
        # VecNormalize statistics need merging, the ranks need no collective here: a stop request rides on the
        # next gradient all-reduce instead (that round of updates still runs on every rank, then all stop).
        # The decision uses only values that are equal on every rank.
        piggyback = (
            self._vec_normalize_env is None  # type: ignore[attr-defined]
            and self.gradient_steps > 0  # type: ignore[attr-defined]
            and self.num_timesteps > self.learning_starts  # type: ignore[attr-defined]
        )
        rollout = super().collect_rollouts(*args, **kwargs)  # type: ignore[misc]
        if piggyback:
            if not rollout.continue_training:
                state.request_stop()
                rollout = rollout._replace(continue_training=True)
            return rollout
        keep_going = state.sync_rollout(rollout.continue_training, self._vec_normalize_env)  # type: ignore[attr-defined]
        if keep_going != rollout.continue_training:
            rollout = rollout._replace(continue_training=keep_going)
        return rollout

    def learn(
        self,
        total_timesteps: int,
        callback: Any = None,
        log_interval: int = 4,
        tb_log_name: str = "run",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> Any:
        try:
            return super().learn(  # type: ignore[misc]
                total_timesteps=total_timesteps,
                callback=callback,
                log_interval=log_interval,
                tb_log_name=tb_log_name,
                reset_num_timesteps=reset_num_timesteps,
                progress_bar=progress_bar,
            )
        except BaseException as e:
            state = self._distributed
            if state is not None and not isinstance(e, DistributedSettingsError):
                # The other ranks fail at once (connection closed) instead of waiting for the timeout. A settings
                # mismatch is raised by every rank at the same point: the group stays usable.
                state.abort()
            raise

    @property
    def is_main_process(self) -> bool:
        """Whether this process logs, evaluates and saves: rank 0, or any process outside data-parallel training."""
        state = self._distributed
        return state is None or state.rank == 0

    # ----------------------------------------------------------------- deployment

    def export(
        self,
        path: Any,
        format: str | None = None,
        deterministic: bool = True,
        opset: int | None = None,
        normalize: Any = None,
        **kwargs: Any,
    ) -> Any:
        """
        Export the policy, preprocessing included, as ONNX (``.onnx``) or TorchScript (``.pt``);
        see :func:`sb3_sac_ext.common.export.export_policy` (ONNX needs ``pip install "sb3-sac-ext[export]"``).

        :param path: Output file (its suffix selects the format unless ``format`` is given)
        :param format: ``"onnx"`` or ``"torchscript"``
        :param deterministic: Export the action (as ``predict(deterministic=True)``) or the distribution parameters
        :param opset: ONNX opset version
        :param normalize: ``VecNormalize`` whose observation statistics are folded into the exported graph
        :param kwargs: Further arguments of ``export_policy`` (``channels_last``, ``verify``)
        :return: Path of the written file
        """
        return export_policy(self, path, format, deterministic=deterministic, opset=opset, normalize=normalize, **kwargs)

    # ----------------------------------------------------------------- persistence

    @classmethod
    def load(  # type: ignore[override]
        cls,
        path: Any,
        env: Any = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        allow_pickle: bool = False,
        **kwargs: Any,
    ) -> Any:
        """
        Load a model saved by this class or by Stable-Baselines3's ``SAC`` (same arguments as SB3's ``load``).

        :param allow_pickle: Whether pickled items inside the file may be unpickled (SB3 zips contain some).
            Unpickling runs code from the file: only allow it for files you trust.
        """

        def sb3_load(file: Any) -> Any:
            model = super(SoftOffPolicyMixin, cls).load(  # type: ignore[misc]
                file,
                env=env,
                device=device,
                custom_objects=custom_objects,
                print_system_info=print_system_info,
                force_reset=force_reset,
                **kwargs,
            )
            # SB3 zips do not store our constructor arguments: read them back from the loaded attributes
            model._init_params_from_attributes()
            return model

        return persistence.load_model(
            cls,
            path,
            env=env,
            device=device,
            custom_objects=custom_objects,
            force_reset=force_reset,
            allow_pickle=allow_pickle,
            sb3_load=sb3_load,
            **kwargs,
        )

    def save(self, path: Any, exclude: Any = None, include: Any = None) -> None:
        """
        Save the model atomically in sb3-sac-ext's pickle-free format (see :mod:`sb3_sac_ext.common.persistence`).

        :param path: File path (``.zip`` is appended when there is no suffix) or a writable binary file
        :param exclude: Attribute names not to save, in addition to the default ones
        :param include: Attribute names to save even if excluded by default

        In data-parallel training, only rank 0 writes: on the other ranks this is a no-op (their weights are equal).
        The ``distributed`` setting is not saved: a loaded model uses ``"auto"``.
        """

        if not self.is_main_process:
            return
        init_params = self._init_params
        self._init_params = {**init_params, "distributed": "auto"} if "distributed" in init_params else init_params
        try:
            persistence.save_model(self, path, exclude=exclude, include=include)
        finally:
            self._init_params = init_params

    def save_replay_buffer(self, path: Any) -> None:
        """
        Save the replay buffer atomically, without pickle (arrays as ``.npy`` members + JSON). In data-parallel
        training, a no-op on ranks other than 0 (use ``persistence.save_replay_buffer(model.replay_buffer, path)``
        to save another rank's buffer).
        """

        if not self.is_main_process:
            return
        if getattr(self, "replay_buffer", None) is None:
            raise ValueError("The replay buffer is not defined")
        persistence.save_replay_buffer(self.replay_buffer, path)

    def load_replay_buffer(self, path: Any, truncate_last_traj: bool = True, allow_pickle: bool = False) -> None:
        """
        Load a replay buffer saved by :meth:`save_replay_buffer`; SB3's pickled buffers only with ``allow_pickle=True``.
        """

        buffer = persistence.load_replay_buffer(path, device=self.device, allow_pickle=allow_pickle)
        if not isinstance(buffer, ReplayBuffer):
            raise CorruptedFileError(f"{path} does not hold a ReplayBuffer (got {type(buffer).__name__})")
        if not hasattr(buffer, "handle_timeout_termination"):  # SB3 < 2.1.0
            buffer.handle_timeout_termination = False
            buffer.timeouts = np.zeros_like(buffer.dones)
        if isinstance(buffer, HerReplayBuffer):
            if self.env is None:  # type: ignore[attr-defined]
                raise ValueError("You must pass an environment at load time when using HerReplayBuffer")
            buffer.env = None  # not stored in the file (SB3's __setstate__ does the same)
            buffer.set_env(self.env)  # type: ignore[attr-defined]
            if truncate_last_traj:
                buffer.truncate_last_trajectory()
        buffer.device = self.device
        if hasattr(buffer, "mark_episode_starts"):
            # Recurrent buffers: no sampled window crosses from the loaded data into the new transitions
            buffer.mark_episode_starts()
        self.replay_buffer = buffer

    def set_parameters(self, load_path_or_dict: Any, exact_match: bool = True, device: th.device | str = "auto") -> None:
        # A file in our format is read without pickle; SB3 zips go through SB3 (weights_only=True)
        if not isinstance(load_path_or_dict, dict):
            try:
                path = persistence.read_path(load_path_or_dict, ("zip",))
            except FileNotFoundError:
                path = None
            if path is not None and persistence.is_our_format(path):
                load_path_or_dict = persistence.read_parameters(path, type(self), device)
        try:
            super().set_parameters(load_path_or_dict, exact_match=exact_match, device=device)  # type: ignore[misc]
        except KeyError as e:
            # torch's Optimizer.load_state_dict indexes the dict it is given: name the entry instead of a bare KeyError
            malformed = [
                name
                for name, state in (load_path_or_dict.items() if isinstance(load_path_or_dict, dict) else ())
                if name in _OPTIMIZER_ATTRIBUTES and not is_optimizer_state(state)
            ]
            if not malformed:
                raise
            raise ValueError(
                f"Cannot load the parameters: {', '.join(malformed)} is not a complete optimizer state dict (missing "
                f"{e}); pass what optimizer.state_dict() returns, with its 'state' and 'param_groups'"
            ) from e

    # ----------------------------------------------------------------- input checks

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False) -> Any:
        """
        SB3's ``predict``, after checking the observation: a tuple ``(obs, info)``, strings or a wrong shape raise
        ``TypeError``/``ValueError`` giving the expected shape, NaN/inf raise
        :class:`~sb3_sac_ext.common.errors.NonFiniteError` (set ``check_observations = False`` to opt out).
        """
        if getattr(self, "check_observations", True):
            validation.check_predict_observation(observation, self.observation_space)  # type: ignore[attr-defined]
        return super().predict(observation, state, episode_start, deterministic)  # type: ignore[misc]

    def _store_transition(
        self, replay_buffer: Any, buffer_action: Any, new_obs: Any, reward: Any, dones: Any, infos: Any
    ) -> None:
        # NaN/inf rewards or observations never reach the replay buffer (cheap numpy checks)
        validation.check_transition(new_obs, reward, infos, self.num_timesteps)  # type: ignore[attr-defined]
        training.observe_rewards(self, reward, dones)
        if self._is_recurrent:
            rollout.before_store(self, replay_buffer)
            super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)  # type: ignore[misc]
            rollout.after_store(self, dones, infos)
            return
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)  # type: ignore[misc]

    def _sample_action(self, learning_starts: int, action_noise: Any = None, n_envs: int = 1) -> Any:
        # Recurrent policies carry the actor's RNN state per env through the rollout
        if self._is_recurrent:
            return rollout.sample_action(self, learning_starts, action_noise, n_envs)
        return super()._sample_action(learning_starts, action_noise, n_envs)  # type: ignore[misc]

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),  # type: ignore[misc]
            "actor",
            "critic",
            "critic_target",
            "temperature",
            "_learning_rates",
            "_train_logs",
            "_init_env",
            "batch_norm_stats",
            "batch_norm_stats_target",
            "_precision",
            "_optimizer_stepper",
            "distributed",
            "_distributed",
            "_last_lstm_states",
            "_batches",
            "_compiled_update",
            "_eager_only",
            "_planned_updates",
        ]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts = ["policy", "actor.optimizer", "critic.optimizer"]
        if self.ent_coef_optimizer is not None:
            state_dicts.append("ent_coef_optimizer")
            return state_dicts, ["log_ent_coef"]
        return state_dicts, ["ent_coef_tensor"]


_SHARED_HYPERPARAMETERS = (
    "target_entropy",
    "ent_coef",
    "target_update_interval",
    "qf_learning_rate",
    "ent_coef_learning_rate",
    "max_grad_norm",
    "policy_delay",
    "objective",
    "precision",
    "distributed",
    "compile",
    "param_resets",
    "reset_networks",
)

_COMMON_CHECKED = (
    "buffer_size",
    "learning_starts",
    "batch_size",
    "tau",
    "gamma",
    "train_freq",
    "gradient_steps",
    "n_steps",
    "target_update_interval",
    "policy_delay",
    "max_grad_norm",
    "objective",
    "precision",
)
