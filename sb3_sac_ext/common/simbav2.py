"""
SimbaV2's hyperspherical encoder (Lee et al. 2025, "Hyperspherical Normalization for Scalable Deep Reinforcement
Learning", https://arxiv.org/abs/2503.15256, Section 4 and Fig. 3), for the actor and the critics of
``SimbaV2Policy``. With ``Norm(v) = v / ||v||_2`` over the features:

- input: running-statistics normalisation (the features extractor), then a shift constant ``c_shift`` appended and
  the result projected onto the unit sphere: ``x~ = Norm([x; c_shift])`` (Section 4.1);
- embedding: ``h_0 = Norm(s_h * (W_h x~))`` with a learned per-feature scaler ``s_h`` (Section 4.2);
- blocks: ``h~ = Norm(W_2 (ReLU(s_l * (W_1 h_l)) + eps))`` then the learned interpolation
  ``h_{l+1} = Norm(h_l + alpha_l * (h~ - h_l))`` (the "LERP" residual, Section 4.3);
- every weight matrix ``W`` has unit-norm rows (one per output feature): hyperspherical weights.

Scalers use the paper's reparameterisation ``s = s_param * (init / scale)`` with ``s_param`` initialised to ``scale``
(``init = scale = sqrt(2 / width)``; for ``alpha``: ``init = 1 / (n_blocks + 1)``, ``scale = 1 / sqrt(width)``).

Simplifications, stated honestly:

- the weights are normalised in the forward pass (``W / ||W||`` per row) instead of being projected back onto the
  sphere after each optimizer step as in the paper: the network computes the paper's function, the gradient step is
  that of this reparameterisation (as weight normalisation), and no hook is needed in the optimizer steps;
- the actor's output layers are SB3's linear ``mu``/``log_std``, not the paper's hyperspherical ones. The critics
  of ``SAC``'s ``SimbaV2Policy`` are the paper's categorical critic (``num_bins``, 101 by default), with its
  hyperspherical output layer (:class:`HyperHead`) giving the logits of a distribution over ``num_bins`` values in
  ``[-G_max, G_max]`` (see :func:`sb3_sac_ext.sac.losses.categorical_target`); with ``num_bins=None``, and in
  ``DiscreteSAC``, a linear Q-head. The paper's reward scaling is kept (on by default:
  :mod:`sb3_sac_ext.common.reward_scaling`): a linear head on a unit-norm latent cannot follow returns of hundreds,
  and the categorical critic's support assumes scaled returns.
"""

import math
from typing import Any

import torch as th
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import Schedule
from torch import nn
from torch.nn import functional as F

from sb3_sac_ext.common.network_options import check_simbav2_options
from sb3_sac_ext.common.reward_scaling import DEFAULT_G_MAX, RewardScaler, make_reward_scaler
from sb3_sac_ext.common.simba import SCALE_FACTOR, EnsembleLinear, RunningNormExtractor, simba_width

#: ``c_shift`` of the input projection (the paper's value)
C_SHIFT = 3.0
_EPS = 1e-8


def l2_normalize(x: th.Tensor) -> th.Tensor:
    """``Norm(x) = x / max(||x||_2, eps)`` over the last dimension."""
    return x / th.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(_EPS)


