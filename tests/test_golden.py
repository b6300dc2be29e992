"""
Nothing changes for users: the golden runs recorded before the redesign (``tests/_golden.py``) are reproduced bit for
bit, and the files that version saved still load and act the same.

Bit-identical training depends on the CPU kernels torch picks (AVX2, AVX-512, AMX round matrix products
differently), so the retraining check runs where the fingerprint (torch version, CPU capability) is the recorded one
and is skipped elsewhere with the reason; loading the golden files and predicting runs everywhere.
"""

import json

import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env

from _golden import CONFIGS, GOLDEN_DIR, actions, fingerprint, observations, state_hashes, train
from sb3_sac_ext.common.persistence import load_checkpoint, load_vec_normalize

RECORD = json.loads((GOLDEN_DIR / "golden.json").read_text())
SAME_MACHINE = RECORD["fingerprint"] == fingerprint()


def _differing(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    return sorted(name for name in expected.keys() | actual.keys() if expected.get(name) != actual.get(name))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_same_seed_gives_bit_identical_training(name):
    if not SAME_MACHINE:
        pytest.skip(f"golden hashes recorded with {RECORD['fingerprint']}, this machine is {fingerprint()}")
    model = train(name)
    expected = RECORD["runs"][name]
    assert _differing(expected["hashes"], state_hashes(model)) == []
    assert actions(model) == expected["actions"]


def _check_actions(model, expected):
    got = model.predict(observations(model), deterministic=True)[0]
    if SAME_MACHINE:
        assert got.tolist() == expected
    else:  # another CPU's matrix kernels may round the last bit differently
        np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_golden_files_load_and_predict_identically(name):
    algo, env_id, _, normalize = CONFIGS[name]
    folder = GOLDEN_DIR / name
    expected = RECORD["runs"][name]

    model = algo.load(folder / "model.zip", device="cpu")
    assert type(model) is algo
    assert _differing(expected["hashes"], state_hashes(model)) == []
    _check_actions(model, expected["actions"])

    model.load_replay_buffer(folder / "replay_buffer.zip")
    assert model.replay_buffer.size() > 0
    assert model.replay_buffer.observations.shape[-len(model.observation_space.shape) :] == model.observation_space.shape

    if normalize:
        vec_normalize = load_vec_normalize(folder / "vec_normalize.zip", make_vec_env(env_id, n_envs=1))
        assert vec_normalize.obs_rms.count > 1
        restored = load_checkpoint(folder / "checkpoint", env=make_vec_env(env_id, n_envs=1), device="cpu")
        assert type(restored) is algo
        assert _differing(expected["hashes"], state_hashes(restored)) == []
        np.testing.assert_array_equal(restored.get_vec_normalize_env().obs_rms.mean, vec_normalize.obs_rms.mean)
        assert restored.replay_buffer.size() == model.replay_buffer.size()
        # Keeps training from the checkpoint
        restored.learn(50, reset_num_timesteps=False)
