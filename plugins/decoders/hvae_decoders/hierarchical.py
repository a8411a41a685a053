"""The hierarchical decoder: a conductor LSTM gives one embedding per bar; a core LSTM decodes each bar."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from hvae.errors import HvaeError
from hvae.interfaces import Decoder, Loss
from hvae_decoders import plain
from hvae_decoders.backend import fast_sampling
from hvae_decoders.decoder_core import LstmCore, one_hot, shift_right
from hvae_decoders.lstm import InitialState, StackedLstm
from hvae_decoders.options import resolve_options
from hvae_decoders.sampler import draws_classes, fast_draws, stepping_dtype

STEPS_PER_BAR = 16  # 4/4 at 4 steps per quarter: the default bar length


@dataclasses.dataclass(frozen=True)
class HierarchicalDecoderOptions:
    level_lengths: tuple[int, int] | None = None  # (bars, steps per bar); None: bars of 16 steps
    rnn_sizes: tuple[int, ...] = (512,)  # core LSTM units per layer (the reference's dec_rnn_size)
    conductor_sizes: tuple[int, ...] | None = None  # conductor units per layer; None: rnn_sizes, as the reference
    dropout: float = 0.0  # dropout on each layer's input while training (1 - the reference's dropout_keep_prob)
    backend: str = "auto"  # auto, plain (the plain loops) or fast: which code runs, same results (hvae_decoders.backend)
    # Non-empty: one core decoder per output part of these depths, in order (a trio's melody, bass and drums:
    # 90, 90, 512), adding up to the output depth; each is fed its own part (the reference's split decoder).
    split_depths: tuple[int, ...] = ()


class HierarchicalDecoder(Decoder):
    """The reference's HierarchicalLstmDecoder with two levels and autoregression disabled.

    The conductor starts from ``tanh(dense(z))`` and runs ``bars`` steps on zero inputs (size 1, as
    the reference); its top output for bar j initialises (``tanh(dense(.))``) and conditions (concatenated
    to every step's input) the core decoder for that bar's steps. The core decoder's state restarts at
    each bar; its fed-back output carries over (a bar starts from the previous bar's last step).

    With ``split_depths`` the outputs are parts side by side, and each part has a core decoder of its own
    (``cores``, in place of ``core``): conditioned on the same conductor output, fed only its own part's
    previous output, giving that part's raw outputs (the loss must ask one raw value per output value).
    Sampling and scheduled sampling step the cores together and let the loss draw each step from their
    raw outputs side by side; they run the plain loops (:mod:`hvae_decoders.plain`) on every backend.
    """

    name = "hierarchical"
    Options = HierarchicalDecoderOptions

    def __init__(self, *, output_depth: int, raw_size: int, z_size: int, control_depth: int = 0,
                 steps: int, options: Any = None, **overrides: Any):
        super().__init__()
        what = f"decoder {self.name!r}"
        options = resolve_options(self, options, overrides, what)
        level_lengths = options.level_lengths
        if level_lengths is None:
            if steps % STEPS_PER_BAR:
                raise HvaeError(f"{what}: {steps} steps are not whole bars of {STEPS_PER_BAR}; "
                                f"set level_lengths=(bars, steps_per_bar).")
            level_lengths = (steps // STEPS_PER_BAR, STEPS_PER_BAR)
        level_lengths = tuple(int(n) for n in level_lengths)
        if len(level_lengths) != 2 or level_lengths[0] * level_lengths[1] != steps:
            raise HvaeError(f"{what}: level_lengths {level_lengths} must be (bars, steps_per_bar) with "
                            f"bars * steps_per_bar = {steps}, the converter's steps.")
        conductor_sizes = tuple(options.conductor_sizes or options.rnn_sizes)
        split = tuple(int(depth) for depth in options.split_depths)
        if split and (min(split) < 1 or sum(split) != output_depth or raw_size != output_depth):
            raise HvaeError(f"{what}: split_depths {split} must be positive and add up to the output depth, "
                            f"{output_depth}, and the loss must ask one raw value per output value (it asks "
                            f"{raw_size} a step).")
        self.options = dataclasses.replace(options, level_lengths=level_lengths, conductor_sizes=conductor_sizes,
                                           split_depths=split)
        self.output_depth, self.steps = output_depth, steps
        self.bars, self.bar_steps = level_lengths
        self.conductor_state = InitialState(z_size, conductor_sizes)
        self.conductor = StackedLstm(1, conductor_sizes, options.dropout)

        def core(depth: int, raw: int) -> LstmCore:  # a core decoder of this depth, under the conductor
            return LstmCore(depth, raw, conductor_sizes[-1], control_depth, tuple(options.rnn_sizes), options.dropout)

        if split:
            self.cores = nn.ModuleList(core(depth, depth) for depth in split)
        else:
            self.core = core(output_depth, raw_size)

    def reference_layers(self) -> dict[str, torch.nn.Module]:
        """Each layer under the name of its variables in the reference's checkpoints."""
        layers: dict[str, torch.nn.Module] = {f"decoder/hierarchical_level_0/cell_{i}/lstm_cell": layer
                                              for i, layer in enumerate(self.conductor.layers)}
        layers["decoder/hierarchical_level_0/initial_state"] = self.conductor_state.dense
        if self.options.split_depths:
            for i, core in enumerate(self.cores):
                layers.update(core.reference_layers(f"core_decoder/core_decoder_{i}/decoder/"))
            return layers
        return {**layers, **self.core.reference_layers("core_decoder/decoder/")}

    def conduct(self, z: torch.Tensor, dropout: bool = True) -> torch.Tensor:
        """One embedding per bar, ``(B, bars, H_conductor)``, from z ``(B, Z)``."""
        silence = z.new_zeros(z.shape[0], self.bars, 1)  # (B, bars, 1)
        return self.conductor(silence, self.conductor_state(z), dropout=dropout)

    def forward(self, z: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor,
                controls: torch.Tensor | None = None, *, sampling_probability: float = 0.0,
                loss: Loss | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """All bars of the batch decoded together: ``B * bars`` sequences of ``bar_steps`` in one LSTM call."""
        batch, steps, depth = targets.shape
        if steps != self.steps:
            raise HvaeError(f"decoder {self.name!r}: got {steps} steps, built for {self.steps}.")
        embeddings = self.conduct(z).reshape(batch * self.bars, -1)  # (B * bars, H_conductor)
        previous = shift_right(targets).reshape(batch * self.bars, self.bar_steps, depth)  # (B * bars, L, D)
        if controls is not None:
            controls = controls.reshape(batch * self.bars, self.bar_steps, -1)  # (B * bars, L, C)
        backend = self.options.backend
        if self.options.split_depths:
            raw = self._split_forward(embeddings, previous, controls, sampling_probability, loss, generator)
        elif sampling_probability > 0.0:
            raw = self.core.scheduled(embeddings, previous, controls, sampling_probability, loss, generator,
                                      backend=backend)
        else:
            raw = self.core.teacher_forced(embeddings, previous, controls, backend=backend)  # (B * bars, L, R)
        return raw.reshape(batch, steps, -1)  # (B, T, R)

    def _split_forward(self, embeddings: torch.Tensor, previous: torch.Tensor, controls: torch.Tensor | None,
                       probability: float, loss: Loss | None, generator: torch.Generator | None) -> torch.Tensor:
        """Raw outputs ``(N, L, R)`` of the split cores for ``N = B * bars`` bars fed ``previous`` ``(N, L, D)``:
        each core teacher-forced on its own part, or, with scheduled sampling, each part fed the loss's draw
        with ``probability`` per bar, step and part (each core's own choice, as the reference's)."""
        if probability > 0.0:
            use_draw = torch.rand(previous.shape[:2] + (len(self.cores),), generator=generator,
                                  device=previous.device) < probability  # (N, L, parts)
            return plain.scheduled(self.cores, embeddings, previous, controls, use_draw, loss, generator)
        parts = previous.split(self.options.split_depths, dim=-1)
        return torch.cat([core.teacher_forced(embeddings, part, controls, backend=self.options.backend)
                          for core, part in zip(self.cores, parts)], dim=-1)  # (N, L, R)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, steps: int, temperature: float, loss: Loss,
               controls: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        if steps != self.steps:
            raise HvaeError(f"decoder {self.name!r} draws {self.steps} steps "
                            f"({self.bars} bars of {self.bar_steps}), not {steps}.")
        split = bool(self.options.split_depths)
        if not split and fast_sampling(self.options.backend) and fast_draws(loss):
            return self._sample_fast(z, temperature, loss, controls, generator)
        embeddings = self.conduct(z, dropout=False)  # (B, bars, H_conductor)
        cores = tuple(self.cores) if split else (self.core,)
        return plain.sample_bars(cores, embeddings, self.bar_steps, temperature, loss, controls,
                                 generator)  # the plain loop

    def _sample_fast(self, z: torch.Tensor, temperature: float, loss: Loss, controls: torch.Tensor | None,
                     generator: torch.Generator | None) -> torch.Tensor:
        """:meth:`sample` by :class:`hvae_decoders.sampler.CoreSampler`, all bars' embeddings projected at once."""
        batch, bars, length, steps = z.shape[0], self.bars, self.bar_steps, self.steps
        dtype = stepping_dtype(z.device, self.core.output.weight.dtype)
        with torch.autocast(z.device.type, enabled=False):
            embeddings = self.conduct(z, dropout=False)  # (B, bars, H_conductor)
            states = self.core.initial_state(embeddings)  # per layer (h, c), each (B, bars, H)
            sampler = self.core.sampler(batch, loss, temperature, generator, dtype)
            base = sampler.w.project_embedding(embeddings)  # (B, bars, 4H_0)
            if controls is not None:
                per_step = sampler.w.project_controls(controls[:, :steps].reshape(batch, bars, length, -1))
                base = base.unsqueeze(2) + per_step  # (B, bars, L, 4H_0)
            if draws_classes(loss):
                drawn = torch.empty(batch, steps, dtype=torch.long, device=z.device)  # (B, T)
            else:
                drawn = torch.empty(batch, steps, self.output_depth, device=z.device)  # (B, T, D)
            feed = None
            for bar in range(bars):
                sampler.reset([(h[:, bar], c[:, bar]) for h, c in states])
                feed = sampler.run(base[:, bar], length, drawn[:, bar * length:(bar + 1) * length], feed)
        if draws_classes(loss):
            return one_hot(drawn, self.output_depth)  # (B, T, D)
        return drawn
