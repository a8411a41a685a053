"""The bidirectional LSTM encoder: q(z | x) as the reference's BidirectionalLstmEncoder and MusicVAE.encode."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hvae.interfaces import Encoder
from hvae_decoders.lstm import reference_lstm, small_normal_linear
from hvae_decoders.recurrence import gather_rows, one_hot_indices, recurrence, runs_nn_lstm
from hvae_decoders.options import resolve_options


@dataclasses.dataclass(frozen=True)
class BidirectionalLstmEncoderOptions:
    rnn_sizes: tuple[int, ...] = (256,)  # units per layer and direction (the reference's enc_rnn_size)
    dropout: float = 0.0  # dropout on each layer's input while training (1 - the reference's dropout_keep_prob)


def _reversal_index(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """``(B, T)`` index that reverses each sequence's first ``length`` steps and keeps the padding after."""
    t = torch.arange(steps, device=lengths.device)  # (T,)
    n = lengths.unsqueeze(1)  # (B, 1)
    return torch.where(t < n, n - 1 - t, t)  # (B, T)


def _take_steps(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b, t]]`` for ``x (B, T, D)`` and ``index (B, T')``."""
    return torch.take_along_dim(x, index.unsqueeze(-1), dim=1)


class BidirectionalLstmEncoder(Encoder):
    """Stacked bidirectional LSTM; the top layer's last forward and backward h -> (mu, sigma).

    Each layer runs a forward LSTM over the sequence and a backward LSTM over its first ``length``
    steps reversed; their outputs, concatenated, feed the next layer. Padding sits after the valid
    steps in both directions, so it cannot change a valid step's output: no packing is needed and
    ``(mu, sigma)`` depend only on each sequence's first ``length`` steps. ``mu = dense(h)``,
    ``sigma = softplus(dense(h))``, both dense layers initialised N(0, 0.001²).

    Off CUDA both directions of a layer run as one group of :func:`recurrence`, time-major, and a
    one-hot input (without dropout) is a row gather.
    """

    name = "bidirectional"
    Options = BidirectionalLstmEncoderOptions

    def __init__(self, input_depth: int, z_size: int, options: Any = None, **overrides: Any):
        super().__init__()
        self.options = resolve_options(self, options, overrides, f"encoder {self.name!r}")
        sizes = tuple(int(s) for s in self.options.rnn_sizes)
        inputs = (input_depth,) + tuple(2 * s for s in sizes[:-1])
        self.forward_layers = nn.ModuleList(reference_lstm(i, h) for i, h in zip(inputs, sizes))
        self.backward_layers = nn.ModuleList(reference_lstm(i, h) for i, h in zip(inputs, sizes))
        self.mu = small_normal_linear(2 * sizes[-1], z_size)
        self.sigma = small_normal_linear(2 * sizes[-1], z_size)

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.options.dropout, self.training) if self.options.dropout else x

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, steps, _ = inputs.shape
        lengths = lengths.to(device=inputs.device, dtype=torch.long).clamp(0, steps)  # (B,)
        reverse = _reversal_index(lengths, steps)  # (B, T)
        last = (lengths - 1).clamp(min=0).unsqueeze(1)  # (B, 1)
        if runs_nn_lstm(inputs.device):
            final = self._final_states_nn_lstm(inputs, reverse, last)
        else:
            final = self._final_states(inputs, reverse, last)
        return self.mu(final), F.softplus(self.sigma(final))  # (B, Z), (B, Z)

    def _final_states_nn_lstm(self, inputs: torch.Tensor, reverse: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """``[last forward h, last backward h]`` ``(B, 2H)``, a layer and direction per nn.LSTM call."""
        x = inputs
        top = len(self.forward_layers) - 1
        for depth, (fw, bw) in enumerate(zip(self.forward_layers, self.backward_layers)):
            out_fw, _ = fw(self._drop(x))  # (B, T, H)
            out_bw_reversed, _ = bw(self._drop(_take_steps(x, reverse)))  # (B, T, H), reversed order
            if depth < top:
                x = torch.cat([out_fw, _take_steps(out_bw_reversed, reverse)], dim=-1)  # (B, T, 2H)
        final = torch.cat([_take_steps(out_fw, last), _take_steps(out_bw_reversed, last)], dim=-1)  # (B, 1, 2H)
        return final.squeeze(1)

    def _final_states(self, inputs: torch.Tensor, reverse: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """The same with both directions of a layer in one :func:`recurrence` (G = 2), time-major."""
        batch, steps, _ = inputs.shape
        reverse = reverse.t()  # (T, B)
        x = inputs.transpose(0, 1)  # (T, B, I)
        for depth, (fw, bw) in enumerate(zip(self.forward_layers, self.backward_layers)):
            if depth:
                x = torch.cat([hs[0], _take_time(hs[1], reverse)], dim=-1)  # (T, B, 2H)
            bias = torch.stack([fw.bias_ih_l0 + fw.bias_hh_l0, bw.bias_ih_l0 + bw.bias_hh_l0]).unsqueeze(1)
            classes = None if depth or (self.options.dropout and self.training) else one_hot_indices(x)
            if classes is None:
                both = torch.stack([self._drop(x), self._drop(_take_time(x, reverse))])  # (2, T, B, I)
                weight_ih = torch.stack([fw.weight_ih_l0.t(), bw.weight_ih_l0.t()])  # (2, I, 4H)
                gates = torch.baddbmm(bias, both.flatten(1, 2), weight_ih)  # (2, T B, 4H)
            else:
                gates = torch.stack([gather_rows(fw.weight_ih_l0, classes),
                                     gather_rows(bw.weight_ih_l0, _take_time(classes, reverse))]) + bias.unsqueeze(1)
            weight_hh = torch.stack([fw.weight_hh_l0.t(), bw.weight_hh_l0.t()])  # (2, H, 4H)
            zeros = inputs.new_zeros(2, batch, fw.hidden_size)
            hs = recurrence(gates, weight_hh, zeros, zeros)  # (2, T, B, H); the backward one reversed
        rows = torch.arange(batch, device=inputs.device)
        return torch.cat([hs[0, last[:, 0], rows], hs[1, last[:, 0], rows]], dim=-1)  # (B, 2H)


def _take_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index[t, b], b]`` for time-major ``x (T, B, ...)`` and ``index (T, B)``."""
    return torch.take_along_dim(x, index.view(index.shape + (1,) * (x.dim() - 2)), dim=0)
