"""
Recurrent policies for SAC: ``MlpLstmPolicy``, ``CnnLstmPolicy``, ``MultiInputLstmPolicy``.

Actor: ``obs -> features -> RNN -> MLP -> (mean, log_std)`` of a tanh-squashed Gaussian.
Critics: ``obs -> features -> RNN`` (one RNN for the ``n_critics`` heads) ``-> [latent, action] -> MLP -> Q``,
the heads evaluated as one :class:`~sb3_sac_ext.common.ensemble.EnsembleMLP`.
"""

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
    create_mlp,
)
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN
from torch import nn

from sb3_sac_ext.common.ensemble import EnsembleMLP
from sb3_sac_ext.common.errors import InvalidHyperparameterError
from sb3_sac_ext.common.recurrent.policies import RecurrentNetwork, RecurrentSoftPolicy
from sb3_sac_ext.sac.policies import squashed_gaussian_sample


class RecurrentSquashedGaussianActor(RecurrentNetwork):
    """
    Recurrent SAC actor. ``net_arch`` is the MLP after the RNN; see :class:`RecurrentNetwork` for the rest.
    """

    def __init__(self, *args: Any, net_arch: list[int], activation_fn: type[nn.Module] = nn.ReLU, **kwargs: Any):
        super().__init__(*args, **kwargs)
        action_dim = get_action_dim(self.action_space)
        self.latent_pi = nn.Sequential(*create_mlp(self.latent_dim, -1, net_arch, activation_fn))
        last = net_arch[-1] if net_arch else self.latent_dim
        self.mu = nn.Linear(last, action_dim)
        self.log_std = nn.Linear(last, action_dim)

    def dist_params(self, latent_BH: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """:return: ``mean`` and clamped ``log_std``, each ``(B, action_dim)``"""
        hidden = self.latent_pi(latent_BH)
        return self.mu(hidden), th.clamp(self.log_std(hidden), LOG_STD_MIN, LOG_STD_MAX)

    def action_log_prob(self, latent_BH: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """:return: Reparameterised actions ``(B, action_dim)`` and their log-probabilities ``(B,)``"""
        return squashed_gaussian_sample(*self.dist_params(latent_BH))

    def actions(self, latent_BH: th.Tensor, deterministic: bool = False) -> th.Tensor:
        mean, log_std = self.dist_params(latent_BH)
        if deterministic:
            return th.tanh(mean)
        return th.tanh(th.addcmul(mean, log_std.exp(), th.randn_like(mean)))


class RecurrentContinuousCritic(RecurrentNetwork):
    """
    Recurrent SAC critics: one RNN, then ``n_critics`` MLPs on ``[latent, action]`` as one ensemble.
    """

    def __init__(
        self, *args: Any, net_arch: list[int], activation_fn: type[nn.Module] = nn.ReLU, n_critics: int = 2, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self.n_critics = n_critics
        self.qf = EnsembleMLP(n_critics, self.latent_dim + get_action_dim(self.action_space), net_arch, 1, activation_fn)

    def q_values(self, latent_BH: th.Tensor, actions_BA: th.Tensor, detach_params: bool = False) -> th.Tensor:
        """:return: Q-values of every critic, ``(n_critics, B, 1)``"""
        return self.qf(th.cat([latent_BH, actions_BA.to(latent_BH.dtype)], dim=-1), detach_params=detach_params)


class RecurrentSACPolicy(RecurrentSoftPolicy):
    """
    Recurrent policy for SAC (actor and critics with separate RNNs).

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule (could be constant)
    :param net_arch: MLP layers after the RNN, for the actor and each critic: a list, or ``dict(pi=[...], qf=[...])``
    :param activation_fn: Activation function
    :param use_sde: Not supported (must be False)
    :param log_std_init: Unused (SB3's signature)
    :param use_expln: Unused (SB3's signature)
    :param clip_mean: Unused (SB3's signature)
    :param features_extractor_class: Features extractor to use
    :param features_extractor_kwargs: Keyword arguments to pass to the features extractor
    :param normalize_images: Whether to divide images by 255
    :param optimizer_class: The optimizer to use (fused Adam by default)
    :param optimizer_kwargs: Additional keyword arguments, excluding the learning rate, to pass to the optimizer
    :param n_critics: Number of critic heads (sharing the critic RNN)
    :param share_features_extractor: Only with ``shared_lstm=True``
    :param lstm_hidden_size: Hidden units of each RNN
    :param n_lstm_layers: Stacked RNN layers
    :param rnn_type: ``"lstm"`` or ``"gru"``
    :param sequence_length: Transitions per training window (``None``: whole episodes)
    :param burn_in: Steps unrolled before each window to warm the state up, not trained on
    :param shared_lstm: One features extractor and RNN for actor and critics, trained by the actor only (worse)
    :param rnn_learning_rate: Learning rate (or schedule) of the RNN weights; ``None``: the network's own
    """

    actor_class = RecurrentSquashedGaussianActor
    critic_class = RecurrentContinuousCritic

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        use_sde: bool = False,
        log_std_init: float = -3,
        use_expln: bool = False,
        clip_mean: float = 2.0,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 2,
        share_features_extractor: bool = False,
        lstm_hidden_size: int = 64,
        n_lstm_layers: int = 1,
        rnn_type: str = "lstm",
        sequence_length: int | None = 16,
        burn_in: int = 0,
        shared_lstm: bool = False,
        rnn_learning_rate: Any = None,
    ):
        if use_sde:
            raise InvalidHyperparameterError("use_sde=True is not supported by recurrent policies; use use_sde=False")
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class,
            features_extractor_kwargs,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            normalize_images=normalize_images,
            squash_output=True,
        )
        self._setup_recurrent_policy(
            lr_schedule,
            net_arch,
            activation_fn,
            n_critics,
            share_features_extractor,
            dict(
                lstm_hidden_size=lstm_hidden_size,
                n_lstm_layers=n_lstm_layers,
                rnn_type=rnn_type,
                sequence_length=sequence_length,
                burn_in=burn_in,
                shared_lstm=shared_lstm,
                rnn_learning_rate=rnn_learning_rate,
            ),
        )


MlpLstmPolicy = RecurrentSACPolicy


class CnnLstmPolicy(RecurrentSACPolicy):
    """Recurrent SAC policy for image observations (NatureCNN features extractor); see :class:`RecurrentSACPolicy`."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class MultiInputLstmPolicy(RecurrentSACPolicy):
    """Recurrent SAC policy for Dict observations (CombinedExtractor); see :class:`RecurrentSACPolicy`."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


__all__ = [
    "CnnLstmPolicy",
    "MlpLstmPolicy",
    "MultiInputLstmPolicy",
    "RecurrentContinuousCritic",
    "RecurrentSACPolicy",
    "RecurrentSquashedGaussianActor",
]
