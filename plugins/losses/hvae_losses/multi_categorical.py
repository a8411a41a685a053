"""Several one-hot parts side by side (a trio's melody, bass and drums): the reference's multi-output
categorical loss, a softmax cross-entropy per part, summed."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from hvae.errors import HvaeError
from hvae.interfaces import Loss
from hvae_losses.categorical import cross_entropy, draw_classes
from hvae_losses.common import UniformDraws, mean_over_valid, sum_valid_steps


@dataclasses.dataclass(frozen=True)
class MultiCategoricalOptions:
    # Each part's number of classes, in order ((90, 90, 512) for a trio). Empty: the converter's parts
    # (build_model fills them in from its DataSpec), or one part of the whole depth where it has none.
    output_depths: tuple[int, ...] = ()
    # Each part's name, for its metric (accuracy/melody). Empty: the converter's, else part_0, part_1, ...
    part_names: tuple[str, ...] = ()


class MultiCategoricalLoss(UniformDraws, Loss):
    """One class per step in each part: the sum of the parts' softmax cross-entropies.

    Metrics: each part's accuracy as ``accuracy/NAME`` and their mean as ``accuracy`` (the reference's
    merged metric). A step is drawn part by part, each from its own slice of the raw outputs at the
    temperature, and the parts' one-hot rows are concatenated; the greedy draw is each part's argmax.
    """

    name = "multi-categorical"
    Options = MultiCategoricalOptions
    accepts = frozenset({"onehot-parts"})
    description = "a softmax cross-entropy per part: exactly one class per step in each part"
    why_not = {
        "groove": ("Softmax cross-entropy over parts of {depth} values treats multi-hot hits and continuous "
                   "velocities/offsets as categorical choices: it cannot express several hits, a loudness or "
                   "a timing"),
        "multihot": ("Softmax cross-entropy over parts of {depth} values draws one class per part, so it "
                     "cannot draw several drums at once"),
    }
    uniform_dtype = torch.float32

    def __init__(self, output_depth: int, options: MultiCategoricalOptions | None = None, **overrides):
        super().__init__(output_depth, options, **overrides)
        depths = tuple(int(d) for d in self.options.output_depths) or (output_depth,)
        if any(d < 1 for d in depths) or sum(depths) != output_depth:
            raise HvaeError(f"loss {self.name!r}: output_depths {depths} must be positive and add up to the "
                            f"output depth, {output_depth}.")
        names = tuple(str(n) for n in self.options.part_names) or tuple(f"part_{i}" for i in range(len(depths)))
        if len(names) != len(depths) or len(set(names)) != len(names):
            raise HvaeError(f"loss {self.name!r}: part_names {names} must name each of the {len(depths)} parts "
                            f"once.")
        self.options = dataclasses.replace(self.options, output_depths=depths, part_names=names)
        self.depths, self.names = depths, names

    @property
    def uniform_width(self) -> int:
        """One uniform number per part."""
        return len(self.depths)

    def __call__(self, raw: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        total, metrics = None, {}
        for name, part_raw, part_targets in zip(self.names, raw.split(self.depths, -1),
                                                targets.split(self.depths, -1)):
            per_step, correct = cross_entropy(part_raw, part_targets)  # (B, T) each
            total = per_step if total is None else total + per_step
            metrics[f"accuracy/{name}"] = mean_over_valid(correct, mask)
        metrics["accuracy"] = torch.stack(list(metrics.values())).mean()
        return sum_valid_steps(total, mask), metrics

    def draw(self, raw: torch.Tensor, temperature: float, uniform: torch.Tensor | None) -> torch.Tensor:
        """One-hot rows ``(..., D)``, a class drawn in each part, for raw outputs ``(..., D)`` and uniform
        numbers ``(..., parts)`` in [0, 1) (None: each part's argmax)."""
        uniforms = [None] * len(self.depths) if uniform is None else uniform.split(1, -1)
        drawn = [F.one_hot(draw_classes(part, temperature, u), depth).to(raw.dtype)
                 for part, u, depth in zip(raw.split(self.depths, -1), uniforms, self.depths)]
        return torch.cat(drawn, dim=-1)

    def sample_step(self, raw: torch.Tensor, temperature: float,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        return self.draw_now(raw, temperature, generator)  # (B, D)
