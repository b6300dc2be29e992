"""
Running statistics written at once (eager) or staged inside ``torch.func.grad`` (the compiled update):
:mod:`sb3_sac_ext.common.running_stats`.
"""

import pytest
import torch as th
from torch.func import grad

from sb3_sac_ext.common import running_stats
from sb3_sac_ext.common.running_stats import Stage
from sb3_sac_ext.common.simba import RunningObsNorm


def test_write_is_immediate_outside_a_stage_and_staged_inside() -> None:
    buffer = th.zeros(3)
    running_stats.write(buffer, th.ones(3))
    assert th.equal(buffer, th.ones(3))
    with Stage() as stage:
        running_stats.write(buffer, th.full((3,), 2.0))
        assert th.equal(buffer, th.ones(3))  # not written yet
        assert th.equal(running_stats.read(buffer), th.full((3,), 2.0))  # the latest value
        running_stats.write(buffer, running_stats.read(buffer) + 1)
    assert running_stats.read(buffer) is buffer  # no stage open
    stage.commit(list(stage.values))
    assert th.equal(buffer, th.full((3,), 3.0)) and not stage.buffers and not stage.values
    with Stage():
        running_stats.write(buffer, th.zeros(3))
    assert th.equal(buffer, th.full((3,), 3.0))  # a stage never committed changes nothing


def test_staged_statistics_leave_grad_as_its_auxiliary_output() -> None:
    """Inside torch.func.grad the module may not write its buffers; staged, the update equals the eager one."""
    th.manual_seed(0)
    x = th.randn(16, 3) * 2 + 1
    eager, staged = RunningObsNorm((3,)), RunningObsNorm((3,))
    weight = th.randn(3)
    (eager(x) * weight).sum()
    with pytest.raises(RuntimeError, match="in-place"):  # why the stage exists: an input that depends on w
        grad(lambda w: staged(x + 0 * w).sum())(weight)
    stage = Stage()

    def loss(w: th.Tensor) -> tuple[th.Tensor, list[th.Tensor]]:
        with stage:
            return (staged(x) * w).sum(), stage.values

    gradient, values = grad(loss, has_aux=True)(weight)
    stage.commit(values)
    for name, buffer in eager.named_buffers():
        th.testing.assert_close(getattr(staged, name), buffer, rtol=0, atol=0, msg=name)
    th.testing.assert_close(gradient, eager(x).sum(0), rtol=1e-6, atol=1e-6)  # normalised with the new statistics


def test_assign_writes_a_0d_float64_buffer_inside_torch_compile() -> None:
    """torch.compile (torch 2.13, CPU) drops ``copy_`` into a 0-d float64 tensor; ``assign`` writes it."""
    count, mean = th.zeros((), dtype=th.float64), th.zeros(2, dtype=th.float64)

    def program(x: th.Tensor) -> th.Tensor:
        running_stats.assign(count, count + x.shape[0])
        running_stats.assign(mean, mean + x.mean(0))
        return count * 1.0

    compiled = th.compile(program, fullgraph=True)
    out = compiled(th.ones(4, 2, dtype=th.float64))
    assert float(count) == 4.0 and float(out) == 4.0 and th.equal(mean, th.ones(2, dtype=th.float64))
    compiled(th.ones(4, 2, dtype=th.float64))
    assert float(count) == 8.0
