"""Free-running decoding without autograd: the weights of an LstmCore laid out for stepping.

Each step of a sampled sequence needs, per layer, one matrix product (oneDNN's on CPU where it pays,
with the weights reordered once per call, see :mod:`hvae_decoders.onednn`) and a few in-place
element-wise operations; the state lives in one preallocated row per sequence. The embedding's part
of the first layer's input (z, or a bar's conductor output) and the controls' part are projected once
per sequence, not every step; a fed-back one-hot output is a row gather instead of a matrix product.
Each layer's cell is :func:`hvae_decoders.recurrence.lstm_cell_` (gate order i, f, g, o). A loss
with :class:`hvae.interfaces.FastDraws` draws the random numbers of all steps at once and, if it draws
classes, hands back indices; the sampler runs only for such a loss (:func:`fast_draws`: a loss without
them, or whose ``sample_step`` was replaced, is sampled by the plain loop). Nothing here reads a
tensor's value on the host, so CUDA streams stay busy. The plain loop this computes the same as is
:func:`hvae_decoders.plain.sample`."""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F

from hvae.device import host_reads_are_free
from hvae.interfaces import FastDraws, Loss
from hvae_decoders import native
from hvae_decoders.lstm import State
from hvae_decoders.recurrence import lstm_cell_, one_hot_indices
from hvae_decoders.onednn import Product

# From this many values per layer on (batch x units), float32 gates take tanh as 2 sigmoid(2x) - 1:
# three cheap operations instead of CPU's slow tanh, which costs more beyond a few thousand values
# (benchmarks/RESULTS.md, "The figures behind the code's choices").
SIGMOID_TANH_VALUES = 4096


def fast_draws(loss: Loss) -> bool:
    """Whether ``loss`` has :class:`hvae.interfaces.FastDraws` that draw what its ``sample_step`` draws
    (``stepper_draws_sample_step``, True where a loss does not say): the fast paths rely on it."""
    return isinstance(loss, FastDraws) and bool(getattr(loss, "stepper_draws_sample_step", True))


def draws_classes(loss: Loss) -> bool:
    """Whether ``loss``'s fast draws are class indices (:class:`hvae.interfaces.FastDraws`)."""
    return fast_draws(loss) and loss.draws_classes


def feeds_back_draws(loss: Loss) -> bool:
    """Whether scheduled sampling feeds back ``loss``'s draw at temperature 1 (its ``feedback_step`` is
    :meth:`hvae.interfaces.Loss.feedback_step`'s), as the draw-first scheduled sampling assumes."""
    return getattr(type(loss), "feedback_step", Loss.feedback_step) is Loss.feedback_step


