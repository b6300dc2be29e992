"""
Recurrent layers: an LSTM/GRU over features, run either over whole padded sequences (training: one RNN call per
network and batch) or one step at a time with per-env reset flags (acting, ``predict``).

Shape suffixes: N sequences (or envs), T steps, F features, H hidden units, S layers.
"""

from typing import Any

import torch as th
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_sac_ext.common.errors import InvalidHyperparameterError

RNN_TYPES = {"lstm": nn.LSTM, "gru": nn.GRU}

# (h, c), each (n_layers, n_envs, hidden); GRUs carry a zero c so that the state has RecurrentPPO's format
#: The state of an RNN: ``(h, c)``, each ``(n_layers, batch, hidden)`` (a GRU carries a zero ``c``).
RNNState = tuple[th.Tensor, th.Tensor]


def check_rnn_kwargs(lstm_hidden_size: Any, n_lstm_layers: Any, rnn_type: Any, sequence_length: Any, burn_in: Any) -> None:
    """Typed errors for the recurrent ``policy_kwargs``."""
    for name, value in (("lstm_hidden_size", lstm_hidden_size), ("n_lstm_layers", n_lstm_layers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidHyperparameterError(f"{name} must be a positive int, got {value!r}")
    if rnn_type not in RNN_TYPES:
        raise InvalidHyperparameterError(f"rnn_type must be one of {sorted(RNN_TYPES)}, got {rnn_type!r}")
    if sequence_length is not None and (
        isinstance(sequence_length, bool) or not isinstance(sequence_length, int) or sequence_length < 1
    ):
        raise InvalidHyperparameterError(f"sequence_length must be a positive int or None, got {sequence_length!r}")
    if isinstance(burn_in, bool) or not isinstance(burn_in, int) or burn_in < 0:
        raise InvalidHyperparameterError(f"burn_in must be a non-negative int, got {burn_in!r}")


class RNNBlock(nn.Module):
    """
    ``n_layers`` stacked LSTM or GRU cells (batch first).

    :param input_dim: Features per step
    :param hidden_size: Hidden units
    :param n_layers: Stacked layers
    :param rnn_type: ``"lstm"`` or ``"gru"``
    """

    def __init__(self, input_dim: int, hidden_size: int, n_layers: int = 1, rnn_type: str = "lstm"):
        super().__init__()
        self.rnn_type = rnn_type
        self.hidden_size = hidden_size
        self.n_layers = n_layers
        self.rnn = RNN_TYPES[rnn_type](input_dim, hidden_size, num_layers=n_layers, batch_first=True)
        #: Run the cells as tensor ops (:meth:`unrolled`) instead of the fused RNN kernel: set while the compiled
        #: update's program runs, whose gradient transform (``torch.func.grad`` under ``torch.compile``) cannot trace
        #: the fused kernel's backward
        self.cell_loop = False

    def zero_state(self, n: int, device: th.device) -> RNNState:
        zeros = th.zeros(self.n_layers, n, self.hidden_size, device=device)
        return zeros, zeros.clone()

    def forward(self, x_NTF: th.Tensor, state: RNNState | None = None) -> tuple[th.Tensor, RNNState]:
        """
        :param x_NTF: Inputs, shape ``(N, T, F)``
        :param state: Initial ``(h, c)``, each ``(S, N, H)``; zeros when ``None``
        :return: Outputs ``(N, T, H)`` and the final state
        """
        if state is None:
            state = self.zero_state(x_NTF.shape[0], x_NTF.device)
        if self.cell_loop:
            return self.unrolled(x_NTF, state)
        if self.rnn_type == "lstm":
            out, (h, c) = self.rnn(x_NTF, (state[0].contiguous(), state[1].contiguous()))
            return out, (h, c)
        out, h = self.rnn(x_NTF, state[0].contiguous())
        return out, (h, th.zeros_like(h))

    def unrolled(self, x_NTF: th.Tensor, state: RNNState) -> tuple[th.Tensor, RNNState]:
        """
        :meth:`forward` as a loop over the steps with PyTorch's LSTM/GRU equations on the same weights (the same
        outputs up to float rounding): traceable by ``torch.func.grad`` under ``torch.compile``, fused there into a few
        kernels per step.
        """
        rnn, hs, cs = self.rnn, [], []
        for layer in range(self.n_layers):
            w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"weight_hh_l{layer}")
            b_ih, b_hh = getattr(rnn, f"bias_ih_l{layer}"), getattr(rnn, f"bias_hh_l{layer}")
            # The input projections of all steps at once
            gates_in_NTG = th.nn.functional.linear(x_NTF, w_ih, b_ih)
            h, c, outs = state[0][layer], state[1][layer], []
            for t in range(x_NTF.shape[1]):
                gates_h = th.nn.functional.linear(h, w_hh, b_hh)
                if self.rnn_type == "lstm":
                    i, f, g, o = (gates_in_NTG[:, t] + gates_h).chunk(4, dim=1)
                    c = th.sigmoid(f) * c + th.sigmoid(i) * th.tanh(g)
                    h = th.sigmoid(o) * th.tanh(c)
                else:
                    in_r, in_z, in_n = gates_in_NTG[:, t].chunk(3, dim=1)
                    h_r, h_z, h_n = gates_h.chunk(3, dim=1)
                    r, z = th.sigmoid(in_r + h_r), th.sigmoid(in_z + h_z)
                    h = (1 - z) * th.tanh(in_n + r * h_n) + z * h
                outs.append(h)
            x_NTF = th.stack(outs, dim=1)
            hs.append(h)
            cs.append(c if self.rnn_type == "lstm" else th.zeros_like(h))
        return x_NTF, (th.stack(hs), th.stack(cs))

    def step(self, x_NF: th.Tensor, state: RNNState, episode_starts_N: th.Tensor) -> tuple[th.Tensor, RNNState]:
        """
        One step per env; the state of the envs whose episode starts at this step is zeroed first (as in
        sb3-contrib's RecurrentPPO).

        :param x_NF: Inputs, shape ``(N, F)``
        :param state: ``(h, c)``, each ``(S, N, H)``
        :param episode_starts_N: 1 where a new episode starts, shape ``(N,)``
        :return: Outputs ``(N, H)`` and the new state
        """
        keep = (1.0 - episode_starts_N.float()).view(1, -1, 1)
        out, new_state = self(x_NF.unsqueeze(1), (state[0] * keep, state[1] * keep))
        return out.squeeze(1), new_state


class RecurrentEncoder(nn.Module):
    """
    Features extractor followed by an RNN: ``obs -> features -> RNN -> latent``.

    :param features_extractor: SB3 features extractor (``FlattenExtractor``, ``NatureCNN``, ``CombinedExtractor``)
    :param rnn: The RNN over the features
    """

    def __init__(self, features_extractor: BaseFeaturesExtractor, rnn: RNNBlock):
        super().__init__()
        self.features_extractor = features_extractor
        self.rnn = rnn


def flatten_time(obs: Any) -> tuple[Any, int, int]:
    """
    :param obs: Tensor ``(N, T, ...)`` or dict of such
    :return: The same with ``N * T`` rows, and ``N``, ``T``
    """
    if isinstance(obs, dict):
        first = next(iter(obs.values()))
        n, t = first.shape[:2]
        return {key: value.reshape(n * t, *value.shape[2:]) for key, value in obs.items()}, n, t
    n, t = obs.shape[:2]
    return obs.reshape(n * t, *obs.shape[2:]), n, t


__all__ = ["RNN_TYPES", "RNNBlock", "RNNState", "RecurrentEncoder", "check_rnn_kwargs", "flatten_time"]
