"""Plausible drum samples: a hit density per bar within what the training data has.

A prior sample of a small, briefly trained drum model is now and then noise: every drum on almost every
step, or next to nothing. Its density, the drum hits (step, class) per bar, then lies outside the 5th to
95th percentile of the training windows' densities. :func:`draw_plausible` draws such samples again
(each redraw a new latent vector) and says how many it redrew; the figures for the demo are in the README.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from hvae.data import CacheError, load_split
from hvae.errors import CheckpointError, HvaeError
from hvae.interfaces import Converter
from hvae.model import MusicVAE
from hvae.rundir import PLAUSIBLE_FILE, LoadedRun

PERCENTILES = (5.0, 95.0)  # the range of the training windows' densities a sample must lie in
ROUNDS = 10  # redraws at most, for the samples still outside the range
CHUNK = 1024  # windows counted at a time


@dataclasses.dataclass(frozen=True)
class DensityRange:
    """Hits per bar from ``low`` to ``high`` (both included)."""

    low: float
    high: float

    def holds(self, densities: np.ndarray) -> np.ndarray:
        return (densities >= self.low) & (densities <= self.high)

    @classmethod
    def of(cls, densities: np.ndarray) -> "DensityRange":
        """The 5th to 95th percentile of ``densities``."""
        low, high = np.percentile(densities, PERCENTILES)
        return cls(float(low), float(high))


def hits_per_bar(converter: Converter, outputs: np.ndarray) -> np.ndarray | None:
    """Drum hits per bar of each sequence of ``outputs`` ``(B, T, D)``, ``(B,)``; None for a converter
    without drum hits."""
    steps_per_bar = converter.options.steps_per_quarter * converter.options.quarters_per_bar
    counts = []
    for start in range(0, max(len(outputs), 1), CHUNK):  # a chunk at a time: one-hot windows are large
        hits = converter.drum_hits(torch.from_numpy(np.asarray(outputs[start:start + CHUNK], dtype=np.float32)))
        if hits is None:
            return None
        counts.append(hits.sum(dim=(1, 2)).numpy() / (hits.shape[1] / steps_per_bar))
    return np.concatenate(counts)


def reads_hits(converter: Converter) -> bool:
    """Whether ``converter``'s outputs hold drum hits to count."""
    return hits_per_bar(converter, np.zeros((0, 1, converter.output_depth), np.float32)) is not None


def density_range(converter: Converter, outputs: np.ndarray) -> DensityRange | None:
    """The 5th to 95th percentile of the densities of windows ``outputs`` ``(N, T, D)``; None without drums
    or windows."""
    densities = hits_per_bar(converter, outputs) if len(outputs) else None
    return None if densities is None else DensityRange.of(densities)


def training_range(converter: Converter, cache_dir: str | os.PathLike) -> DensityRange | None:
    """:func:`density_range` of the training windows in ``cache_dir``; None where they cannot be read."""
    try:
        windows = load_split(cache_dir, "train", verify=False)
    except (CacheError, HvaeError, OSError, KeyError):
        return None
    return density_range(converter, windows.outputs)


def draw_plausible(model: MusicVAE, converter: Converter, n: int, temperature: float, generator: torch.Generator,
                   plausible: DensityRange, rounds: int = ROUNDS) -> tuple[np.ndarray, int, int]:
    """``n`` prior samples ``(n, T, D)``, those outside ``plausible`` drawn again up to ``rounds`` times.

    Returns the samples, how many were redrawn, and how many are still outside the range.
    """
    drawn = model.sample(n, temperature, generator=generator).float().cpu().numpy()
    outside = np.flatnonzero(~plausible.holds(hits_per_bar(converter, drawn)))
    redrawn = len(outside)
    for _ in range(rounds):
        if not len(outside):
            break
        again = model.sample(len(outside), temperature, generator=generator).float().cpu().numpy()
        drawn[outside] = again
        outside = outside[~plausible.holds(hits_per_bar(converter, again))]
    return drawn, redrawn, len(outside)


def plausible_range(loaded: LoadedRun) -> tuple[DensityRange | None, tuple[str, ...]]:
    """The density range a drum model's samples are held to (None for other models), and a note when a
    drum model has none: the one its run directory keeps (``plausible.json``), else its data cache's.
    ``hvae sample``, ``hvae run``, ``hvae report`` and ``hvae evaluate`` use it alike."""
    kept = loaded.dir.read_plausible()
    if kept is not None:
        return DensityRange(*kept), ()
    if not reads_hits(loaded.converter):
        return None, ()
    try:
        cache = loaded.dir.read_config().cache_dir  # (the run's config.json)
    except CheckpointError:
        cache = ""
    found = training_range(loaded.converter, cache) if cache else None
    if found is not None:
        return found, ()
    return None, (f"Samples not checked for plausible hit densities: the run's training windows are not "
                  f"readable{f' at {cache}' if cache else ''}, and it keeps no {PLAUSIBLE_FILE} (train or "
                  f"fine-tune it with hvae train to write one; --no-redraw keeps every draw without this "
                  f"note).",)
