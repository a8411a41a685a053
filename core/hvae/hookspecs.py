"""The hooks an hvae plugin implements. Each receives a ``register`` callback.

``register(factory)`` adds one component; ``factory.name`` is the name users type
(``--converter drums``). A converter factory is a :class:`hvae.interfaces.Converter`
subclass; encoders, decoders and losses are classes built from their options.
"""

import pluggy

hookspec = pluggy.HookspecMarker("hvae")
hookimpl = pluggy.HookimplMarker("hvae")


@hookspec
def hvae_register_converters(register):
    """Register MIDI <-> tensor converters: ``register(ConverterSubclass)``."""


@hookspec
def hvae_register_encoders(register):
    """Register encoders (``nn.Module`` mapping inputs to (mu, sigma)): ``register(EncoderSubclass)``."""


@hookspec
def hvae_register_decoders(register):
    """Register decoders (``nn.Module`` mapping z to raw outputs): ``register(DecoderSubclass)``."""


@hookspec
def hvae_register_losses(register):
    """Register output distributions / losses: ``register(LossSubclass)``."""
