"""The benchmarked work: presets' models with random weights, random batches of their data, a training step."""

from __future__ import annotations

import torch

from hvae.model import Batch, MusicVAE, build_model, clip_gradients, make_lr_schedule, make_optimizer
from hvae.plugins import make_converter
from hvae.presets import get_preset

THREADS = 2  # the machine's cores


def model(preset: str, seed: int = 0) -> MusicVAE:
    """``preset``'s model at its exact sizes, randomly initialised."""
    torch.manual_seed(seed)
    p = get_preset(preset)
    return build_model(p.model, make_converter(p.converter, p.converter_options), force=p.force)


def random_batch(model: MusicVAE, batch: int, seed: int = 0) -> Batch:
    """``batch`` full-length examples shaped like the preset's converter output."""
    spec = model.spec
    g = torch.Generator().manual_seed(seed)
    shape = (batch, spec.steps)
    if spec.output_kind == "onehot":
        classes = torch.randint(0, spec.output_depth, shape, generator=g)
        outputs = torch.nn.functional.one_hot(classes, spec.output_depth).float()
    elif spec.output_kind == "groove":
        drums = spec.output_depth // 3
        hits = (torch.rand(*shape, drums, generator=g) < 0.3).float()
        velocities = torch.rand(*shape, drums, generator=g) * hits
        offsets = (torch.rand(*shape, drums, generator=g) * 2 - 1) * hits
        outputs = torch.cat([hits, velocities, offsets], dim=-1)
    else:
        outputs = (torch.rand(*shape, spec.output_depth, generator=g) < 0.2).float()
    if spec.input_depth == spec.output_depth:
        inputs = outputs.clone()
    else:  # e.g. drum rolls: one bit per drum class and a none bit
        inputs = (torch.rand(*shape, spec.input_depth, generator=g) < 0.2).float()
    controls = torch.rand(*shape, spec.control_depth, generator=g) if spec.control_depth else None
    return Batch(inputs, outputs, torch.full((batch,), spec.steps), controls)


class TrainingStep:
    """One optimiser step as training runs it: forward, backward, global-norm clip, Adam, schedule."""

    def __init__(self, model: MusicVAE, batch: Batch):
        self.model, self.batch = model.train(), batch
        self.optimizer = make_optimizer(model, model.config)
        self.schedule = make_lr_schedule(self.optimizer, model.config)
        self.step = 0

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        out = self.model(self.batch, self.step)
        out.loss.backward()
        clip_gradients(self.model, self.model.config)
        self.optimizer.step()
        self.schedule.step()
        self.step += 1
