"""SB3's test_callbacks.py for our algorithms: evaluation, checkpoints and custom callbacks during learn()."""

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    CheckpointCallback,
    ConvertCallback,
    EvalCallback,
    StopTrainingOnMaxEpisodes,
)
from stable_baselines3.common.monitor import Monitor

from _helpers import MODEL_LIST, make_env, tiny_model, tiny_sac


class RecordingCallback(BaseCallback):
    """Counts calls and sees the locals of the learning loop."""

    def __init__(self, stop_at: int | None = None):
        super().__init__()
        self.stop_at = stop_at
        self.n_steps = 0
        self.training_started = self.training_ended = False
        self.rollouts = 0

    def _on_training_start(self) -> None:
        self.training_started = True

    def _on_rollout_end(self) -> None:
        self.rollouts += 1

    def _on_step(self) -> bool:
        self.n_steps += 1
        assert "actions" in self.locals and "rewards" in self.locals
        return self.stop_at is None or self.num_timesteps < self.stop_at

    def _on_training_end(self) -> None:
        self.training_ended = True


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_eval_and_checkpoint_callbacks(tmp_path, model_class):
    model = tiny_model(model_class, seed=0)
    eval_env = Monitor(make_env(model_class, max_episode_steps=20))
    eval_callback = EvalCallback(
        eval_env, eval_freq=50, n_eval_episodes=2, best_model_save_path=str(tmp_path / "best"), log_path=str(tmp_path / "eval")
    )
    checkpoint = CheckpointCallback(
        save_freq=60, save_path=str(tmp_path / "ckpt"), name_prefix="model", save_replay_buffer=True
    )
    recorder = RecordingCallback()
    model.learn(130, callback=CallbackList([eval_callback, checkpoint, recorder]))

    # Evaluations at steps 50 and 100
    evaluations = np.load(tmp_path / "eval" / "evaluations.npz")
    np.testing.assert_array_equal(evaluations["timesteps"], [50, 100])
    assert evaluations["results"].shape == (2, 2)
    assert np.isfinite(eval_callback.best_mean_reward)
    best = model_class.load(tmp_path / "best" / "best_model.zip")
    assert best.num_timesteps in (50, 100)

    # Checkpoints at steps 60 and 120, with their replay buffers
    for step in (60, 120):
        assert (tmp_path / "ckpt" / f"model_{step}_steps.zip").is_file()
        assert (tmp_path / "ckpt" / f"model_replay_buffer_{step}_steps.pkl").is_file()
    checkpoint_model = model_class.load(tmp_path / "ckpt" / "model_120_steps.zip")
    assert checkpoint_model.num_timesteps == 120

    assert recorder.training_started and recorder.training_ended
    assert recorder.n_steps == 130
    assert recorder.rollouts == 130  # train_freq=1: one rollout per step


@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_custom_callback_stops_training(model_class):
    model = tiny_model(model_class, seed=0)
    recorder = RecordingCallback(stop_at=70)
    model.learn(500, callback=recorder)
    assert model.num_timesteps == 70
    assert recorder.n_steps == 70
    assert recorder.training_ended


def test_stop_on_max_episodes_and_callable():
    env = gym.make("Pendulum-v1", max_episode_steps=25)
    model = tiny_sac(env, seed=0)
    calls = []

    def on_step(locals_, globals_):
        calls.append(locals_["self"].num_timesteps)
        return True

    model.learn(1000, callback=[StopTrainingOnMaxEpisodes(max_episodes=3), ConvertCallback(on_step)])
    assert model.num_timesteps == 75
    assert calls[-1] == 75 and len(calls) == 75
