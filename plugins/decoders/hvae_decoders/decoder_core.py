"""The LSTM decoder every built-in decoder is made of: the reference's BaseLstmDecoder.

It is conditioned on an embedding: z for a flat decoder, a bar's conductor output for the
hierarchical one. Step t's input is ``[previous output (D), embedding (K), controls at t (C)]``;
the initial state is ``tanh(dense(embedding))``; a dense layer on the top LSTM output gives the raw
outputs the loss reads.

What the plain loops (:mod:`hvae_decoders.plain`) and the fast sampler
(:class:`hvae_decoders.sampler.SteppingWeights`) read of a core, and nothing more: ``output_depth``,
``embedding_size``, ``control_depth``; :attr:`LstmCore.layers` (one-layer ``nn.LSTM`` modules, first
to top); :meth:`LstmCore.input_columns` (the first layer's input weights split by what they read);
``initial_state(embedding)``; ``output`` (the dense layer on the top output); :meth:`LstmCore.drop`
and :meth:`LstmCore.run` (the stack as ``nn.LSTM`` calls).

The fast paths run only where the loss says its fast draws are its draws
(:func:`hvae_decoders.sampler.fast_draws`); for any other loss every backend runs the plain loops, so a
loss that replaces ``sample_step`` is sampled with its own draws on every path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hvae.device import host_reads_are_free
from hvae.interfaces import Loss
from hvae_decoders import plain
from hvae_decoders.backend import decoder_recurrence, fast_sampling
from hvae_decoders.lstm import InitialState, StackedLstm, State, glorot_linear, input_gates
from hvae_decoders.recurrence import gather_rows, one_hot_indices
from hvae_decoders.sampler import CoreSampler, SteppingWeights, draws_classes, feeds_back_draws, step_draws

def one_hot(indices: torch.Tensor, depth: int) -> torch.Tensor:
    """Class indices ``(B, T)`` as float32 one-hot vectors ``(B, T, depth)``."""
    out = torch.zeros(*indices.shape, depth, device=indices.device)
    return out.scatter_(-1, indices.unsqueeze(-1), 1.0)


def shift_right(targets: torch.Tensor) -> torch.Tensor:
    """Targets ``(B, T, D)`` delayed one step with zeros first: what each step is fed."""
    return torch.cat([targets.new_zeros(targets[:, :1].shape), targets[:, :-1]], dim=1)


class LstmCore(nn.Module):
    """Stacked LSTM over ``[previous output, embedding, controls]`` with raw outputs of ``raw_size``."""

    def __init__(self, output_depth: int, raw_size: int, embedding_size: int, control_depth: int,
                 sizes: tuple[int, ...], dropout: float):
        super().__init__()
        self.output_depth = output_depth
        self.embedding_size = embedding_size
        self.control_depth = control_depth
        self.initial_state = InitialState(embedding_size, sizes)
        self.lstm = StackedLstm(output_depth + embedding_size + control_depth, sizes, dropout)
        self.output = glorot_linear(sizes[-1], raw_size)
        self._stepping: tuple[tuple, SteppingWeights] | None = None

    @property
    def layers(self) -> nn.ModuleList:
        """The LSTM layers, first to top: one-layer ``nn.LSTM`` modules."""
        return self.lstm.layers

    def drop(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout on a layer's input while training (none in eval mode, or without dropout)."""
        return self.lstm.drop(x)

    def run(self, inputs: torch.Tensor, state: State) -> torch.Tensor:
        """The top layer's outputs ``(N, T, H_top)`` for step inputs ``(N, T, D + K + C)``: one
        ``nn.LSTM`` call per layer, dropout on each layer's input while training."""
        return self.lstm(inputs, state)

    def input_columns(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first layer's input weights split by what they read: fed output, embedding, controls:
        ``(4H_0, D)``, ``(4H_0, K)``, ``(4H_0, C)``."""
        return self.layers[0].weight_ih_l0.split([self.output_depth, self.embedding_size, self.control_depth], dim=1)

    def reference_layers(self, scope: str) -> dict[str, nn.Module]:
        """Each layer under the name of its variables in the reference's checkpoints, below ``scope``
        (``decoder/``, or ``core_decoder/decoder/`` in a hierarchical decoder)."""
        layers: dict[str, nn.Module] = {f"{scope}multi_rnn_cell/cell_{i}/lstm_cell": layer
                                        for i, layer in enumerate(self.layers)}
        layers[f"{scope}z_to_initial_state"] = self.initial_state.dense
        layers[f"{scope}output_projection"] = self.output
        return layers

    def teacher_forced(self, embedding: torch.Tensor, previous: torch.Tensor,
                       controls: torch.Tensor | None = None, *, backend: str = "auto") -> torch.Tensor:
        """Raw outputs ``(N, T, R)`` when step t is fed ``previous[:, t]`` (one pass per layer).

        Where ``backend`` runs hvae's recurrence (:func:`hvae_decoders.backend.decoder_recurrence`)
        the layers run :func:`recurrence`; otherwise as nn.LSTM (:func:`hvae_decoders.plain.teacher_forced`).
        Without dropout the first layer's input part is built the cheap way, a one-hot previous output
        as a row gather and the embedding projected once per sequence. With dropout (which drops each
        step's input differently) it is one product over the dropped inputs, each layer's input
        dropped in the plain path's batch-first layout: the same masks for the same seed.
        """
        if not decoder_recurrence(backend, previous.device):
            return plain.teacher_forced(self, embedding, previous, controls)
        state = self.initial_state(embedding)
        if self.lstm.dropout and self.training:
            gates = input_gates(self.layers[0], self.drop(plain.step_inputs(previous, embedding, controls))
                                .transpose(0, 1))  # (T N, 4H_0)
            return self.output(self.lstm.from_first_gates(gates, state)).transpose(0, 1)  # (N, T, R)
        first = self.layers[0]
        w_fed, w_embedding, w_controls = self.input_columns()
        classes = one_hot_indices(previous)  # (N, T) or None
        if classes is None:
            fed = F.linear(previous.transpose(0, 1), w_fed)
        else:
            fed = gather_rows(w_fed, classes.t())  # (T, N, 4H_0)
        gates = fed + F.linear(embedding, w_embedding, first.bias_ih_l0 + first.bias_hh_l0)
        if controls is not None:
            gates = gates + F.linear(controls.transpose(0, 1), w_controls)
        top = self.lstm.from_first_gates(gates, state)  # (T, N, H_top)
        return self.output(top).transpose(0, 1)  # (N, T, R)

    def scheduled(self, embedding: torch.Tensor, previous: torch.Tensor, controls: torch.Tensor | None,
                  probability: float, loss: Loss, generator: torch.Generator | None = None, *,
                  backend: str = "auto") -> torch.Tensor:
        """Raw outputs ``(N, T, R)`` with scheduled sampling, as the reference's training helper.

        From step 1 on, each sequence is fed, with ``probability``, the loss's ``feedback_step`` (a draw
        at temperature 1 unless the loss says otherwise) from the previous raw output instead of
        ``previous[:, t]``. Gradients flow through the draw
        where it is differentiable (groove velocities and offsets), as in the reference.

        The plain loop, :func:`hvae_decoders.plain.scheduled`, runs with the plain backend,
        with dropout, and for every loss whose draws are not class indices from its fast draws or
        that feeds back something else than its draw at temperature 1 (its own ``feedback_step``). The
        fast backend's one path: a drawn class carries no gradient, so the draws are made first,
        stepping without autograd, and the outputs then computed teacher-forced on what was fed.
        """
        use_draw = torch.rand(previous.shape[:2], generator=generator, device=previous.device) < probability  # (N, T)
        if not fast_sampling(backend) or (self.lstm.dropout and self.training) or not draws_classes(loss) \
                or not feeds_back_draws(loss):
            return plain.scheduled((self,), embedding, previous, controls, use_draw, loss, generator)
        return self.teacher_forced(embedding, self._fed_with_draws(embedding, previous, controls, use_draw,
                                                                   loss, generator), controls, backend=backend)

    @torch.no_grad()
    def _fed_with_draws(self, embedding: torch.Tensor, previous: torch.Tensor, controls: torch.Tensor | None,
                        use_draw: torch.Tensor, loss: Loss, generator: torch.Generator | None) -> torch.Tensor:
        """What scheduled sampling feeds each step, ``(N, T, D)``: ``previous``, with the class drawn
        from step t-1's output (one-hot) at the steps ``use_draw`` picks from step 1 on.

        Where the host reads ``use_draw`` for free (the CPU), only the sequences fed a draw somewhere
        are stepped, and only up to the last step that feeds one: early in a training, at a
        probability of 0.001, that is a few sequences of a batch of 64. The draws still take the
        random numbers of every sequence and step, so the generator moves as in the plain loop and each
        draw is the one the whole batch's pass would make (its products' rounding aside: a smaller
        batch may take another engine, see :class:`hvae_decoders.onednn.Product`).
        """
        batch, steps, depth = previous.shape
        use_draw = use_draw.clone()
        use_draw[:, 0] = False
        drawn = torch.zeros(batch, steps, dtype=torch.long, device=previous.device)  # (N, T)
        rows, last = None, steps - 1  # the sequences stepped (None: all) and how many steps
        if host_reads_are_free(previous.device):
            rows = use_draw.any(dim=1).nonzero().squeeze(1)
            used_steps = use_draw.any(dim=0).nonzero()
            last = int(used_steps[-1]) if len(used_steps) else 0
            if len(rows) == batch:
                rows = None
        everyone = step_draws(loss, steps - 1, 1.0, generator)
        raw_all: list[torch.Tensor] = []  # every sequence's raw outputs of a step, zeros where not stepped

        def all_rows(dtype: torch.dtype) -> torch.Tensor:
            if not raw_all:  # in the pass's dtype (autocast's, under autocast)
                raw_all.append(torch.zeros(batch, self.output.out_features, dtype=dtype, device=previous.device))
            return raw_all[0]

        def draw_rows(raw: torch.Tensor) -> torch.Tensor:
            return everyone(all_rows(raw.dtype).index_copy_(0, rows, raw.to(raw_all[0].dtype))).index_select(0, rows)
        draw = everyone if rows is None else draw_rows
        if last:
            pick = (lambda t: t) if rows is None else (lambda t: t.index_select(0, rows))
            sampler = self.sampler(batch if rows is None else len(rows), loss, 1.0, generator, torch.float32)
            embedding_rows = pick(embedding)
            sampler.reset(self.initial_state(embedding_rows))
            base = sampler.w.project_embedding(embedding_rows)  # (n, 4H_0)
            if controls is not None:
                base = base.unsqueeze(1) + sampler.w.project_controls(pick(controls))  # (n, T, 4H_0)
            drawn_rows = drawn if rows is None else drawn.new_zeros(len(rows), steps)
            sampler.run_scheduled(base, sampler.w.project_fed(pick(previous)), pick(use_draw), drawn_rows, draw, last)
            if rows is not None:
                drawn.index_copy_(0, rows, drawn_rows)
        if last < steps - 1:  # the draws no sequence is fed still take their random numbers
            filler = all_rows(torch.float32)  # the built-in class draws take float32 numbers whatever the raw dtype
            for _ in range(steps - 1 - last):
                everyone(filler)
        return torch.where(use_draw.unsqueeze(-1), one_hot(drawn, depth).to(previous.dtype), previous)

    @torch.no_grad()
    def stepping_weights(self, classes: bool, dtype: torch.dtype, batch: int) -> SteppingWeights:
        """Weights laid out for :class:`CoreSampler`.

        While training (the weights change at every step) they are laid out at each call. In eval
        mode they are kept for the next call until they may be stale: the module enters training
        mode (``train()``), :meth:`invalidate` is called, or a parameter is written in place by a
        torch operation (its version counter moves: ``add_``, ``copy_``, ``load_state_dict``) or
        replaced (its address moves: ``.to()``). A fused optimizer (Adam's ``fused=True``) writes
        parameters without moving their version counters: training mode, which every hvae caller
        is in for its steps, drops the cache; code that steps one while the model stays in eval
        mode calls :meth:`invalidate` after the step.
        """
        if self.training:
            return SteppingWeights.from_core(self, classes, dtype, batch)
        key = (classes, dtype, batch) + tuple((p.data_ptr(), p._version) for p in self.parameters())
        if self._stepping is None or self._stepping[0] != key:
            self._stepping = (key, SteppingWeights.from_core(self, classes, dtype, batch))
        return self._stepping[1]

    def invalidate(self) -> None:
        """Forget the weights laid out for sampling: the next sampling call lays out the current ones."""
        self._stepping = None

    def train(self, mode: bool = True) -> "LstmCore":
        if mode:  # its weights are about to change: nothing is cached while training
            self.invalidate()
        return super().train(mode)

    def sampler(self, batch: int, loss: Loss, temperature: float, generator: torch.Generator | None,
                dtype: torch.dtype) -> CoreSampler:
        return CoreSampler(self.stepping_weights(draws_classes(loss), dtype, batch), batch, loss, temperature,
                           generator)
