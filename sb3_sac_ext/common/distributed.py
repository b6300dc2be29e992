"""
Data-parallel training on ``torch.distributed`` (launched by ``torchrun``), shared by SAC and DiscreteSAC.

Each rank (process) has its own envs, replay buffer and collection; the networks are replicas kept
identical by broadcasting rank 0's weights at the start of ``learn()`` and by averaging the gradients of
every optimizer step across ranks (one flattened all-reduce per exchange, inside the optimizer-step hook
:meth:`~sb3_sac_ext.common.soft_algorithm.SoftOffPolicyMixin._optimizer_step`). SB3's networks are never wrapped
in ``DistributedDataParallel``: SB3 calls methods other than ``forward`` (``action_log_prob``, ``q_values``),
which DDP does not synchronise.

Nothing happens at import: the process group is formed when a model with ``distributed`` on is built.

- backend: NCCL when the model is on CUDA (``device="auto"`` picks ``cuda:LOCAL_RANK``), gloo on CPU;
- timeout of every collective: ``SB3_SAC_EXT_DIST_TIMEOUT`` seconds (default 600), so that a rank that
  stopped answering ends the others with :class:`~sb3_sac_ext.common.errors.DistributedError`;
  a rank that raises aborts the process group it formed (and its process exits): on gloo its peers' collectives
  fail at once (connection closed), on NCCL at the timeout (NCCL's watchdog);
- settings (env id, hyperparameters, world size, ``total_timesteps``) are compared across ranks at the start
  of ``learn()``: a mismatch raises :class:`~sb3_sac_ext.common.errors.DistributedSettingsError` on every rank;
- a callback on rank 0 may stop training: during the warm-up, with ``VecNormalize`` or ``gradient_steps=-1``, the
  ranks agree after each rollout on whether to continue and merge their ``VecNormalize`` statistics (one small
  all-gather); otherwise the stop request rides on the next gradient all-reduce (no collective per rollout);
- per update, one all-reduce for the critic and one shared by the actor and the temperature.

Every exchange is one of ``torch.distributed``'s own collectives (``all_reduce``, ``broadcast``, ``all_gather``,
``all_gather_object``) on the default group, so the backend the cluster is tuned for (gloo, NCCL) does the
transport: there is no side channel to configure, and a rank that exits closes its connections, failing its peers'
pending collectives.
"""

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from typing import Any

import numpy as np
import torch as th

from sb3_sac_ext.common.errors import DistributedError, DistributedSettingsError, InvalidHyperparameterError

TIMEOUT_ENV = "SB3_SAC_EXT_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _dist() -> Any:
    import torch.distributed as dist

    return dist


def check_distributed_arg(value: Any) -> None:
    """Raise :class:`InvalidHyperparameterError` unless ``value`` is ``"auto"``, ``True`` or ``False``."""
    if not (value is True or value is False or value == "auto"):
        raise InvalidHyperparameterError(f"distributed must be 'auto', True or False, got {value!r}")


