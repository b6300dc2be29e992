"""
One rank of the data-parallel tests (tests/test_distributed.py):
``python tests/_distributed_worker.py SCENARIO[:ALGO][,...] OUT``, started once per rank with torchrun's
environment variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).
Writes ``OUT/rank<r>.json``.
"""

import copy
import hashlib
import json
import os
import sys
import time

import gymnasium as gym
import numpy as np
import torch as th

th.set_num_threads(1)

from stable_baselines3.common.type_aliases import ReplayBufferSamples  # noqa: E402

from sb3_sac_ext import SAC, DiscreteSAC  # noqa: E402

RANK = int(os.environ.get("RANK", "0"))
SMALL = {"net_arch": [32, 32]}


def _algo(name: str) -> tuple[type, str]:
    return (SAC, "Pendulum-v1") if name == "sac" else (DiscreteSAC, "CartPole-v1")


def _tensor_hash(tensors: list[th.Tensor]) -> str:
    sha = hashlib.sha256()
    for tensor in tensors:
        sha.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()


def model_hashes(model) -> dict:
    """Hash of every parameter and buffer, of every optimizer state, and the temperature."""
    params = list(model.policy.state_dict().values())
    opt_tensors = []
    for name in sorted(model.optimizers):
        state = model.optimizers[name].state_dict()["state"]
        for index in sorted(state):
            opt_tensors.extend(value for _, value in sorted(state[index].items()) if isinstance(value, th.Tensor))
    return {
        "params": _tensor_hash(params),
        "optimizers": _tensor_hash(opt_tensors),
        "n_opt_tensors": len(opt_tensors),
        "log_ent_coef": float(model.log_ent_coef.detach()),
        "temperature": _tensor_hash([model.log_ent_coef]),
    }


def replicas(out: str, algo: str) -> dict:
    cls, env_id = _algo(algo)
    model = cls(
        "MlpPolicy",
        env_id,
        learning_starts=100,
        batch_size=32,
        seed=0,
        device="cpu",
        precision="fp32",
        policy_kwargs=SMALL,
        max_grad_norm=1.0,
        policy_delay=2,
        train_freq=2,
        gradient_steps=2,
    )
    model.learn(300)
    buffer = model.replay_buffer
    # Both ranks call save: only rank 0 writes (a no-op elsewhere)
    model.save(os.path.join(out, f"{algo}_rank{RANK}.zip"))
    return {
        **model_hashes(model),
        "buffer": hashlib.sha256(buffer.observations[: buffer.pos].tobytes()).hexdigest(),
        "num_timesteps": model.num_timesteps,
        "n_updates": model._n_updates,
        "distributed": repr(model._distributed),
    }


def _eps_actor(actor, eps: th.Tensor):
    """``action_log_prob`` of the SAC actor with a fixed noise ``eps`` instead of a random one."""
    from sb3_sac_ext.sac.policies import _HALF_LOG_2PI, _TANH_EPS

    def action_log_prob(obs):
        mean, log_std, _ = actor.get_action_dist_params(obs)
        actions = th.tanh(th.addcmul(mean, log_std.exp(), eps))
        gaussian_log_prob = -0.5 * eps.square() - log_std - _HALF_LOG_2PI
        return actions, (gaussian_log_prob - th.log(1.0 - actions.square() + _TANH_EPS)).sum(dim=-1)

    return action_log_prob


def _one_update(model, batch: ReplayBufferSamples, eps: th.Tensor | None) -> dict:
    """One gradient step on ``batch``; returns the gradients each optimizer stepped with."""
    grads: dict = {}
    for name, optimizer in model.optimizers.items():
        original = optimizer.step

        def step(*args, _name=name, _optimizer=optimizer, _original=original, **kwargs):
            params = [p for g in _optimizer.param_groups for p in g["params"]]
            grads[_name] = [p.grad.detach().clone() for p in params if p.grad is not None]
            return _original(*args, **kwargs)

        optimizer.step = step
    from stable_baselines3.common.logger import Logger

    model.set_logger(Logger(None, []))
    model.replay_buffer.sample = lambda batch_size, env=None: batch
    if eps is not None:
        model.actor.action_log_prob = _eps_actor(model.actor, eps)
    model.train(gradient_steps=1, batch_size=len(batch.observations))
    return grads


