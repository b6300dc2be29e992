"""
What the recurrent policies of SAC and DiscreteSAC share: the recurrent network base (features extractor + RNN),
``predict`` carrying the RNN state per env exactly as sb3-contrib's ``RecurrentPPO`` does, and the optimizers
with a separate parameter group (and optionally learning rate) for the RNN weights.

The actor and the critics have separate RNNs (the ``n_critics`` heads share the critic's RNN); ``shared_lstm=True``
gives the critics the actor's features extractor and RNN, trained by the actor loss only (worse, as for
RecurrentPPO: the critic cannot shape the memory).
"""

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BaseModel, BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, get_actor_critic_arch
from stable_baselines3.common.type_aliases import PyTorchObs

from sb3_sac_ext.common.errors import InvalidHyperparameterError
from sb3_sac_ext.common.optim import make_optimizer
from sb3_sac_ext.common.policies import TrainingModeMixin
from sb3_sac_ext.common.recurrent.layers import RNNBlock, RNNState, check_rnn_kwargs, flatten_time
from sb3_sac_ext.common.schedules import make_schedule

# policy_kwargs of the recurrent policies, with their defaults
RECURRENT_KWARGS: dict[str, Any] = {
    "lstm_hidden_size": 64,
    "n_lstm_layers": 1,
    "rnn_type": "lstm",
    "sequence_length": 16,
    "burn_in": 0,
    "shared_lstm": False,
    "rnn_learning_rate": None,
}


