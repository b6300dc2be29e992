"""
Policies for DiscreteSAC: a categorical actor (logits over the actions) and ``n_critics`` Q-networks that each
output ``Q(s, .)`` for every action, evaluated as one batched :class:`~sb3_sac_ext.common.ensemble.EnsembleMLP`.
"""

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
    create_mlp,
    get_actor_critic_arch,
)
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn
from torch.nn import functional as F

from sb3_sac_ext.common.ensemble import EnsembleCritic
from sb3_sac_ext.common.errors import InvalidHyperparameterError
from sb3_sac_ext.common.network_options import check_critic_regularisation
from sb3_sac_ext.common.optim import make_optimizer
from sb3_sac_ext.common.simba import RunningNormExtractor, SimbaEncoder
from sb3_sac_ext.common.simbav2 import SimbaV2Encoder, SimbaV2PolicyMixin
from sb3_sac_ext.common.policies import TrainingModeMixin


class CategoricalActor(BasePolicy):
    """
    Actor network for DiscreteSAC: ``features -> net_arch -> n_actions`` logits of a categorical policy.

    :param observation_space: Observation space
    :param action_space: Action space (``Discrete``)
    :param net_arch: Hidden layer sizes
    :param features_extractor: Network to extract features
    :param features_dim: Number of features
    :param activation_fn: Activation function
    :param normalize_images: Whether to divide images by 255
    """

    action_space: spaces.Discrete

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        net_arch: list[int],
        features_extractor: nn.Module,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
    ):
        super().__init__(
            observation_space,
            action_space,
            features_extractor=features_extractor,
            normalize_images=normalize_images,
        )
        self.net_arch = net_arch
        self.features_dim = features_dim
        self.activation_fn = activation_fn
        self.logits_net = nn.Sequential(*create_mlp(features_dim, int(action_space.n), net_arch, activation_fn))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            dict(
                net_arch=self.net_arch,
                features_dim=self.features_dim,
                activation_fn=self.activation_fn,
                features_extractor=self.features_extractor,
            )
        )
        return data

    def logits(self, obs: PyTorchObs) -> th.Tensor:
        """
        :param obs: Observations
        :return: Unnormalised log-probabilities, shape ``(batch, n_actions)``
        """
        return self.logits_net(self.extract_features(obs, self.features_extractor))

    def action_probs(self, obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor]:
        """
        :param obs: Observations
        :return: ``probs_BA`` and ``log_probs_BA`` (fp32), both of shape ``(batch, n_actions)``
        """
        log_probs_BA = F.log_softmax(self.logits(obs).float(), dim=-1)
        return log_probs_BA.exp(), log_probs_BA

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        logits_BA = self.logits(obs).float()
        if deterministic:
            return logits_BA.argmax(dim=-1)
        return th.multinomial(F.softmax(logits_BA, dim=-1), num_samples=1).squeeze(-1)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self(observation, deterministic)


