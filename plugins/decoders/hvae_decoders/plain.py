"""The plain loops: what the decoders compute, one step at a time with plain torch operations.

Free-running decoding (:func:`sample`, :func:`sample_bars`): start from ``tanh(dense(embedding))``,
feed the previous draw (zeros at first), step the LSTM, draw the next output with
``loss.sample_step``, again. Scheduled sampling (:func:`scheduled`): the same loop while training,
fed the target or, where chosen, the model's own draw. Teacher forcing (:func:`teacher_forced`):
``nn.LSTM`` over ``[previous target, embedding, controls]``.

This is what ``backend="plain"`` runs (:mod:`hvae_decoders.backend`) and what the fast paths
(:mod:`hvae_decoders.sampler`, :mod:`hvae_decoders.recurrence`) are tested against. ``core`` is
an :class:`hvae_decoders.decoder_core.LstmCore`, read only through its stepping interface (see that
module): step t's input is ``[previous output (D), embedding (K), controls at t (C)]``. Shapes: N
sequences, T steps, R raw outputs per step.
"""

from __future__ import annotations

from typing import Sequence

import torch

from hvae.interfaces import Loss
from hvae_decoders.lstm import lstm_step


def step_inputs(previous: torch.Tensor, embedding: torch.Tensor, controls: torch.Tensor | None) -> torch.Tensor:
    """``[previous (N, T, D), embedding repeated (N, T, K), controls (N, T, C)]`` -> ``(N, T, I)``."""
    parts = [previous, embedding.unsqueeze(1).expand(-1, previous.shape[1], -1)]
    if controls is not None:
        parts.append(controls)
    return torch.cat(parts, dim=-1)


def teacher_forced(core, embedding: torch.Tensor, previous: torch.Tensor,
                   controls: torch.Tensor | None = None) -> torch.Tensor:
    """Raw outputs ``(N, T, R)`` when step t is fed ``previous[:, t]``: the layers as ``nn.LSTM``."""
    state = core.initial_state(embedding)
    return core.output(core.run(step_inputs(previous, embedding, controls), state))


def scheduled(cores: Sequence, embedding: torch.Tensor, previous: torch.Tensor, controls: torch.Tensor | None,
              use_draw: torch.Tensor, loss: Loss, generator: torch.Generator | None = None) -> torch.Tensor:
    """Raw outputs ``(N, T, R)`` with scheduled sampling, differentiable, with dropout while training.

    Step t is fed ``previous[:, t]`` or, where ``use_draw[:, t]`` (``(N, T)`` bool; from step 1 on),
    the loss's draw (:meth:`hvae.interfaces.Loss.feedback_step`: at temperature 1 by default) from step
    t-1's raw output. ``cores``: one core, or several side by side (see :func:`sample_bars`), each choosing
    for its own part: ``use_draw`` ``(N, T, cores)``.
    """
    depths = [core.output_depth for core in cores]
    states = [core.initial_state(embedding) for core in cores]
    choose = use_draw.unsqueeze(-1) if use_draw.dim() == 2 else use_draw  # (N, T, cores)
    if len(cores) > 1:
        choose = choose.repeat_interleave(torch.tensor(depths, device=choose.device), dim=-1)  # (N, T, D)
    raws: list[torch.Tensor] = []
    for t in range(previous.shape[1]):
        fed = previous[:, t]  # (N, D)
        if raws:
            drawn = loss.feedback_step(raws[-1], generator).to(previous.dtype)
            fed = torch.where(choose[:, t], drawn, fed)
        raws.append(_step_cores(cores, fed, embedding, None if controls is None else controls[:, t], states,
                                dropout=True))  # (N, R)
    return torch.stack(raws, dim=1)


def _step_cores(cores: Sequence, fed: torch.Tensor, embedding: torch.Tensor, controls: torch.Tensor | None,
                states: list, dropout: bool = False) -> torch.Tensor:
    """One step of each core on its own part of ``fed`` ``(N, D)``, ``states`` updated in place: the raw
    outputs ``(N, R)``, the cores' side by side."""
    raws = []
    for i, (core, part) in enumerate(zip(cores, fed.split([core.output_depth for core in cores], dim=-1))):
        inputs = torch.cat([part, embedding] + ([controls] if controls is not None else []), dim=-1)
        top, states[i] = lstm_step(core.layers, inputs, states[i], *((core.drop,) if dropout else ()))
        raws.append(core.output(top))  # (N, R_i)
    return raws[0] if len(raws) == 1 else torch.cat(raws, dim=-1)


def _free_running(cores: Sequence, embedding: torch.Tensor, steps: int, temperature: float, loss: Loss,
                  controls: torch.Tensor | None, generator: torch.Generator | None,
                  feed: torch.Tensor | None) -> torch.Tensor:
    """``steps`` draws ``(N, steps, D)`` in the model's dtype, the first fed ``feed`` (None: zeros)."""
    states = [core.initial_state(embedding) for core in cores]
    if feed is None:
        feed = embedding.new_zeros(embedding.shape[0], sum(core.output_depth for core in cores))  # (N, D)
    draws = []
    for t in range(steps):
        raw = _step_cores(cores, feed, embedding, None if controls is None else controls[:, t], states)
        feed = loss.sample_step(raw, temperature, generator)  # (N, D)
        draws.append(feed)
    return torch.stack(draws, dim=1)


@torch.no_grad()
def sample(core, embedding: torch.Tensor, steps: int, temperature: float, loss: Loss,
           controls: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """A flat decoder's free-running outputs ``(N, steps, D)`` (float32, as the fast sampler's) from
    ``embedding (N, K)`` and ``controls (N, >= steps, C)``."""
    return _free_running((core,), embedding, steps, temperature, loss, controls, generator, None).float()


@torch.no_grad()
def sample_bars(cores: Sequence, embeddings: torch.Tensor, bar_steps: int, temperature: float, loss: Loss,
                controls: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """A hierarchical decoder's free-running outputs ``(N, bars * bar_steps, D)`` (float32) from one
    embedding per bar ``(N, bars, K)``: each bar starts from its own initial state and is fed the
    previous bar's last draw.

    ``cores``: one core, or several side by side (a split decoder): each decodes its own part of the
    outputs (the parts in order, of the cores' ``output_depth``), fed its own part of the previous
    draw, and the loss draws each step from their raw outputs side by side.
    """
    feed, bars = None, []
    for bar in range(embeddings.shape[1]):
        bar_controls = None if controls is None else controls[:, bar * bar_steps:(bar + 1) * bar_steps]
        drawn = _free_running(cores, embeddings[:, bar], bar_steps, temperature, loss, bar_controls, generator, feed)
        feed = drawn[:, -1]
        bars.append(drawn)
    return torch.cat(bars, dim=1).float()