class RecurrentNetwork(BaseModel):
    """
    ``obs -> features extractor -> RNN -> latent``: the base of the recurrent actors and critics.

    :param observation_space: Observation space
    :param action_space: Action space
    :param features_extractor: Network to extract features
    :param features_dim: Number of features
    :param normalize_images: Whether to divide images by 255
    :param lstm_hidden_size: Hidden units of the RNN
    :param n_lstm_layers: Stacked RNN layers
    :param rnn_type: ``"lstm"`` or ``"gru"``
    :param shared_rnn: The actor's RNN, to share it (then this network computes it without gradient)
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        normalize_images: bool = True,
        lstm_hidden_size: int = 64,
        n_lstm_layers: int = 1,
        rnn_type: str = "lstm",
        shared_rnn: RNNBlock | None = None,
    ):
        super().__init__(
            observation_space, action_space, features_extractor=features_extractor, normalize_images=normalize_images
        )
        self.shares_rnn = shared_rnn is not None
        self.rnn = shared_rnn if shared_rnn is not None else RNNBlock(features_dim, lstm_hidden_size, n_lstm_layers, rnn_type)
        self.latent_dim = lstm_hidden_size

    def unroll(self, obs_seq: PyTorchObs, state: RNNState | None = None) -> tuple[th.Tensor, RNNState]:
        """
        One RNN call over padded sequences.

        :param obs_seq: Observations ``(N, T, *obs_shape)`` (or a dict of such)
        :param state: Initial state, zeros when ``None``
        :return: ``latent_NTH`` and the final state
        """
        with th.set_grad_enabled(th.is_grad_enabled() and not self.shares_rnn):
            flat, n, t = flatten_time(obs_seq)
            features = self.extract_features(flat, self.features_extractor)
            return self.rnn(features.reshape(n, t, -1), state)

    def step(self, obs: PyTorchObs, state: RNNState, episode_starts: th.Tensor) -> tuple[th.Tensor, RNNState]:
        """
        :param obs: One observation per env
        :param state: ``(h, c)``, each ``(n_layers, n_envs, hidden)``
        :param episode_starts: 1 where an episode starts (the state is zeroed first), shape ``(n_envs,)``
        :return: ``latent_NH`` and the new state
        """
        features = self.extract_features(obs, self.features_extractor)
        return self.rnn.step(features, state, episode_starts)


def unroll_current_next(network: RecurrentNetwork, obs_seq: PyTorchObs, mask: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """
    Unroll ``network`` once over ``[obs[t0], next_obs[t0], ..., next_obs[t0 + T - 1]]`` and read the latent of each
    transition (step ``k``) and of its next observation (step ``k + 1``) from that one unroll.

    :param network: Recurrent actor or critic
    :param obs_seq: ``(N, T + 1, ...)`` observations of a :class:`RecurrentReplayBufferSamples`
    :param mask: ``(N, T)`` bool, the transitions to keep
    :return: ``current_BH`` and ``next_BH`` with ``B = mask.sum()`` rows
    """
    latent_NTH, _ = network.unroll(obs_seq)
    return latent_NTH[:, :-1][mask], latent_NTH[:, 1:][mask]


class RecurrentSoftPolicy(TrainingModeMixin, BasePolicy):
    """
    Base of the recurrent SAC / DiscreteSAC policies (``recurrent = True`` tells the algorithm to use the sequence
    replay buffer and the recurrent training path). Subclasses build ``actor``, ``critic`` and ``critic_target``
    (:class:`RecurrentNetwork` subclasses) in ``_build`` and map latents to actions in :meth:`_actions_from_latent`.
    """

    recurrent = True
    # Set by the subclasses: the actor and critic network classes
    actor_class: type["RecurrentNetwork"]
    critic_class: type["RecurrentNetwork"]
    actor: RecurrentNetwork
    critic: RecurrentNetwork
    critic_target: RecurrentNetwork

    def _init_recurrent(
        self,
        lstm_hidden_size: int,
        n_lstm_layers: int,
        rnn_type: str,
        sequence_length: int | None,
        burn_in: int,
        shared_lstm: bool,
        rnn_learning_rate: Any,
        share_features_extractor: bool,
        critic_arch: list[int],
    ) -> None:
        check_rnn_kwargs(lstm_hidden_size, n_lstm_layers, rnn_type, sequence_length, burn_in)
        if share_features_extractor and not shared_lstm:
            raise InvalidHyperparameterError(
                "share_features_extractor=True without shared_lstm=True is not supported by recurrent policies: the "
                "actor and the critics have separate features extractors and RNNs (set shared_lstm=True to share both)"
            )
        if len(critic_arch) == 0:
            raise InvalidHyperparameterError(
                "Recurrent critics need at least one hidden layer after the RNN (net_arch for qf is empty): a single "
                "linear layer on [rnn output, action] cannot represent Q"
            )
        self.lstm_hidden_size = lstm_hidden_size
        self.n_lstm_layers = n_lstm_layers
        self.rnn_type = rnn_type
        self.sequence_length = sequence_length
        self.burn_in = burn_in
        self.shared_lstm = bool(shared_lstm)
        self.rnn_learning_rate = rnn_learning_rate
        self.rnn_lr_schedule = None if rnn_learning_rate is None else make_schedule(rnn_learning_rate, "rnn_learning_rate")
        self.rnn_kwargs = {"lstm_hidden_size": lstm_hidden_size, "n_lstm_layers": n_lstm_layers, "rnn_type": rnn_type}

    def _recurrent_constructor_parameters(self) -> dict[str, Any]:
        return {
            **self.rnn_kwargs,
            "sequence_length": self.sequence_length,
            "burn_in": self.burn_in,
            "shared_lstm": self.shared_lstm,
            "rnn_learning_rate": self.rnn_learning_rate,
        }

    def _build_networks(self, lr_schedule: Any) -> None:
        """Actor, critic (sharing the actor's extractor and RNN with ``shared_lstm``), target and optimizers."""
        self.actor = self.make_actor()
        lr = lr_schedule(1)
        rnn_lr = lr if self.rnn_lr_schedule is None else self.rnn_lr_schedule(1)
        self.actor.optimizer = make_optimizer(
            self.optimizer_class, rnn_param_groups(self.actor, lr, rnn_lr), lr, self.optimizer_kwargs
        )
        shared = (self.actor.features_extractor, self.actor.rnn) if self.shared_lstm else None
        self.critic = self.make_critic(shared)
        self.critic.optimizer = make_optimizer(
            self.optimizer_class,
            rnn_param_groups(self.critic, lr, rnn_lr, skip_shared=self.shared_lstm),
            lr,
            self.optimizer_kwargs,
        )
        self.critic_target = self.make_critic(None)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.critic_target.set_training_mode(False)

    def _setup_recurrent_policy(
        self,
        lr_schedule: Any,
        net_arch: list[int] | dict[str, list[int]] | None,
        activation_fn: type[th.nn.Module],
        n_critics: int,
        share_features_extractor: bool,
        recurrent_kwargs: dict[str, Any],
    ) -> None:
        """
        Everything after ``BasePolicy.__init__`` that both recurrent policies do: check the RNN settings, split
        ``net_arch`` into actor and critic parts, build the networks and their optimizers.

        :param recurrent_kwargs: The keys of :data:`RECURRENT_KWARGS`
        """
        if net_arch is None:
            net_arch = [256, 256]
        self.actor_arch, self.critic_arch = get_actor_critic_arch(net_arch)
        self._init_recurrent(
            **recurrent_kwargs, share_features_extractor=share_features_extractor, critic_arch=self.critic_arch
        )
        self.net_arch = net_arch
        self.activation_fn = activation_fn
        self.n_critics = n_critics
        self.share_features_extractor = share_features_extractor
        self._build_networks(lr_schedule)

    def _net_args(self, features_extractor: BaseFeaturesExtractor | None) -> dict[str, Any]:
        if features_extractor is None:
            features_extractor = self.make_features_extractor()
        return {
            "observation_space": self.observation_space,
            "action_space": self.action_space,
            "features_extractor": features_extractor,
            "features_dim": features_extractor.features_dim,
            "normalize_images": self.normalize_images,
            "activation_fn": self.activation_fn,
            **self.rnn_kwargs,
        }

    def make_actor(self) -> RecurrentNetwork:
        return self.actor_class(**self._net_args(None), net_arch=self.actor_arch).to(self.device)

    def make_critic(self, shared: tuple[BaseFeaturesExtractor, RNNBlock] | None) -> RecurrentNetwork:
        extractor, rnn = shared if shared is not None else (None, None)
        return self.critic_class(
            **self._net_args(extractor), shared_rnn=rnn, net_arch=self.critic_arch, n_critics=self.n_critics
        ).to(self.device)

    def _actions_from_latent(self, latent_BH: th.Tensor, deterministic: bool) -> th.Tensor:
        return self.actor.actions(latent_BH, deterministic)  # type: ignore[operator]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            n_critics=self.n_critics,
            share_features_extractor=self.share_features_extractor,
            lr_schedule=self._dummy_schedule,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
            features_extractor_class=self.features_extractor_class,
            features_extractor_kwargs=self.features_extractor_kwargs,
            **self._recurrent_constructor_parameters(),
        )
        return data

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        """One step from a zero state (the start of an episode); :meth:`predict` carries the state."""
        n = next(iter(observation.values())).shape[0] if isinstance(observation, dict) else observation.shape[0]
        state = self.actor.rnn.zero_state(n, self.device)
        latent, _ = self.actor.step(observation, state, th.ones(n, device=self.device))
        return self._actions_from_latent(latent, deterministic)

    def predict_step(
        self, observation: PyTorchObs, state: RNNState, episode_starts: th.Tensor, deterministic: bool = False
    ) -> tuple[th.Tensor, RNNState]:
        """Torch version of :meth:`predict`: actions (in [-1, 1] for Box spaces) and the new state."""
        latent, new_state = self.actor.step(observation, state, episode_starts)
        return self._actions_from_latent(latent, deterministic), new_state

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """
        Get the action and the next RNN state from an observation, as sb3-contrib's ``RecurrentPPO``.

        :param observation: Observation(s), one per env
        :param state: ``(h, c)`` numpy arrays, each ``(n_layers, n_envs, hidden)``; zeros when ``None``
        :param episode_start: 1 for the envs whose episode starts at this observation (their state is zeroed)
        :param deterministic: Whether to return deterministic actions
        :return: The action(s) and the next state
        """
        self.set_training_mode(False)
        obs_tensor, vectorized_env = self.obs_to_tensor(observation)
        n_envs = next(iter(obs_tensor.values())).shape[0] if isinstance(obs_tensor, dict) else obs_tensor.shape[0]
        if state is None:
            zeros = np.zeros((self.n_lstm_layers, n_envs, self.lstm_hidden_size), dtype=np.float32)
            state = (zeros, zeros)
        if episode_start is None:
            episode_start = np.zeros(n_envs, dtype=np.float32)
        with th.no_grad():
            states = tuple(th.as_tensor(np.asarray(s), dtype=th.float32, device=self.device) for s in state[:2])
            starts = th.as_tensor(np.asarray(episode_start, dtype=np.float32).reshape(n_envs), device=self.device)
            actions, new_state = self.predict_step(obs_tensor, states, starts, deterministic)  # type: ignore[arg-type]
        actions_np = actions.cpu().numpy().reshape((-1, *self.action_space.shape))  # type: ignore[misc]
        if isinstance(self.action_space, spaces.Box):
            if self.squash_output:
                actions_np = self.unscale_action(actions_np)
            else:
                actions_np = np.clip(actions_np, self.action_space.low, self.action_space.high)
        if not vectorized_env:
            actions_np = actions_np.squeeze(axis=0)
        return actions_np, (new_state[0].cpu().numpy(), new_state[1].cpu().numpy())


def rnn_param_groups(network: RecurrentNetwork, lr: float, rnn_lr: float, skip_shared: bool = False) -> list[dict[str, Any]]:
    """
    Two parameter groups, ``"mlp"`` (features extractor and heads) and ``"rnn"``, so the RNN can have its own
    learning rate (``rnn_learning_rate``). With ``skip_shared``, the actor's extractor and RNN are left out.
    """
    rnn, other = [], []
    for name, param in network.named_parameters():
        is_rnn = name.startswith("rnn.")
        if skip_shared and (is_rnn or name.startswith("features_extractor.")):
            continue
        (rnn if is_rnn else other).append(param)
    groups = [{"params": other, "lr": lr, "name": "mlp"}]
    if rnn:
        groups.append({"params": rnn, "lr": rnn_lr, "name": "rnn"})
    return groups


def is_recurrent_policy(policy_class: Any) -> bool:
    """Whether a policy class (or instance) declares itself recurrent."""
    return bool(getattr(policy_class, "recurrent", False))


__all__ = [
    "RECURRENT_KWARGS",
    "RecurrentNetwork",
    "RecurrentSoftPolicy",
    "is_recurrent_policy",
    "rnn_param_groups",
    "unroll_current_next",
]
