"""Specification tests of the sequence replay buffer on hand-built episodes in several env columns."""

import numpy as np
import pytest
from gymnasium import spaces
from scipy import stats
from stable_baselines3.common.buffers import ReplayBuffer

from sb3_sac_ext.common import persistence
from sb3_sac_ext.common.errors import InvalidHyperparameterError
from sb3_sac_ext.common.recurrent.buffers import RecurrentDictReplayBuffer, RecurrentReplayBuffer
import functools
import operator

# Episode lengths per env column; every column holds 49 transitions. (env, episode) pairs that end by truncation.
LENGTHS = [[1, 3, 5, 40], [40, 5, 3, 1], [5, 1, 40, 3]]
TRUNCATED = {(0, 2), (2, 1)}
OBS_SPACE = spaces.Box(-np.inf, np.inf, (3,), np.float32)  # [uid, step in episode, 1 for a terminal observation]
ACT_SPACE = spaces.Box(-1, 1, (1,), np.float32)


def _schedule():
    """Per column: the list of (uid, step, episode length, truncated) of each transition, in time order."""
    columns = []
    for env, lengths in enumerate(LENGTHS):
        steps = []
        for episode, length in enumerate(lengths):
            uid = 100 * (env + 1) + episode
            steps += [(uid, t, length, (env, episode) in TRUNCATED) for t in range(length)]
        columns.append(steps)
    return columns


def fill(buffer, n_steps=49, mark_restart_at=None):
    columns = _schedule()
    dict_obs = isinstance(buffer.observation_space, spaces.Dict)
    for i in range(n_steps):
        if i == mark_restart_at:
            buffer.mark_episode_starts()
        obs, next_obs, dones, infos = [], [], [], []
        for env in range(buffer.n_envs):
            uid, t, length, truncated = columns[env][i]
            last = t == length - 1
            obs.append([uid, t, 0])
            next_obs.append([uid, t + 1, 1.0 if last else 0.0])
            dones.append(last)
            infos.append({"TimeLimit.truncated": last and truncated})
        obs, next_obs = np.array(obs, np.float32), np.array(next_obs, np.float32)
        if dict_obs:
            obs, next_obs = {"vec": obs, "other": obs[:, :1] * 2}, {"vec": next_obs, "other": next_obs[:, :1] * 2}
        buffer.add(obs, next_obs, np.zeros((buffer.n_envs, 1), np.float32), np.ones(buffer.n_envs), np.array(dones), infos)


def make(size=60, sequence_length=4, burn_in=2, cls=RecurrentReplayBuffer, obs_space=OBS_SPACE):
    # ``size`` transitions per column (SB3 divides the buffer size by n_envs)
    return cls(3 * size, obs_space, ACT_SPACE, "cpu", n_envs=3, sequence_length=sequence_length, burn_in=burn_in)


def check_windows(buffer, samples):
    obs = samples.observations["vec"] if isinstance(samples.observations, dict) else samples.observations
    obs, valid, mask, dones = obs.numpy(), samples.valid.numpy(), samples.mask.numpy(), samples.dones.numpy()
    assert mask.any(axis=1).all()
    for n in range(obs.shape[0]):
        total = int(valid[n].sum())
        assert valid[n, :total].all() and not valid[n, total:].any()
        seq = obs[n, : total + 1]  # obs[t0], next_obs[t0 .. t0 + total)
        assert (seq[:, 0] == seq[0, 0]).all(), "a window mixes episodes or env columns"
        np.testing.assert_array_equal(seq[:, 1], seq[0, 1] + np.arange(total + 1))  # consecutive steps
        assert (seq[:-1, 2] == 0).all()  # a terminal observation only as next_obs of the last step
        env, episode = int(seq[0, 0]) // 100 - 1, int(seq[0, 0]) % 100
        length = LENGTHS[env][episode]
        last = int(seq[-1, 1]) == length  # this window reaches the episode's end
        assert seq[-1, 2] == (1.0 if last else 0.0)
        expected_done = last and (env, episode) not in TRUNCATED  # truncation still bootstraps
        assert dones[n, total - 1] == float(expected_done)
        assert (dones[n, : total - 1] == 0).all()


@pytest.mark.parametrize("size", [60, 30])  # 30: after wrap-around
@pytest.mark.parametrize("sequence_length,burn_in", [(4, 2), (1, 0), (7, 0), (None, 0)])
def test_windows_never_cross_episodes_columns_or_write_position(size, sequence_length, burn_in):
    buffer = make(size, sequence_length, burn_in)
    fill(buffer)
    n_valid = buffer.buffer_size if buffer.full else buffer.pos
    env_idx, first, burn, length = buffer.sample_windows(2000, np.random.default_rng(0))
    assert (first + burn + length <= n_valid).all(), "a window crosses the write position"
    if sequence_length is not None:
        assert (length <= sequence_length).all() and (burn <= burn_in).all()
    samples = buffer.get_windows(env_idx, first, burn, length)
    check_windows(buffer, samples)
    check_windows(buffer, buffer.sample(64))


def test_whole_episode_mode_returns_complete_segments():
    buffer = make(60, None, 0)
    fill(buffer)
    env_of, start_of, lengths = buffer.segments()
    assert sorted(lengths.tolist()) == sorted(functools.reduce(operator.iadd, LENGTHS, []))
    env_idx, first, burn, length = buffer.sample_windows(500, np.random.default_rng(1))
    segs = set(zip(env_of.tolist(), start_of.tolist(), lengths.tolist(), strict=False))
    assert set(zip(env_idx.tolist(), first.tolist(), length.tolist(), strict=False)) == segs
    check_windows(buffer, buffer.get_windows(env_idx, first, burn, length))


