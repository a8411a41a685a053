"""Generation: draw sequences from a trained model and write them as MIDI files; decode windows from their
μ (:func:`reconstruct_examples`), the way between two (:func:`interpolate_examples`), the grid between four
(:func:`grid_examples`), and variations of one (:func:`similar_examples`).

Latent vectors are blended spherically (:func:`slerp`, the reference's Python) or linearly (:func:`lerp`,
magenta.js), as ``mode`` says (one of ``INTERPOLATION_MODES``).

File names follow the reference's generator: ``<name>_sample_<YYYY-mm-dd_HHMMSS>-000-of-005.mid``; when
any of a draw's names is taken (another draw in the same second), the draw's files are all named
``<name>_sample_<YYYY-mm-dd_HHMMSS>-2-000-of-005.mid`` (then -3, ...): no file is ever replaced.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from hvae import arguments
from hvae.device import autocast, resolve_device
from hvae.errors import HvaeError
from hvae.interfaces import Converter, Example
from hvae.midifile import midi_bytes, write_new_from
from hvae.model import MusicVAE
from hvae.music import DEFAULT_QPM  # tempo written to sampled MIDI, quarter notes per minute (the reference's)
from hvae.plausible import ROUNDS, DensityRange, draw_plausible, plausible_range
from hvae.rundir import open_run
from hvae.safefiles import is_plain_name, refuse_links

# Sequences in one interpolation: all are decoded and held, and written as one file and one picture too;
# 200 steps of a small model peak at 418 MB, 1,000 at 917 MB (a bound in minutes and memory, issue 24).
MAX_INTERPOLATION = 256

SLERP_PARALLEL = 1e-6  # below this sin(angle) two latent vectors are parallel: interpolate linearly
SLERP, LINEAR = "slerp", "linear"
INTERPOLATION_MODES = (SLERP, LINEAR)  # how latent vectors are blended: spherically (the reference), linearly (magenta.js)


def sample_names(name: str, n: int) -> Callable[[int, range], list[str]]:
    """The file names of samples ``indices`` of ``n`` samples of run ``name`` drawn now (local time; the
    time of ``SOURCE_DATE_EPOCH`` when set, as reproducible builds expect), by attempt: the reference's
    names first, then with the attempt's number after the time."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    stamp = time.strftime("%Y-%m-%d_%H%M%S", time.localtime(int(epoch) if epoch else None))
    return lambda attempt, indices: [f"{name}_sample_{stamp}{'' if attempt == 1 else f'-{attempt}'}-{i:03d}-of-"
                                     f"{n:03d}.mid" for i in indices]


@dataclasses.dataclass(frozen=True)
class Samples:
    """What a call of :func:`write_samples` wrote, and what to tell the user about it."""

    paths: list[Path]  # the MIDI files, in order
    notes: tuple[str, ...] = ()  # what the plausibility check did


