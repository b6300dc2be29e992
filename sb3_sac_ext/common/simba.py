"""
The building blocks of SimBa (Lee et al. 2024, "SimBa: Simplicity Bias for Scaling Up Parameters in Deep
Reinforcement Learning", https://arxiv.org/abs/2410.09754, Section 4 and Fig. 3; SBX's ``SimbaPolicy``):

- running statistics normalisation of the observations (:class:`RunningObsNorm`, in the features extractor
  :class:`RunningNormExtractor`): ``x_bar = (x - mu_t) / sqrt(sigma_t^2 + eps)`` (Eq. 1-3 of the paper);
- a linear embedding, then residual blocks with pre-layer normalisation and an inverted-bottleneck MLP
  ``x_{l+1} = x_l + MLP(LayerNorm(x_l))``, the MLP widening by ``scale_factor`` (4 in the paper) and back;
- a last layer normalisation before the output layer.

:class:`SimbaEncoder` is that encoder for the actor; :class:`EnsembleSimba` evaluates ``n_members`` of them (the
critics) as one batched network, like :class:`~sb3_sac_ext.common.ensemble.EnsembleMLP`, with the same ``forward``.
"""

import math

import gymnasium as gym
import torch as th
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn
from torch.nn import functional as F

from sb3_sac_ext.common.errors import InvalidHyperparameterError
from sb3_sac_ext.common.running_stats import read, write

#: Width of the inverted bottleneck relative to the block's width (SimBa, Section 4.2)
SCALE_FACTOR = 4


def simba_width(net_arch: list[int]) -> int:
    """
    :param net_arch: One entry per residual block (as in SBX), all of the same width (the residual adds them)
    :return: That width
    :raise InvalidHyperparameterError: For an empty list or blocks of different widths
    """
    if not net_arch or any(width != net_arch[0] for width in net_arch):
        raise InvalidHyperparameterError(
            f"SimBa's net_arch gives one width per residual block, all equal (the residual adds them), got {net_arch}; "
            "for example net_arch=[256, 256] (two blocks of 256) or dict(pi=[128], qf=[256, 256])"
        )
    return int(net_arch[0])


class RunningObsNorm(nn.Module):
    """
    Normalisation by running statistics (SimBa's RSNorm). In training mode, each batch it sees updates the mean and
    variance (Chan et al.'s parallel update of the count, mean and sum of squares, in float64); in evaluation mode the
    statistics are frozen. It normalises with the statistics after the update: ``(x - mean) / sqrt(var + eps)``.

    The statistics are buffers (``running_mean``, ``running_var``, ``running_count``): saved with the policy's
    state dict, copied to the target critic at each target update as batch-norm statistics are. In SB3, the policy
    acts in evaluation mode and trains in training mode, so the statistics follow the observations of the replay
    batches (each network counts the batches it reads), not the env steps.

    :param shape: Shape of one observation (features)
    :param epsilon: Added to the variance
    """

    def __init__(self, shape: tuple[int, ...], epsilon: float = 1e-8):
        super().__init__()
        self.epsilon = epsilon
        self.register_buffer("running_mean", th.zeros(shape, dtype=th.float64))
        self.register_buffer("running_var", th.ones(shape, dtype=th.float64))
        self.register_buffer("running_count", th.zeros((), dtype=th.float64))

    @th.no_grad()
    def update(self, x: th.Tensor) -> None:
        """
        Merge the statistics of a batch (Chan, Golub & LeVeque 1979): with ``n`` new samples of mean ``m_b`` and
        variance ``v_b``, ``delta = m_b - mean``, ``N = count + n``: ``mean += delta * n / N``,
        ``var = (var * count + v_b * n + delta^2 * count * n / N) / N``.

        :param x: Batch, shape ``(batch, *shape)``
        """
        x = x.detach().to(th.float64)
        n = x.shape[0]
        batch_var, batch_mean = th.var_mean(x, dim=0, correction=0)
        mean, var, count = read(self.running_mean), read(self.running_var), read(self.running_count)
        total = count + n
        delta = batch_mean - mean
        write(self.running_mean, mean + delta * (n / total))
        write(self.running_var, (var * count + batch_var * n + delta.square() * (count * n / total)) / total)
        write(self.running_count, total)

    def forward(self, x: th.Tensor) -> th.Tensor:
        if self.training:
            self.update(x)
        mean, var = read(self.running_mean).to(x.dtype), read(self.running_var).to(x.dtype)
        return (x - mean) * th.rsqrt(var + self.epsilon)


class RunningNormExtractor(BaseFeaturesExtractor):
    """
    SB3's ``FlattenExtractor`` followed by :class:`RunningObsNorm`: the features extractor of the SimBa policies.

    :param observation_space: Observation space (any space SB3 flattens)
    :param epsilon: Added to the variance
    """

    def __init__(self, observation_space: gym.Space, epsilon: float = 1e-8):
        features_dim = gym.spaces.utils.flatdim(observation_space)
        super().__init__(observation_space, features_dim)
        self.flatten = nn.Flatten()
        self.obs_norm = RunningObsNorm((features_dim,), epsilon)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.obs_norm(self.flatten(observations))


class SimbaBlock(nn.Module):
    """
    ``x + Linear(act(Linear(LayerNorm(x))))`` with the inner width ``scale_factor * width``.

    :param width: Width of the block
    :param activation_fn: Activation of the inverted bottleneck
    :param scale_factor: Widening of the inverted bottleneck
    """

    def __init__(self, width: int, activation_fn: type[nn.Module] = nn.ReLU, scale_factor: int = SCALE_FACTOR):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, scale_factor * width)
        self.activation = activation_fn()
        self.down = nn.Linear(scale_factor * width, width)

    def forward(self, x: th.Tensor) -> th.Tensor:
        return x + self.down(self.activation(self.up(self.norm(x))))


