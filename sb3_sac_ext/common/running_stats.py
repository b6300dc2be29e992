"""
How modules with running statistics (:class:`~sb3_sac_ext.common.batch_renorm.EnsembleBatchRenorm`,
:class:`~sb3_sac_ext.common.simba.RunningObsNorm`) write them, on the eager and the compiled update alike.

A module in training mode updates its statistics as a side effect of its forward pass. Eagerly, :func:`write` copies
the new value into the buffer at once. Inside ``torch.func.grad``, which takes every gradient of the compiled update
(:mod:`sb3_sac_ext.common.compiled_update`), a function may not write a tensor that it did not create, so there the
update is *staged*: inside a :class:`Stage`, :func:`write` records the new value, :func:`read` returns the latest
value of a buffer (staged or not), the differentiated function returns the staged values with its loss, and the
program writes them after the gradient (:meth:`Stage.commit`): the same values at the same point of the update as
the eager path.
"""

import torch as th

# The open stages, innermost last (a global and not a module attribute: the program traces it without guards on the
# networks' attributes)
_OPEN: list["Stage"] = []


class Stage:
    """
    Staged statistics: ``with stage:`` records every :func:`write` in the block instead of applying it.

    A stage that is never committed discards its updates (the compiled update's parameter probe runs the losses
    once in training mode and must not move the statistics).
    """

    def __init__(self) -> None:
        self.buffers: list[th.Tensor] = []
        self.values: list[th.Tensor] = []

    def __enter__(self) -> "Stage":
        _OPEN.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _OPEN.pop()

    def commit(self, values: list[th.Tensor]) -> None:
        """
        Write the staged values into their buffers, then empty the stage.

        :param values: The staged values as they came out of ``torch.func.grad`` (its auxiliary output), in the order
            of :attr:`values` (outside ``grad``: :attr:`values` itself)
        """
        for buffer, value in zip(self.buffers, values, strict=True):
            assign(buffer, value)
        self.buffers.clear()
        self.values.clear()


def read(buffer: th.Tensor) -> th.Tensor:
    """:return: The latest value of ``buffer``: its last staged value in the open stage, else the buffer"""
    if _OPEN:
        stage = _OPEN[-1]
        for index in range(len(stage.buffers) - 1, -1, -1):
            if stage.buffers[index] is buffer:
                return stage.values[index]
    return buffer


def write(buffer: th.Tensor, value: th.Tensor) -> None:
    """Set ``buffer`` to ``value`` (without gradient): at once, or in the open stage."""
    if _OPEN:
        _OPEN[-1].buffers.append(buffer)
        _OPEN[-1].values.append(value.detach())
    else:
        assign(buffer, value)


def assign(buffer: th.Tensor, value: th.Tensor) -> None:
    """``buffer.copy_(value)``, also right inside ``torch.compile`` for a 0-d buffer."""
    if buffer.dim() == 0:
        # Through a 1-element view: torch.compile (torch 2.13, CPU) drops a copy_ into a 0-d float64 buffer (the
        # running count), and the later reads in the program see the old value
        buffer.view(1).copy_(value.reshape(1))
    else:
        buffer.copy_(value)
