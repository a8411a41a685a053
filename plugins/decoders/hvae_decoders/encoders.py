"""The encoders, q(z | x), as the reference's BidirectionalLstmEncoder and HierarchicalLstmEncoder with
MusicVAE.encode's dense layers: ``mu = dense(h)``, ``sigma = softplus(dense(h))``."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hvae.errors import HvaeError
from hvae.interfaces import Encoder
from hvae_decoders.backend import encoder_recurrence
from hvae_decoders.lstm import reference_lstm, small_normal_linear
from hvae_decoders.recurrence import gather_rows, one_hot_indices, recurrence
from hvae_decoders.onednn import linear
from hvae_decoders.options import resolve_options


@dataclasses.dataclass(frozen=True)
class BidirectionalLstmEncoderOptions:
    rnn_sizes: tuple[int, ...] = (256,)  # units per layer and direction (the reference's enc_rnn_size)
    dropout: float = 0.0  # dropout on each layer's input while training (1 - the reference's dropout_keep_prob)
    backend: str = "auto"  # auto, plain (nn.LSTM) or fast (hvae's recurrence): same results (hvae_decoders.backend)


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
        self.forward_layers, self.backward_layers = bidirectional_layers(input_depth, sizes)
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

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        final = final_states(self.forward_layers, self.backward_layers, inputs, lengths,
                             self.options.dropout if self.training else 0.0, self.options.backend)
        return self.mu(final), F.softplus(self.sigma(final))  # (B, Z), (B, Z)


def final_states(forward_layers: nn.ModuleList, backward_layers: nn.ModuleList, inputs: torch.Tensor,
                 lengths: torch.Tensor, dropout: float, backend: str) -> torch.Tensor:
    """The top layer's last forward and first backward h, ``(B, 2H)``, of stacked bidirectional layers
    run over each sequence's first ``lengths`` steps (``dropout`` on each layer's input)."""
    batch, steps, _ = inputs.shape
    lengths = lengths.to(device=inputs.device, dtype=torch.long).clamp(0, steps)  # (B,)
    reverse = _reversal_index(lengths, steps)  # (B, T)
    last = (lengths - 1).clamp(min=0)  # (B,)
    units = min(layer.hidden_size for layer in forward_layers)
    run = _final_states_recurrence if encoder_recurrence(backend, inputs.device, units) else _final_states_nn_lstm
    return run(forward_layers, backward_layers, inputs, reverse, last, dropout)


def _dropped(x: torch.Tensor, dropout: float) -> torch.Tensor:
    return F.dropout(x, dropout, True) if dropout else x


def _final_states_nn_lstm(forward_layers: nn.ModuleList, backward_layers: nn.ModuleList, inputs: torch.Tensor,
                          reverse: torch.Tensor, last: torch.Tensor, dropout: float) -> torch.Tensor:
    """:func:`final_states` with one nn.LSTM call per layer and direction."""
    x = inputs
    top = len(forward_layers) - 1
    for depth, (fw, bw) in enumerate(zip(forward_layers, backward_layers)):
        out_fw, _ = fw(_dropped(x, dropout))  # (B, T, H)
        out_bw_reversed, _ = bw(_dropped(_take_steps(x, reverse), dropout))  # (B, T, H), reversed order
        if depth < top:
            x = torch.cat([out_fw, _take_steps(out_bw_reversed, reverse)], dim=-1)  # (B, T, 2H)
    last = last.unsqueeze(1)  # (B, 1)
    return torch.cat([_take_steps(out_fw, last), _take_steps(out_bw_reversed, last)], dim=-1).squeeze(1)


def _final_states_recurrence(forward_layers: nn.ModuleList, backward_layers: nn.ModuleList, inputs: torch.Tensor,
                             reverse: torch.Tensor, last: torch.Tensor, dropout: float) -> torch.Tensor:
    """The same with :func:`recurrence`, on time-major rows ``t B + b``."""
    batch, steps, depth = inputs.shape
    columns = torch.arange(batch, device=inputs.device)
    reversed_rows = (reverse.t() * batch + columns).flatten()  # (T B,): row of step t reversed
    x = inputs.transpose(0, 1).reshape(steps * batch, depth)  # (T B, I)
    classes = None if dropout else one_hot_indices(x)
    top = len(forward_layers) - 1
    for layer_index, (fw, bw) in enumerate(zip(forward_layers, backward_layers)):
        outputs = []
        for lstm, rows in ((fw, None), (bw, reversed_rows)):
            bias = lstm.bias_ih_l0 + lstm.bias_hh_l0
            if layer_index == 0 and classes is not None:
                gates = gather_rows(lstm.weight_ih_l0, classes if rows is None else classes[rows], bias)
            else:
                gates = linear(_dropped(x, dropout), lstm.weight_ih_l0, bias)  # (T B, 4H)
                if rows is not None:
                    gates = gates.index_select(0, rows)
            zeros = x.new_zeros(batch, lstm.hidden_size)
            outputs.append(recurrence(gates, lstm.weight_hh_l0.t(), zeros, zeros).flatten(0, 1))  # (T B, H)
        out_fw, out_bw_reversed = outputs
        if layer_index < top:  # the next layer reads both directions in time order
            x = torch.cat([out_fw, out_bw_reversed.index_select(0, reversed_rows)], dim=-1)  # (T B, 2H)
    last_rows = last * batch + columns  # (B,)
    return torch.cat([out_fw[last_rows], out_bw_reversed[last_rows]], dim=-1)  # (B, 2H)


def bidirectional_layers(input_depth: int, sizes: tuple[int, ...]) -> tuple[nn.ModuleList, nn.ModuleList]:
    """The forward and the backward layers of a stacked bidirectional LSTM (layer n reads both of layer n-1)."""
    inputs = (input_depth,) + tuple(2 * s for s in sizes[:-1])
    return (nn.ModuleList(reference_lstm(i, h) for i, h in zip(inputs, sizes)),
            nn.ModuleList(reference_lstm(i, h) for i, h in zip(inputs, sizes)))


@dataclasses.dataclass(frozen=True)
class HierarchicalLstmEncoderOptions:
    level_lengths: tuple[int, ...] | None = None  # (steps per segment, segments, ...), lowest level first; None: (16, bars)
    rnn_sizes: tuple[int, ...] = (256,)  # units per layer and direction at every level (the reference's enc_rnn_size)
    dropout: float = 0.0  # dropout on each layer's input while training (1 - the reference's dropout_keep_prob)
    backend: str = "auto"  # auto, plain (nn.LSTM) or fast (hvae's recurrence): same results (hvae_decoders.backend)
    padded_segments: bool = False  # level 0 reads each segment up to its last non-zero row (multiperf's lengths)


class _Level(nn.Module):
    def __init__(self, input_depth: int, sizes: tuple[int, ...]):
        super().__init__()
        self.forward_layers, self.backward_layers = bidirectional_layers(input_depth, sizes)


class HierarchicalLstmEncoder(Encoder):
    """The reference's HierarchicalLstmEncoder: bidirectional encoders stacked over time.

    With ``level_lengths = (16, 4)`` (4 bars of 16 steps), level 0 encodes each bar on its own
    (a bidirectional LSTM whose top layer's last forward and first backward h are the bar's
    embedding), and level 1 encodes the 4 embeddings in order; the top level's one embedding gives
    ``(mu, sigma)``. Every level has ``rnn_sizes`` and its own weights, stored under the reference's
    ``encoder/hierarchical_level_<n>/`` scopes. The product of ``level_lengths`` is the window's steps.
    A sequence shorter than its window is encoded over the segments it covers, each over its own
    steps (the reference takes only whole windows). With ``padded_segments`` level 0 reads each segment
    only up to its last row that is not zeros: the reference's per-segment lengths of a converter that pads
    each segment after its end token (multiperf's instruments); the levels above read every segment.
    """

    name = "hierarchical"
    Options = HierarchicalLstmEncoderOptions
    takes_steps = True

    def __init__(self, input_depth: int, z_size: int, options: Any = None, *, steps: int, **overrides: Any):
        super().__init__()
        what = f"encoder {self.name!r}"
        options = resolve_options(self, options, overrides, what)
        level_lengths = options.level_lengths
        if level_lengths is None:
            if steps % 16:
                raise HvaeError(f"{what}: {steps} steps are not whole bars of 16; set level_lengths="
                                f"(steps_per_segment, segments).")
            level_lengths = (16, steps // 16)
        level_lengths = tuple(int(n) for n in level_lengths)
        if len(level_lengths) < 2 or min(level_lengths) < 1 or math.prod(level_lengths) != steps:
            raise HvaeError(f"{what}: level_lengths {level_lengths} must be two or more lengths, lowest level "
                            f"first, whose product is {steps}, the converter's steps.")
        self.options = dataclasses.replace(options, level_lengths=level_lengths)
        sizes = tuple(int(s) for s in options.rnn_sizes)
        depths = (input_depth,) + (2 * sizes[-1],) * (len(level_lengths) - 1)
        self.levels = nn.ModuleList(_Level(depth, sizes) for depth in depths)
        self.mu = small_normal_linear(2 * sizes[-1], z_size)
        self.sigma = small_normal_linear(2 * sizes[-1], z_size)

    def reference_layers(self) -> dict[str, nn.Module]:
        """Each layer under the name of its variables in the reference's checkpoints."""
        layers: dict[str, nn.Module] = {}
        for number, level in enumerate(self.levels):
            for depth, (fw, bw) in enumerate(zip(level.forward_layers, level.backward_layers)):
                for direction, lstm in (("fw", fw), ("bw", bw)):
                    layers[f"encoder/hierarchical_level_{number}/cell_{depth}/bidirectional_rnn/{direction}/"
                           f"multi_rnn_cell/cell_0/lstm_cell"] = lstm
        layers["encoder/mu"], layers["encoder/sigma"] = self.mu, self.sigma
        return layers

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = inputs.shape[0]
        dropout = self.options.dropout if self.training else 0.0
        covered = lengths.to(device=inputs.device, dtype=torch.long)  # (B,): steps, then segments, covered
        x = inputs  # (B, T, D): each level turns segments of its length into one embedding each
        for number, (level, length) in enumerate(zip(self.levels, self.options.level_lengths)):
            segments = x.shape[1] // length
            starts = length * torch.arange(segments, device=x.device)  # (S,)
            split = (covered.unsqueeze(1) - starts).clamp(0, length).flatten()  # (B S,)
            if number == 0 and self.options.padded_segments:
                # a segment ends after its last row that is not padding (padding follows the end token)
                rows = (x != 0).any(dim=-1).view(batch * segments, length)  # (B S, length)
                split = torch.where(rows.any(dim=1), length - rows.flip(1).to(torch.int8).argmax(dim=1), 0)
            pieces = x.reshape(batch * segments, length, x.shape[2])  # (B S, length, D), in time order per b
            x = final_states(level.forward_layers, level.backward_layers, pieces, split, dropout,
                             self.options.backend).view(batch, segments, -1)  # (B, S, 2H)
            covered = (covered + length - 1) // length
        final = x[:, 0]  # (B, 2H): the top level has one segment
        return self.mu(final), F.softplus(self.sigma(final))  # (B, Z), (B, Z)
