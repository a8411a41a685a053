"""Generation: draw sequences from a trained model and write them as MIDI files.

File names follow the reference's generator: ``<name>_sample_<YYYY-mm-dd_HHMMSS>-000-of-005.mid``.
"""

from __future__ import annotations

import io
import math
import os
import secrets
import time
from pathlib import Path

import torch

from hvae.checkpoint import load_model, write_atomic
from hvae.device import autocast, resolve_device
from hvae.errors import HvaeError
from hvae.interfaces import Converter
from hvae.model import MusicVAE
from hvae.safefiles import is_plain_name, refuse_links

DEFAULT_QPM = 120.0  # tempo written to sampled MIDI, quarter notes per minute (the reference's)
SAMPLES_DIR = "samples"  # where a run's samples go, inside its run directory


def sample_names(name: str, n: int, start: int = 0, stop: int | None = None, stamp: str | None = None) -> list[str]:
    """The reference's file names for samples ``start`` to ``stop`` (default: all ``n``) of run ``name``,
    drawn at ``stamp`` (default: now, local time, as ``%Y-%m-%d_%H%M%S``)."""
    stamp = stamp or time.strftime("%Y-%m-%d_%H%M%S")
    return [f"{name}_sample_{stamp}-{i:03d}-of-{n:03d}.mid" for i in range(start, n if stop is None else stop)]


def write_samples(model: MusicVAE, converter: Converter, out_dir: str | os.PathLike, name: str, n: int = 5,
                  temperature: float = 0.5, seed: int | None = None, qpm: float = DEFAULT_QPM,
                  batch_size: int = 256, amp: bool = False) -> list[Path]:
    """Draw ``n`` sequences at ``temperature`` and write each as MIDI at ``qpm`` into ``out_dir``.

    The same ``seed`` (and model) gives the same files; None draws a fresh one. Sequences are drawn
    ``batch_size`` at a time. ``amp`` decodes in mixed precision (bfloat16 on CPU: about twice as
    fast for large models, and the draws differ from float32's by rounding). Returns the paths
    written, in order.
    """
    if n < 1:
        raise HvaeError(f"The number of samples must be at least 1, got {n}.")
    if not (math.isfinite(temperature) and temperature > 0):
        raise HvaeError(f"The temperature must be a finite number above 0, got {temperature}.")
    if not (math.isfinite(qpm) and qpm > 0):
        raise HvaeError(f"The tempo must be a finite number of quarter notes per minute above 0, got {qpm}.")
    if not is_plain_name(name):
        raise HvaeError(f"Sample files are named after the run, and {name[:40]!r} is not a plain file name.")
    if converter.control_depth:
        raise HvaeError(f"This model is conditioned on {converter.control_depth} control values per step "
                        f"(converter {converter.name!r}): drawing from it needs those controls, which sampling "
                        f"from the prior does not have.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator(device=model.device)
    generator.manual_seed(seed if seed is not None else secrets.randbits(63))
    model.eval()
    stamp = time.strftime("%Y-%m-%d_%H%M%S")
    paths = []
    for start in range(0, n, batch_size):
        with autocast(model.device, enabled=amp):
            drawn = model.sample(min(batch_size, n - start), temperature, generator=generator)  # (B, T, D)
        if not bool(torch.isfinite(drawn).all()):
            raise HvaeError("The model gave outputs that are not finite numbers (NaN or infinite): its weights "
                            "or the temperature are out of range, and no sample was written.")
        names = sample_names(name, n, start, min(start + batch_size, n), stamp)  # a batch at a time: n may be huge
        for outputs, file_name in zip(drawn.float().cpu().numpy(), names):
            buffer = io.BytesIO()
            converter.from_tensors(outputs, qpm=qpm).dump(file=buffer)
            write_atomic(out_dir / file_name, buffer.getvalue())
            paths.append(out_dir / file_name)
    return paths


def sample_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike | None = None, n: int = 5,
                      temperature: float = 0.5, seed: int | None = None, qpm: float = DEFAULT_QPM,
                      device: str = "auto", amp: bool = False) -> list[Path]:
    """:func:`write_samples` from a checkpoint (a run directory, a checkpoint directory or its JSON).

    ``out_dir`` defaults to the run's ``samples`` folder.
    """
    loaded = load_model(checkpoint, resolve_device(device))
    if out_dir is None:
        refuse_links(loaded.run_dir / SAMPLES_DIR)
    return write_samples(loaded.model, loaded.converter, out_dir or loaded.run_dir / SAMPLES_DIR, loaded.name,
                         n=n, temperature=temperature, seed=seed, qpm=qpm, amp=amp)
