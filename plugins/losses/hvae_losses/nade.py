"""A NADE over each step's drums: the reference's MultiLabelRnnNadeDecoder as a loss.

The reference's nade-drums models put a NADE (neural autoregressive distribution estimator, Uria et al.
2016) on every step of a flat LSTM decoder. The decoder's dense output layer gives, per step, the NADE's
two biases: ``b_enc`` (H hidden units) and ``b_dec`` (D drums); the NADE's weights ``w_enc`` and
``w_dec`` are the same at every step and belong to this loss. Drum i's probability depends on the
drums before it in class order:

    a_0 = b_enc                          a_{i+1} = a_i + x_i * w_enc[i]                 (H,)
    P(x_i = 1 | x_<i) = sigmoid(b_dec[i] + sigmoid(a_i) . w_dec[i])

A step's loss is ``-log P(x)``, each factor's log taken as ``log(1e-6 + p)`` as the reference takes it.
Drawing runs the same recurrence on the drawn values: at a temperature, drum i is a Bernoulli draw with
logit ``l_i / temperature``; greedily (temperature ~0, the reference's ``temperature=None``) it is a hit
where ``p_i >= 0.5``. Scheduled sampling feeds back the greedy draw, as the reference's training helper
calls the NADE without a temperature.

The weights are stored in the reference's shapes, ``w_enc`` ``[D, 1, H]`` and ``w_dec_t`` ``[D, H, 1]``,
under ``nade/`` beside the decoder's output projection (:meth:`NadeLoss.reference_layers`), so its
checkpoints and magenta.js's folders read and write as they are.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from hvae.errors import HvaeError
from hvae.interfaces import Loss, LossOptions
from hvae_losses.common import GREEDY_TEMPERATURE, hit_metrics, mean_over_valid, sum_valid_steps

LOG_EPSILON = 1e-6  # the reference's NADE takes log(1e-6 + p) of each conditional probability


@dataclasses.dataclass(frozen=True)
class NadeOptions(LossOptions):
    num_hidden: int = 128  # the NADE's hidden units (the reference's nade_num_hidden)


def _safe_log(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p + LOG_EPSILON)


class NadeLoss(Loss, nn.Module):
    """Per step, a NADE over the ``output_depth`` drums whose biases are the decoder's raw outputs:
    ``raw_size`` is ``num_hidden + output_depth`` (``b_enc`` first, then ``b_dec``). The loss owns
    the NADE's weights: the model trains, saves and moves them with its own."""

    name = "nade"
    Options = NadeOptions
    accepts = frozenset({"multihot"})
    description = "a NADE per step: each drum conditioned on the ones before it (the reference's nade-drums)"
    why_not = {
        "onehot": ("A NADE draws each of the {depth} values as its own bit, so a step may hold several "
                   "classes or none, which a one-hot step cannot"),
        "groove": ("It reads velocities and offsets as bits of a roll (offsets below 0 are not bits at all)"),
    }

    def __init__(self, output_depth: int, options: NadeOptions | None = None, **overrides):
        nn.Module.__init__(self)
        Loss.__init__(self, output_depth, options, **overrides)
        hidden = self.options.num_hidden
        if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
            raise HvaeError(f"Loss {self.name!r}: num_hidden must be a positive whole number, got {hidden!r}.")
        # The reference's initialiser: a normal of deviation 1/sqrt(D), truncated at two deviations.
        std = 1.0 / math.sqrt(output_depth)
        self.w_enc = nn.Parameter(nn.init.trunc_normal_(torch.empty(output_depth, 1, hidden),
                                                        std=std, a=-2 * std, b=2 * std))  # (D, 1, H)
        self.w_dec_t = nn.Parameter(nn.init.trunc_normal_(torch.empty(output_depth, hidden, 1),
                                                          std=std, a=-2 * std, b=2 * std))  # (D, H, 1)

    @property
    def raw_size(self) -> int:
        return self.options.num_hidden + self.output_depth

    def reference_layers(self, scope: str) -> dict[str, nn.Parameter]:
        """The NADE's weights under the names of the reference's variables, beside the decoder's output
        projection whose variables lie under ``scope`` (``decoder/``): stored as they are."""
        return {f"{scope}nade/w_enc": self.w_enc, f"{scope}nade/w_dec_t": self.w_dec_t}

    def biases(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw ``(..., H + D)`` as the NADE's biases ``b_enc (..., H)`` and ``b_dec (..., D)``."""
        return raw.split([self.options.num_hidden, self.output_depth], dim=-1)

    def conditionals(self, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Each drum's logit given the drums of ``x`` before it, ``(..., D)``, for raw ``(..., H + D)``
        and rolls ``x (..., D)``: the recurrence over drums, one drum at a time as the reference runs it
        (each step's arrays stay in cache: faster on CPU than all drums at once, benchmarks/RESULTS.md)."""
        b_enc, b_dec = self.biases(raw)
        w_enc, w_dec = self.w_enc.squeeze(1), self.w_dec_t.squeeze(-1)  # (D, H)
        a, logits = b_enc, []
        for i in range(self.output_depth):
            logits.append(torch.sigmoid(a) @ w_dec[i])  # (...,)
            a = a + x[..., i:i + 1] * w_enc[i]
        return b_dec + torch.stack(logits, dim=-1)

    def __call__(self, raw: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        exact = torch.promote_types(self.w_enc.dtype, torch.float32)  # float32 at least, even under autocast
        with torch.autocast(raw.device.type, enabled=False):
            p = torch.sigmoid(self.conditionals(raw.to(exact), targets.to(exact)))  # (B, T, D)
        log_p = (targets * _safe_log(p) + (1 - targets) * _safe_log(1 - p)).sum(dim=-1)  # (B, T)
        predicted = (p >= 0.5).to(targets.dtype)  # (B, T, D)
        step_correct = (predicted == targets).all(dim=-1).to(targets.dtype)  # (B, T)
        metrics = {"accuracy": mean_over_valid(step_correct, mask), **hit_metrics(predicted, targets, mask)}
        return sum_valid_steps(-log_p, mask), metrics

    def sample_step(self, raw: torch.Tensor, temperature: float,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """A roll ``(B, D)`` drawn drum by drum from raw ``(B, H + D)``: Bernoulli draws at ``temperature``
        (one uniform number per drum, all drawn first), hits where ``p >= 0.5`` at temperature ~0."""
        greedy = temperature <= GREEDY_TEMPERATURE
        uniform = None if greedy else torch.rand(raw.shape[:-1] + (self.output_depth,), generator=generator,
                                                 device=raw.device, dtype=raw.dtype)
        b_enc, b_dec = self.biases(raw)
        w_enc, w_dec = self.w_enc.squeeze(1).to(raw.dtype), self.w_dec_t.squeeze(-1).to(raw.dtype)  # (D, H)
        a, drawn = b_enc, []
        for i in range(self.output_depth):
            logit = b_dec[..., i] + torch.sigmoid(a) @ w_dec[i]  # (B,)
            if greedy:
                value = (torch.sigmoid(logit) >= 0.5).to(raw.dtype)
            else:
                value = (uniform[..., i] < torch.sigmoid(logit / temperature)).to(raw.dtype)
            drawn.append(value)
            a = a + value.unsqueeze(-1) * w_enc[i]
        return torch.stack(drawn, dim=-1)

    def feedback_step(self, raw: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """What scheduled sampling feeds back: the greedy roll, as the reference's training helper draws it."""
        return self.sample_step(raw, 0.0, generator)
