"""
Batch renormalisation (Ioffe 2017, "Batch Renormalization: Towards Reducing Minibatch Dependence in
Batch-Normalized Models", https://arxiv.org/abs/1702.03275, Algorithm 1) for the critic ensemble and the actor of
CrossQ (Bhatt et al. 2024, https://arxiv.org/abs/1902.05605), with SBX's conventions (``momentum`` is the weight of the
running average, 0.99; plain batch normalisation during ``warmup_steps`` training batches; ``r_max=3``,
``d_max=5``; ``eps=1e-3``).

In training mode, with the batch statistics ``mu_B``, ``sigma_B = sqrt(var_B + eps)`` and the running ones
``mu``, ``sigma = sqrt(var + eps)``: ``r = clip(sigma_B / sigma, 1/r_max, r_max)``,
``d = clip((mu_B - mu) / sigma, -d_max, d_max)`` (both without gradient) and
``x^ = (x - mu_B) / sigma_B * r + d``; then ``mu <- m mu + (1 - m) mu_B``, ``var <- m var + (1 - m) var_B``.
In evaluation mode ``x^ = (x - mu) / sigma``. The output is ``gamma * x^ + beta``.
"""

import torch as th
from torch import nn

from sb3_sac_ext.common.running_stats import read, write


class EnsembleBatchRenorm(nn.Module):
    """
    Batch renormalisation of ``n_members`` networks' activations ``(n_members, batch, dim)``, each member with its own
    statistics and affine parameters (``weight``/``bias`` ``(n_members, 1, dim)``); the statistics are buffers
    ``running_mean``, ``running_var`` (same shape) and ``steps`` (training batches seen).

    :param n_members: Number of networks
    :param dim: Number of features
    :param momentum: Weight of the running average (SBX's ``batch_norm_momentum``)
    :param warmup_steps: Training batches normalised by their own statistics only (SBX's ``renorm_warmup_steps``)
    :param eps: Added to the variances
    :param r_max: Bound of the scale correction
    :param d_max: Bound of the shift correction
    """

    def __init__(
        self,
        n_members: int,
        dim: int,
        momentum: float = 0.99,
        warmup_steps: int = 100_000,
        eps: float = 1e-3,
        r_max: float = 3.0,
        d_max: float = 5.0,
    ):
        super().__init__()
        self.momentum, self.warmup_steps, self.eps, self.r_max, self.d_max = momentum, warmup_steps, eps, r_max, d_max
        self.weight = nn.Parameter(th.ones(n_members, 1, dim))
        self.bias = nn.Parameter(th.zeros(n_members, 1, dim))
        self.register_buffer("running_mean", th.zeros(n_members, 1, dim))
        self.register_buffer("running_var", th.ones(n_members, 1, dim))
        self.register_buffer("steps", th.zeros((), dtype=th.long))

    def reset_parameters(self) -> None:
        """The affine parameters' initialisation (the statistics describe the data and are kept)."""
        with th.no_grad():
            self.weight.fill_(1.0)
            self.bias.zero_()

    def forward(self, x: th.Tensor, detach_params: bool = False) -> th.Tensor:
        """
        :param x: ``(n_members, batch, dim)``
        :param detach_params: Use the affine parameters without gradient
        """
        if self.training:
            batch_var, batch_mean = th.var_mean(x, dim=1, correction=0, keepdim=True)
            batch_std = th.sqrt(batch_var + self.eps)
            x_hat = (x - batch_mean) / batch_std
            running_mean, running_var, steps = read(self.running_mean), read(self.running_var), read(self.steps)
            with th.no_grad():
                # The corrections after the warm-up, the identity (r = 1, d = 0) during it: no host sync on steps
                renorm = steps >= self.warmup_steps
                running_std = th.sqrt(running_var + self.eps)
                r = th.where(renorm, (batch_std / running_std).clamp(1.0 / self.r_max, self.r_max), 1.0)
                d = th.where(renorm, ((batch_mean - running_mean) / running_std).clamp(-self.d_max, self.d_max), 0.0)
            x_hat = x_hat * r + d
            write(self.running_mean, th.lerp(running_mean, batch_mean.detach(), 1.0 - self.momentum))
            write(self.running_var, th.lerp(running_var, batch_var.detach(), 1.0 - self.momentum))
            write(self.steps, steps + 1)
        else:
            x_hat = (x - self.running_mean) * th.rsqrt(self.running_var + self.eps)
        weight, bias = (self.weight.detach(), self.bias.detach()) if detach_params else (self.weight, self.bias)
        return th.addcmul(bias, x_hat, weight)


class BatchRenorm(EnsembleBatchRenorm):
    """
    Batch renormalisation of one network's activations ``(batch, dim)`` (CrossQ's actor, ``batch_norm_actor=True``):
    :class:`EnsembleBatchRenorm` with one member. Parameters: see :class:`EnsembleBatchRenorm`.
    """

    def __init__(self, dim: int, **kwargs: float):
        super().__init__(1, dim, **kwargs)  # type: ignore[arg-type]

    def forward(self, x: th.Tensor, detach_params: bool = False) -> th.Tensor:
        """:param x: ``(batch, dim)``"""
        return super().forward(x.unsqueeze(0), detach_params).squeeze(0)


def batch_renorm_mlp(input_dim: int, net_arch: list[int], activation_fn: type[nn.Module], **renorm: float) -> nn.Sequential:
    """
    The hidden layers of CrossQ's actor, as SBX and sb3-contrib build them: the input renormalised, then
    ``Linear -> activation -> BatchRenorm`` per entry of ``net_arch``.

    :param input_dim: Number of input features
    :param net_arch: Width of each hidden layer
    :param activation_fn: Activation after each linear layer
    :param renorm: :class:`BatchRenorm`'s options (``momentum``, ``warmup_steps``)
    """
    layers: list[nn.Module] = [BatchRenorm(input_dim, **renorm)]
    for in_dim, out_dim in zip([input_dim, *net_arch[:-1]], net_arch, strict=True):
        layers += [nn.Linear(in_dim, out_dim), activation_fn(), BatchRenorm(out_dim, **renorm)]
    return nn.Sequential(*layers)