class SimbaEncoder(nn.Module):
    """
    SimBa's encoder: ``Linear(in, width)``, one :class:`SimbaBlock` per entry of ``net_arch``, ``LayerNorm(width)``.
    Its output has ``width = net_arch[0]`` features.

    :param in_dim: Input size (the features)
    :param net_arch: One width per block, all equal
    :param activation_fn: Activation of the blocks
    :param scale_factor: Widening of the inverted bottlenecks
    """

    def __init__(self, in_dim: int, net_arch: list[int], activation_fn: type[nn.Module] = nn.ReLU, scale_factor: int = 4):
        super().__init__()
        width = simba_width(net_arch)
        self.embedding = nn.Linear(in_dim, width)
        self.blocks = nn.Sequential(*(SimbaBlock(width, activation_fn, scale_factor) for _ in net_arch))
        self.norm = nn.LayerNorm(width)
        self.out_dim = width

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.norm(self.blocks(self.embedding(x)))


class EnsembleLinear(nn.Module):
    """
    ``n_members`` linear layers: ``weight`` ``(n_members, out, in)``, ``bias`` ``(n_members, 1, out)``, each member
    initialised as ``nn.Linear`` (uniform in +-1/sqrt(fan_in)).
    """

    def __init__(self, n_members: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(th.empty(n_members, out_dim, in_dim))
        self.bias = nn.Parameter(th.empty(n_members, 1, out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.weight.shape[-1])
        with th.no_grad():
            self.weight.uniform_(-bound, bound)
            self.bias.uniform_(-bound, bound)

    def forward(self, x: th.Tensor, detach_params: bool = False) -> th.Tensor:
        """:param x: ``(batch, in)`` shared by the members, or ``(n_members, batch, in)``"""
        weight, bias = (self.weight.detach(), self.bias.detach()) if detach_params else (self.weight, self.bias)
        if x.dim() == 2:
            return th.matmul(x, weight.transpose(1, 2)) + bias
        return th.baddbmm(bias, x, weight.transpose(1, 2))


class EnsembleLayerNorm(nn.Module):
    """``n_members`` layer normalisations over the last dimension, each with its own ``weight``/``bias`` ``(n, 1, d)``."""

    def __init__(self, n_members: int, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(th.ones(n_members, 1, dim))
        self.bias = nn.Parameter(th.zeros(n_members, 1, dim))

    def reset_parameters(self) -> None:
        with th.no_grad():
            self.weight.fill_(1.0)
            self.bias.zero_()

    def forward(self, x: th.Tensor, detach_params: bool = False) -> th.Tensor:
        weight, bias = (self.weight.detach(), self.bias.detach()) if detach_params else (self.weight, self.bias)
        return th.addcmul(bias, F.layer_norm(x, x.shape[-1:], eps=self.eps), weight)


class _EnsembleSimbaBlock(nn.Module):
    def __init__(self, n_members: int, width: int, activation_fn: type[nn.Module], scale_factor: int):
        super().__init__()
        self.norm = EnsembleLayerNorm(n_members, width)
        self.up = EnsembleLinear(n_members, width, scale_factor * width)
        self.activation = activation_fn()
        self.down = EnsembleLinear(n_members, scale_factor * width, width)

    def forward(self, x: th.Tensor, detach_params: bool) -> th.Tensor:
        hidden = self.activation(self.up(self.norm(x, detach_params), detach_params))
        return x + self.down(hidden, detach_params)


class EnsembleSimba(nn.Module):
    """
    ``n_members`` SimBa networks ``in_dim -> SimbaEncoder -> out_dim`` evaluated as one batched network (the critics
    of the SimBa policies). Same ``forward`` as :class:`~sb3_sac_ext.common.ensemble.EnsembleMLP` (batch-major layout
    only: the compiled update's ``feature_major`` switch applies to ``EnsembleMLP`` and leaves this one alone).

    :param n_members: Number of networks
    :param in_dim: Input size
    :param net_arch: One width per residual block, all equal
    :param out_dim: Output size
    :param activation_fn: Activation of the blocks
    :param dropout_rate: Dropout after each residual block (where SBX puts it), training mode only
    :param scale_factor: Widening of the inverted bottlenecks
    """

    def __init__(
        self,
        n_members: int,
        in_dim: int,
        net_arch: list[int],
        out_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        dropout_rate: float | None = None,
        scale_factor: int = SCALE_FACTOR,
    ):
        super().__init__()
        width = simba_width(net_arch)
        self.n_members = n_members
        self.dropout_rate = float(dropout_rate or 0.0)
        self.embedding = EnsembleLinear(n_members, in_dim, width)
        self.blocks = nn.ModuleList(
            _EnsembleSimbaBlock(n_members, width, activation_fn, scale_factor) for _ in range(len(net_arch))
        )
        self.norm = EnsembleLayerNorm(n_members, width)
        self.output = EnsembleLinear(n_members, width, out_dim)

    def forward(self, x: th.Tensor, detach_params: bool = False) -> th.Tensor:
        """
        :param x: Input shared by all members ``(batch, in_dim)``, or one per member ``(n_members, batch, in_dim)``
        :param detach_params: Use the weights without recording gradients for them (actor loss)
        :return: ``(n_members, batch, out_dim)``
        """
        h = self.embedding(x, detach_params)
        for block in self.blocks:
            h = block(h, detach_params)
            if self.dropout_rate > 0.0:
                h = F.dropout(h, self.dropout_rate, training=self.training)
        return self.output(self.norm(h, detach_params), detach_params)