def step_draws(loss: Loss, steps: int, temperature: float,
               generator: torch.Generator | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function drawing ``steps`` consecutive steps from raw ``(B, R)``: the loss's stepper (the fast
    sampler runs only for a loss with :func:`fast_draws`)."""
    return loss.stepper(steps, temperature, generator)


@dataclasses.dataclass(frozen=True)
class SteppingWeights:
    """One LstmCore's weights for stepping ``batch`` sequences, in one dtype. H_l: layer sizes, D: output depth."""

    sizes: tuple[int, ...]  # units per layer
    output_depth: int  # D, the fed-back output's size
    classes: bool  # True: the fed-back output is a class index (row gather)
    feed: torch.Tensor | None  # classes: (D, 4H_0), the first layer's rows by class
    first: Product  # the first layer's product: over h_0 (classes), else over [output, h_0]
    embedding: torch.Tensor  # (4H_0, K): the embedding's columns of the first layer
    bias: torch.Tensor  # (4H_0,): the first layer's biases
    controls: torch.Tensor | None  # (4H_0, C) or None without controls
    layers: tuple[tuple[Product, torch.Tensor], ...]  # layers 1..: products over [h_{l-1}, h_l], biases (4H_l,)
    output: Product  # over h_top, to the raw outputs (R)
    output_bias: torch.Tensor  # (R,)

    @property
    def dtype(self) -> torch.dtype:
        return self.output_bias.dtype

    @classmethod
    def from_core(cls, core, classes: bool, dtype: torch.dtype, batch: int) -> "SteppingWeights":
        """Lay out ``core``'s current parameters (an LstmCore, read through its stepping interface).
        A core in training mode (scheduled sampling's draws) gets products that round alike in every
        process (:class:`hvae_decoders.onednn.Product`, ``timed=False``)."""
        timed = not core.training
        layers = list(core.layers)
        first = layers[0]
        w_out, w_embedding, control_cols = core.input_columns()  # (4H_0, D), (4H_0, K), (4H_0, C)
        w_rec = first.weight_hh_l0  # (4H_0, H_0)

        def cast(t: torch.Tensor) -> torch.Tensor:
            return t.to(dtype).contiguous()

        stacked = []
        for layer in layers[1:]:
            weight = torch.cat([layer.weight_ih_l0, layer.weight_hh_l0], dim=1)  # (4H_l, H_{l-1} + H_l)
            stacked.append((Product(cast(weight), batch, timed=timed), cast(layer.bias_ih_l0 + layer.bias_hh_l0)))
        return cls(
            sizes=tuple(layer.hidden_size for layer in layers), output_depth=core.output_depth, classes=classes,
            feed=cast(w_out.t()) if classes else None,
            first=Product(cast(w_rec if classes else torch.cat([w_out, w_rec], dim=1)), batch, timed=timed),
            embedding=cast(w_embedding),
            bias=cast(first.bias_ih_l0 + first.bias_hh_l0),
            controls=cast(control_cols) if control_cols.shape[1] else None,
            layers=tuple(stacked), output=Product(cast(core.output.weight), batch, timed=timed),
            output_bias=cast(core.output.bias))

    def project_embedding(self, embedding: torch.Tensor) -> torch.Tensor:
        """The first layer's constant input part: ``(..., K) -> (..., 4H_0)`` with biases."""
        return F.linear(embedding.to(self.dtype), self.embedding, self.bias)

    def project_controls(self, controls: torch.Tensor) -> torch.Tensor:
        """The first layer's per-step control part: ``(..., T, C) -> (..., T, 4H_0)``."""
        return F.linear(controls.to(self.dtype), self.controls)

    def project_fed(self, fed: torch.Tensor) -> torch.Tensor:
        """The first layer's part for fed outputs ``(N, T, D) -> (N, T, 4H_0)`` (class layout only);
        one-hot rows are a row gather where telling them apart is free (on the CPU: it reads ``fed``
        on the host), else a product, which gives one-hot rows exactly."""
        classes = one_hot_indices(fed) if host_reads_are_free(fed.device) else None
        if classes is None:
            return fed.to(self.dtype) @ self.feed
        return torch.cat([self.feed, self.feed.new_zeros(1, self.feed.shape[1])])[classes]


