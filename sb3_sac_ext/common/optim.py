"""Optimizer construction shared by the policies."""

from collections.abc import Iterable
from typing import Any

import torch as th


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
