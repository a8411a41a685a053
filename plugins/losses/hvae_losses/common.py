"""Helpers shared by the built-in losses."""

from __future__ import annotations

import torch

# At or below this temperature a draw is greedy: the most likely class, or a hit where p > 0.5.
# Dividing logits by a smaller number would overflow float16/bfloat16 and tie at infinity.
GREEDY_TEMPERATURE = 1e-4


def sum_valid_steps(per_step: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` per-step losses summed over the steps where ``mask`` is 1, giving ``(B,)``."""
    return (per_step * mask).sum(dim=1)


def mean_over_valid(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``(B, T)`` values over valid steps, as a 0-dim tensor (no host sync)."""
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def bernoulli_draw(logits: torch.Tensor, temperature: float, generator: torch.Generator | None,
                   uniform: torch.Tensor | None = None) -> torch.Tensor:
    """Independent 0/1 draws with ``P(1) = sigmoid(logits / temperature)``; greedy at temperature ~0.

    ``uniform``: the draws' uniform numbers, if already drawn (as :class:`StepUniforms` does).
    """
    if temperature <= GREEDY_TEMPERATURE:
        return (logits > 0).to(logits.dtype)
    if uniform is None:
        uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    return (uniform < torch.sigmoid(logits / temperature)).to(logits.dtype)


class StepUniforms:
    """The uniform numbers of ``steps`` consecutive draws of shape ``(..., width)``, drawn in one call
    at the first step: on CPU the same numbers as one call per step, at a fraction of the cost.
    Elsewhere (CUDA's generator splits its stream by call) each step draws its own."""

    def __init__(self, steps: int, width: int, generator: torch.Generator | None, dtype: torch.dtype | None = None):
        self.steps, self.width, self.generator, self.dtype = steps, width, generator, dtype
        self.drawn: list[torch.Tensor] | None = None

    def next(self, like: torch.Tensor) -> torch.Tensor:
        """The next step's numbers, shaped like ``like`` with the last dimension ``width``, in
        ``dtype`` (default: ``like``'s)."""
        shape, dtype = like.shape[:-1] + (self.width,), self.dtype or like.dtype
        if like.device.type != "cpu":
            return torch.rand(shape, generator=self.generator, device=like.device, dtype=dtype)
        if self.drawn is None:
            self.drawn = list(torch.rand((self.steps,) + shape, generator=self.generator, dtype=dtype).unbind(0))
            self.drawn.reverse()
        return self.drawn.pop()


def hit_metrics(predicted: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Precision, recall and F1 of predicted hits ``(B, T, N)`` (0/1) over valid steps ``mask (B, T)``."""
    valid = mask.unsqueeze(-1)
    predicted = predicted * valid
    truth = truth * valid
    true_positives = (predicted * truth).sum()
    precision = true_positives / predicted.sum().clamp(min=1.0)
    recall = true_positives / truth.sum().clamp(min=1.0)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    return {"hit_precision": precision, "hit_recall": recall, "hit_f1": f1}
