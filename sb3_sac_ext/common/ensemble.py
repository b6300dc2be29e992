"""
An ensemble of identically shaped MLPs evaluated as one batched network.

SB3 runs its ``n_critics`` Q-networks one after the other: ``n_critics`` times the kernel launches,
autograd nodes and Python overhead. Here the k-th member's layer ``l`` is ``weight[l][k]`` of a stacked
parameter, and a forward pass over all members is one ``baddbmm`` per layer, whatever ``n_critics``.
Each member is initialised like ``nn.Linear`` and independently of the others, so the ensemble is
mathematically the same as separate networks (tested in ``tests/test_ensemble.py``).

Optional DroQ regularisation (Hiraoka et al. 2022, "Dropout Q-Functions for Doubly Efficient Reinforcement
Learning", https://arxiv.org/abs/2110.02034, Section 3 and Fig. 1): after each hidden linear layer, dropout then
layer normalisation, then the activation (the order of the authors' code and of SBX's critics).
"""

import math

import torch as th
from gymnasium import spaces
from torch.nn import functional as F
from stable_baselines3.common.policies import BaseModel
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import PyTorchObs
from torch import nn

from sb3_sac_ext.common.batch_renorm import EnsembleBatchRenorm
from sb3_sac_ext.common.errors import InvalidHyperparameterError
from sb3_sac_ext.common.simba import EnsembleSimba
from sb3_sac_ext.common.simbav2 import EnsembleSimbaV2