def gradient(out: str, algo: str) -> dict:
    """Averaged gradient of two half batches == gradient of the whole batch on one process."""
    cls, env_id = _algo(algo)
    kwargs = dict(learning_starts=0, batch_size=64, seed=0, device="cpu", precision="fp32", policy_kwargs=SMALL)
    model = cls("MlpPolicy", env_id, **kwargs)
    model._distributed.broadcast_model(model)  # what learn() does at its start
    initial = copy.deepcopy(model.policy.state_dict()), model.log_ent_coef.detach().clone()

    env = gym.make(env_id)
    rng = np.random.default_rng(123)  # the same batch on every rank
    n = 64
    obs = th.as_tensor(rng.normal(size=(n, *env.observation_space.shape)), dtype=th.float32)
    next_obs = obs + th.as_tensor(rng.normal(size=obs.shape) * 0.1, dtype=th.float32)
    if algo == "sac":
        actions = th.as_tensor(rng.uniform(-1, 1, size=(n, 1)), dtype=th.float32)
    else:
        actions = th.as_tensor(rng.integers(0, 2, size=(n, 1)), dtype=th.float32)
    rewards = th.as_tensor(rng.normal(size=(n, 1)), dtype=th.float32)
    dones = th.as_tensor(rng.integers(0, 2, size=(n, 1)), dtype=th.float32)
    eps = th.as_tensor(rng.normal(size=(n, 1)), dtype=th.float32) if algo == "sac" else None
    full = ReplayBufferSamples(obs, actions, next_obs, dones, rewards)
    half = slice(RANK * n // 2, (RANK + 1) * n // 2)
    mine = ReplayBufferSamples(*(t[half] if isinstance(t, th.Tensor) else t for t in full))
    grads = _one_update(model, mine, None if eps is None else eps[half])
    result: dict = {"hash": {name: _tensor_hash(values) for name, values in grads.items()}}
    if RANK == 0:
        reference = cls("MlpPolicy", env_id, distributed=False, **kwargs)
        assert reference._distributed is None
        reference.policy.load_state_dict(initial[0])
        with th.no_grad():
            reference.log_ent_coef.copy_(initial[1])
        expected = _one_update(reference, full, eps)
        result["max_abs_diff"] = {
            name: max(float((a - b).abs().max()) for a, b in zip(grads[name], expected[name], strict=True))
            for name in expected
        }
        result["max_abs"] = {name: max(float(b.abs().max()) for b in expected[name]) for name in expected}
        result["names"] = sorted(grads)
    return result


class RaisingEnv(gym.Wrapper):
    """Raises at step ``at`` (only used on rank 1)."""

    def __init__(self, env: gym.Env, at: int):
        super().__init__(env)
        self.at, self.count = at, 0

    def step(self, action):
        self.count += 1
        if self.count >= self.at:
            raise RuntimeError(f"env exploded on rank {RANK}")
        return self.env.step(action)


def crash(out: str, algo: str) -> dict:
    """Rank 1's env raises; with ``crash:linger``, rank 1's process lives on 8 s after the error (only the abort of
    the group can then end rank 0's collective before that)."""
    env = gym.make("Pendulum-v1")
    if RANK == 1:
        env = RaisingEnv(env, at=150)
    model = SAC(
        "MlpPolicy", env, learning_starts=50, batch_size=16, seed=0, device="cpu", precision="fp32", policy_kwargs=SMALL
    )
    try:
        model.learn(100_000)
    except Exception:
        if algo == "linger" and RANK == 1:
            time.sleep(8.0)
        raise
    return {}


def mismatch(out: str, algo: str) -> dict:
    model = SAC(
        "MlpPolicy",
        "Pendulum-v1",
        learning_rate=1e-3 if RANK == 1 else 3e-4,
        learning_starts=10,
        seed=0,
        device="cpu",
        policy_kwargs=SMALL,
    )
    model.learn(50)
    return {}


def stop(out: str, algo: str) -> dict:
    """A callback on rank 0 stops training, during the warm-up (after-rollout sync) and once updates run (the stop
    request rides on the gradient all-reduce); every rank must end learn() after the same number of updates."""
    from stable_baselines3.common.callbacks import BaseCallback

    class StopAt(BaseCallback):
        def __init__(self, at: int):
            super().__init__()
            self.at = at

        def _on_step(self) -> bool:
            return self.num_timesteps < self.at

    cls, env_id = _algo(algo)
    results = {}
    for label, at in (("warmup", 30), ("training", 121)):
        model = cls(
            "MlpPolicy", env_id, learning_starts=50, train_freq=4, gradient_steps=2, seed=0, device="cpu", policy_kwargs=SMALL
        )
        model.learn(1000, callback=StopAt(at))
        results[label] = {"num_timesteps": model.num_timesteps, "n_updates": model._n_updates, **model_hashes(model)}
    return results


def averaging(out: str, algo: str) -> dict:
    """``average_gradients`` on odd sizes, two dtypes and two optimizers: the mean of every rank's gradients (to
    rounding), bit-identical on every rank, with the non-finite flags and rank 0's stop request reaching every rank."""
    import torch.distributed as dist

    from sb3_sac_ext.common import distributed

    distributed.init_process_group(th.device("cpu"))
    state = distributed.DistributedState(owned=False)
    generator = th.Generator().manual_seed(1234 + RANK)
    checks = {}
    for size in (1, 7, 70_001, 300_000):
        params = [
            th.nn.Parameter(th.zeros(size)),
            th.nn.Parameter(th.zeros(3, dtype=th.float64)),
            th.nn.Parameter(th.zeros(5)),
        ]
        for param in params:
            scale = 10.0 ** th.randint(-3, 4, param.shape, generator=generator)
            param.grad = (th.randn(param.shape, generator=generator, dtype=th.float64) * scale).to(param.dtype)
        local = [param.grad.clone() for param in params]
        if RANK == 0 and size == 70_001:
            state.request_stop()
        bad = th.tensor([RANK == state.world_size - 1 and size == 7, False])
        optimizers = [th.optim.SGD(params[:2], lr=0.1), th.optim.SGD(params[2:], lr=0.1)]
        flags = state.average_gradients(optimizers, bad)
        close = True
        for param, mine in zip(params, local, strict=True):
            everyone = [th.empty_like(mine) for _ in range(state.world_size)]
            dist.all_gather(everyone, mine)
            exact = th.stack([g.double() for g in everyone]).sum(0) / state.world_size
            bound = 4 * th.finfo(mine.dtype).eps * th.stack([g.double().abs() for g in everyone]).sum(0) / state.world_size
            close = close and bool(((param.grad.double() - exact).abs() <= bound).all())
        checks[str(size)] = {
            "hash": _tensor_hash([param.grad for param in params]),
            "close": close,
            "flags": flags.tolist(),
            "stop": state.stop_agreed(),
        }
    return {"world_size": state.world_size, "checks": checks}


def vecnormalize(out: str, algo: str) -> dict:
    """VecNormalize statistics merged after every rollout: equal on every rank, and those of every rank's observations."""
    import torch.distributed as dist
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecEnvWrapper, VecNormalize

    class Recorder(VecEnvWrapper):
        """Keeps every observation VecNormalize sees."""

        def __init__(self, venv):
            super().__init__(venv)
            self.seen: list[np.ndarray] = []

        def reset(self):
            obs = self.venv.reset()
            self.seen.append(obs.copy())
            return obs

        def step_wait(self):
            obs, rewards, dones, infos = self.venv.step_wait()
            self.seen.append(obs.copy())
            return obs, rewards, dones, infos

    recorder = Recorder(make_vec_env("Pendulum-v1", n_envs=1))
    env = VecNormalize(recorder)
    model = SAC(
        "MlpPolicy",
        env,
        learning_starts=40,
        train_freq=4,
        batch_size=16,
        seed=0,
        device="cpu",
        precision="fp32",
        policy_kwargs=SMALL,
    )
    model.learn(80)
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, np.concatenate(recorder.seen))
    union = np.concatenate(everyone)
    obs_rms, ret_rms = env.obs_rms, env.ret_rms
    return {
        **model_hashes(model),
        "stats": _tensor_hash([th.as_tensor(x) for x in (obs_rms.mean, obs_rms.var, ret_rms.mean, ret_rms.var)]),
        "obs_count": obs_rms.count,
        "ret_count": ret_rms.count,
        "n_seen": len(union),
        "mean_close": bool(np.allclose(obs_rms.mean, union.mean(0), rtol=1e-3, atol=1e-5)),
        "var_close": bool(np.allclose(obs_rms.var, union.var(0), rtol=1e-3, atol=1e-5)),
        "local_differs": not np.allclose(np.concatenate(recorder.seen).mean(0), union.mean(0)),
    }


