"""Helpers shared by the built-in losses."""

from __future__ import annotations

from typing import Callable, ClassVar

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


def bernoulli_draw(logits: torch.Tensor, temperature: float, uniform: torch.Tensor | None) -> torch.Tensor:
    """Independent 0/1 draws with ``P(1) = sigmoid(logits / temperature)`` from uniform numbers shaped
    like ``logits``; greedy at temperature ~0 (where ``uniform`` is None)."""
    if temperature <= GREEDY_TEMPERATURE:
        return (logits > 0).to(logits.dtype)
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


class UniformDraws:
    """:class:`hvae.interfaces.FastDraws` for a loss whose draw is a function of its raw outputs and
    uniform random numbers, implemented once for the built-in losses.

    A subclass defines :meth:`draw` and :attr:`uniform_width`; its per-step draw (``sample_step``,
    or the method ``per_step_draw`` names) calls :meth:`draw_now`. :meth:`stepper` then draws the
    uniform numbers of all steps at once. A further subclass that replaces the per-step draw
    without replacing :meth:`draw` gets a stepper that calls its own per-step draw, so the fast
    sampler draws what it draws.
    """

    draws_classes: ClassVar[bool] = False  # True: draw returns class indices (B,)
    per_step_draw: ClassVar[str] = "sample_step"  # the method whose draws the stepper's equal
    uniform_dtype: ClassVar[torch.dtype | None] = None  # the uniform numbers' dtype; None: the raw outputs'

    @property
    def uniform_width(self) -> int:
        """How many uniform numbers one row's draw takes."""
        raise NotImplementedError

    def draw(self, raw: torch.Tensor, temperature: float, uniform: torch.Tensor | None) -> torch.Tensor:
        """The draw from raw ``(..., R)`` and uniform numbers ``(..., uniform_width)`` (None at greedy
        temperatures, at or below ``GREEDY_TEMPERATURE``)."""
        raise NotImplementedError

    def draw_now(self, raw: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
        """One step's :meth:`draw`, its uniform numbers drawn now from ``generator``."""
        uniform = None
        if temperature > GREEDY_TEMPERATURE:
            uniform = torch.rand(raw.shape[:-1] + (self.uniform_width,), generator=generator, device=raw.device,
                                 dtype=self.uniform_dtype or raw.dtype)
        return self.draw(raw, temperature, uniform)

    def stepper(self, steps: int, temperature: float,
                generator: torch.Generator | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """See :class:`hvae.interfaces.FastDraws`."""
        if self._replaced_per_step_draw():
            per_step = getattr(self, self.per_step_draw)
            return lambda raw: per_step(raw, temperature, generator)
        if temperature <= GREEDY_TEMPERATURE:
            return lambda raw: self.draw(raw, temperature, None)
        uniforms = StepUniforms(steps, self.uniform_width, generator, self.uniform_dtype)
        return lambda raw: self.draw(raw, temperature, uniforms.next(raw))

    @property
    def stepper_draws_sample_step(self) -> bool:
        """Whether :meth:`stepper` draws what ``sample_step`` draws (see :class:`hvae.interfaces.FastDraws`):
        False once a subclass replaces ``sample_step`` but not :meth:`draw`, whose draws the stepper's
        class indices cannot be."""
        return getattr(type(self), "sample_step") is getattr(self._draw_owner(), "sample_step")

    def _draw_owner(self) -> type:
        """The class that defines :meth:`draw`."""
        return next(cls for cls in type(self).__mro__ if "draw" in vars(cls))

    def _replaced_per_step_draw(self) -> bool:
        """Whether the per-step draw is not the one of the class that defines :meth:`draw`."""
        return getattr(type(self), self.per_step_draw) is not getattr(self._draw_owner(), self.per_step_draw)


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
