"""The bidirectional LSTM encoder: q(z | x) as the reference's BidirectionalLstmEncoder and MusicVAE.encode."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hvae.interfaces import Encoder
from hvae_decoders.backend import encoder_recurrence
from hvae_decoders.lstm import reference_lstm, small_normal_linear
from hvae_decoders.lstm_autograd import gather_rows, one_hot_indices, recurrence
from hvae_decoders.onednn import linear
from hvae_decoders.options import resolve_options


@dataclasses.dataclass(frozen=True)
class BidirectionalLstmEncoderOptions:
    rnn_sizes: tuple[int, ...] = (256,)  # units per layer and direction (the reference's enc_rnn_size)
    dropout: float = 0.0  # dropout on each layer's input while training (1 - the reference's dropout_keep_prob)
    backend: str = "auto"  # auto, reference (nn.LSTM) or fast (hvae's recurrence): same results (hvae_decoders.backend)


def _reversal_index(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """``(B, T)`` index that reverses each sequence's first ``length`` steps and keeps the padding after."""
    t = torch.arange(steps, device=lengths.device)  # (T,)
    n = lengths.unsqueeze(1)  # (B, 1)
    return torch.where(t < n, n - 1 - t, t)  # (B, T)


def _take_steps(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b, t]]`` for ``x (B, T, D)`` and ``index (B, T')``.

    A row selection on ``(B T, D)``: its backward pass keeps the ``(B, T')`` index, not one
    int64 per value (as ``take_along_dim`` does, 8 bytes for each float it moves).
    """
    batch, steps, depth = x.shape
    rows = index + steps * torch.arange(batch, device=index.device).unsqueeze(1)  # (B, T')
    return x.reshape(batch * steps, depth).index_select(0, rows.flatten()).view(batch, index.shape[1], depth)


class BidirectionalLstmEncoder(Encoder):
    """Stacked bidirectional LSTM; the top layer's last forward and backward h -> (mu, sigma).

    Each layer runs a forward LSTM over the sequence and a backward LSTM over its first ``length``
    steps reversed; their outputs, concatenated, feed the next layer. Padding sits after the valid
    steps in both directions, so it cannot change a valid step's output: no packing is needed and
    ``(mu, sigma)`` depend only on each sequence's first ``length`` steps. ``mu = dense(h)``,
    ``sigma = softplus(dense(h))``, both dense layers initialised N(0, 0.001²).

    Large layers run :func:`recurrence` off CUDA (see :mod:`hvae_decoders.backend`): time-major, both
    directions' input parts from the same input rows (the backward one's reordered, so the input is
    kept once for the backward pass), a one-hot input (without dropout) as a row gather.
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

    def reference_layers(self) -> dict[str, nn.Module]:
        """Each layer under the name of its variables in the reference's checkpoints."""
        layers: dict[str, nn.Module] = {}
        for depth, (fw, bw) in enumerate(zip(self.forward_layers, self.backward_layers)):
            for direction, lstm in (("fw", fw), ("bw", bw)):
                layers[f"encoder/cell_{depth}/bidirectional_rnn/{direction}/multi_rnn_cell/cell_0/lstm_cell"] = lstm
        layers["encoder/mu"], layers["encoder/sigma"] = self.mu, self.sigma
        return layers

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.options.dropout, self.training) if self.options.dropout else x

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, steps, _ = inputs.shape
        lengths = lengths.to(device=inputs.device, dtype=torch.long).clamp(0, steps)  # (B,)
        reverse = _reversal_index(lengths, steps)  # (B, T)
        last = (lengths - 1).clamp(min=0)  # (B,)
        units = min(layer.hidden_size for layer in self.forward_layers)
        if encoder_recurrence(self.options.backend, inputs.device, units):
            final = self._final_states_recurrence(inputs, reverse, last)
        else:
            final = self._final_states_nn_lstm(inputs, reverse, last)
        return self.mu(final), F.softplus(self.sigma(final))  # (B, Z), (B, Z)

    def _final_states_nn_lstm(self, inputs: torch.Tensor, reverse: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """The top layer's last forward and backward h, ``(B, 2H)``, one nn.LSTM call per layer and direction."""
        x = inputs
        top = len(self.forward_layers) - 1
        for depth, (fw, bw) in enumerate(zip(self.forward_layers, self.backward_layers)):
            out_fw, _ = fw(self._drop(x))  # (B, T, H)
            out_bw_reversed, _ = bw(self._drop(_take_steps(x, reverse)))  # (B, T, H), reversed order
            if depth < top:
                x = torch.cat([out_fw, _take_steps(out_bw_reversed, reverse)], dim=-1)  # (B, T, 2H)
        last = last.unsqueeze(1)  # (B, 1)
        return torch.cat([_take_steps(out_fw, last), _take_steps(out_bw_reversed, last)], dim=-1).squeeze(1)

    def _final_states_recurrence(self, inputs: torch.Tensor, reverse: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """The same with :func:`recurrence`, on time-major rows ``t B + b``."""
        batch, steps, depth = inputs.shape
        columns = torch.arange(batch, device=inputs.device)
        reversed_rows = (reverse.t() * batch + columns).flatten()  # (T B,): row of step t reversed
        x = inputs.transpose(0, 1).reshape(steps * batch, depth)  # (T B, I)
        classes = None if self.options.dropout and self.training else one_hot_indices(x)
        top = len(self.forward_layers) - 1
        for layer_index, (fw, bw) in enumerate(zip(self.forward_layers, self.backward_layers)):
            outputs = []
            for lstm, rows in ((fw, None), (bw, reversed_rows)):
                bias = lstm.bias_ih_l0 + lstm.bias_hh_l0
                if layer_index == 0 and classes is not None:
                    gates = gather_rows(lstm.weight_ih_l0, classes if rows is None else classes[rows], bias)
                else:
                    gates = linear(self._drop(x), lstm.weight_ih_l0, bias)  # (T B, 4H)
                    if rows is not None:
                        gates = gates.index_select(0, rows)
                zeros = x.new_zeros(batch, lstm.hidden_size)
                outputs.append(recurrence(gates, lstm.weight_hh_l0.t(), zeros, zeros).flatten(0, 1))  # (T B, H)
            out_fw, out_bw_reversed = outputs
            if layer_index < top:  # the next layer reads both directions in time order
                x = torch.cat([out_fw, out_bw_reversed.index_select(0, reversed_rows)], dim=-1)  # (T B, 2H)
        last_rows = last * batch + columns  # (B,)
        return torch.cat([out_fw[last_rows], out_bw_reversed[last_rows]], dim=-1)  # (B, 2H)
