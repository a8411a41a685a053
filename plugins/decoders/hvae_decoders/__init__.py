"""hvae's built-in encoder and decoders: the reference's LSTM models.

The distribution is named ``hvae-decoders`` but registers the ``bidirectional`` and ``hierarchical`` encoders as well as
the ``flat``, ``hierarchical`` and ``groove`` decoders (see this plugin's README.md for where each
part lives).
"""

from hvae.hookspecs import hookimpl


@hookimpl
def hvae_register_encoders(register):
    from hvae_decoders.encoders import BidirectionalLstmEncoder, HierarchicalLstmEncoder

    register(BidirectionalLstmEncoder)
    register(HierarchicalLstmEncoder)


@hookimpl
def hvae_register_decoders(register):
    from hvae_decoders.flat import FlatDecoder
    from hvae_decoders.groove import GrooveDecoder
    from hvae_decoders.hierarchical import HierarchicalDecoder

    register(FlatDecoder)
    register(HierarchicalDecoder)
    register(GrooveDecoder)