def hang(out: str, algo: str) -> dict:
    """Rank 1's env stops answering for 14 s: rank 0's collective times out (SB3_SAC_EXT_DIST_TIMEOUT, 5 s in the
    test) and raises."""
    env = gym.make("Pendulum-v1")
    if RANK == 1:
        env = SleepingEnv(env, at=100, seconds=14.0)
    model = SAC(
        "MlpPolicy", env, learning_starts=50, batch_size=16, seed=0, device="cpu", precision="fp32", policy_kwargs=SMALL
    )
    model.learn(100_000)
    return {}


class SleepingEnv(gym.Wrapper):
    """Sleeps once, at step ``at``."""

    def __init__(self, env: gym.Env, at: int, seconds: float):
        super().__init__(env)
        self.at, self.seconds, self.count = at, seconds, 0

    def step(self, action):
        self.count += 1
        if self.count == self.at:
            time.sleep(self.seconds)
        return self.env.step(action)


def main() -> None:
    """
    ``SCENARIO[:ALGO][,SCENARIO[:ALGO]...] OUT``: run the scenarios one after the other in the same process group
    (process start-up is the slow part); each one's result or error is recorded, and a failure stops the rest.
    """
    out = sys.argv[2]
    results: dict = {}
    for item in sys.argv[1].split(","):
        scenario, _, algo = item.partition(":")
        start = time.monotonic()
        try:
            results[item] = {"ok": True, **globals()[scenario](out, algo or "sac")}
        except Exception as e:
            mro = [c.__name__ for c in type(e).__mro__]
            import torch.distributed as dist

            group = dist.is_initialized()  # a group the model formed is gone: aborted so that the peers fail at once
            results[item] = {"ok": False, "type": type(e).__name__, "mro": mro, "error": str(e), "group": group}
        results[item]["seconds"] = time.monotonic() - start
        with open(os.path.join(out, f"rank{RANK}.json"), "w") as file:
            json.dump(results, file)
        if not results[item]["ok"] and results[item]["type"] != "DistributedSettingsError":
            sys.exit(1)


if __name__ == "__main__":
    main()
