"""LSTM building blocks with the reference's initialisation and state layout.

The reference's LSTM cell has one kernel over ``[input, hidden]`` (Glorot-uniform), one bias (zeros)
and adds 1.0 to the forget gate. Here each layer is a one-layer ``nn.LSTM`` whose forget-gate input
bias starts at 1.0 and whose second bias is held at zero, so Adam sees the same parameters as the
reference's. A decoder whose first layer's input part is cheap runs its layers' parameters through
:func:`hvae_decoders.recurrence.recurrence` off CUDA (:meth:`StackedLstm.from_first_gates`).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hvae_decoders.recurrence import recurrence
from hvae_decoders.onednn import linear

State = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (h, c), each (N, H)


def reference_lstm(input_size: int, hidden_size: int) -> nn.LSTM:
    """A one-layer, batch-first ``nn.LSTM`` initialised as the reference's cell."""
    lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
    limit = math.sqrt(6.0 / (input_size + hidden_size + 4 * hidden_size))
    with torch.no_grad():
        lstm.weight_ih_l0.uniform_(-limit, limit)
        lstm.weight_hh_l0.uniform_(-limit, limit)
        lstm.bias_ih_l0.zero_()
        lstm.bias_ih_l0[hidden_size:2 * hidden_size] = 1.0  # gate order i, f, g, o: the forget gate
        lstm.bias_hh_l0.zero_()
    lstm.bias_hh_l0.requires_grad_(False)
    return lstm


def glorot_linear(in_features: int, out_features: int) -> nn.Linear:
    """A dense layer with the reference's default initialisation (Glorot-uniform, zero bias)."""
    layer = nn.Linear(in_features, out_features)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def small_normal_linear(in_features: int, out_features: int) -> nn.Linear:
    """A dense layer initialised N(0, 0.001²) with zero bias, as the reference's z projections."""
    layer = nn.Linear(in_features, out_features)
    nn.init.normal_(layer.weight, std=0.001)
    nn.init.zeros_(layer.bias)
    return layer


def lstm_cell(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM update from pre-activation gates ``(N, 4H)`` in PyTorch's order i, f, g, o: ``(h, c)``.

    The definition, differentiable; :func:`hvae_decoders.recurrence.lstm_cell_` is its in-place
    twin for the fast paths."""
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def layer_step(layer: nn.LSTM, input_gates: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of a one-layer ``nn.LSTM``'s parameters, differentiable: the new ``(h, c)``, each
    ``(N, H)``, given the input part of the gates with the biases ``(N, 4H)`` and ``state = (h, c)``."""
    h, c = state
    return lstm_cell(input_gates + F.linear(h, layer.weight_hh_l0), c)


def _keep(x: torch.Tensor) -> torch.Tensor:
    return x


def lstm_step(layers: Sequence[nn.LSTM], x: torch.Tensor, state: State,
              drop: Callable[[torch.Tensor], torch.Tensor] = _keep) -> tuple[torch.Tensor, State]:
    """One step of stacked layers on input ``x (N, I)``: the top layer's h ``(N, H_top)`` and the
    new state; ``drop`` is applied to each layer's input (dropout while training)."""
    new_state: State = []
    for layer, layer_state in zip(layers, state):
        x, c = layer_step(layer, F.linear(drop(x), layer.weight_ih_l0, layer.bias_ih_l0 + layer.bias_hh_l0),
                          layer_state)
        new_state.append((x, c))
    return x, new_state


class StackedLstm(nn.Module):
    """LSTM layers of ``sizes`` units, each with dropout on its own input while training."""

    def __init__(self, input_size: int, sizes: tuple[int, ...], dropout: float):
        super().__init__()
        self.input_size = input_size
        self.sizes = tuple(int(s) for s in sizes)
        self.dropout = dropout
        inputs = (input_size,) + self.sizes[:-1]
        self.layers = nn.ModuleList(reference_lstm(i, h) for i, h in zip(inputs, self.sizes))

    def drop(self, x: torch.Tensor, apply: bool = True) -> torch.Tensor:
        """Dropout on a layer's input while training (and ``apply``)."""
        return F.dropout(x, self.dropout, self.training) if self.dropout and apply else x

    def forward(self, x: torch.Tensor, state: State, dropout: bool = True) -> torch.Tensor:
        """Top layer outputs ``(N, T, H_top)`` for inputs ``(N, T, I)`` from ``state``.

        ``dropout=False`` turns dropout off even while training (free-running generation).
        """
        for layer, (h, c) in zip(self.layers, state):
            x, _ = layer(self.drop(x, dropout), (h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()))
        return x

    def from_first_gates(self, gates: torch.Tensor, state: State, dropout: bool = True) -> torch.Tensor:
        """Top layer outputs ``(T, N, H_top)``, time-major, given the first layer's input part of the
        gates with its biases, ``(T, N, 4H_0)`` or ``(T N, 4H_0)`` (overwritten, see :func:`recurrence`).
        Each later layer's input is dropped (while training) in its time-major memory order, which is
        also that of the batch-first ``nn.LSTM`` outputs :meth:`forward` drops (transposed views):
        the same masks for the same seed."""
        x = None
        for layer, (h, c) in zip(self.layers, state):
            if x is not None:
                gates = input_gates(layer, self.drop(x, dropout))
            x = recurrence(gates, layer.weight_hh_l0.t(), h, c)  # (T, N, H)
        return x


def input_gates(layer: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """``layer``'s input part of the gates with its biases for time-major inputs ``(T, N, I)``: ``(T N, 4H)``."""
    return linear(x.reshape(-1, x.shape[-1]), layer.weight_ih_l0, layer.bias_ih_l0 + layer.bias_hh_l0)


class InitialState(nn.Module):
    """``tanh(dense(embedding))`` split into each layer's state.

    The split follows the reference's flattened order ``c0, h0, c1, h1, ...``, so a checkpoint's
    dense layer maps to the same state.
    """

    def __init__(self, embedding_size: int, sizes: tuple[int, ...]):
        super().__init__()
        self.sizes = tuple(sizes)
        self.dense = small_normal_linear(embedding_size, 2 * sum(self.sizes))

    def forward(self, embedding: torch.Tensor) -> State:
        """Embedding ``(N, E)`` -> per layer ``(h, c)``, each ``(N, H)``."""
        flat = torch.tanh(self.dense(embedding))  # (N, 2 * sum(H))
        parts = flat.split([size for size in self.sizes for _ in range(2)], dim=-1)
        return [(parts[2 * i + 1], parts[2 * i]) for i in range(len(self.sizes))]