def write_samples(model: MusicVAE, converter: Converter, out_dir: str | os.PathLike, name: str, n: int = 5,
                  temperature: float = 0.5, seed: int | None = None, qpm: float = DEFAULT_QPM,
                  batch_size: int = 256, amp: bool = False, plausible: DensityRange | None = None,
                  written: Callable[[list[Path]], None] | None = None,
                  chords: str | Sequence[str] | None = None) -> Samples:
    """Draw ``n`` sequences at ``temperature`` and write each as MIDI at ``qpm`` into ``out_dir``.

    Files are written batch by batch as they are drawn, all under one attempt's names (see
    :func:`sample_names`), and ``written(paths)`` is called after each batch: memory stays flat however
    many are drawn, and a call interrupted (Ctrl-C, SIGTERM) keeps every batch written before.

    The same ``seed`` (and model) gives the same files; None draws a fresh one. Sequences are drawn
    ``batch_size`` at a time. ``amp`` decodes in mixed precision (bfloat16 on CPU: faster for large
    models, figures in benchmarks/RESULTS.md; the draws differ from float32's by rounding). With ``plausible``, drum
    sequences whose hits per bar lie outside it are drawn again (see :mod:`hvae.plausible`). A model conditioned
    on chords (``cat-mel_2bar_med_chords``) plays every sample over ``chords``, a progression such as
    ``"C G Am F"`` spread evenly over the window (a multi-instrument window: one chord, ``"C"``).
    """
    n, temperature = arguments.count(n, "The number of samples"), arguments.temperature(temperature, greedy=False)
    qpm, batch_size = arguments.tempo(qpm), arguments.count(batch_size, "The batch size")
    if not is_plain_name(name):
        raise HvaeError(f"Sample files are named after the run, and {name[:40]!r} is not a plain file name.")
    controls = _chord_controls(converter, chords)  # (T, C) or None
    given = None if controls is None else torch.from_numpy(controls)
    generator = torch.Generator(device=model.device)
    generator.manual_seed(seed if seed is not None else secrets.randbits(63))
    model.eval()
    names, paths, attempt, redrawn, left = sample_names(name, n), [], 1, 0, 0
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        with autocast(model.device, enabled=amp):
            if plausible is None:
                drawn = model.sample(count, temperature, controls=given, generator=generator).float().cpu().numpy()  # (B, T, D)
            else:
                drawn, again, outside = draw_plausible(model, converter, count, temperature, generator, plausible)
                redrawn, left = redrawn + again, left + outside
        if not np.isfinite(drawn).all():
            raise HvaeError(f"The model gave outputs that are not finite numbers (NaN or infinite): its weights "
                            f"or the temperature are out of range; {len(paths)} samples were written before.")
        files = [midi_bytes(converter.from_tensors(outputs, controls, qpm=qpm)) for outputs in drawn]
        batch = range(start, start + count)
        linked, attempt = write_new_from(out_dir, files, lambda k: names(k, batch), attempt)
        paths += linked
        if written is not None:
            written(linked)
    notes = ()
    if redrawn:
        notes = (f"Drew {redrawn} of the {n} samples again: their drum hits per bar lay outside the training "
                 f"data's 5th to 95th percentile, {plausible.low:.1f} to {plausible.high:.1f} (noise or next to "
                 f"silence); {f'{left} still outside after {ROUNDS} redraws kept' if left else 'all are within it now'}."
                 f" --no-redraw keeps the first draws.",)
    return Samples(paths, notes)


def sample_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike | None = None, n: int = 5,
                      temperature: float = 0.5, seed: int | None = None, qpm: float = DEFAULT_QPM,
                      device: str = "auto", amp: bool = False, redraw: bool = True, name: str | None = None,
                      written: Callable[[list[Path]], None] | None = None,
                      chords: str | Sequence[str] | None = None) -> Samples:
    """:func:`write_samples` from a checkpoint (a run directory, a checkpoint directory or its JSON).

    ``out_dir`` defaults to the run's ``samples`` folder (``runs/<name>/samples`` for a model in the box).
    Files are named after ``name`` (default: the run's name); ``written`` is called with each batch's paths.
    With ``redraw``, a drum model's samples are held to the density range of its run's training windows:
    the one its run directory keeps (``plausible.json``), else the one its data cache gives.
    """
    loaded = open_run(checkpoint, resolve_device(device))
    if out_dir is None:
        refuse_links(loaded.outputs.samples)
    plausible, notes = plausible_range(loaded) if redraw else (None, ())
    drawn = write_samples(loaded.model, loaded.converter, out_dir or loaded.outputs.samples, name or loaded.name,
                          n=n, temperature=temperature, seed=seed, qpm=qpm, amp=amp, plausible=plausible,
                          written=written, chords=chords)
    return dataclasses.replace(drawn, notes=notes + drawn.notes)


def chords_hint(converter: Converter) -> str:
    """What to add where a chord-conditioned model is given no chords: its default progression as the example."""
    return f" (give a chord progression, e.g. --chords '{converter.default_chords}')"


def _chord_controls(converter: Converter, chords: str | Sequence[str] | None) -> np.ndarray | None:
    """The controls ``(T, C)`` that play ``chords`` (None without); refused in one line where the model takes
    controls and no chords are given, or chords are given and the model takes none."""
    if chords is None:
        if converter.control_depth:
            hint = chords_hint(converter) if takes_chords(converter) else ""
            raise HvaeError(f"This model is conditioned on {converter.control_depth} control values per step "
                            f"(converter {converter.name!r}): drawing from it needs those controls{hint}.")
        return None
    return converter.chord_controls(chords)


