"""hvae's built-in converters: drums, groove, melody, multiperf and trio, as the reference defines them."""

from hvae.hookspecs import hookimpl


@hookimpl
def hvae_register_converters(register):
    from hvae_converters.drums import DrumsConverter
    from hvae_converters.groove import GrooveConverter
    from hvae_converters.melody import MelodyConverter
    from hvae_converters.multiperf import MultiperfConverter
    from hvae_converters.trio import TrioConverter

    register(DrumsConverter)
    register(GrooveConverter)
    register(MelodyConverter)
    register(MultiperfConverter)
    register(TrioConverter)
