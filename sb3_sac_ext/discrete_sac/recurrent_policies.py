"""
Recurrent policies for DiscreteSAC: ``MlpLstmPolicy``, ``CnnLstmPolicy``, ``MultiInputLstmPolicy``.

Actor: ``obs -> features -> RNN -> MLP -> logits``. Critics: ``obs -> features -> RNN`` (one RNN for the
``n_critics`` heads) ``-> MLP -> Q(s, .)``, the heads evaluated as one :class:`~sb3_sac_ext.common.ensemble.EnsembleMLP`.
"""

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
    create_mlp,
)
from stable_baselines3.common.type_aliases import Schedule
from torch import nn
from torch.nn import functional as F

from sb3_sac_ext.common.ensemble import EnsembleMLP
from sb3_sac_ext.common.recurrent.policies import RecurrentNetwork, RecurrentSoftPolicy


class RecurrentCategoricalActor(RecurrentNetwork):
    """Recurrent DiscreteSAC actor: ``net_arch`` is the MLP after the RNN; see :class:`RecurrentNetwork`."""

    def __init__(self, *args: Any, net_arch: list[int], activation_fn: type[nn.Module] = nn.ReLU, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.logits_net = nn.Sequential(*create_mlp(self.latent_dim, int(self.action_space.n), net_arch, activation_fn))  # type: ignore[attr-defined]

    def action_probs(self, latent_BH: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """:return: ``probs_BA`` and ``log_probs_BA`` (fp32)"""
        log_probs_BA = F.log_softmax(self.logits_net(latent_BH).float(), dim=-1)
        return log_probs_BA.exp(), log_probs_BA

    def actions(self, latent_BH: th.Tensor, deterministic: bool = False) -> th.Tensor:
        logits_BA = self.logits_net(latent_BH).float()
        if deterministic:
            return logits_BA.argmax(dim=-1)
        return th.multinomial(F.softmax(logits_BA, dim=-1), num_samples=1).squeeze(-1)


class RecurrentDiscreteCritic(RecurrentNetwork):
    """Recurrent DiscreteSAC critics: one RNN, then ``n_critics`` MLPs ``latent -> Q(s, .)`` as one ensemble."""

    def __init__(
        self, *args: Any, net_arch: list[int], activation_fn: type[nn.Module] = nn.ReLU, n_critics: int = 2, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self.n_critics = n_critics
        self.qf = EnsembleMLP(n_critics, self.latent_dim, net_arch, int(self.action_space.n), activation_fn)  # type: ignore[attr-defined]

    def q_values(self, latent_BH: th.Tensor, detach_params: bool = False) -> th.Tensor:
        """:return: ``q_KBA``, shape ``(n_critics, B, n_actions)``"""
        return self.qf(latent_BH, detach_params=detach_params)


class RecurrentDiscreteSACPolicy(RecurrentSoftPolicy):
    """
    Recurrent policy for DiscreteSAC (actor and critics with separate RNNs).

    :param observation_space: Observation space
    :param action_space: Action space (``Discrete``)
    :param lr_schedule: Learning rate schedule (could be constant)
    :param net_arch: MLP layers after the RNN, for the actor and each critic: a list, or ``dict(pi=[...], qf=[...])``
    :param activation_fn: Activation function
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

    actor_class = RecurrentCategoricalActor
    critic_class = RecurrentDiscreteCritic

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
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
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class,
            features_extractor_kwargs,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            normalize_images=normalize_images,
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


MlpLstmPolicy = RecurrentDiscreteSACPolicy


class CnnLstmPolicy(RecurrentDiscreteSACPolicy):
    """Recurrent DiscreteSAC policy for image observations (NatureCNN); see :class:`RecurrentDiscreteSACPolicy`."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class MultiInputLstmPolicy(RecurrentDiscreteSACPolicy):
    """Recurrent DiscreteSAC policy for Dict observations (CombinedExtractor); see :class:`RecurrentDiscreteSACPolicy`."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


__all__ = [
    "CnnLstmPolicy",
    "MlpLstmPolicy",
    "MultiInputLstmPolicy",
    "RecurrentCategoricalActor",
    "RecurrentDiscreteCritic",
    "RecurrentDiscreteSACPolicy",
]
