"""
Golden runs: fixed-seed short trainings whose results were recorded before the package was redesigned, so that the
redesign (and every later change of the update path) can be checked to change nothing.

``python tests/_golden.py`` (re)writes ``tests/data/golden/``: per configuration, the sha256 of every parameter
and optimizer state after training, the deterministic actions on fixed observations, and the files saved by that
version (model, replay buffer, VecNormalize statistics, checkpoint). Rewrite them only when a change of results is
intended, and say so in the commit. ``tests/test_golden.py`` checks them.
"""

import hashlib
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_sac_ext import SAC, DiscreteSAC

GOLDEN_DIR = Path(__file__).parent / "data" / "golden"
SMALL = dict(learning_starts=64, batch_size=32, buffer_size=1000, seed=0)

# name -> (algorithm, env id, constructor arguments, whether the env is wrapped in VecNormalize)
CONFIGS: dict[str, tuple[type, str, dict[str, Any], bool]] = {
    "sac": (SAC, "Pendulum-v1", dict(policy_kwargs=dict(net_arch=[32, 32]), **SMALL), True),
    "sac_n_steps3": (SAC, "Pendulum-v1", dict(n_steps=3, policy_kwargs=dict(net_arch=[32, 32]), **SMALL), False),
    "discrete_sac": (DiscreteSAC, "CartPole-v1", dict(policy_kwargs=dict(net_arch=[32, 32]), **SMALL), False),
    "recurrent_sac": (
        SAC,
        "Pendulum-v1",
        dict(policy="MlpLstmPolicy", policy_kwargs=dict(net_arch=[16], lstm_hidden_size=16, sequence_length=8), **SMALL),
        False,
    ),
    "recurrent_discrete_sac": (
        DiscreteSAC,
        "CartPole-v1",
        dict(policy="MlpLstmPolicy", policy_kwargs=dict(net_arch=[16], lstm_hidden_size=16, sequence_length=8), **SMALL),
        False,
    ),
}
TIMESTEPS = 300


def fingerprint() -> dict[str, str]:
    """What bit-identical results depend on besides our code: torch's version and the CPU kernels it picks."""
    return {"torch": th.__version__.split("+")[0], "cpu_capability": th.backends.cpu.get_cpu_capability()}


def observations(model: Any, n: int = 8) -> np.ndarray:
    """Fixed observations for the prediction checks (independent of the global RNG)."""
    space = model.observation_space
    rng = np.random.default_rng(123)
    low = np.maximum(space.low, -2.0)
    high = np.minimum(space.high, 2.0)
    return rng.uniform(low, high, size=(n, *space.shape)).astype(space.dtype)


def train(name: str) -> Any:
    """Train configuration ``name`` deterministically (CPU, one thread, deterministic algorithms)."""
    algo, env_id, kwargs, normalize = CONFIGS[name]
    kwargs = dict(kwargs)
    policy = kwargs.pop("policy", "MlpPolicy")
    threads = th.get_num_threads()
    deterministic = th.are_deterministic_algorithms_enabled()
    th.set_num_threads(1)
    th.use_deterministic_algorithms(True)
    try:
        env = make_vec_env(env_id, n_envs=1, seed=0)
        if normalize:
            env = VecNormalize(env)
        model = algo(policy, env, device="cpu", precision="fp32", compile=False, **kwargs)
        model.learn(TIMESTEPS)
    finally:
        th.set_num_threads(threads)
        th.use_deterministic_algorithms(deterministic)
    return model


def _tensors(value: Any, prefix: str) -> dict[str, th.Tensor]:
    """Every tensor of a (nested) state dict, by a dotted path."""
    if isinstance(value, th.Tensor):
        return {prefix: value}
    found: dict[str, th.Tensor] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            found.update(_tensors(item, f"{prefix}.{key}"))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found.update(_tensors(item, f"{prefix}.{i}"))
    return found


def state_hashes(model: Any) -> dict[str, str]:
    """sha256 of every parameter and optimizer state tensor (``get_parameters()``), and of the temperature."""
    tensors = _tensors(model.get_parameters(), "params")
    ent_coef = model.log_ent_coef if model.log_ent_coef is not None else model.ent_coef_tensor
    tensors["log_ent_coef"] = ent_coef
    return {
        name: hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
        for name, tensor in sorted(tensors.items())
    }


def actions(model: Any) -> list:
    return model.predict(observations(model), deterministic=True)[0].tolist()


def write() -> None:
    from sb3_sac_ext.common.persistence import save_checkpoint, save_vec_normalize

    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"fingerprint": fingerprint(), "python": platform.python_version(), "runs": {}}
    for name in CONFIGS:
        model = train(name)
        folder = GOLDEN_DIR / name
        folder.mkdir(exist_ok=True)
        model.save(folder / "model.zip")
        model.save_replay_buffer(folder / "replay_buffer.zip")
        if model.get_vec_normalize_env() is not None:
            save_vec_normalize(model.get_vec_normalize_env(), folder / "vec_normalize.zip")
            save_checkpoint(model, folder / "checkpoint")
        record["runs"][name] = {"hashes": state_hashes(model), "actions": actions(model)}
        print(f"{name}: {len(record['runs'][name]['hashes'])} tensors", file=sys.stderr)
    (GOLDEN_DIR / "golden.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    write()
