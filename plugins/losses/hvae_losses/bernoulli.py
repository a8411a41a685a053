"""Independent Bernoulli per drum: sigmoid cross-entropy for multi-hot rolls."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hvae.interfaces import Loss
from hvae_losses.common import UniformDraws, bernoulli_draw, hit_metrics, mean_over_valid, sum_valid_steps


class BernoulliLoss(UniformDraws, Loss):
    """Each of the ``output_depth`` values is its own hit probability ``sigmoid(raw)``."""

    name = "bernoulli"
    accepts = frozenset({"multihot"})
    description = "independent sigmoid cross-entropy per drum"
    why_not = {
        "onehot": ("Independent Bernoulli draws over {depth} classes can pick several classes or "
                   "none at a step, which a one-hot step cannot hold"),
        "groove": ("It reads velocities and offsets as hit probabilities (offsets below 0 are not "
                   "probabilities at all)"),
    }

    def __call__(self, raw: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        per_value = F.binary_cross_entropy_with_logits(raw.float(), targets, reduction="none")  # (B, T, D)
        predicted = (raw > 0).to(targets.dtype)  # (B, T, D)
        step_correct = (predicted == targets).all(dim=-1).to(targets.dtype)  # (B, T)
        metrics = {"accuracy": mean_over_valid(step_correct, mask), **hit_metrics(predicted, targets, mask)}
        return sum_valid_steps(per_value.sum(dim=-1), mask), metrics

    def sample_step(self, raw: torch.Tensor, temperature: float,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        return self.draw_now(raw, temperature, generator)

    @property
    def uniform_width(self) -> int:
        return self.output_depth

    def draw(self, raw: torch.Tensor, temperature: float, uniform: torch.Tensor | None) -> torch.Tensor:
        return bernoulli_draw(raw, temperature, uniform)