class EnsembleMLP(nn.Module):
    """
    ``n_members`` MLPs ``in_dim -> net_arch... -> out_dim`` with the same architecture.

    Parameters are stored as ``weights.<l>`` with shape ``(n_members, out, in)`` (``nn.Linear``'s layout
    per member) and ``biases.<l>`` with shape ``(n_members, 1, out)``.

    :param n_members: Number of networks
    :param in_dim: Input dimension (shared input)
    :param net_arch: Hidden layer sizes
    :param out_dim: Output dimension
    :param activation_fn: Activation between layers
    :param layer_norm: Layer normalisation after each hidden linear layer (after dropout), with each member's own
        affine parameters ``norm_weights.<l>`` / ``norm_biases.<l>`` of shape ``(n_members, 1, out)``
    :param dropout_rate: Dropout probability after each hidden linear layer (``None`` or 0: none). Active in
        training mode only
    :param batch_norm: CrossQ's batch renormalisation (:class:`~sb3_sac_ext.common.batch_renorm.EnsembleBatchRenorm`)
        of the input and after each hidden activation, as SBX's CrossQ critics (``input_norm``, ``batch_norms.<l>``).
        Computed in the batch-major layout whatever ``feature_major`` says
    :param batch_norm_momentum: Weight of the running averages (SBX's convention: 0.99)
    :param renorm_warmup_steps: Training batches of plain batch normalisation before the renormalisation
    """

    #: ``eps`` of the layer normalisation (``nn.LayerNorm``'s default)
    norm_eps = 1e-5

    def __init__(
        self,
        n_members: int,
        in_dim: int,
        net_arch: list[int],
        out_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        layer_norm: bool = False,
        dropout_rate: float | None = None,
        batch_norm: bool = False,
        batch_norm_momentum: float = 0.99,
        renorm_warmup_steps: int = 100_000,
    ):
        super().__init__()
        self.n_members = n_members
        self.batch_norm = bool(batch_norm)
        self.layer_dims = [in_dim, *net_arch, out_dim]
        self.layer_norm = bool(layer_norm)
        self.dropout_rate = float(dropout_rate or 0.0)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(self.layer_dims[:-1], self.layer_dims[1:]):
            self.weights.append(nn.Parameter(th.empty(n_members, fan_out, fan_in)))
            self.biases.append(nn.Parameter(th.empty(n_members, 1, fan_out)))
        if self.layer_norm:
            # Created only when asked for: the default ensemble keeps its parameter names (saved files, golden runs)
            self.norm_weights = nn.ParameterList([nn.Parameter(th.ones(n_members, 1, dim)) for dim in net_arch])
            self.norm_biases = nn.ParameterList([nn.Parameter(th.zeros(n_members, 1, dim)) for dim in net_arch])
        if self.batch_norm:
            renorm = dict(momentum=batch_norm_momentum, warmup_steps=renorm_warmup_steps)
            self.input_norm = EnsembleBatchRenorm(n_members, in_dim, **renorm)
            self.batch_norms = nn.ModuleList(EnsembleBatchRenorm(n_members, dim, **renorm) for dim in net_arch)
        self.activation = activation_fn()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise every member as ``nn.Linear`` does (uniform in +-1/sqrt(fan_in))."""
        for weight, bias in zip(self.weights, self.biases):
            bound = 1.0 / math.sqrt(weight.shape[-1]) if weight.shape[-1] > 0 else 0.0
            with th.no_grad():
                # kaiming_uniform_(a=sqrt(5)) as in nn.Linear gives the same bound 1/sqrt(fan_in)
                weight.uniform_(-bound, bound)
                bias.uniform_(-bound, bound)
        if self.layer_norm:
            # nn.LayerNorm's initialisation (no random draw)
            with th.no_grad():
                for norm_weight, norm_bias in zip(self.norm_weights, self.norm_biases):
                    norm_weight.fill_(1.0)
                    norm_bias.zero_()

    def _hidden(self, x: th.Tensor, layer: int, feature_dim: int, detach_params: bool) -> th.Tensor:
        """
        Dropout, layer normalisation (over the feature dimension ``feature_dim``: -1 in the batch-major layout,
        -2 in the feature-major one) and activation after the hidden linear layer ``layer``.
        """
        if self.dropout_rate > 0.0:
            x = F.dropout(x, self.dropout_rate, training=self.training)
        if self.layer_norm:
            scale, shift = self.norm_weights[layer], self.norm_biases[layer]
            if detach_params:
                scale, shift = scale.detach(), shift.detach()
            if feature_dim == -2:
                scale, shift = scale.transpose(1, 2), shift.transpose(1, 2)
            # The same formula in both layouts, so that they agree to float rounding
            var, mean = th.var_mean(x, dim=feature_dim, correction=0, keepdim=True)
            x = th.addcmul(shift, (x - mean) * th.rsqrt(var + self.norm_eps), scale)
        return self.activation(x)

    #: Compute the layers as ``weight @ x^T`` (activations ``(n_members, features, batch)``) instead of
    #: ``x @ weight^T``: the same products, but the weights' gradients come out contiguous, which the compiled update
    #: (:mod:`sb3_sac_ext.common.compiled_update`) turns on for its fused Adam kernels. The eager update keeps the
    #: default, whose float rounding the golden runs record.
    feature_major = False

    def forward(self, x: th.Tensor, detach_params: bool = False) -> th.Tensor:
        """
        :param x: Input shared by all members, shape ``(batch, in_dim)``, or one input per member
            ``(n_members, batch, in_dim)``
        :param detach_params: Use the weights without recording gradients for them (the actor loss
            needs gradients with respect to the input actions only)
        :return: Outputs of shape ``(n_members, batch, out_dim)``
        """
        if self.batch_norm:
            return self._forward_batch_norm(x, detach_params)
        if self.feature_major:
            return self._forward_feature_major(x, detach_params)
        n_layers = len(self.weights)
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            if detach_params:
                weight, bias = weight.detach(), bias.detach()
            if x.dim() == 2:
                # Shared input: one matmul against the members' weights side by side
                x = th.matmul(x, weight.transpose(1, 2)) + bias
            else:
                x = th.baddbmm(bias, x, weight.transpose(1, 2))
            if i < n_layers - 1:
                x = self._hidden(x, i, -1, detach_params) if self._regularised else self.activation(x)
        return x

    @property
    def _regularised(self) -> bool:
        return self.layer_norm or self.dropout_rate > 0.0

    def _forward_batch_norm(self, x: th.Tensor, detach_params: bool) -> th.Tensor:
        """CrossQ's critic: renormalised input, then ``Linear -> [dropout, LayerNorm] -> act -> BatchRenorm`` per layer."""
        if x.dim() == 2:
            x = x.expand(self.n_members, *x.shape)
        x = self.input_norm(x, detach_params)
        n_layers = len(self.weights)
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            if detach_params:
                weight, bias = weight.detach(), bias.detach()
            x = th.baddbmm(bias, x, weight.transpose(1, 2))
            if i < n_layers - 1:
                x = self.batch_norms[i](self._hidden(x, i, -1, detach_params), detach_params)
        return x

    def _forward_feature_major(self, x: th.Tensor, detach_params: bool) -> th.Tensor:
        n_layers = len(self.weights)
        h = x.transpose(-1, -2)  # (in, batch) or (n_members, in, batch)
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            if detach_params:
                weight, bias = weight.detach(), bias.detach()
            if h.dim() == 2:
                h = th.matmul(weight, h) + bias.transpose(1, 2)
            else:
                h = th.baddbmm(bias.transpose(1, 2), weight, h)
            if i < n_layers - 1:
                h = self._hidden(h, i, -2, detach_params) if self._regularised else self.activation(h)
        return h.transpose(1, 2)

    def member_state_dict(self, member: int) -> dict[str, th.Tensor]:
        """
        :param member: Index of a member
        :return: That member's weights named as in ``nn.Sequential(Linear, act, Linear, ...)`` (linear layers only:
            without layer normalisation or dropout, which such a ``Sequential`` does not have)
        """
        if self._regularised or self.batch_norm:
            raise ValueError("member_state_dict maps plain MLP members only (no layer_norm, dropout_rate, batch_norm)")
        state = {}
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            state[f"{2 * layer}.weight"] = weight[member].detach().clone()
            state[f"{2 * layer}.bias"] = bias[member, 0].detach().clone()
        return state