def takes_chords(converter: Converter) -> bool:
    """Whether ``converter``'s controls are chords, which :meth:`~hvae.interfaces.Converter.chord_controls` gives."""
    return type(converter).chord_controls is not Converter.chord_controls and converter.control_depth > 0


def _batch(model: MusicVAE, examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Inputs ``(B, T, I)``, lengths ``(B,)`` and controls ``(B, T, C)`` (None without) on the model's device."""
    device = model.device
    inputs = torch.from_numpy(np.stack([e.inputs for e in examples])).to(device)
    lengths = torch.tensor([e.length for e in examples], dtype=torch.int64, device=device)
    controls = None
    if examples[0].controls.shape[-1]:
        controls = torch.from_numpy(np.stack([e.controls for e in examples])).to(device)
    return inputs, lengths, controls


def _generator(model: MusicVAE, seed: int | None) -> torch.Generator | None:
    if seed is None:
        return None
    generator = torch.Generator(device=model.device)
    generator.manual_seed(seed)
    return generator


@torch.no_grad()
def reconstruct_examples(model: MusicVAE, examples: Sequence[Example], temperature: float = 0.0,
                         seed: int | None = None) -> np.ndarray:
    """Encode each example to μ and decode it: outputs ``(B, T, D)``."""
    model.eval()
    inputs, lengths, controls = _batch(model, examples)
    return model.reconstruct(inputs, lengths, controls, temperature=temperature,
                             generator=_generator(model, seed)).float().cpu().numpy()


def slerp(p0: torch.Tensor, p1: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical linear interpolation from ``p0`` (t = 0) to ``p1`` (t = 1), vectors ``(Z,)``.

    The angle is taken between the unit vectors, and the magnitudes interpolate with them, as the
    reference's ``interpolate`` does; (nearly) parallel vectors are interpolated linearly.
    """
    cosine = torch.dot(p0 / p0.norm(), p1 / p1.norm()).clamp(-1.0, 1.0)
    omega = torch.arccos(cosine)
    sine = torch.sin(omega)
    if sine.abs() < SLERP_PARALLEL:
        return (1.0 - t) * p0 + t * p1
    return torch.sin((1.0 - t) * omega) / sine * p0 + torch.sin(t * omega) / sine * p1


def lerp(p0: torch.Tensor, p1: torch.Tensor, t: float) -> torch.Tensor:
    """Linear interpolation from ``p0`` (t = 0) to ``p1`` (t = 1), as magenta.js interpolates."""
    return torch.lerp(p0, p1, t)


def blend(p0: torch.Tensor, p1: torch.Tensor, t: float, mode: str = SLERP) -> torch.Tensor:
    """``p0`` (t = 0) to ``p1`` (t = 1) by :func:`slerp` or :func:`lerp`, as ``mode`` says."""
    if mode not in INTERPOLATION_MODES:
        raise HvaeError(f"Interpolation mode {mode!r}: give {' or '.join(INTERPOLATION_MODES)}.")
    return slerp(p0, p1, t) if mode == SLERP else lerp(p0, p1, t)


def _uncontrolled(examples: Sequence[Example], what: str) -> None:
    """Refuse examples of a model conditioned on controls where ``what`` is not given any."""
    if examples[0].controls.shape[-1]:
        raise HvaeError(f"This model is conditioned on controls per step; {what} has no controls to give it.")


@torch.no_grad()
def encode_examples(model: MusicVAE, examples: Sequence[Example]) -> torch.Tensor:
    """The μ ``(B, Z)`` of each example."""
    model.eval()
    return model.encode(*_batch(model, examples))[0]


@torch.no_grad()
def decode_latents(model: MusicVAE, z: torch.Tensor, temperature: float = 0.0, seed: int | None = None,
                   controls: np.ndarray | None = None) -> np.ndarray:
    """Outputs ``(B, T, D)`` decoded free-running from latent vectors ``(B, Z)``, under ``controls``
    ``(T, C)`` where the model takes them."""
    model.eval()
    given = None if controls is None else torch.from_numpy(np.asarray(controls, np.float32))
    return model.decode(z, temperature, given, generator=_generator(model, seed)).float().cpu().numpy()


@torch.no_grad()
def interpolate_examples(model: MusicVAE, a: Example, b: Example, steps: int, temperature: float = 0.5,
                         seed: int | None = None, mode: str = SLERP, controls: np.ndarray | None = None) -> np.ndarray:
    """``steps`` sequences ``(steps, T, D)`` decoded from the way between the μ of ``a`` and ``b`` (slerp or
    linear, as ``mode`` says), t = 0 to 1 evenly, both ends included. A model conditioned on controls takes
    ``controls`` ``(T, C)`` (a chord progression's, :meth:`~hvae.interfaces.Converter.chord_controls`): both
    ends are encoded and every step decoded under them, as magenta.js interpolates under a chord progression."""
    steps = arguments.count(steps, "An interpolation's steps (its two ends included)", low=2, high=MAX_INTERPOLATION)
    if controls is None:
        _uncontrolled([a], "an interpolation between its two ends")
    else:
        a, b = (dataclasses.replace(e, controls=np.asarray(controls, np.float32)) for e in (a, b))
    mu = encode_examples(model, [a, b])
    z = torch.stack([blend(mu[0], mu[1], float(t), mode) for t in np.linspace(0.0, 1.0, steps)])
    return decode_latents(model, z, temperature, seed, controls)


def grid_latents(corners: torch.Tensor, size: int, mode: str = SLERP) -> torch.Tensor:
    """The ``size`` × ``size`` grid ``(size * size, Z)``, row by row, between four corners ``(4, Z)`` laid
    out as magenta.js's ``interpolate`` lays out four inputs::

        | A . . C |
        | . . . . |
        | B . . D |

    Row r blends its left end (A to B, down the left edge) into its right end (C to D): with ``mode``
    "linear" that is magenta.js's bilinear grid; "slerp" takes each step along the sphere instead."""
    if corners.shape[0] != 4:
        raise HvaeError(f"A grid has 4 corners, got {corners.shape[0]}.")
    size = arguments.count(size, "A grid's rows and columns (its corners included)", low=2)
    a, b, c, d = corners
    ts = [float(t) for t in np.linspace(0.0, 1.0, size)]
    rows = [(blend(a, b, r, mode), blend(c, d, r, mode)) for r in ts]
    return torch.stack([blend(left, right, t, mode) for left, right in rows for t in ts])


@torch.no_grad()
def grid_examples(model: MusicVAE, corners: Sequence[Example], size: int, temperature: float = 0.5,
                  seed: int | None = None, mode: str = SLERP) -> np.ndarray:
    """``size * size`` sequences ``(size * size, T, D)`` decoded from :func:`grid_latents` between the μ of
    four examples (A top left, B bottom left, C top right, D bottom right), row by row."""
    if len(corners) != 4:
        raise HvaeError(f"A grid has 4 corners, got {len(corners)}.")
    _uncontrolled(corners, "a grid between its corners")
    return decode_latents(model, grid_latents(encode_examples(model, corners), size, mode), temperature, seed)


def similar_latents(mu: torch.Tensor, n: int, similarity: float, mode: str = SLERP,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` latent vectors ``(n, Z)`` near ``mu`` ``(Z,)``: each a draw from the prior N(0, I) blended
    towards ``mu`` by ``similarity`` (1: ``mu`` itself; 0: the draw). "linear" blends as magenta.js's
    ``similar`` does, ``similarity * mu + (1 - similarity) * draw``; "slerp" along the sphere."""
    similarity = arguments.number(similarity, "The similarity (0: a prior sample, 1: the input)", low=0.0, high=1.0)
    n = arguments.count(n, "The number of variations")
    draws = torch.randn((n, mu.shape[-1]), generator=generator, device=mu.device, dtype=mu.dtype)
    return torch.stack([blend(draw, mu, similarity, mode) for draw in draws])


@torch.no_grad()
def similar_examples(model: MusicVAE, example: Example, n: int, similarity: float, temperature: float = 0.5,
                     seed: int | None = None, mode: str = SLERP) -> np.ndarray:
    """``n`` variations ``(n, T, D)`` of ``example``, decoded from :func:`similar_latents` around its μ;
    the same ``seed`` gives the same draws and decodings."""
    _uncontrolled([example], "a variation")
    generator = torch.Generator(device=model.device)
    generator.manual_seed(seed if seed is not None else secrets.randbits(63))
    z = similar_latents(encode_examples(model, [example])[0], n, similarity, mode, generator)
    return model.decode(z, temperature, generator=generator).float().cpu().numpy()
