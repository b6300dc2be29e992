"""SB3's test_custom_policy.py and test_train_eval_mode.py for our policies."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.envs import IdentityEnv
from stable_baselines3.common.preprocessing import get_flattened_obs_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from _helpers import clone_params, tiny_model, tiny_sac
from sb3_sac_ext import SAC, DiscreteSAC
from sb3_sac_ext.discrete_sac.policies import CategoricalActor, EnsembleDiscreteCritic


class FlattenBatchNormDropoutExtractor(BaseFeaturesExtractor):
    """Flatten, batch norm and dropout: behaves differently in training and evaluation mode."""

    def __init__(self, observation_space: spaces.Box):
        super().__init__(observation_space, get_flattened_obs_dim(observation_space))
        self.flatten = nn.Flatten()
        self.batch_norm = nn.BatchNorm1d(self._features_dim)
        self.dropout = nn.Dropout(0.5)
        self.modes: list[bool] = []

    def forward(self, observations: th.Tensor) -> th.Tensor:
        self.modes.append(self.training)
        return self.dropout(self.batch_norm(self.flatten(observations)))


def batch_norm_model(**kwargs):
    return tiny_sac(
        policy_kwargs=dict(net_arch=[16, 16], features_extractor_class=FlattenBatchNormDropoutExtractor),
        **kwargs,
    )


def test_train_mode_during_training_eval_mode_otherwise():
    # No target update: the target's batch norm must stay as initialised
    model = batch_norm_model(learning_starts=40, target_update_interval=100_000, seed=1)
    actor_bn, critic_bn = model.actor.features_extractor.batch_norm, model.critic.features_extractor.batch_norm
    target_before = clone_params(model.critic_target)
    actor_before, critic_before = clone_params(actor_bn), clone_params(critic_bn)

    model.learn(40)  # random warm-up actions
    model.train = lambda gradient_steps, batch_size: None  # rollouts with the actor, no update
    model.learn(20, reset_num_timesteps=False)
    del model.train
    assert model._n_updates == 0
    # Collecting rollouts runs the actor in evaluation mode and leaves the statistics alone
    assert model.actor.features_extractor.modes and not any(model.actor.features_extractor.modes)
    for name, value in clone_params(actor_bn).items():
        assert th.equal(value, actor_before[name]), name

    model.actor.features_extractor.modes.clear()
    model.critic.features_extractor.modes.clear()
    model.train(gradient_steps=2, batch_size=32)
    assert model.actor.features_extractor.modes and all(model.actor.features_extractor.modes)
    assert model.critic.features_extractor.modes and all(model.critic.features_extractor.modes)
    # Batch norm parameters and running statistics were trained / updated
    assert not th.equal(actor_bn.bias, actor_before["bias"])
    assert not th.equal(actor_bn.running_mean, actor_before["running_mean"])
    assert not th.equal(critic_bn.bias, critic_before["bias"])
    assert not th.equal(critic_bn.running_mean, critic_before["running_mean"])
    # The target network is never in training mode and was not updated
    assert not model.critic_target.training
    assert not any(model.critic_target.features_extractor.modes)
    for name, value in model.critic_target.state_dict().items():
        assert th.equal(value, target_before[name]), name

    # predict() is in evaluation mode: repeatable despite dropout, statistics unchanged
    model.actor.features_extractor.modes.clear()
    obs = np.stack([model.observation_space.sample() for _ in range(4)])
    stats = clone_params(actor_bn)
    first, _ = model.predict(obs, deterministic=True)
    for _ in range(3):
        np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], first)
    assert not any(model.actor.features_extractor.modes)
    for name, value in clone_params(actor_bn).items():
        assert th.equal(value, stats[name]), name


def test_target_copies_batch_norm_statistics():
    model = batch_norm_model(learning_starts=40, tau=0.01, seed=1)
    model.learn(50)
    critic_bn = model.critic.features_extractor.batch_norm
    target_bn = model.critic_target.features_extractor.batch_norm
    # Running statistics are copied (SB3 issue #996), the weights are Polyak-averaged (so they differ)
    assert th.equal(critic_bn.running_mean, target_bn.running_mean)
    assert th.equal(critic_bn.running_var, target_bn.running_var)
    assert not th.equal(critic_bn.bias, target_bn.bias)


def test_custom_net_arch_and_activation():
    model = tiny_sac(policy_kwargs=dict(net_arch=dict(pi=[32, 16], qf=[24]), activation_fn=nn.Tanh), seed=0)
    linear_sizes = [(m.in_features, m.out_features) for m in model.actor.latent_pi if isinstance(m, nn.Linear)]
    assert linear_sizes == [(3, 32), (32, 16)]
    assert all(isinstance(m, (nn.Linear, nn.Tanh)) for m in model.actor.latent_pi)
    assert model.actor.mu.in_features == 16
    # Critic: obs (3) + action (1) -> 24 -> 1, for each of the 2 critics
    assert model.critic.qf.layer_dims == [4, 24, 1]
    assert [tuple(w.shape) for w in model.critic.qf.weights] == [(2, 24, 4), (2, 1, 24)]
    assert isinstance(model.critic.qf.activation, nn.Tanh)
    actor_before = clone_params(model.actor)
    model.learn(80)
    assert not th.equal(actor_before["mu.weight"], model.actor.mu.weight)


def test_n_critics():
    model = tiny_sac(policy_kwargs=dict(net_arch=[32, 32], n_critics=3), seed=0)
    assert model.critic.n_critics == model.critic_target.n_critics == 3
    obs = th.as_tensor(np.stack([model.observation_space.sample() for _ in range(5)]))
    actions = th.zeros(5, 1)
    assert model.critic.q_values(obs, actions).shape == (3, 5, 1)
    q_values = model.critic(obs, actions)
    assert len(q_values) == 3 and all(q.shape == (5, 1) for q in q_values)
    # Independently initialised members
    assert not th.equal(q_values[0], q_values[1]) and not th.equal(q_values[1], q_values[2])
    assert th.equal(model.critic.q1_forward(obs, actions), q_values[0])
    critic_before = clone_params(model.critic)
    model.learn(80)
    weights = model.critic.qf.weights[0]
    for member in range(3):
        assert not th.equal(weights[member], critic_before["qf.weights.0"][member])


def test_share_features_extractor():
    model = tiny_sac(policy_kwargs=dict(net_arch=[32, 32], share_features_extractor=True), seed=0)
    assert model.critic.features_extractor is model.actor.features_extractor
    assert model.critic_target.features_extractor is not model.actor.features_extractor
    # The critic optimizer does not hold the shared features extractor
    critic_params = {id(p) for group in model.critic.optimizer.param_groups for p in group["params"]}
    assert all(id(p) not in critic_params for p in model.actor.features_extractor.parameters())
    model.learn(80)
    assert model._n_updates > 0


@pytest.mark.parametrize(
    "optimizer_class, optimizer_kwargs",
    [(th.optim.AdamW, dict(weight_decay=1e-2)), (th.optim.RMSprop, dict(alpha=0.9)), (th.optim.Adam, dict(foreach=True))],
)
def test_custom_optimizer(optimizer_class, optimizer_kwargs):
    model = tiny_sac(
        policy_kwargs=dict(net_arch=[32, 32], optimizer_class=optimizer_class, optimizer_kwargs=optimizer_kwargs), seed=0
    )
    assert isinstance(model.actor.optimizer, optimizer_class)
    assert isinstance(model.critic.optimizer, optimizer_class)
    # Fused kernels only when the user did not choose an implementation
    fused_default = optimizer_class is th.optim.AdamW
    assert bool(model.critic.optimizer.defaults.get("fused")) == fused_default
    actor_before = clone_params(model.actor)
    model.learn(80)
    assert not th.equal(actor_before["mu.weight"], model.actor.mu.weight)
    for key, value in optimizer_kwargs.items():
        assert model.critic.optimizer.param_groups[0][key] == value


@pytest.mark.parametrize("algo", ["sac", "discrete_sac", "sac_lstm"])
def test_set_training_mode_after_direct_train_eval_calls(algo):
    """set_training_mode skips calls that change nothing, but still undoes a user's own train()/eval() calls."""
    if algo == "discrete_sac":
        model = DiscreteSAC("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[8]), device="cpu")
    else:
        policy = "MlpLstmPolicy" if algo == "sac_lstm" else "MlpPolicy"
        model = SAC(policy, "Pendulum-v1", policy_kwargs=dict(net_arch=[8]), device="cpu")
    policy = model.policy

    def modes(module):
        return {m.training for m in module.modules()}

    policy.set_training_mode(True)
    assert modes(policy.actor) == {True} and modes(policy.critic) == {True} and policy.training
    policy.set_training_mode(True)  # no change
    assert modes(policy.actor) == {True}
    policy.actor.eval()  # a user's direct call
    policy.set_training_mode(True)
    assert modes(policy.actor) == {True} and modes(policy.critic) == {True}
    policy.set_training_mode(False)
    assert modes(policy.actor) == {False} and modes(policy.critic) == {False} and not policy.training
    policy.critic.train()
    policy.set_training_mode(False)
    assert modes(policy.critic) == {False}
    assert modes(policy.critic_target) == {False}


def test_discrete_policy_classes():
    model = tiny_model(DiscreteSAC, IdentityEnv(3))
    assert isinstance(model.actor, CategoricalActor)
    assert isinstance(model.critic, EnsembleDiscreteCritic)
    # One Q-value per action for every critic: (n_critics, batch, n_actions)
    q_KBA = model.critic.q_values(model.policy.obs_to_tensor(np.arange(3))[0])
    assert q_KBA.shape == (2, 3, 3)
    # The target is never optimised
    assert not any(p.requires_grad for p in model.critic_target.parameters())