class EnsembleCritic(BaseModel):
    """
    Base of the critics: a features extractor followed by ``n_critics`` Q-heads in one :class:`EnsembleMLP`
    (attribute ``qf``). Subclasses choose the head's input and output sizes.

    :param observation_space: Observation space
    :param action_space: Action space
    :param net_arch: Hidden layer sizes of each Q-network
    :param features_extractor: Network to extract features
    :param features_dim: Number of features
    :param activation_fn: Activation function
    :param normalize_images: Whether to divide images by 255
    :param n_critics: Number of Q-networks
    :param share_features_extractor: Whether the features extractor is shared with the actor
        (then no gradient flows into it from the critic loss)
    :param head_input_dim: Input size of each Q-network
    :param head_output_dim: Output size of each Q-network
    :param layer_norm: Layer normalisation in the Q-networks (DroQ), see :class:`EnsembleMLP`
    :param dropout_rate: Dropout in the Q-networks (DroQ), see :class:`EnsembleMLP`
    :param architecture: ``"mlp"`` (:class:`EnsembleMLP`), ``"simba"``
        (:class:`~sb3_sac_ext.common.simba.EnsembleSimba`, which always normalises: ``layer_norm`` is not used) or
        ``"simbav2"`` (:class:`~sb3_sac_ext.common.simbav2.EnsembleSimbaV2`: neither option is used)
    :param batch_norm: CrossQ's batch renormalisation in the Q-networks (MLP only), see :class:`EnsembleMLP`
    :param batch_norm_momentum: See :class:`EnsembleMLP`
    :param renorm_warmup_steps: See :class:`EnsembleMLP`
    :param hyper_head: SimbaV2's hyperspherical head (its categorical critic's), see
        :class:`~sb3_sac_ext.common.simbav2.EnsembleSimbaV2`; ``"simbav2"`` only
    """

    features_extractor: BaseFeaturesExtractor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        net_arch: list[int],
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        activation_fn: type[nn.Module],
        normalize_images: bool,
        n_critics: int,
        share_features_extractor: bool,
        head_input_dim: int,
        head_output_dim: int,
        layer_norm: bool = False,
        dropout_rate: float | None = None,
        architecture: str = "mlp",
        batch_norm: bool = False,
        batch_norm_momentum: float = 0.99,
        renorm_warmup_steps: int = 100_000,
        hyper_head: bool = False,
    ):
        super().__init__(
            observation_space, action_space, features_extractor=features_extractor, normalize_images=normalize_images
        )
        if hyper_head and architecture != "simbav2":
            raise ValueError(f"hyper_head is SimbaV2's head, not one of architecture {architecture!r}")
        if batch_norm and architecture != "mlp":
            raise InvalidHyperparameterError(
                f"batch_norm (CrossQ) is implemented for the MLP critics, not for architecture {architecture!r}; "
                "use MlpPolicy with batch_norm=True, or remove batch_norm"
            )
        self.share_features_extractor = share_features_extractor
        self.n_critics = n_critics
        self.qf: EnsembleMLP | EnsembleSimba | EnsembleSimbaV2
        if architecture == "mlp":
            self.qf = EnsembleMLP(
                n_critics,
                head_input_dim,
                net_arch,
                head_output_dim,
                activation_fn,
                layer_norm,
                dropout_rate,
                batch_norm=batch_norm,
                batch_norm_momentum=batch_norm_momentum,
                renorm_warmup_steps=renorm_warmup_steps,
            )
        elif architecture == "simba":
            self.qf = EnsembleSimba(n_critics, head_input_dim, net_arch, head_output_dim, activation_fn, dropout_rate)
        elif architecture == "simbav2":
            self.qf = EnsembleSimbaV2(n_critics, head_input_dim, net_arch, head_output_dim, hyper_head=hyper_head)
        else:
            raise InvalidHyperparameterError(f"architecture must be 'mlp', 'simba' or 'simbav2', got {architecture!r}")

    def critic_features(self, obs: PyTorchObs, detach_params: bool = False) -> th.Tensor:
        """
        :param obs: Observations
        :param detach_params: The caller wants no gradient for the critic's weights (actor loss)
        :return: Features, without gradient when the extractor is shared with the actor or ``detach_params``
        """
        with th.set_grad_enabled(th.is_grad_enabled() and not (self.share_features_extractor or detach_params)):
            return self.extract_features(obs, self.features_extractor)
