"""
Policies for SAC: SB3's ``SACPolicy`` with a batched critic ensemble and a fused squashed-Gaussian actor.

The parameter names of the actor are SB3's; the critics are stored as one
:class:`~sb3_sac_ext.common.ensemble.EnsembleMLP` (see :func:`convert_sb3_critic_state_dict` for the mapping
from SB3's ``qf0``/``qf1`` layout).
"""

import math
import re
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, FlattenExtractor, NatureCNN
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN, Actor
from stable_baselines3.sac.policies import SACPolicy as SB3SACPolicy
from torch import nn

from sb3_sac_ext.common.batch_renorm import batch_renorm_mlp
from sb3_sac_ext.common.ensemble import EnsembleCritic
from sb3_sac_ext.common.errors import InvalidHyperparameterError
from sb3_sac_ext.common.network_options import check_batch_norm, check_critic_regularisation, check_num_bins
from sb3_sac_ext.common.optim import make_optimizer
from sb3_sac_ext.common.reward_scaling import DEFAULT_G_MAX
from sb3_sac_ext.common.simba import RunningNormExtractor, SimbaEncoder
from sb3_sac_ext.common.simbav2 import SimbaV2Encoder, SimbaV2PolicyMixin
from sb3_sac_ext.sac.losses import expected_value
from sb3_sac_ext.common.policies import TrainingModeMixin

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
# Same epsilon as SB3's SquashedDiagGaussianDistribution
_TANH_EPS = 1e-6


class SquashedGaussianActor(Actor):
    """
    SB3's SAC ``Actor`` (same parameters, same distribution) with the sampling and log-probability of the
    tanh-squashed Gaussian written as a few tensor ops instead of building ``torch.distributions`` objects
    at every call. gSDE falls back to SB3's implementation.
    """

    def action_log_prob(self, obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor]:
        if self.use_sde:
            return super().action_log_prob(obs)
        mean, log_std, _ = self.get_action_dist_params(obs)
        return squashed_gaussian_sample(mean, log_std)

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        if self.use_sde:
            return super().forward(obs, deterministic)
        mean, log_std, _ = self.get_action_dist_params(obs)
        if deterministic:
            return th.tanh(mean)
        return th.tanh(th.addcmul(mean, log_std.exp(), th.randn_like(mean)))


