"""The flat decoder: one stacked LSTM over the whole sequence, conditioned on z."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from hvae.interfaces import Decoder, Loss
from hvae_decoders import plain
from hvae_decoders.backend import fast_sampling
from hvae_decoders.decoder_core import LstmCore, one_hot, shift_right
from hvae_decoders.options import resolve_options
from hvae_decoders.sampler import draws_classes, fast_draws, stepping_dtype


@dataclasses.dataclass(frozen=True)
class FlatDecoderOptions:
    rnn_sizes: tuple[int, ...] = (512,)  # LSTM units per layer (the reference's dec_rnn_size)
    dropout: float = 0.0  # dropout on each layer's input while training (1 - the reference's dropout_keep_prob)
    backend: str = "auto"  # auto, plain (the plain loops) or fast: which code runs, same results (hvae_decoders.backend)


class FlatDecoder(Decoder):
    """The reference's BaseLstmDecoder: initial state ``tanh(dense(z))``, input ``[previous output, z, controls]``."""

    name = "flat"
    Options = FlatDecoderOptions

    def __init__(self, *, output_depth: int, raw_size: int, z_size: int, control_depth: int = 0,
                 steps: int, options: Any = None, **overrides: Any):
        super().__init__()
        self.options = resolve_options(self, options, overrides, f"decoder {self.name!r}")
        self.output_depth, self.steps = output_depth, steps
        self.core = LstmCore(output_depth, raw_size, z_size, control_depth,
                             tuple(self.options.rnn_sizes), self.options.dropout)

    def reference_layers(self) -> dict[str, torch.nn.Module]:
        """Each layer under the name of its variables in the reference's checkpoints."""
        return self.core.reference_layers("decoder/")

    def forward(self, z: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor,
                controls: torch.Tensor | None = None, *, sampling_probability: float = 0.0,
                loss: Loss | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        previous = shift_right(targets)  # (B, T, D)
        backend = self.options.backend
        if sampling_probability > 0.0:
            return self.core.scheduled(z, previous, controls, sampling_probability, loss, generator, backend=backend)
        return self.core.teacher_forced(z, previous, controls, backend=backend)  # (B, T, R)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, steps: int, temperature: float, loss: Loss,
               controls: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        if fast_sampling(self.options.backend) and fast_draws(loss):
            return self._sample_fast(z, steps, temperature, loss, controls, generator)
        return plain.sample(self.core, z, steps, temperature, loss, controls, generator)  # the plain loop

    def _sample_fast(self, z: torch.Tensor, steps: int, temperature: float, loss: Loss,
                     controls: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
        """:meth:`sample` by :class:`hvae_decoders.sampler.CoreSampler`: the same draws as the plain loop."""
        batch = z.shape[0]
        dtype = stepping_dtype(z.device, self.core.output.weight.dtype)
        with torch.autocast(z.device.type, enabled=False):
            sampler = self.core.sampler(batch, loss, temperature, generator, dtype)
            sampler.reset(self.core.initial_state(z))
            base = sampler.w.project_embedding(z)  # (B, 4H_0)
            if controls is not None:
                base = base.unsqueeze(1) + sampler.w.project_controls(controls[:, :steps])  # (B, T, 4H_0)
            if draws_classes(loss):
                drawn = torch.empty(batch, steps, dtype=torch.long, device=z.device)  # (B, T)
                sampler.run(base, steps, drawn)
                return one_hot(drawn, self.output_depth)  # (B, T, D)
            values = torch.empty(batch, steps, self.output_depth, device=z.device)  # (B, T, D)
            sampler.run(base, steps, values)
            return values
