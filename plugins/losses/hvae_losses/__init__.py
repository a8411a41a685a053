"""hvae's built-in losses (output distributions)."""

from hvae.hookspecs import hookimpl


@hookimpl
def hvae_register_losses(register):
    from hvae_losses.bernoulli import BernoulliLoss
    from hvae_losses.categorical import CategoricalLoss
    from hvae_losses.groove import GatedGrooveLoss, GrooveLoss
    from hvae_losses.multi_categorical import MultiCategoricalLoss
    from hvae_losses.nade import NadeLoss

    register(CategoricalLoss)
    register(GrooveLoss)
    register(GatedGrooveLoss)
    register(BernoulliLoss)
    register(MultiCategoricalLoss)
    register(NadeLoss)
