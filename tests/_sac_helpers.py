"""Small helpers shared by the SAC tests (tiny budgets, as in SB3's own tests)."""

from typing import Any

import torch as th

from sb3_sac_ext import SAC

# Tiny settings: every default test model uses these unless a test needs otherwise
TINY: dict[str, Any] = dict(
    learning_starts=50,
    buffer_size=1000,
    batch_size=64,
    policy_kwargs=dict(net_arch=[64, 64]),
)


def tiny_sac(env: Any = "Pendulum-v1", **kwargs: Any) -> SAC:
    """A SAC model with the tiny settings, overridden by ``kwargs`` (``policy`` defaults to ``MlpPolicy``)."""
    policy = kwargs.pop("policy", "MlpPolicy")
    return SAC(policy, env, **{**TINY, **kwargs})


def clone_params(module: th.nn.Module) -> dict[str, th.Tensor]:
    """Detached copies of a module's parameters and buffers, by name."""
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def assert_state_dicts_equal(expected: dict[str, Any], actual: dict[str, Any], what: str = "") -> None:
    """Exact (``torch.equal``) comparison of two (possibly nested) state dicts."""
    assert expected.keys() == actual.keys(), f"{what}: keys differ {set(expected) ^ set(actual)}"
    for key, value in expected.items():
        other = actual[key]
        if isinstance(value, th.Tensor):
            assert isinstance(other, th.Tensor), f"{what}.{key}: tensor vs {type(other)}"
            assert value.dtype == other.dtype and value.shape == other.shape, f"{what}.{key}: dtype/shape differ"
            assert th.equal(value.cpu(), other.cpu()), f"{what}.{key}: values differ"
        elif isinstance(value, dict):
            assert isinstance(other, dict), f"{what}.{key}: dict vs {type(other)}"
            assert_state_dicts_equal(value, other, f"{what}.{key}")
        elif isinstance(value, (list, tuple)):
            assert len(value) == len(other), f"{what}.{key}: lengths differ"
            for i, (a, b) in enumerate(zip(value, other, strict=True)):
                if isinstance(a, dict):
                    assert_state_dicts_equal(a, b, f"{what}.{key}[{i}]")
                elif isinstance(a, th.Tensor):
                    assert th.equal(a, b), f"{what}.{key}[{i}]: values differ"
                else:
                    assert a == b, f"{what}.{key}[{i}]: {a!r} != {b!r}"
        else:
            assert value == other, f"{what}.{key}: {value!r} != {other!r}"
