"""Softmax cross-entropy over one-hot steps: the reference's CategoricalLstmDecoder loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hvae.interfaces import Loss
from hvae_losses.common import UniformDraws, mean_over_valid, sum_valid_steps


def cross_entropy(raw: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step softmax cross-entropy ``-(targets * log_softmax(raw)).sum(-1)`` and whether the most likely
    class is the target's (1.0 or 0.0): raw and targets ``(B, T, D)`` give two ``(B, T)``."""
    log_probs = F.log_softmax(raw.float(), dim=-1)  # (B, T, D)
    per_step = -(targets * log_probs).sum(dim=-1)  # (B, T)
    correct = (raw.argmax(dim=-1) == targets.argmax(dim=-1)).to(per_step.dtype)  # (B, T)
    return per_step, correct


def draw_classes(raw: torch.Tensor, temperature: float, uniform: torch.Tensor | None) -> torch.Tensor:
    """Classes ``(...)`` from ``softmax(raw / temperature)`` for raw outputs ``(..., D)`` and uniform numbers
    ``(..., 1)`` in [0, 1); the argmax where ``uniform`` is None.

    Draws by inverting the distribution function: the uniform number, scaled to the row's unnormalised
    total, is looked up in the cumulative sums of ``exp(raw / temperature - max)``.
    """
    if uniform is None:
        return raw.argmax(dim=-1)
    scaled = raw.float() / temperature
    cumulative = scaled.sub_(scaled.amax(dim=-1, keepdim=True)).exp_().cumsum(dim=-1)  # (..., D)
    point = uniform * cumulative[..., -1:]  # below the total: a class of positive weight is found
    return torch.searchsorted(cumulative, point, right=True).squeeze(-1).clamp_(max=raw.shape[-1] - 1)


class CategoricalLoss(UniformDraws, Loss):
    """One class per step out of ``output_depth`` (a drum combination, a melody event).

    The loss is written ``-(targets * log_softmax(raw)).sum(-1)``, which is cross-entropy for one-hot
    targets and is also what the reference computes when the targets are not one-hot (a forced run
    on groove tensors).
    """

    name = "categorical"
    accepts = frozenset({"onehot"})
    description = "softmax cross-entropy: exactly one class per step"
    why_not = {
        "groove": ("Softmax cross-entropy over {depth} values treats multi-hot hits and continuous "
                   "velocities/offsets as one categorical distribution: it rewards putting all "
                   "probability on one value per step and cannot express several hits, a loudness or a timing"),
        "multihot": ("Softmax cross-entropy over {depth} values treats a roll with several drums "
                     "at once as one categorical choice, so it can draw only one drum per step"),
    }
    draws_classes = True  # the fast sampler feeds a drawn class back as a row gather
    per_step_draw = "sample_indices"
    uniform_dtype = torch.float32
    uniform_width = 1

    def __call__(self, raw: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        per_step, correct = cross_entropy(raw, targets)  # (B, T) each
        return sum_valid_steps(per_step, mask), {"accuracy": mean_over_valid(correct, mask)}

    def sample_indices(self, raw: torch.Tensor, temperature: float,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """A class per row from ``softmax(raw / temperature)``; the argmax at temperature ~0.

        Draws by inverting the distribution function: one uniform number per row, scaled to the
        row's unnormalised total, is looked up in the cumulative sums of ``exp(raw / temperature -
        max)``. (The Gumbel-max trick needs one uniform number per class: with 512 classes,
        drawing those cost more than the rest of a sampling step's element-wise work.)
        """
        return self.draw_now(raw, temperature, generator)

    def draw(self, raw: torch.Tensor, temperature: float, uniform: torch.Tensor | None) -> torch.Tensor:
        """Classes ``(...)`` for raw outputs ``(..., D)`` and uniform numbers ``(..., 1)`` in [0, 1)
        (None: the argmax)."""
        return draw_classes(raw, temperature, uniform)

    def sample_step(self, raw: torch.Tensor, temperature: float,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        indices = self.sample_indices(raw, temperature, generator)  # (B,)
        return F.one_hot(indices, raw.shape[-1]).to(raw.dtype)  # (B, D)
