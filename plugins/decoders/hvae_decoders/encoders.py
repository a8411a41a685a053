"""The bidirectional LSTM encoder: q(z | x) as the reference's BidirectionalLstmEncoder and MusicVAE.encode."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hvae.interfaces import Encoder
from hvae_decoders.lstm import reference_lstm, small_normal_linear
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
        x = inputs
        top = len(self.forward_layers) - 1
        for depth, (fw, bw) in enumerate(zip(self.forward_layers, self.backward_layers)):
            out_fw, _ = fw(self._drop(x))  # (B, T, H)
            out_bw_reversed, _ = bw(self._drop(_take_steps(x, reverse)))  # (B, T, H), reversed order
            if depth < top:
                x = torch.cat([out_fw, _take_steps(out_bw_reversed, reverse)], dim=-1)  # (B, T, 2H)
        final = torch.cat([_take_steps(out_fw, last), _take_steps(out_bw_reversed, last)], dim=-1)  # (B, 1, 2H)
        final = final.squeeze(1)  # (B, 2H)
        return self.mu(final), F.softplus(self.sigma(final))  # (B, Z), (B, Z)
