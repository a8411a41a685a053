"""GrooVAE's decoder: the flat decoder with GrooVAE's sizes and dropout, the groove loss by default."""

from __future__ import annotations

import dataclasses

from hvae_decoders.flat import FlatDecoder, FlatDecoderOptions


@dataclasses.dataclass(frozen=True)
class GrooveDecoderOptions(FlatDecoderOptions):
    rnn_sizes: tuple[int, ...] = (256, 256)  # LSTM units per layer, as groovae_4bar
    dropout: float = 0.7  # groovae_4bar keeps 30% of each layer's input (dropout_keep_prob 0.3)


class GrooveDecoder(FlatDecoder):
    """The reference's GrooveLstmDecoder network; its hits/velocities/offsets loss is the ``groove`` loss."""

    name = "groove"
    Options = GrooveDecoderOptions
    default_loss = "groove"