def test_every_transition_is_covered_by_exactly_sequence_length_virtual_starts():
    for size in (60, 30):
        buffer = make(size, 4, 2)
        fill(buffer)
        env_of, start_of, lengths = buffer.segments()
        n_valid = buffer.buffer_size if buffer.full else buffer.pos
        coverage = np.zeros((buffer.n_envs, n_valid), dtype=int)
        for env, start, n in zip(env_of, start_of, lengths, strict=False):
            for offset in range(-3, n):
                lo, hi = max(offset, 0), min(offset + 4, n)
                coverage[env, start + lo : start + hi] += 1
        assert (coverage == 4).all()


def _coverage(buffer, n_draws, seed):
    env_idx, first, burn, length = buffer.sample_windows(n_draws, np.random.default_rng(seed))
    n_valid = buffer.buffer_size if buffer.full else buffer.pos
    counts = np.zeros(buffer.n_envs * n_valid)
    for k in range(int(length.max())):
        keep = k < length
        np.add.at(counts, env_idx[keep] * n_valid + first[keep] + burn[keep] + k, 1)
    return counts


@pytest.mark.parametrize("size", [60, 30])
def test_sampling_frequency_is_uniform_over_transitions(size):
    buffer = make(size, 4, 2)
    fill(buffer)
    counts = _coverage(buffer, 100_000, seed=2)
    # Each window adds up to sequence_length correlated counts: dividing the statistic by it keeps the test valid
    chi2 = ((counts - counts.mean()) ** 2 / counts.mean()).sum() / 4
    assert chi2 < stats.chi2.ppf(0.9999, len(counts) - 1), chi2
    # First and last steps of episodes, and one-step episodes, are not under-sampled
    assert counts.min() > 0.9 * counts.mean()


def test_sequence_length_one_matches_sb3_replay_buffer():
    buffer = make(30, 1, 0)
    fill(buffer)
    sb3 = ReplayBuffer(90, OBS_SPACE, ACT_SPACE, "cpu", n_envs=3)
    fill(sb3)  # the same transitions in SB3's buffer (after wrap-around)

    def keys(obs):  # a stored transition is identified by (uid, step) of its observation
        obs = obs.numpy().reshape(-1, 3)
        return (obs[:, 0] * 1000 + obs[:, 1]).astype(int)

    np.random.seed(3)
    sb3_keys = np.concatenate([keys(sb3.sample(1000).observations) for _ in range(100)])
    ours_keys = np.concatenate([keys(buffer.sample(1000).observations[:, 0]) for _ in range(100)])
    support = np.union1d(sb3_keys, ours_keys)
    assert len(support) == 90
    table = np.stack([np.searchsorted(support, k)[None] == np.arange(90)[:, None] for k in (ours_keys, sb3_keys)]).sum(-1)
    assert stats.chisquare(table[0]).pvalue > 1e-4  # uniform over the stored transitions
    assert stats.chi2_contingency(table).pvalue > 1e-4  # and the same law as SB3's ReplayBuffer


def test_restart_and_loaded_buffer_start_new_segments(tmp_path):
    buffer = make(60, 8, 0)
    fill(buffer, n_steps=20, mark_restart_at=10)
    assert buffer.episode_starts[10].all()
    path = tmp_path / "buffer.zip"
    persistence.save_replay_buffer(buffer, path)
    loaded = persistence.load_replay_buffer(path)
    np.testing.assert_array_equal(loaded.episode_starts, buffer.episode_starts)
    np.testing.assert_array_equal(loaded._next_is_start, buffer._next_is_start)
    assert loaded.sequence_length == 8 and loaded.burn_in == 0
    for a, b in zip(loaded.segments(), buffer.segments(), strict=False):
        np.testing.assert_array_equal(a, b)
    # No window crosses the restart at step 10
    _env_idx, first, burn, length = loaded.sample_windows(2000, np.random.default_rng(0))
    assert not ((first < 10) & (first + burn + length > 10)).any()
    loaded.mark_episode_starts()
    loaded.add(
        np.zeros((3, 3), np.float32), np.zeros((3, 3), np.float32), np.zeros((3, 1)), np.zeros(3), np.zeros(3), [{}] * 3
    )
    assert loaded.episode_starts[20].all()


def test_dict_observations():
    space = spaces.Dict({"vec": OBS_SPACE, "other": spaces.Box(-np.inf, np.inf, (1,), np.float32)})
    buffer = make(30, 4, 2, cls=RecurrentDictReplayBuffer, obs_space=space)
    fill(buffer)
    samples = buffer.sample(64)
    assert samples.observations["other"].shape[:2] == samples.observations["vec"].shape[:2]
    np.testing.assert_allclose(samples.observations["other"][..., 0], 2 * samples.observations["vec"][..., 0])
    check_windows(buffer, samples)


def test_optimize_memory_usage_and_bad_arguments_are_rejected():
    with pytest.raises(InvalidHyperparameterError, match="optimize_memory_usage"):
        RecurrentReplayBuffer(10, OBS_SPACE, ACT_SPACE, optimize_memory_usage=True)
    with pytest.raises(InvalidHyperparameterError):
        RecurrentReplayBuffer(10, OBS_SPACE, ACT_SPACE, sequence_length=0)
    with pytest.raises(InvalidHyperparameterError):
        RecurrentReplayBuffer(10, OBS_SPACE, ACT_SPACE, burn_in=-1)
