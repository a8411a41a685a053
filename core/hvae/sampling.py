"""Generation: draw sequences from a trained model and write them as MIDI files.

File names follow the reference's generator: ``<name>_sample_<YYYY-mm-dd_HHMMSS>-000-of-005.mid``; when
any of a draw's names is taken (another draw in the same second), the draw's files are all named
``<name>_sample_<YYYY-mm-dd_HHMMSS>-2-000-of-005.mid`` (then -3, ...): no file is ever replaced.
"""

from __future__ import annotations

import dataclasses
import math
import os
import secrets
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from hvae.checkpoint import load_model
from hvae.device import autocast, resolve_device
from hvae.errors import CheckpointError, HvaeError
from hvae.interfaces import Converter
from hvae.midifile import midi_bytes, write_new
from hvae.model import MusicVAE
from hvae.safefiles import is_plain_name, refuse_links
from hvae.plausible import ROUNDS, DensityRange, draw_plausible, reads_hits, training_range
from hvae.training import read_run_config

DEFAULT_QPM = 120.0  # tempo written to sampled MIDI, quarter notes per minute (the reference's)
SAMPLES_DIR = "samples"  # where a run's samples go, inside its run directory


def sample_names(name: str, n: int) -> Callable[[int], list[str]]:
    """The file names for ``n`` samples of run ``name`` drawn now (local time; the time of
    ``SOURCE_DATE_EPOCH`` when set, as reproducible builds expect), by attempt: the reference's names
    first, then with the attempt's number after the time."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    stamp = time.strftime("%Y-%m-%d_%H%M%S", time.localtime(int(epoch) if epoch else None))
    return lambda attempt: [f"{name}_sample_{stamp}{'' if attempt == 1 else f'-{attempt}'}-{i:03d}-of-{n:03d}.mid"
                            for i in range(n)]


@dataclasses.dataclass(frozen=True)
class Samples:
    """What a call of :func:`write_samples` wrote, and what to tell the user about it."""

    paths: list[Path]  # the MIDI files, in order
    notes: tuple[str, ...] = ()  # what the plausibility check did


def write_samples(model: MusicVAE, converter: Converter, out_dir: str | os.PathLike, name: str, n: int = 5,
                  temperature: float = 0.5, seed: int | None = None, qpm: float = DEFAULT_QPM,
                  batch_size: int = 256, amp: bool = False, plausible: DensityRange | None = None) -> Samples:
    """Draw ``n`` sequences at ``temperature`` and write each as MIDI at ``qpm`` into ``out_dir``.

    The same ``seed`` (and model) gives the same files; None draws a fresh one. Sequences are drawn
    ``batch_size`` at a time. ``amp`` decodes in mixed precision (bfloat16 on CPU: about twice as
    fast for large models, and the draws differ from float32's by rounding). With ``plausible``, drum
    sequences whose hits per bar lie outside it are drawn again (see :mod:`hvae.plausible`).
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
    generator = torch.Generator(device=model.device)
    generator.manual_seed(seed if seed is not None else secrets.randbits(63))
    model.eval()
    files, redrawn, left = [], 0, 0
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        with autocast(model.device, enabled=amp):
            if plausible is None:
                drawn = model.sample(count, temperature, generator=generator).float().cpu().numpy()  # (B, T, D)
            else:
                drawn, again, outside = draw_plausible(model, converter, count, temperature, generator, plausible)
                redrawn, left = redrawn + again, left + outside
        if not np.isfinite(drawn).all():
            raise HvaeError("The model gave outputs that are not finite numbers (NaN or infinite): its weights "
                            "or the temperature are out of range, and no sample was written.")
        files += [midi_bytes(converter.from_tensors(outputs, qpm=qpm)) for outputs in drawn]
    notes = ()
    if redrawn:
        notes = (f"Drew {redrawn} of the {n} samples again: their drum hits per bar lay outside the training "
                 f"data's 5th to 95th percentile, {plausible.low:.1f} to {plausible.high:.1f} (noise or next to "
                 f"silence); {f'{left} still outside after {ROUNDS} redraws kept' if left else 'all are within it now'}."
                 f" --no-redraw keeps the first draws.",)
    return Samples(write_new(out_dir, files, sample_names(name, n)), notes)


def sample_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike | None = None, n: int = 5,
                      temperature: float = 0.5, seed: int | None = None, qpm: float = DEFAULT_QPM,
                      device: str = "auto", amp: bool = False, redraw: bool = True) -> Samples:
    """:func:`write_samples` from a checkpoint (a run directory, a checkpoint directory or its JSON).

    ``out_dir`` defaults to the run's ``samples`` folder. With ``redraw``, a drum model's samples are held
    to the density range of its run's training windows, when their cache can be read.
    """
    loaded = load_model(checkpoint, resolve_device(device))
    if out_dir is None:
        refuse_links(loaded.run_dir / SAMPLES_DIR)
    plausible, notes = None, ()
    if redraw and reads_hits(loaded.converter):
        try:
            cache = read_run_config(loaded.run_dir).cache_dir
        except CheckpointError:
            cache = ""
        plausible = training_range(loaded.converter, cache) if cache else None
        if plausible is None:
            notes = (f"Samples not checked for plausible hit densities: the run's training windows are not "
                     f"readable{f' at {cache}' if cache else ''}.",)
    drawn = write_samples(loaded.model, loaded.converter, out_dir or loaded.run_dir / SAMPLES_DIR, loaded.name,
                          n=n, temperature=temperature, seed=seed, qpm=qpm, amp=amp, plausible=plausible)
    return dataclasses.replace(drawn, notes=notes + drawn.notes)
