"""Optimizers: their construction (fused Adam by default) and the one optimizer-step hook of the training loop."""

from collections.abc import Iterable
from typing import Any

import torch as th

from sb3_sac_ext.common.errors import NonFiniteError


def make_optimizer(
    optimizer_class: type[th.optim.Optimizer],
    params: Iterable[th.nn.Parameter],
    lr: float,
    optimizer_kwargs: dict[str, Any] | None = None,
) -> th.optim.Optimizer:
    """
    Create an optimizer, using PyTorch's fused (single kernel) implementation of Adam/AdamW
    when the caller did not choose an implementation: learning is the same, the step is one op
    instead of one per parameter.

    :param optimizer_class: Optimizer class (``th.optim.Adam`` by default in SB3)
    :param params: Parameters to optimise
    :param lr: Initial learning rate
    :param optimizer_kwargs: Extra keyword arguments
    :return: The optimizer
    """
    kwargs = dict(optimizer_kwargs or {})
    if optimizer_class in (th.optim.Adam, th.optim.AdamW) and "fused" not in kwargs and "foreach" not in kwargs:
        kwargs["fused"] = True
    return optimizer_class(params, lr=lr, **kwargs)  # type: ignore[call-arg]


class OptimizerStep:
    """
    The one place where optimizer steps happen: zero the gradients, backpropagate, average the gradients across
    ranks (data-parallel training), clip by global norm, step, with a non-finite guard that needs no host
    synchronisation.

    The guard: PyTorch's fused Adam/AdamW skip their whole update when their ``found_inf`` tensor is non-zero (the
    hook ``torch.amp.GradScaler`` uses to skip steps after an overflow). The flag is set from the losses and gradient
    norms on the device, stays set for the rest of the ``train()`` call (every later update is skipped too), and is
    read once at the end (:meth:`check`), so a NaN never reaches the weights and no step waits for the host.
    Optimizers without that hook check the loss on the host before stepping.

    :param names: Names of the optimizers in a fixed order (for the error message's code)
    """

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        self._flag: th.Tensor | None = None
        self._where: th.Tensor | None = None
        self._calls = 0
        self._start = 0

    def __call__(
        self,
        steps: list[tuple[str, th.optim.Optimizer, th.Tensor]],
        max_grad_norm: float | None,
        distributed: Any,
        grad_norms: dict[str, th.Tensor],
        n_updates: int,
        num_timesteps: Any,
    ) -> None:
        """
        Step several optimizers whose losses share no parameters (the actor and the temperature): each loss is
        backpropagated into its own optimizer's parameters; in data-parallel training the gradients of all of them
        are averaged across ranks in one flattened all-reduce; then each is clipped (not the temperature) and
        stepped, in the given order.

        :param steps: ``(name, optimizer, loss)`` triples, ``name`` one of :attr:`names`
        :param max_grad_norm: Global norm to clip the actor's and critics' gradients to (``None``: no clipping)
        :param distributed: The data-parallel state (``average_gradients``), or ``None``
        :param grad_norms: Where the gradient norms before clipping are written (``train/<name>_grad_norm``)
        :param n_updates: Gradient steps done so far (for error messages)
        :param num_timesteps: Env steps done so far (for error messages)
        """
        prepared = []
        for name, optimizer, loss in steps:
            fused = bool(optimizer.defaults.get("fused")) and loss.device.type in ("cpu", "cuda")
            bad = ~th.isfinite(loss.detach())
            if not fused and not bool(bad.logical_not().all()):  # no skip hook: one host sync per step
                raise NonFiniteError(
                    f"Non-finite {name} loss ({float(loss):.6g}) at gradient step {n_updates} "
                    f"(num_timesteps={num_timesteps}); the update was not applied"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            prepared.append((name, optimizer, fused, bad))
        if distributed is not None:
            # Mean gradient over the ranks before clipping: replicas stay identical. A non-finite loss on any rank
            # skips the update on every rank.
            bads = distributed.average_gradients([item[1] for item in prepared], th.stack([item[3] for item in prepared]))
            prepared = [(name, optimizer, fused, bads[i]) for i, (name, optimizer, fused, _) in enumerate(prepared)]
        for name, optimizer, fused, bad in prepared:
            if max_grad_norm is not None and name != "ent_coef":
                params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
                grad_norm = th.nn.utils.clip_grad_norm_(params, max_grad_norm, foreach=True)
                grad_norms[f"train/{name}_grad_norm"] = grad_norm.detach()
                bad = bad | ~th.isfinite(grad_norm.detach())
            if fused:
                flag, where = self._flags(bad.device, n_updates)
                code = self._calls * len(self.names) + self.names.index(name)
                # First offending step: (optimizer call index, network), recorded without a sync
                where.copy_(th.where((flag == 0) & bad, code, where))
                th.maximum(flag, bad.to(flag.dtype), out=flag)
                optimizer.found_inf = flag  # type: ignore[attr-defined]
                try:
                    optimizer.step()
                finally:
                    del optimizer.found_inf  # type: ignore[attr-defined]
                self._calls += 1
            else:
                optimizer.step()

    def _flags(self, device: th.device, n_updates: int) -> tuple[th.Tensor, th.Tensor]:
        if self._flag is None or self._where is None or self._flag.device != device:
            self._flag = th.zeros((), dtype=th.float32, device=device)
            self._where = th.full((), -1, dtype=th.int64, device=device)
            self._calls = 0
            self._start = n_updates
        return self._flag, self._where

    def check(self, n_updates: int, num_timesteps: Any) -> None:
        """
        One host sync per ``train()`` call: raise :class:`NonFiniteError` if a loss or gradient was NaN/inf
        (that update and the rest of the call were skipped).

        :param n_updates: Gradient steps done so far (the start of the next call)
        :param num_timesteps: Env steps done so far (for the message)
        """
        if self._flag is None or self._where is None:
            return
        if bool(self._flag):
            code = int(self._where)
            start = self._start
            self._flag = None
            raise NonFiniteError(
                f"Non-finite {self.names[code % len(self.names)]} loss or gradient in the train() call that started at "
                f"gradient step {start} (num_timesteps={num_timesteps}); this update and the rest of that train() call "
                "were skipped, the weights were left unchanged"
            )
        self._calls = 0
        self._start = n_updates