class CoreSampler:
    """State buffers and the step loop for ``batch`` sequences of one LstmCore."""

    def __init__(self, weights: SteppingWeights, batch: int, loss: Loss, temperature: float,
                 generator: torch.Generator | None):
        self.w, self.loss, self.temperature, self.generator = weights, loss, temperature, generator
        dtype, device = weights.dtype, weights.bias.device
        sizes, depth = weights.sizes, weights.output_depth
        zeros = lambda width, dt=dtype: torch.zeros(batch, width, dtype=dt, device=device)
        # One row per sequence holds [fed output (values only), h_0, h_1, ...]: layer l's product reads
        # the contiguous slice [h_{l-1}, h_l] (layer 0: [fed output, h_0]), so no h is ever copied.
        lead = 0 if weights.classes else depth
        starts = [lead + sum(sizes[:l]) for l in range(len(sizes))]
        row = zeros(lead + sum(sizes))
        self.h_slots = [row[:, start:start + size] for start, size in zip(starts, sizes)]
        self.operands = [row[:, :lead + sizes[0]]] + [row[:, below:start + size] for below, start, size
                                                      in zip(starts[:-1], starts[1:], sizes[1:])]
        self.feed_slot = row[:, :lead] if lead else None
        exact = torch.promote_types(dtype, torch.float32)  # c in float32 at least, whatever the dtype
        self.cells = [zeros(size, exact) for size in sizes]
        self.tanh_cells = [zeros(size, exact) for size in sizes]
        sigmoid_tanh = dtype == torch.float32 and batch * max(sizes) >= SIGMOID_TANH_VALUES
        self.tanh_gates = [None if sigmoid_tanh else zeros(size) for size in sizes]  # torch.tanh's g
        # hvae's fused cell (one call a layer-step) where it applies: float32 on the CPU; None elsewhere.
        fused = native.applies(self.cells[0]) and exact == dtype and all(
            native.states_fit(cell, cell, h) for cell, h in zip(self.cells, self.h_slots))  # checked once
        self.fused_cells = [native.SteppingCell(cell, h) for cell, h in zip(self.cells, self.h_slots)] \
            if fused else None

    def reset(self, state: State) -> None:
        """Start from per-layer ``(h, c)`` states, each ``(B, H)``."""
        for slot, cell, (h, c) in zip(self.h_slots, self.cells, state):
            slot.copy_(h)
            cell.copy_(c)

    def _cell(self, layer: int, gates: torch.Tensor, add: torch.Tensor | None = None) -> None:
        """Update layer's c and h in place from its pre-activation gates ``(B, 4H)`` (plus ``add``)."""
        if self.fused_cells and self.fused_cells[layer](gates, add):
            return
        if add is not None:
            gates.add_(add)
        cell = self.cells[layer]
        lstm_cell_(gates, cell, cell, self.h_slots[layer], self.tanh_cells[layer], self.tanh_gates[layer])

    def _step(self, first_input: torch.Tensor) -> torch.Tensor:
        """Every layer's step, given the first layer's input part of the gates ``(B, 4H_0)``; the raw outputs."""
        w = self.w
        self._cell(0, w.first(self.operands[0]), first_input)
        for layer, (product, bias) in enumerate(w.layers, start=1):
            self._cell(layer, product(self.operands[layer], bias))
        return w.output(self.h_slots[-1], w.output_bias)  # (B, R)

    def run(self, base: torch.Tensor, steps: int, out: torch.Tensor,
            feed: torch.Tensor | None = None) -> torch.Tensor | None:
        """Decode ``steps`` steps from the current state; returns the last draw.

        base: the first layer's constant input part ``(B, 4H_0)``, or one per step ``(B, steps, 4H_0)``.
        out: where draws go, ``(B, steps)`` class indices or ``(B, steps, D)`` values.
        feed: the output fed back before the first step (indices ``(B,)`` or values ``(B, D)``);
        None for the zeros the reference starts from.
        """
        w = self.w
        per_step = base.dim() == 3
        if not w.classes:
            if feed is None:
                self.feed_slot.zero_()
            else:
                self.feed_slot.copy_(feed)
        draw = step_draws(self.loss, steps, self.temperature, self.generator)
        draws = []
        for t in range(steps):
            first_input = base[:, t] if per_step else base
            if w.classes and feed is not None:
                first_input = w.feed.index_select(0, feed).add_(first_input)
            feed = draw(self._step(first_input))  # (B,) classes or (B, D) values
            if not w.classes:
                self.feed_slot.copy_(feed)
            draws.append(feed)
        torch.stack(draws, dim=1, out=out)
        return feed

    def run_scheduled(self, base: torch.Tensor, fed: torch.Tensor, use_draw: torch.Tensor, drawn: torch.Tensor,
                      draw: Callable[[torch.Tensor], torch.Tensor], steps: int) -> None:
        """Scheduled sampling's draws (class layout): step t's first-layer input part is ``fed[:, t]``
        or, where ``use_draw[:, t]`` (t >= 1), the row of the class drawn from step t-1's output.

        base: ``(B, 4H_0)`` or ``(B, T, 4H_0)``; fed: ``(B, T, 4H_0)``; use_draw: ``(B, T)`` bool;
        drawn: ``(B, T)`` int64, receives the draws at steps 1..T-1 (one per step, as training makes them).
        draw: the function making each step's draw (the loss's stepper, or one that runs it for more
        sequences than these); steps: how many steps to run (at most T-1), the draws of steps 1..``steps``.
        """
        per_step = base.dim() == 3
        for t in range(steps):
            first_input = fed[:, t]
            if t:
                first_input = torch.where(use_draw[:, t, None], self.w.feed.index_select(0, drawn[:, t]), first_input)
            drawn[:, t + 1] = draw(self._step(first_input + (base[:, t] if per_step else base)))


def stepping_dtype(device: torch.device, default: torch.dtype) -> torch.dtype:
    """The dtype sampling runs in: autocast's when it is on for ``device``, else ``default``."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return default
