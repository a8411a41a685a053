"""hvae's built-in converters: drums, groove and melody, as the reference defines them."""

from hvae.hookspecs import hookimpl


@hookimpl
def hvae_register_converters(register):
    from hvae_converters.drums import DrumsConverter
    from hvae_converters.groove import GrooveConverter
    from hvae_converters.melody import MelodyConverter

    register(DrumsConverter)
    register(GrooveConverter)
    register(MelodyConverter)