class HyperLinear(nn.Module):
    """
    ``n_members`` bias-free linear layers whose weight rows are unit vectors (``W / ||W||`` per output feature),
    orthogonally initialised per member (as the paper). ``weight``: ``(n_members, out, in)``.
    """

    def __init__(self, n_members: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(th.empty(n_members, out_dim, in_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with th.no_grad():
            for member in self.weight:
                nn.init.orthogonal_(member)

    def forward(self, x: th.Tensor, detach_params: bool = False) -> th.Tensor:
        weight = self.weight.detach() if detach_params else self.weight
        weight = l2_normalize(weight)
        return th.matmul(x, weight.transpose(1, 2))


class Scaler(nn.Module):
    """A learned per-feature scale ``s_param * (init / scale)``, ``s_param`` ``(n_members, 1, dim)`` starting at ``scale``."""

    def __init__(self, n_members: int, dim: int, init: float, scale: float):
        super().__init__()
        self.init, self.scale = float(init), float(scale)
        self.scaler = nn.Parameter(th.empty(n_members, 1, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with th.no_grad():
            self.scaler.fill_(self.scale)

    def forward(self, x: th.Tensor, detach_params: bool = False) -> th.Tensor:
        scaler = self.scaler.detach() if detach_params else self.scaler
        return x * (scaler * (self.init / self.scale))


class _LerpBlock(nn.Module):
    def __init__(self, n_members: int, width: int, n_blocks: int, scale_factor: int):
        super().__init__()
        inner = scale_factor * width
        scaler = math.sqrt(2.0 / width) / math.sqrt(scale_factor)
        self.up = HyperLinear(n_members, width, inner)
        self.up_scaler = Scaler(n_members, inner, scaler, scaler)
        self.down = HyperLinear(n_members, inner, width)
        self.alpha = Scaler(n_members, width, 1.0 / (n_blocks + 1), 1.0 / math.sqrt(width))

    def forward(self, h: th.Tensor, detach_params: bool) -> th.Tensor:
        hidden = F.relu(self.up_scaler(self.up(h, detach_params), detach_params)) + _EPS
        update = l2_normalize(self.down(hidden, detach_params))
        return l2_normalize(h + self.alpha(update - h, detach_params))


class HyperHead(nn.Module):
    """
    The paper's output layer of its categorical critic: ``W_2 (s * (W_1 h)) + b`` with hyperspherical ``W_1``
    ``(width -> width)`` and ``W_2`` ``(width -> out)``, a learned scaler ``s`` (initialised to 1) and a bias (zeros).
    """

    def __init__(self, n_members: int, width: int, out_dim: int):
        super().__init__()
        self.hidden = HyperLinear(n_members, width, width)
        self.scaler = Scaler(n_members, width, 1.0, 1.0)
        self.output = HyperLinear(n_members, width, out_dim)
        self.bias = nn.Parameter(th.zeros(n_members, 1, out_dim))

    def reset_parameters(self) -> None:
        with th.no_grad():
            self.bias.zero_()

    def forward(self, h: th.Tensor, detach_params: bool = False) -> th.Tensor:
        bias = self.bias.detach() if detach_params else self.bias
        return self.output(self.scaler(self.hidden(h, detach_params), detach_params), detach_params) + bias


class EnsembleSimbaV2(nn.Module):
    """
    ``n_members`` SimbaV2 networks ``in_dim -> embedding -> LERP blocks -> [head]`` evaluated as one batched
    network (see the module docstring for the equations). ``forward`` as
    :class:`~sb3_sac_ext.common.ensemble.EnsembleMLP`'s; with ``out_dim=None`` there is no head and the output is the
    unit-norm latent of width ``net_arch[0]`` (the actor's encoder, see :class:`SimbaV2Encoder`).

    :param n_members: Number of networks
    :param in_dim: Input size
    :param net_arch: One width per block, all equal
    :param out_dim: Size of the head (linear, or :class:`HyperHead`), or ``None`` for none
    :param c_shift: The constant appended to the input before its projection onto the sphere
    :param scale_factor: Widening of the blocks' MLPs
    :param hyper_head: The head is the paper's :class:`HyperHead` (its categorical critic's) instead of a linear layer
    """

    def __init__(
        self,
        n_members: int,
        in_dim: int,
        net_arch: list[int],
        out_dim: int | None,
        c_shift: float = C_SHIFT,
        scale_factor: int = SCALE_FACTOR,
        hyper_head: bool = False,
    ):
        super().__init__()
        width = simba_width(net_arch)
        self.n_members, self.c_shift, self.out_dim = n_members, float(c_shift), width if out_dim is None else out_dim
        scaler = math.sqrt(2.0 / width)
        self.embedding = HyperLinear(n_members, in_dim + 1, width)
        self.embedding_scaler = Scaler(n_members, width, scaler, scaler)
        self.blocks = nn.ModuleList(_LerpBlock(n_members, width, len(net_arch), scale_factor) for _ in net_arch)
        self.output: nn.Module | None = None
        if out_dim is not None:
            self.output = (HyperHead if hyper_head else EnsembleLinear)(n_members, width, out_dim)

    def forward(self, x: th.Tensor, detach_params: bool = False) -> th.Tensor:
        """
        :param x: Input shared by all members ``(batch, in_dim)``, or one per member ``(n_members, batch, in_dim)``
        :return: ``(n_members, batch, out_dim)``
        """
        shifted = l2_normalize(th.cat([x, th.full_like(x[..., :1], self.c_shift)], dim=-1))
        h = l2_normalize(self.embedding_scaler(self.embedding(shifted, detach_params), detach_params))
        for block in self.blocks:
            h = block(h, detach_params)
        return self.output(h, detach_params) if self.output is not None else h


class SimbaV2Encoder(nn.Module):
    """
    The actor's SimbaV2 encoder: one :class:`EnsembleSimbaV2` member without head, ``(batch, in) -> (batch, width)``.

    :param in_dim: Input size
    :param net_arch: One width per block, all equal
    """

    def __init__(self, in_dim: int, net_arch: list[int]):
        super().__init__()
        self.network = EnsembleSimbaV2(1, in_dim, net_arch, None)
        self.out_dim = self.network.out_dim

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.network(x)[0]


class SimbaV2PolicyMixin:
    """
    What ``SimbaV2Policy`` adds to the ``SACPolicy``/``DiscreteSACPolicy`` it is mixed into: running observation
    normalisation (the default features extractor), SimbaV2 critics, no ``layer_norm``/``dropout_rate``, and the
    paper's reward scaling (:class:`~sb3_sac_ext.common.reward_scaling.RewardScaler`, ``reward_scaler``: its
    statistics are in the policy's state dict, saved with it; the algorithm updates them with each env step and scales
    the rewards of the critics' targets).

    :param normalize_reward: Scale the rewards of the critics' targets (SimbaV2's reward scaling)
    :param normalized_g_max: The bound of the scaled returns (the paper's ``G_max``)
    """

    reward_scaler: RewardScaler | None
    critic_kwargs: dict[str, Any]

    def __init__(
        self,
        *args: Any,
        normalize_reward: bool = True,
        normalized_g_max: float = DEFAULT_G_MAX,
        features_extractor_class: type[BaseFeaturesExtractor] = RunningNormExtractor,
        **kwargs: Any,
    ):
        check_simbav2_options(kwargs.get("layer_norm"), kwargs.get("dropout_rate"))
        reward_scaler = make_reward_scaler(normalize_reward, normalized_g_max)
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)  # type: ignore[call-arg]
        self.reward_scaler = reward_scaler

    def _build(self, lr_schedule: Schedule) -> None:
        self.critic_kwargs["architecture"] = "simbav2"
        super()._build(lr_schedule)  # type: ignore[misc]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()  # type: ignore[misc]
        scaler = self.reward_scaler
        data.update(normalize_reward=scaler is not None, normalized_g_max=DEFAULT_G_MAX if scaler is None else scaler.g_max)
        return data