def squashed_gaussian_sample(mean: th.Tensor, log_std: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """
    Reparameterised sample ``a = tanh(mean + std * eps)`` and its log-probability
    (SAC paper, appendix C: ``log pi(a|s) = log N(u; mean, std) - sum log(1 - tanh(u)^2)``).

    :param mean: Mean of the Gaussian, shape ``(batch, action_dim)``
    :param log_std: Log standard deviation, same shape
    :return: Actions ``(batch, action_dim)`` in [-1, 1] and log-probabilities ``(batch,)``
    """
    noise = th.randn_like(mean)
    actions = th.tanh(th.addcmul(mean, log_std.exp(), noise))
    # log N(mean + std * eps; mean, std) = -eps^2 / 2 - log std - log sqrt(2 pi)
    gaussian_log_prob = -0.5 * noise.square() - log_std - _HALF_LOG_2PI
    log_prob = (gaussian_log_prob - th.log(1.0 - actions.square() + _TANH_EPS)).sum(dim=-1)
    return actions, log_prob


class EnsembleContinuousCritic(EnsembleCritic):
    """
    ``n_critics`` Q-networks Q(s, a) evaluated as one batched ensemble. Drop-in for SB3's
    ``ContinuousCritic``: ``forward`` returns a tuple of ``(batch, 1)`` tensors, ``q1_forward`` exists.
    The fast path is :meth:`q_values`, which returns one ``(n_critics, batch, 1)`` tensor.
    Parameters: see :class:`~sb3_sac_ext.common.ensemble.EnsembleCritic`, and

    :param num_bins: ``None``: each Q-network outputs its Q-value. Otherwise SimbaV2's categorical critic
        (``architecture="simbav2"``, with the paper's head): each outputs the logits of a distribution over
        ``num_bins`` values evenly spaced in ``[-v_max, v_max]`` (:attr:`support`), the Q-value is its mean
        (:meth:`q_logits` gives the logits)
    :param v_max: The bound of the support
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        n_critics: int = 2,
        share_features_extractor: bool = True,
        layer_norm: bool = False,
        dropout_rate: float | None = None,
        architecture: str = "mlp",
        batch_norm: bool = False,
        batch_norm_momentum: float = 0.99,
        renorm_warmup_steps: int = 100_000,
        num_bins: int | None = None,
        v_max: float = 5.0,
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
            head_input_dim=features_dim + get_action_dim(action_space),
            head_output_dim=num_bins or 1,
            layer_norm=layer_norm,
            dropout_rate=dropout_rate,
            architecture=architecture,
            batch_norm=batch_norm,
            batch_norm_momentum=batch_norm_momentum,
            renorm_warmup_steps=renorm_warmup_steps,
            hyper_head=num_bins is not None,
        )
        self.support: th.Tensor | None
        # Derived from the constructor's arguments: not saved in the state dict
        support = th.linspace(-v_max, v_max, num_bins) if num_bins else None
        self.register_buffer("support", support, persistent=False)

    def q_logits(self, obs: PyTorchObs, actions: th.Tensor, detach_params: bool = False) -> th.Tensor:
        """
        :return: What the Q-networks output, ``(n_critics, batch, num_bins or 1)``: the logits of the categorical
            critic's distributions, or the Q-values. Arguments: see :meth:`q_values`
        """
        features = self.critic_features(obs, detach_params)
        return self.qf(th.cat([features, actions], dim=1), detach_params=detach_params)

    def q_values(self, obs: PyTorchObs, actions: th.Tensor, detach_params: bool = False) -> th.Tensor:
        """
        :param obs: Observations
        :param actions: Actions in [-1, 1], shape ``(batch, action_dim)``
        :param detach_params: Compute no gradient for the critic's own weights (actor loss)
        :return: Q-values of every critic, shape ``(n_critics, batch, 1)`` (in float32 for the categorical critic)
        """
        return self._value(self.q_logits(obs, actions, detach_params))

    def _value(self, output: th.Tensor) -> th.Tensor:
        return output if self.support is None else expected_value(output.float(), self.support)

    def forward(self, obs: PyTorchObs, actions: th.Tensor) -> tuple[th.Tensor, ...]:
        return tuple(self.q_values(obs, actions).unbind(0))

    def q1_forward(self, obs: PyTorchObs, actions: th.Tensor) -> th.Tensor:
        """Q-value of the first critic only (features without gradient, as in SB3)."""
        with th.no_grad():
            features = self.extract_features(obs, self.features_extractor)
        return self._value(self.qf(th.cat([features, actions], dim=1)))[0]


_SB3_CRITIC_KEY = re.compile(r"^(?P<prefix>.*)qf(?P<member>\d+)\.(?P<index>\d+)\.(?P<kind>weight|bias)$")


def convert_sb3_critic_state_dict(state_dict: dict[str, th.Tensor]) -> dict[str, th.Tensor]:
    """
    Map a state dict in SB3's critic layout (``qf0.0.weight``, ``qf1.2.bias``, ...) to the ensemble
    layout (``qf.weights.0``, ``qf.biases.1``, ...). Keys that are not critic layers pass unchanged.

    :param state_dict: A state dict of SB3's ``ContinuousCritic``, or of a policy holding one
        (keys prefixed with ``critic.`` / ``critic_target.``)
    :return: The converted state dict
    """
    grouped: dict[tuple[str, str, int], dict[int, th.Tensor]] = {}
    converted: dict[str, th.Tensor] = {}
    for key, value in state_dict.items():
        match = _SB3_CRITIC_KEY.match(key)
        if match is None:
            converted[key] = value
            continue
        layer = int(match["index"]) // 2  # nn.Sequential(Linear, act, Linear, act, Linear)
        grouped.setdefault((match["prefix"], match["kind"], layer), {})[int(match["member"])] = value
    for (prefix, kind, layer), members in grouped.items():
        stacked = th.stack([members[i] for i in sorted(members)])
        if kind == "bias":
            converted[f"{prefix}qf.biases.{layer}"] = stacked.unsqueeze(1)
        else:
            converted[f"{prefix}qf.weights.{layer}"] = stacked
    return converted


_ENSEMBLE_KEY = re.compile(r"^(?P<prefix>.*)qf\.(?P<kind>weights|biases)\.(?P<layer>\d+)$")


def to_sb3_critic_state_dict(state_dict: dict[str, th.Tensor]) -> dict[str, th.Tensor]:
    """
    The inverse of :func:`convert_sb3_critic_state_dict`: the ensemble layout (``qf.weights.0``, ...) back to SB3's
    per-critic ``nn.Sequential`` layout (``qf0.0.weight``, ``qf1.2.bias``, ...). Keys that are not critic layers
    pass unchanged.

    :param state_dict: A state dict of :class:`EnsembleContinuousCritic`, or of a policy holding one
    :return: The state dict in SB3's layout, loadable by SB3's ``ContinuousCritic`` / ``SACPolicy``
    """
    converted: dict[str, th.Tensor] = {}
    for key, value in state_dict.items():
        match = _ENSEMBLE_KEY.match(key)
        if match is None:
            converted[key] = value
            continue
        kind = "weight" if match["kind"] == "weights" else "bias"
        for member, tensor in enumerate(value.unbind(0)):
            # nn.Sequential(Linear, act, Linear, act, Linear): linear layer l is module 2 * l
            converted[f"{match['prefix']}qf{member}.{2 * int(match['layer'])}.{kind}"] = (
                tensor.squeeze(0) if kind == "bias" else tensor
            ).clone()
    return converted


def _in_ensemble_layout(state_dict: dict[str, Any], n_params: int | None) -> bool:
    """
    Whether a critic optimizer state is already in the ensemble layout. The last parameter is the last critic's
    last bias in both layouts: its moments have shape ``(n_critics, 1, out)`` here and ``(out,)`` in SB3's.
    Without moments (no step taken yet), the number of parameters decides.
    """
    params = state_dict["param_groups"][0]["params"]
    last_state = state_dict["state"].get(params[-1]) if params else None
    moments = [
        value
        for key, value in (last_state or {}).items()
        if key != "step" and isinstance(value, th.Tensor) and value.dim() > 0
    ]
    if moments:
        return moments[0].dim() == 3
    return n_params is not None and len(params) == n_params


def convert_sb3_critic_optimizer_state(
    state_dict: dict[str, Any], n_critics: int, n_layers: int, n_params: int | None = None
) -> dict[str, Any]:
    """
    Map the state of an optimizer over SB3's critic parameters (features extractor, then ``qf0``'s
    ``weight, bias`` per layer, then ``qf1``'s, ...) to the ensemble's order (features extractor, then
    ``weights.0..L-1``, then ``biases.0..L-1``), stacking the per-critic moments.
    A state dict already in the ensemble layout is returned unchanged.

    :param state_dict: ``optimizer.state_dict()`` of SB3's critic optimizer
    :param n_critics: Number of critics
    :param n_layers: Number of linear layers per critic
    :param n_params: Number of parameters of the ensemble critic's optimizer (tells the layouts apart when
        the saved optimizer has no state yet)
    :return: The state dict for the ensemble critic's optimizer
    """
    group = state_dict["param_groups"][0]
    n_saved = len(group["params"])
    n_features = n_saved - n_critics * 2 * n_layers
    if n_features < 0 or len(state_dict["param_groups"]) != 1 or _in_ensemble_layout(state_dict, n_params):
        return state_dict
    old_ids = group["params"]
    old_state = state_dict["state"]

    def stacked(positions: list[int], is_bias: bool) -> dict[str, th.Tensor] | None:
        states = [old_state.get(old_ids[i]) for i in positions]
        if any(state is None for state in states):
            return None
        merged: dict[str, th.Tensor] = {}
        for key, value in states[0].items():
            if key == "step" or not isinstance(value, th.Tensor) or value.dim() == 0:
                merged[key] = value
            else:
                tensor = th.stack([state[key] for state in states])
                merged[key] = tensor.unsqueeze(1) if is_bias else tensor
        return merged

    new_state: dict[int, Any] = {}
    for i in range(n_features):
        if old_ids[i] in old_state:
            new_state[i] = old_state[old_ids[i]]
    for kind, offset in (("weight", 0), ("bias", 1)):
        for layer in range(n_layers):
            positions = [n_features + critic * 2 * n_layers + 2 * layer + offset for critic in range(n_critics)]
            merged = stacked(positions, kind == "bias")
            if merged is not None:
                new_state[n_features + (0 if kind == "weight" else n_layers) + layer] = merged
    new_group = {**group, "params": list(range(n_features + 2 * n_layers))}
    return {"state": new_state, "param_groups": [new_group]}


class SACPolicy(TrainingModeMixin, SB3SACPolicy):
    """
    Policy class (actor and critic ensemble) for SAC. Same constructor as SB3's ``SACPolicy``, plus SBX's critic
    options; Adam/AdamW default to PyTorch's fused implementation.

    :param args: SB3's ``SACPolicy`` arguments
    :param layer_norm: Layer normalisation after each hidden layer of the Q-networks (DroQ,
        https://arxiv.org/abs/2110.02034; SBX's ``layer_norm``)
    :param dropout_rate: Dropout after each hidden layer of the Q-networks, before the normalisation (DroQ uses
        0.01 with ``layer_norm=True``; SBX's ``dropout_rate``). Active whenever the policy is in training mode, in
        the target critics too, as in the DroQ authors' code and SBX
    :param batch_norm: CrossQ (Bhatt et al. 2024, https://arxiv.org/abs/1902.05605; SBX's ``batch_norm``): batch
        renormalisation in the Q-networks; the algorithm then uses no target network and evaluates the current and the
        next state-actions in one joint forward pass (see :meth:`sb3_sac_ext.sac.SAC._critic_loss`)
    :param batch_norm_actor: Batch renormalisation in the actor too, of its input and after each hidden layer (SBX's
        ``batch_norm_actor``, on in SBX's and sb3-contrib's CrossQ): the actor normalises with the batch's statistics
        in its own loss and with its running statistics everywhere else (acting, ``predict``, the critics' targets).
        MLP actors only
    :param batch_norm_momentum: Weight of the running averages (SBX's convention, 0.99)
    :param renorm_warmup_steps: Training batches of plain batch normalisation before the renormalisation
    :param kwargs: SB3's ``SACPolicy`` keyword arguments
    """

    actor: SquashedGaussianActor
    critic: EnsembleContinuousCritic
    critic_target: EnsembleContinuousCritic
    #: What the hidden layers of :meth:`make_actor`'s actor are (``batch_norm_actor`` needs ``"mlp"``)
    actor_architecture = "mlp"

    def __init__(
        self,
        *args: Any,
        layer_norm: bool = False,
        dropout_rate: float | None = None,
        batch_norm: bool = False,
        batch_norm_actor: bool = False,
        batch_norm_momentum: float = 0.99,
        renorm_warmup_steps: int = 100_000,
        **kwargs: Any,
    ):
        check_critic_regularisation(layer_norm, dropout_rate)
        check_batch_norm(batch_norm, batch_norm_momentum, renorm_warmup_steps, batch_norm_actor)
        if batch_norm_actor and self.actor_architecture != "mlp":
            raise InvalidHyperparameterError(
                f"batch_norm_actor is implemented for MLP actors, not for {type(self).__name__}'s "
                f"{self.actor_architecture} actor; remove it, or use MlpPolicy"
            )
        # Read by _build, which SB3's constructor calls
        self._critic_options = {"layer_norm": layer_norm, "dropout_rate": dropout_rate}
        renorm = {"batch_norm_momentum": batch_norm_momentum, "renorm_warmup_steps": renorm_warmup_steps}
        if batch_norm:
            self._critic_options.update(batch_norm=True, **renorm)
        self._actor_renorm = (
            {"momentum": batch_norm_momentum, "warmup_steps": renorm_warmup_steps} if batch_norm_actor else None
        )
        super().__init__(*args, **kwargs)

    @property
    def batch_norm_actor(self) -> bool:
        """Whether the actor has batch renormalisation (``batch_norm_actor=True``)."""
        return self._actor_renorm is not None

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        # Only the options that differ from the defaults: a default policy's file stays loadable by SB3's SACPolicy
        defaults = {"layer_norm": False, "dropout_rate": None, "batch_norm": False}
        data.update({key: value for key, value in self._critic_options.items() if value != defaults.get(key)})
        if self.batch_norm_actor:
            data.update(
                batch_norm_actor=True,
                batch_norm_momentum=self._actor_renorm["momentum"],
                renorm_warmup_steps=self._actor_renorm["warmup_steps"],
            )
        return data

    def _build(self, lr_schedule: Schedule) -> None:
        self.critic_kwargs.update(self._critic_options)
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

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> SquashedGaussianActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        actor = SquashedGaussianActor(**actor_kwargs)
        if self._actor_renorm is not None:
            actor.latent_pi = batch_renorm_mlp(actor.features_dim, actor.net_arch, actor.activation_fn, **self._actor_renorm)
        return actor.to(self.device)

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> EnsembleContinuousCritic:
        critic_kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return EnsembleContinuousCritic(**critic_kwargs).to(self.device)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        # Accept SB3's per-critic layout too (models saved by stable_baselines3.SAC)
        return super().load_state_dict(convert_sb3_critic_state_dict(dict(state_dict)), strict=strict, assign=assign)

    def save(self, path: str) -> None:
        """
        Save the policy alone, as SB3's ``BasePolicy.save`` does (weights and constructor arguments), with the
        critics in SB3's per-critic layout: the file loads with SB3's ``stable_baselines3.sac.policies.MlpPolicy.load``
        and acts the same, and with this class's ``load``. Like SB3's policy files, it is a ``torch.save`` pickle:
        the safe, pickle-free file is the model's (``SAC.save``).

        :param path: Path of the file
        """
        th.save({"state_dict": to_sb3_critic_state_dict(self.state_dict()), "data": self._get_constructor_parameters()}, path)


MlpPolicy = SACPolicy


class SimbaSquashedGaussianActor(SquashedGaussianActor):
    """
    :class:`SquashedGaussianActor` whose hidden layers are SimBa's encoder
    (:class:`~sb3_sac_ext.common.simba.SimbaEncoder`: one residual block per entry of ``net_arch``). ``latent_pi``
    is that encoder, so gSDE and the exporter read it as they read SB3's MLP.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.latent_pi = SimbaEncoder(self.features_dim, self.net_arch, self.activation_fn)


class SimbaPolicy(SACPolicy):
    """
    SAC policy with SimBa networks (Lee et al. 2024, https://arxiv.org/abs/2410.09754; SBX's ``SimbaPolicy``): running
    observation normalisation in the features extractor
    (:class:`~sb3_sac_ext.common.simba.RunningNormExtractor`), residual blocks with pre-layer normalisation for the
    actor and for each critic, AdamW (SimBa's optimizer; PyTorch's default weight decay 0.01 is the paper's).
    ``net_arch`` gives one width per residual block (all equal), e.g. ``dict(pi=[128], qf=[256, 256])`` as in the
    paper (one actor block, two critic blocks). ``dropout_rate`` adds dropout after each critic block (as SBX);
    ``layer_norm`` is accepted for SBX's files and not used (SimBa always normalises). Other arguments: see
    :class:`SACPolicy`.
    """

    actor: SimbaSquashedGaussianActor
    actor_architecture = "SimBa"

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

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> SimbaSquashedGaussianActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return SimbaSquashedGaussianActor(**actor_kwargs).to(self.device)


class CnnPolicy(SACPolicy):
    """SAC policy for image observations (NatureCNN features extractor); see :class:`SACPolicy`."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class MultiInputPolicy(SACPolicy):
    """SAC policy for Dict observations (CombinedExtractor); see :class:`SACPolicy`."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class SimbaV2SquashedGaussianActor(SquashedGaussianActor):
    """
    :class:`SquashedGaussianActor` whose hidden layers are SimbaV2's hyperspherical encoder
    (:class:`~sb3_sac_ext.common.simbav2.SimbaV2Encoder`); the mean and log-std heads are SB3's linear layers.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.latent_pi = SimbaV2Encoder(self.features_dim, self.net_arch)


class SimbaV2Policy(SimbaV2PolicyMixin, SACPolicy):
    """
    SAC policy with SimbaV2 networks (Lee et al. 2025, https://arxiv.org/abs/2503.15256; equations and the
    simplifications made here in :mod:`sb3_sac_ext.common.simbav2`): running observation normalisation, then the
    input projected onto the unit sphere, hyperspherical weights and features, LERP residual blocks, and the paper's
    reward scaling; Adam as in the paper (the weights are normalised: no weight decay). ``net_arch`` gives one width
    per block (all equal), e.g. ``dict(pi=[128], qf=[512, 512])``. ``layer_norm`` and ``dropout_rate`` are refused.

    :param normalize_reward: Scale the rewards of the critics' targets as the paper does
        (:mod:`sb3_sac_ext.common.reward_scaling`)
    :param normalized_g_max: The bound of the scaled returns (the paper's ``G_max``)
    :param num_bins: The paper's categorical critic (default: the paper's 101 bins): each critic outputs a
        distribution over ``num_bins`` values evenly spaced in ``[-normalized_g_max, normalized_g_max]``, trained by
        cross-entropy to the projected soft Bellman target (:func:`sb3_sac_ext.sac.losses.categorical_target`); it
        needs ``normalize_reward=True``. ``None``: a linear Q-head (MSE loss, as the other policies)
    :param kwargs: See :class:`SACPolicy`
    """

    actor: SimbaV2SquashedGaussianActor
    actor_architecture = "SimbaV2"

    def __init__(
        self,
        *args: Any,
        normalize_reward: bool = True,
        normalized_g_max: float = DEFAULT_G_MAX,
        num_bins: int | None = 101,
        **kwargs: Any,
    ):
        check_num_bins(num_bins, normalize_reward)
        # Read by _build, which the constructor calls
        self._categorical = {"num_bins": num_bins, "v_max": normalized_g_max} if num_bins else {}
        super().__init__(*args, normalize_reward=normalize_reward, normalized_g_max=normalized_g_max, **kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        self.critic_kwargs.update(self._categorical)
        super()._build(lr_schedule)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["num_bins"] = self._categorical.get("num_bins")
        return data

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> SimbaV2SquashedGaussianActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return SimbaV2SquashedGaussianActor(**actor_kwargs).to(self.device)


__all__ = [
    "LOG_STD_MAX",
    "LOG_STD_MIN",
    "CnnPolicy",
    "EnsembleContinuousCritic",
    "FlattenExtractor",
    "MlpPolicy",
    "MultiInputPolicy",
    "SACPolicy",
    "SimbaPolicy",
    "SimbaSquashedGaussianActor",
    "SimbaV2Policy",
    "SimbaV2SquashedGaussianActor",
    "SquashedGaussianActor",
    "convert_sb3_critic_optimizer_state",
    "convert_sb3_critic_state_dict",
    "to_sb3_critic_state_dict",
]