class EnsembleDiscreteCritic(EnsembleCritic):
    """
    ``n_critics`` Q-networks ``Q(s, .)`` (one output per action) evaluated as one batched ensemble.
    Parameters: see :class:`~sb3_sac_ext.common.ensemble.EnsembleCritic`.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        net_arch: list[int],
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        n_critics: int = 2,
        share_features_extractor: bool = False,
        layer_norm: bool = False,
        dropout_rate: float | None = None,
        architecture: str = "mlp",
    ):
        super().__init__(
            observation_space,
            action_space,
            net_arch,
            features_extractor,
            features_dim,
            activation_fn,
            normalize_images,
            n_critics,
            share_features_extractor,
            head_input_dim=features_dim,
            head_output_dim=int(action_space.n),
            layer_norm=layer_norm,
            dropout_rate=dropout_rate,
            architecture=architecture,
        )

    def q_values(self, obs: PyTorchObs, detach_params: bool = False) -> th.Tensor:
        """
        :param obs: Observations
        :param detach_params: Compute no gradient for the critic's own weights
        :return: ``q_KBA``: Q-values of every critic for every action, shape ``(n_critics, batch, n_actions)``
        """
        return self.qf(self.critic_features(obs, detach_params), detach_params=detach_params)

    def forward(self, obs: PyTorchObs) -> tuple[th.Tensor, ...]:
        return tuple(self.q_values(obs).unbind(0))


class DiscreteSACPolicy(TrainingModeMixin, BasePolicy):
    """
    Policy class (categorical actor and critic ensemble) for DiscreteSAC.

    :param observation_space: Observation space
    :param action_space: Action space (``Discrete``)
    :param lr_schedule: Learning rate schedule (could be constant)
    :param net_arch: Hidden layers of the actor and of each critic: a list (both), or ``dict(pi=[...], qf=[...])``
    :param activation_fn: Activation function
    :param features_extractor_class: Features extractor to use
    :param features_extractor_kwargs: Keyword arguments to pass to the features extractor
    :param normalize_images: Whether to divide images by 255
    :param optimizer_class: The optimizer to use, ``th.optim.Adam`` by default (fused implementation)
    :param optimizer_kwargs: Additional keyword arguments, excluding the learning rate, to pass to the optimizer
    :param n_critics: Number of critic networks
    :param share_features_extractor: Whether the actor and the critics share the features extractor
        (then it is trained by the actor loss only)
    :param layer_norm: Layer normalisation after each hidden layer of the Q-networks (DroQ,
        https://arxiv.org/abs/2110.02034; SBX's ``layer_norm``)
    :param dropout_rate: Dropout after each hidden layer of the Q-networks, before the normalisation (SBX's
        ``dropout_rate``). Active whenever the policy is in training mode, in the target critics too, as in the
        DroQ authors' code and SBX
    :param batch_norm: Refused (CrossQ is implemented for SAC only); accepted as a name for a clear error
    :param batch_norm_actor: Refused, as ``batch_norm``
    """

    actor: CategoricalActor
    critic: EnsembleDiscreteCritic
    critic_target: EnsembleDiscreteCritic

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
        layer_norm: bool = False,
        dropout_rate: float | None = None,
        batch_norm: bool = False,
        batch_norm_actor: bool = False,
    ):
        check_critic_regularisation(layer_norm, dropout_rate)
        if batch_norm or batch_norm_actor:
            raise InvalidHyperparameterError(
                "batch_norm and batch_norm_actor (CrossQ) are implemented for SAC only; DiscreteSAC's networks have "
                "no batch renormalisation. Remove them (layer_norm=True is a normalisation DiscreteSAC has)"
            )
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class,
            features_extractor_kwargs,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            normalize_images=normalize_images,
        )
        if net_arch is None:
            net_arch = [256, 256]
        actor_arch, critic_arch = get_actor_critic_arch(net_arch)
        self.net_arch = net_arch
        self.activation_fn = activation_fn
        self.net_args = {
            "observation_space": self.observation_space,
            "action_space": self.action_space,
            "activation_fn": self.activation_fn,
            "normalize_images": normalize_images,
        }
        self.actor_kwargs = {**self.net_args, "net_arch": actor_arch}
        self.critic_kwargs = {
            **self.net_args,
            "net_arch": critic_arch,
            "n_critics": n_critics,
            "share_features_extractor": share_features_extractor,
            "layer_norm": layer_norm,
            "dropout_rate": dropout_rate,
        }
        self.share_features_extractor = share_features_extractor
        self._build(lr_schedule)

    def _build(self, lr_schedule: Schedule) -> None:
        self.actor = self.make_actor()
        self.actor.optimizer = make_optimizer(
            self.optimizer_class, self.actor.parameters(), lr_schedule(1), self.optimizer_kwargs
        )
        if self.share_features_extractor:
            self.critic = self.make_critic(features_extractor=self.actor.features_extractor)
            # The features extractor is trained by the actor only
            critic_parameters = [param for name, param in self.critic.named_parameters() if "features_extractor" not in name]
        else:
            self.critic = self.make_critic(features_extractor=None)
            critic_parameters = list(self.critic.parameters())
        self.critic_target = self.make_critic(features_extractor=None)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.critic.optimizer = make_optimizer(self.optimizer_class, critic_parameters, lr_schedule(1), self.optimizer_kwargs)
        self.critic_target.set_training_mode(False)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            dict(
                net_arch=self.net_arch,
                activation_fn=self.activation_fn,
                n_critics=self.critic_kwargs["n_critics"],
                share_features_extractor=self.share_features_extractor,
                layer_norm=self.critic_kwargs["layer_norm"],
                dropout_rate=self.critic_kwargs["dropout_rate"],
                lr_schedule=self._dummy_schedule,  # not needed for loading the policy alone
                optimizer_class=self.optimizer_class,
                optimizer_kwargs=self.optimizer_kwargs,
                features_extractor_class=self.features_extractor_class,
                features_extractor_kwargs=self.features_extractor_kwargs,
            )
        )
        return data

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> CategoricalActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return CategoricalActor(**actor_kwargs).to(self.device)

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> EnsembleDiscreteCritic:
        critic_kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return EnsembleDiscreteCritic(**critic_kwargs).to(self.device)

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        """:return: Actions as int64 indices, shape ``(batch,)``: argmax of the logits when deterministic, else sampled"""
        return self.actor(observation, deterministic)


MlpPolicy = DiscreteSACPolicy


class SimbaCategoricalActor(CategoricalActor):
    """:class:`CategoricalActor` whose hidden layers are SimBa's encoder (one residual block per entry of ``net_arch``)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        encoder = SimbaEncoder(self.features_dim, self.net_arch, self.activation_fn)
        self.logits_net = nn.Sequential(encoder, nn.Linear(encoder.out_dim, int(self.action_space.n)))


class SimbaPolicy(DiscreteSACPolicy):
    """
    DiscreteSAC policy with SimBa networks (Lee et al. 2024, https://arxiv.org/abs/2410.09754): running observation
    normalisation in the features extractor (:class:`~sb3_sac_ext.common.simba.RunningNormExtractor`), residual blocks
    with pre-layer normalisation for the actor and each critic, AdamW. ``net_arch`` gives one width per residual block
    (all equal); ``dropout_rate`` adds dropout after each critic block; ``layer_norm`` is not used (SimBa always
    normalises). Other arguments: see :class:`DiscreteSACPolicy`.
    """

    actor: SimbaCategoricalActor

    def __init__(
        self,
        *args: Any,
        features_extractor_class: type[BaseFeaturesExtractor] = RunningNormExtractor,
        optimizer_class: type[th.optim.Optimizer] = th.optim.AdamW,
        **kwargs: Any,
    ):
        super().__init__(*args, features_extractor_class=features_extractor_class, optimizer_class=optimizer_class, **kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        self.critic_kwargs["architecture"] = "simba"
        super()._build(lr_schedule)

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> SimbaCategoricalActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return SimbaCategoricalActor(**actor_kwargs).to(self.device)


class CnnPolicy(DiscreteSACPolicy):
    """DiscreteSAC policy for image observations (NatureCNN features extractor, e.g. Atari); see :class:`DiscreteSACPolicy`."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class MultiInputPolicy(DiscreteSACPolicy):
    """DiscreteSAC policy for Dict observations (CombinedExtractor); see :class:`DiscreteSACPolicy`."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class SimbaV2CategoricalActor(CategoricalActor):
    """:class:`CategoricalActor` whose hidden layers are SimbaV2's hyperspherical encoder, then a linear logits layer."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        encoder = SimbaV2Encoder(self.features_dim, self.net_arch)
        self.logits_net = nn.Sequential(encoder, nn.Linear(encoder.out_dim, int(self.action_space.n)))


class SimbaV2Policy(SimbaV2PolicyMixin, DiscreteSACPolicy):
    """
    DiscreteSAC policy with SimbaV2 networks (Lee et al. 2025, https://arxiv.org/abs/2503.15256; see
    :mod:`sb3_sac_ext.common.simbav2`): running observation normalisation, hyperspherical weights and features, LERP
    residual blocks, the paper's reward scaling, Adam. ``net_arch`` gives one width per block (all equal);
    ``layer_norm`` and ``dropout_rate`` are refused.

    :param normalize_reward: Scale the rewards of the critics' targets as the paper does
        (:mod:`sb3_sac_ext.common.reward_scaling`)
    :param normalized_g_max: The bound of the scaled returns (the paper's ``G_max``)
    :param num_bins: Refused: the categorical critic is implemented for ``SAC``'s ``SimbaV2Policy`` only (accepted
        as a name for a clear error)
    :param kwargs: See :class:`DiscreteSACPolicy`
    """

    actor: SimbaV2CategoricalActor

    def __init__(self, *args: Any, num_bins: int | None = None, **kwargs: Any):
        if num_bins is not None:
            raise InvalidHyperparameterError(
                "num_bins (SimbaV2's categorical critic) is implemented for SAC's SimbaV2Policy only; DiscreteSAC's "
                "SimbaV2 critics have a linear head. Remove num_bins"
            )
        super().__init__(*args, **kwargs)

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> SimbaV2CategoricalActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return SimbaV2CategoricalActor(**actor_kwargs).to(self.device)


__all__ = [
    "CategoricalActor",
    "CnnPolicy",
    "DiscreteSACPolicy",
    "EnsembleDiscreteCritic",
    "MlpPolicy",
    "MultiInputPolicy",
    "SimbaCategoricalActor",
    "SimbaPolicy",
    "SimbaV2CategoricalActor",
    "SimbaV2Policy",
]