def env_world_size() -> int:
    """:return: ``WORLD_SIZE`` set by ``torchrun`` (1 when absent)"""
    try:
        return int(os.environ.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        return 1


def group_ready() -> bool:
    """:return: Whether a default process group exists in this process"""
    dist = _dist()
    return bool(dist.is_available() and dist.is_initialized())


def timeout() -> timedelta:
    """:return: Timeout of the collectives, from ``SB3_SAC_EXT_DIST_TIMEOUT`` (seconds, default 600)"""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise InvalidHyperparameterError(f"{TIMEOUT_ENV} must be a number of seconds, got {raw!r}") from None
    if seconds <= 0:
        raise InvalidHyperparameterError(f"{TIMEOUT_ENV} must be > 0, got {raw!r}")
    return timedelta(seconds=seconds)


def wanted(setting: Any) -> bool:
    """
    :param setting: The ``distributed`` argument: ``"auto"`` (on when launched by torchrun with ``WORLD_SIZE > 1``
        or inside an existing process group of more than one rank), ``True`` (required) or ``False`` (off)
    :return: Whether data-parallel training is on
    """
    check_distributed_arg(setting)
    if setting is False:
        return False
    if setting is True:
        return True
    if group_ready():
        return _dist().get_world_size() > 1
    return env_world_size() > 1


def resolve_device(device: th.device) -> th.device:
    """``cuda`` without an index becomes ``cuda:LOCAL_RANK``; other devices are kept."""
    if device.type == "cuda" and device.index is None:
        return th.device("cuda", int(os.environ.get("LOCAL_RANK", "0") or 0))
    return device


def init_process_group(device: th.device) -> bool:
    """
    Form the default process group from torchrun's environment variables, unless one exists.

    :param device: Device of the model: NCCL for CUDA, gloo otherwise
    :return: Whether this call formed the group (and so may destroy it)
    :raise DistributedError: when no group can be formed
    """
    dist = _dist()
    if not dist.is_available():
        raise DistributedError("torch.distributed is not available in this PyTorch build")
    if dist.is_initialized():
        return False
    missing = [name for name in _TORCHRUN_VARS if not os.environ.get(name)]
    if missing:
        raise DistributedError(
            "distributed training needs a process group, but there is none and the torchrun environment variables "
            f"{missing} are not set: launch with `torchrun --nproc_per_node=N ...` (or `sb3-sac-ext train --nproc N`), "
            "call torch.distributed.init_process_group() first, or pass distributed=False"
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        th.cuda.set_device(device)
    # torch.distributed.nn's functions take ``group=group.WORLD`` as a default argument, evaluated at import. Imported
    # after the group is formed (torch._dynamo imports it when the first optimizer is built), they would keep the group
    # alive after :meth:`DistributedState.abort` destroys it, and with it the connections whose closing tells the
    # other ranks at once that this one failed.
    import torch.distributed.nn  # noqa: F401

    try:
        dist.init_process_group(backend=backend, timeout=timeout())
    except Exception as e:
        raise DistributedError(
            f"cannot form the {backend} process group (RANK={os.environ.get('RANK')}, "
            f"WORLD_SIZE={os.environ.get('WORLD_SIZE')}, MASTER_ADDR={os.environ.get('MASTER_ADDR')}, "
            f"MASTER_PORT={os.environ.get('MASTER_PORT')}): {type(e).__name__}: {e}"
        ) from e
    return True


def _describe(value: Any) -> Any:
    """JSON fallback: classes and functions by name, other objects by ``repr`` without memory addresses."""
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


def _env_ids(env: Any) -> Any:
    if env is None:
        return None
    try:
        return sorted({getattr(spec, "id", None) or "?" for spec in env.get_attr("spec")})
    except Exception:
        return None


_NOT_COMPARED = {"env", "seed", "device", "distributed", "verbose", "tensorboard_log"}


def model_settings(model: Any, total_timesteps: int, reset_num_timesteps: bool) -> dict[str, Any]:
    """
    What must be equal on every rank for the replicas to stay identical (compared at the start of ``learn()``).

    :return: ``{name: JSON-able value}``
    """
    settings = {key: value for key, value in model.get_params().items() if key not in _NOT_COMPARED}
    opt_states = {
        name: sorted((len(state), sorted(state)) for state in optimizer.state.values())
        for name, optimizer in model.optimizers.items()
    }
    settings.update(
        {
            "algorithm": type(model).__qualname__,
            "world_size": _dist().get_world_size(),
            "env_id": _env_ids(model.env),
            "n_envs": model.n_envs,
            "observation_space": model.observation_space,
            "action_space": model.action_space,
            "train_freq": tuple(model.train_freq),
            "total_timesteps": int(total_timesteps),
            "reset_num_timesteps": bool(reset_num_timesteps),
            "num_timesteps": int(model.num_timesteps),
            "n_updates": int(model._n_updates),
            "parameter_shapes": [tuple(t.shape) for t in model.policy.state_dict().values()],
            "optimizer_states": opt_states,
            "vec_normalize": model._vec_normalize_env is not None,
        }
    )
    return json.loads(json.dumps(settings, default=_describe, sort_keys=True))


class DistributedState:
    """
    The process group as one model sees it (never saved). Every collective raises :class:`DistributedError`
    naming what failed when a peer crashed or did not answer within the timeout.

    :param owned: Whether the model formed the group (then it aborts it when ``learn()`` raises)
    """

    def __init__(self, owned: bool):
        dist = _dist()
        self.owned = owned
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.backend = str(dist.get_backend())
        self.device = th.device("cuda", th.cuda.current_device()) if self.backend == "nccl" else th.device("cpu")
        self.reset_stop()
        self._rms_base: list[tuple[float, np.ndarray, np.ndarray]] | None = None

    def __repr__(self) -> str:
        return f"DistributedState(rank={self.rank}, world_size={self.world_size}, backend={self.backend!r})"

    def _failed(self, what: str, error: BaseException) -> DistributedError:
        return DistributedError(
            f"rank {self.rank}/{self.world_size}: the collective '{what}' failed ({type(error).__name__}: {error}). "
            "Another rank probably crashed (see its error) or did not reach this point within the timeout "
            f"({timeout().total_seconds():g} s, set {TIMEOUT_ENV})"
        )

    def _collective(self, what: str, function: Any, *args: Any, **kwargs: Any) -> None:
        """Run one ``torch.distributed`` collective; a peer that closed its connections or timed out raises here."""
        try:
            function(*args, **kwargs)
        except (RuntimeError, OSError) as e:  # DistBackendError, DistNetworkError, gloo timeouts are RuntimeErrors
            raise self._failed(what, e) from e

    # ------------------------------------------------------------------ hot path

    def average_gradients(self, optimizers: list[th.optim.Optimizer], bad: th.Tensor) -> th.Tensor:
        """
        Replace the gradients of the ``optimizers``' parameters by their mean over the ranks: one flattened
        ``all_reduce`` per dtype, no host synchronisation. Two kinds of flags ride along: the non-finite flags ``bad``
        (every rank skips an update when the loss of any rank was NaN/inf), and this rank's request to stop
        training (:meth:`request_stop`), so that ending a run needs no collective of its own.

        gloo and NCCL reduce each element in one order and hand the same result to every rank (ring or tree), and
        every rank then divides by the same ``world_size``: the replicas stay bit-identical.

        :param optimizers: The optimizers about to step
        :param bad: This rank's non-finite flag of each optimizer (bool tensor of shape ``(len(optimizers),)``)
        :return: The flags of all ranks (True where any rank's was)
        """
        dist = _dist()
        grads = [p.grad for optimizer in optimizers for group in optimizer.param_groups for p in group["params"]]
        by_dtype: dict[th.dtype, list[th.Tensor]] = {}
        for grad in grads:
            if grad is not None:
                by_dtype.setdefault(grad.dtype, []).append(grad)
        if not by_dtype:
            by_dtype[th.float32] = []
        n_flags = bad.numel() + 1
        for index, (dtype, group_grads) in enumerate(by_dtype.items()):
            parts = [g.reshape(-1) for g in group_grads]
            if index == 0:
                device = parts[0].device if parts else bad.device
                stop = self._stop_request.to(device=device, dtype=dtype).reshape(1)
                parts += [bad.reshape(-1).to(device=device, dtype=dtype), stop]
            flat = th.cat(parts)
            self._collective("gradient all-reduce", dist.all_reduce, flat)
            if index == 0:
                flags = flat[-n_flags:].clone()
                flat = flat[:-n_flags]
            flat.div_(self.world_size)
            if group_grads:
                values = flat.split([g.numel() for g in group_grads])
                th._foreach_copy_(group_grads, [v.view_as(g) for v, g in zip(values, group_grads, strict=True)])
        # Any rank's stop request, kept as a tensor (read once per rollout by :meth:`stop_agreed`)
        self._stop_agreed = th.maximum(self._stop_agreed.to(flags.device), (flags[-1] > 0).to(th.float32))
        return flags[:-1] > 0

    def request_stop(self) -> None:
        """Ask every rank to stop after the current round of updates (sent with the next gradient all-reduce)."""
        self._stop_request = th.ones((), dtype=th.float32)

    def stop_agreed(self) -> bool:
        """:return: Whether a rank asked to stop in an all-reduce so far (one host read)"""
        return bool(self._stop_agreed.cpu() > 0)

    def reset_stop(self) -> None:
        """Forget stop requests (start of ``learn()``)."""
        self._stop_request = th.zeros((), dtype=th.float32)
        self._stop_agreed = th.zeros((), dtype=th.float32)

    # ------------------------------------------------------------------ start of learn()

    def check_settings(self, settings: dict[str, Any]) -> None:
        """
        All-gather the settings of every rank (``all_gather_object``) and raise :class:`DistributedSettingsError` on
        every rank when one differs from rank 0's.
        """
        gathered: list[Any] = [None] * self.world_size
        self._collective("settings check", _dist().all_gather_object, gathered, settings)
        reference = gathered[0]
        problems = []
        for rank, other in enumerate(gathered[1:], start=1):
            keys = sorted(set(reference) | set(other))
            for key in keys:
                if reference.get(key) != other.get(key):
                    problems.append(f"{key}: rank 0 has {reference.get(key)!r}, rank {rank} has {other.get(key)!r}")
        if problems:
            raise DistributedSettingsError(
                "the ranks were started with different settings (every rank must run the same command): " + "; ".join(problems)
            )

    def broadcast_model(self, model: Any) -> None:
        """
        Copy rank 0's weights (policy, targets, temperature), optimizer states and ``VecNormalize`` statistics to every
        rank: one flattened ``broadcast`` per dtype.
        """
        tensors = list(model.policy.state_dict(keep_vars=True).values())
        if getattr(model, "log_ent_coef", None) is not None:
            tensors.append(model.log_ent_coef)
        for optimizer in model.optimizers.values():
            for state in optimizer.state.values():
                tensors.extend(value for _, value in sorted(state.items()) if isinstance(value, th.Tensor))
        by_dtype: dict[th.dtype, list[th.Tensor]] = {}
        for tensor in tensors:
            by_dtype.setdefault(tensor.dtype, []).append(tensor.data)
        with th.no_grad():
            for group in by_dtype.values():
                flat = th.cat([t.reshape(-1).to(self.device) for t in group])
                self._collective("weight broadcast", _dist().broadcast, flat, src=0)
                for tensor, value in zip(group, flat.split([t.numel() for t in group]), strict=True):
                    tensor.copy_(value.view_as(tensor))
        vec_normalize = model._vec_normalize_env
        if vec_normalize is not None:
            stats = _running_stats(vec_normalize)
            packed = self._to_device(np.concatenate([_pack(rms) for rms in stats]))
            self._collective("VecNormalize broadcast", _dist().broadcast, packed, src=0)
            values = packed.cpu().numpy()
            offset = 0
            for rms in stats:
                offset = _unpack(rms, values, offset)
            self._rms_base = [(float(r.count), r.mean.copy(), r.var.copy()) for r in stats]

    # ------------------------------------------------------------------ after each rollout

    def sync_rollout(self, continue_training: bool, vec_normalize: Any) -> bool:
        """
        Agree on continuing (any rank stopping stops all) and merge the ``VecNormalize`` statistics gathered since
        the last merge, in one ``all_gather``.

        :return: Whether every rank continues
        """
        stats = _running_stats(vec_normalize) if vec_normalize is not None else []
        base = self._rms_base if self._rms_base is not None and len(self._rms_base) == len(stats) else None
        if base is None:
            base = [(float(r.count), r.mean.copy(), r.var.copy()) for r in stats]
        parts = [np.array([1.0 if continue_training else 0.0])]
        for rms, (count, mean, var) in zip(stats, base, strict=True):
            parts.append(_delta_moments(rms, count, mean, var))
        local = self._to_device(np.concatenate(parts))
        gathered = [th.empty_like(local) for _ in range(self.world_size)]
        self._collective("rollout sync", _dist().all_gather, gathered, local)
        rows = [row.cpu().numpy() for row in gathered]
        keep_going = all(row[0] > 0.5 for row in rows)
        offset = 1
        for rms, (count, mean, var) in zip(stats, base, strict=True):
            size = mean.size
            rms.count, rms.mean, rms.var = count, mean.copy(), var.copy()
            for row in rows:  # rank order: the same result on every rank
                n, m, v = row[offset], row[offset + 1 : offset + 1 + size], row[offset + 1 + size : offset + 1 + 2 * size]
                if n > 0:
                    rms.update_from_moments(m.reshape(mean.shape), v.reshape(mean.shape), n)
            offset += 1 + 2 * size
        self._rms_base = [(float(r.count), r.mean.copy(), r.var.copy()) for r in stats]
        return keep_going

    def _to_device(self, array: np.ndarray) -> th.Tensor:
        return th.as_tensor(np.asarray(array, dtype=np.float64)).to(self.device)

    # ------------------------------------------------------------------ errors

    def abort(self) -> None:
        """
        After an error inside ``learn()``: abort the process group this model formed, so that the other ranks' pending
        collectives fail at once (their connections to this rank close) instead of waiting for the timeout. NCCL's
        communicators are aborted (destroying them could wait on the collective the dead peer never joins); gloo's
        group is destroyed. A group formed by the caller (torchrun script, CLI) is left to it: it ends when this
        process exits, and the peers' collectives time out otherwise.
        """
        if not (self.owned and group_ready()):
            return
        dist = _dist()
        abort_group = getattr(dist.distributed_c10d, "_abort_process_group", None)  # private: absent from older torch
        try:
            if self.backend == "nccl" and abort_group is not None:
                abort_group()
            else:
                dist.destroy_process_group()
        except Exception:  # best effort: the error being raised matters more
            pass


def setup(model: Any) -> DistributedState | None:
    """
    Called by the models' ``_setup_model``: resolve ``model.distributed``, pick the per-rank device and form the
    process group when needed.

    :return: The state, or None when data-parallel training is off
    """
    if not wanted(getattr(model, "distributed", "auto")):
        return None
    model.device = resolve_device(model.device)
    owned = init_process_group(model.device)
    if model.device.type == "cuda" and str(_dist().get_backend()) == "nccl":
        th.cuda.set_device(model.device)
    return DistributedState(owned)


# ---------------------------------------------------------------------- VecNormalize statistics


def _running_stats(vec_normalize: Any) -> list[Any]:
    """The ``RunningMeanStd`` objects of a ``VecNormalize`` (observation statistics per key for Dict spaces)."""
    obs_rms = vec_normalize.obs_rms
    stats = [obs_rms[key] for key in sorted(obs_rms)] if isinstance(obs_rms, dict) else [obs_rms]
    return [*stats, vec_normalize.ret_rms]


def _pack(rms: Any) -> np.ndarray:
    return np.concatenate([[float(rms.count)], np.ravel(rms.mean), np.ravel(rms.var)]).astype(np.float64)


def _unpack(rms: Any, values: np.ndarray, offset: int) -> int:
    size = np.size(rms.mean)
    shape = np.shape(rms.mean)
    rms.count = float(values[offset])
    rms.mean = values[offset + 1 : offset + 1 + size].reshape(shape).copy()
    rms.var = values[offset + 1 + size : offset + 1 + 2 * size].reshape(shape).copy()
    return offset + 1 + 2 * size


def _delta_moments(rms: Any, count: float, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """
    (count, mean, var) of the samples added to ``rms`` since it was ``(count, mean, var)``: the exact inverse of
    ``RunningMeanStd.update_from_moments``. Zeros when nothing was added.
    """
    new_count = float(rms.count)
    n = new_count - count
    size = np.size(mean)
    if n <= 1e-9:
        return np.zeros(1 + 2 * size)
    delta_mean = (np.asarray(rms.mean, dtype=np.float64) - mean) * new_count / n  # mean of the new samples - old mean
    m2 = np.asarray(rms.var, dtype=np.float64) * new_count - var * count - np.square(delta_mean) * count * n / new_count
    batch_var = np.maximum(m2 / n, 0.0)
    return np.concatenate([[n], np.ravel(mean + delta_mean), np.ravel(batch_var)])


# ---------------------------------------------------------------------- launcher


def launch(nproc: int, module_args: list[str]) -> int:
    """
    Run ``python -m torch.distributed.run --standalone --nproc_per_node=nproc -m <module_args>`` and wait.

    :param nproc: Processes on this machine
    :param module_args: Module and its arguments, e.g. ``["sb3_sac_ext.cli", "train", "--env", "Pendulum-v1"]``
    :return: The exit status of torchrun
    """
    if nproc < 1:
        raise InvalidHyperparameterError(f"--nproc must be >= 1, got {nproc}")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", *module_args]
    return subprocess.call(command)


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
    "DistributedState",
    "check_distributed_arg",
    "init_process_group",
    "launch",
    "model_settings",
    "setup",
    "wanted",
]
