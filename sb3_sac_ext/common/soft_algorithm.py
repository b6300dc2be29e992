"""
What SAC and DiscreteSAC share on top of SB3's ``OffPolicyAlgorithm``: per-network learning-rate schedules,
the entropy temperature, the single optimizer-step hook, mixed precision, sync-free logging and the save contract.

Both algorithms inherit ``(SoftOffPolicyMixin, OffPolicyAlgorithm)``; the mixin holds no learning rule.
"""

import contextlib
from collections.abc import Iterator
from typing import Any

import torch as th
from stable_baselines3.common.utils import update_learning_rate

from sb3_sac_ext.common.entropy import EntropyTemperature
from sb3_sac_ext.common.errors import InvalidHyperparameterError
from sb3_sac_ext.common.estimator import EstimatorMixin
from sb3_sac_ext.common.schedules import BaseSchedule, make_schedule
from sb3_sac_ext.common.validation import check_common_args

# Optimizer name -> hyperparameter that holds its learning rate (``None`` falls back to ``learning_rate``)
LEARNING_RATE_ARGS = {"actor": "learning_rate", "critic": "qf_learning_rate", "ent_coef": "ent_coef_learning_rate"}


def bf16_is_fast(device: th.device) -> bool:
    """
    :param device: Torch device
    :return: Whether bf16 matmuls are native on it (AMX on CPU, compute capability >= 8 on CUDA)
    """
    if device.type == "cuda":
        return th.cuda.is_available() and th.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        return bool(getattr(th.cpu, "_is_amx_tile_supported", lambda: False)())
    return False


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
    max_grad_norm: float | None
    policy_delay: int
    objective: str
    precision: str
    _current_progress_remaining: float

    # ----------------------------------------------------------------- construction

    def _check_params(self, params: dict[str, Any]) -> None:
        """Validate the hyperparameters shared by both algorithms (typed errors, no asserts)."""
        check_common_args(**{key: params[key] for key in _COMMON_CHECKED})
        for name in LEARNING_RATE_ARGS.values():
            if params.get(name) is not None:
                make_schedule(params[name], name)

    def _setup_schedules(self) -> None:
        """Build one schedule per optimizer from ``learning_rate``, ``qf_learning_rate``, ``ent_coef_learning_rate``."""
        self.lr_schedule = make_schedule(self.learning_rate, "learning_rate")
        self.lr_schedules: dict[str, BaseSchedule] = {}
        for name, arg in LEARNING_RATE_ARGS.items():
            value = getattr(self, arg)
            self.lr_schedules[name] = self.lr_schedule if value is None else make_schedule(value, arg)

    def _apply_hot_params(self) -> None:
        """Re-derive what depends on hyperparameters changed in place by ``set_params``."""
        self._setup_schedules()
        self._convert_train_freq_again()

    def _convert_train_freq_again(self) -> None:
        from stable_baselines3.common.type_aliases import TrainFreq

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
        self.ent_coef_optimizer: th.optim.Optimizer | None = None
        if self.temperature.log_ent_coef is not None:
            self.ent_coef_optimizer = th.optim.Adam(
                [self.temperature.log_ent_coef], lr=self.lr_schedules["ent_coef"](1), fused=True
            )
        else:
            self.ent_coef_tensor = self.temperature.ent_coef_tensor

    def _setup_precision(self) -> None:
        """Resolve ``precision`` ("auto" -> bf16 where the hardware runs it natively)."""
        self._use_bf16 = self.precision == "bf16" or (self.precision == "auto" and bf16_is_fast(self.device))
        self._train_logs: dict[str, th.Tensor] = {}

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        """bf16 autocast for the network forward passes when enabled; losses are computed in fp32."""
        if self._use_bf16:
            with th.autocast(device_type=self.device.type, dtype=th.bfloat16):
                yield
        else:
            yield

    # ----------------------------------------------------------------- training

    @property
    def optimizers(self) -> dict[str, th.optim.Optimizer]:
        """The optimizers by name: ``actor``, ``critic`` and, when the temperature is learned, ``ent_coef``."""
        optimizers = {"actor": self.policy.actor.optimizer, "critic": self.policy.critic.optimizer}
        if self.ent_coef_optimizer is not None:
            optimizers["ent_coef"] = self.ent_coef_optimizer
        return optimizers

    def _update_learning_rates(self) -> None:
        """Set each optimizer's rate from its schedule and log it as ``train/<name>_learning_rate``."""
        for name, optimizer in self.optimizers.items():
            rate = self.lr_schedules[name](self._current_progress_remaining)
            update_learning_rate(optimizer, rate)
            self.logger.record(f"train/{name}_learning_rate", rate)
        # SB3's key, kept for dashboards that expect it
        self.logger.record("train/learning_rate", self.lr_schedules["actor"](self._current_progress_remaining))

    def _optimizer_step(self, name: str, loss: th.Tensor) -> None:
        """
        The one place where every optimizer step happens: zero the gradients, backpropagate ``loss``,
        clip by global norm (``max_grad_norm``), step. No host synchronisation.

        :param name: ``"actor"``, ``"critic"`` or ``"ent_coef"``
        :param loss: Scalar loss of that network
        """
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm is not None and name != "ent_coef":
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            grad_norm = th.nn.utils.clip_grad_norm_(params, self.max_grad_norm, foreach=True)
            self._train_logs[f"train/{name}_grad_norm"] = grad_norm.detach()
        optimizer.step()

    def _record_train_logs(self, logs: dict[str, list[th.Tensor]]) -> None:
        """
        Keep this ``train()`` call's statistics as tensors; they are converted to floats (one host sync)
        only when the logger dumps, see :meth:`dump_logs`.

        :param logs: Logger key -> one scalar tensor per gradient step
        """
        for key, values in logs.items():
            if values:
                self._train_logs[key] = values[0].detach() if len(values) == 1 else th.stack(values).mean().detach()

    def _flush_train_logs(self) -> None:
        for key, value in self._train_logs.items():
            self.logger.record(key, float(value))
        self._train_logs.clear()

    def dump_logs(self) -> None:
        """Write the pending training statistics, then SB3's usual log dump."""
        self._flush_train_logs()
        super().dump_logs()  # type: ignore[misc]

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
        return super().load(  # type: ignore[misc]
            path,
            env=env,
            device=device,
            custom_objects=custom_objects,
            print_system_info=print_system_info,
            force_reset=force_reset,
            **kwargs,
        )

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),  # type: ignore[misc]
            "actor",
            "critic",
            "critic_target",
            "temperature",
            "lr_schedules",
            "_train_logs",
            "_init_env",
        ]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts = ["policy", "actor.optimizer", "critic.optimizer"]
        if self.ent_coef_optimizer is not None:
            state_dicts.append("ent_coef_optimizer")
            return state_dicts, ["log_ent_coef"]
        return state_dicts, ["ent_coef_tensor"]


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
