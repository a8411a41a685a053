"""Sample quality: how alike a model's prior samples and real windows are, feature by feature.

Each window (a sample or a real one) is measured by a few musical features (hits per bar, kick on
beat one, pitch range, ...; :data:`DRUM_FEATURES`, :data:`GROOVE_FEATURES`, :data:`MELODY_FEATURES`).
Two sets of windows are then compared per feature by the **overlapping area** of the feature's two
distributions, each smoothed with Gaussian kernels (one bandwidth for both, Scott's rule on the two sets
together): 1.0 when the samples' values are spread as the real windows' are, 0 when they have nothing in
common. The mean over the features is the summary figure. This is the measure MGEval (Yang & Lerch 2020,
"On the evaluation of generative models in music") and GrooveEvaluator (Haki et al.) report, taken on the
features' own distributions. (They take it between distance distributions: the distances among real
windows against those from each sample to every real window. That form cannot tell a narrow set of samples
placed in the middle of a broad real distribution from real music: on 200 4-bar windows of the bundled
GMD subset, a random drum combination on every step scores 0.67 that way; on the features themselves it
scores 0.33, and 200 other real windows of the subset score 0.92.)

Two finite sets of real windows drawn from one data set do not reach 1.0 either; the same figure
for real windows against real windows of another split, at the same N, is the ceiling to read a
model's figure against (``hvae evaluate`` prints it beside the model's; the README quotes it).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np
import torch

from hvae.interfaces import Converter

GRID = 512  # points the two densities are compared on
BANDWIDTH_FLOOR = 0.01  # of the values' range: a kernel never narrower (a feature that is nearly constant)


@dataclasses.dataclass(frozen=True)
class Feature:
    """One per-window measure: its name, what it is, and its unit ('' for a share or a count)."""

    name: str
    description: str
    unit: str = ""


DRUM_FEATURES = (
    Feature("hits_per_bar", "drum hits (step, drum) per bar"),
    Feature("step_share", "share of 16th steps with a hit"),
    Feature("drums_used", "drum classes played"),
    Feature("kick_on_one", "share of bars with a kick on beat one"),
    Feature("snare_backbeat", "share of bars with a snare on beat 2 or 4"),
    Feature("hats_on_eighths", "share of eighth-note positions with a hi-hat or ride"),
    Feature("off_eighths", "share of onsets off the eighth-note grid"),
    Feature("repetition", "bar n against bar n+2: shared hits over all hits (n+1 in 2-bar windows)"),
)
GROOVE_FEATURES = (
    Feature("velocity_spread", "standard deviation of the hits' velocities", "MIDI velocity"),
    Feature("microtiming", "mean |offset| of the hits from the grid", "ms"),
)
MELODY_FEATURES = (
    Feature("pitch_count", "distinct pitches"),
    Feature("pitch_range", "highest minus lowest pitch", "semitones"),
    Feature("pitch_class_entropy", "entropy of the notes' pitch classes", "bits"),
    Feature("mean_interval", "mean |interval| between successive notes", "semitones"),
    Feature("mean_ioi", "mean time between successive onsets", "steps"),
    Feature("note_length", "mean note length", "steps"),
    Feature("sounding_share", "share of steps with a note sounding"),
)


def features_of(converter: Converter) -> tuple[Feature, ...]:
    """The features measured for ``converter``'s windows: drums (and groove's velocity and timing where its
    outputs hold them), else the melody features of the notes it writes."""
    if reads_hits(converter):
        return DRUM_FEATURES + (GROOVE_FEATURES if converter.output_kind == "groove" else ())
    return MELODY_FEATURES


def reads_hits(converter: Converter) -> bool:
    """Whether ``converter``'s outputs hold drum hits (:meth:`~hvae.interfaces.Converter.drum_hits`)."""
    return converter.drum_hits(torch.zeros((0, 1, converter.output_depth))) is not None


def measure(converter: Converter, outputs: np.ndarray, step_ms: float) -> dict[str, np.ndarray]:
    """Every feature of each window of ``outputs`` ``(B, T, D)`` (a converter's output tensors): name ->
    ``(B,)`` float64, NaN where a window has none (no onset to place, fewer than two notes). ``step_ms``:
    one grid step in ms (microtiming)."""
    outputs = np.asarray(outputs, dtype=np.float32)
    if reads_hits(converter):
        return _drum_features(converter, outputs, step_ms)
    return _melody_features(converter, outputs)


def steps_per_bar(converter: Converter) -> int:
    """Grid steps in one of ``converter``'s bars."""
    return converter.options.steps_per_quarter * converter.options.quarters_per_bar


def _lanes(converter: Converter, *names: str) -> list[int]:
    """Indices of the drum classes whose names contain any of ``names`` (kick, snare, hi-hat, ride)."""
    return [k for k, name in enumerate(converter.class_names) if any(n in name.lower() for n in names)]


def _drum_features(converter: Converter, outputs: np.ndarray, step_ms: float) -> dict[str, np.ndarray]:
    hits = converter.drum_hits(torch.from_numpy(outputs)).numpy() > 0.5  # (B, T, N)
    b, t, n = hits.shape
    per_bar = steps_per_bar(converter)
    bars = max(t // per_bar, 1)
    barred = hits[:, :bars * per_bar].reshape(b, bars, per_bar, n)  # (B, bars, steps, N)
    beat = converter.options.steps_per_quarter
    eighth = max(beat // 2, 1)
    total = hits.sum(axis=(1, 2)).astype(np.float64)
    onsets = hits.any(axis=2)  # (B, T): a step with a hit
    off_grid = np.arange(t) % eighth != 0
    kick, snare = _lanes(converter, "kick", "bass drum"), _lanes(converter, "snare")
    hats = _lanes(converter, "hi-hat", "hihat", "ride")
    found = {
        "hits_per_bar": total / bars,
        "step_share": onsets.mean(axis=1),
        "drums_used": hits.any(axis=1).sum(axis=1).astype(np.float64),
        "kick_on_one": barred[:, :, 0][..., kick].any(axis=-1).mean(axis=1) if kick else np.full(b, np.nan),
        "snare_backbeat": (barred[:, :, [beat, 3 * beat]][..., snare].any(axis=(-2, -1)).mean(axis=1)
                           if snare and per_bar >= 4 * beat else np.full(b, np.nan)),
        "hats_on_eighths": (hits[:, ::eighth][..., hats].any(axis=-1).mean(axis=1) if hats
                            else np.full(b, np.nan)),
        "off_eighths": _ratio((hits & off_grid[None, :, None]).sum(axis=(1, 2)), total),
        "repetition": _repetition(barred),
    }
    if converter.output_kind == "groove":
        velocities = outputs[..., n:2 * n] * 127.0
        offsets = np.abs(outputs[..., 2 * n:3 * n]) * step_ms / 2.0  # an offset of 1 is half a step
        found["velocity_spread"] = np.array([velocities[k][hits[k]].std() if hits[k].sum() > 1 else np.nan
                                             for k in range(b)])
        found["microtiming"] = _ratio((offsets * hits).sum(axis=(1, 2)), total)
    return found


def _repetition(barred: np.ndarray) -> np.ndarray:
    """Per window: hits shared by bar n and bar n + lag over the hits of both (1 where both are empty),
    averaged over n; lag 2 where a window has three bars or more, else 1; NaN for one bar."""
    b, bars = barred.shape[:2]
    if bars < 2:
        return np.full(b, np.nan)
    lag = 2 if bars >= 3 else 1
    first, second = barred[:, :-lag], barred[:, lag:]
    shared = (first & second).sum(axis=(2, 3)).astype(np.float64)
    either = (first | second).sum(axis=(2, 3)).astype(np.float64)
    return np.where(either > 0, shared / np.maximum(either, 1), 1.0).mean(axis=1)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    return np.where(denominator > 0, numerator / np.maximum(denominator, 1e-12), np.nan)


def _melody_features(converter: Converter, outputs: np.ndarray) -> dict[str, np.ndarray]:
    """The melody features of the notes ``converter.from_tensors`` writes for each window."""
    rows = {feature.name: [] for feature in MELODY_FEATURES}
    steps_per_quarter = converter.options.steps_per_quarter
    for window in outputs:
        midi = converter.from_tensors(window)
        tick = midi.ticks_per_beat / steps_per_quarter  # ticks a step
        notes = sorted((n for inst in midi.instruments for n in inst.notes), key=lambda n: (n.start, n.pitch))
        steps = window.shape[0]
        pitches = np.array([n.pitch for n in notes], dtype=np.float64)
        starts = np.array([n.start / tick for n in notes])
        lengths = np.array([(n.end - n.start) / tick for n in notes])
        sounding = np.zeros(steps, dtype=bool)
        for start, length in zip(starts, lengths):
            sounding[int(round(start)):int(round(start + length))] = True
        classes = np.bincount(pitches.astype(np.int64) % 12, minlength=12) / max(len(pitches), 1)
        nonzero = classes[classes > 0]
        several = len(notes) > 1
        rows["pitch_count"].append(float(len(np.unique(pitches))))
        rows["pitch_range"].append(float(np.ptp(pitches)) if len(notes) else np.nan)
        rows["pitch_class_entropy"].append(float(-(nonzero * np.log2(nonzero)).sum()) if len(notes) else np.nan)
        rows["mean_interval"].append(float(np.abs(np.diff(pitches)).mean()) if several else np.nan)
        rows["mean_ioi"].append(float(np.diff(starts).mean()) if several else np.nan)
        rows["note_length"].append(float(lengths.mean()) if len(notes) else np.nan)
        rows["sounding_share"].append(float(sounding.mean()))
    return {name: np.array(values, dtype=np.float64) for name, values in rows.items()}


def _bandwidth(values: np.ndarray, floor: float) -> float:
    """Scott's rule for a Gaussian kernel on ``values``, at least ``floor``."""
    return max(values.std(ddof=1) * len(values) ** (-1 / 5) if len(values) > 1 else 0.0, floor)


def _density(values: np.ndarray, grid: np.ndarray, bandwidth: float) -> np.ndarray:
    """A Gaussian kernel density of ``values`` on ``grid``."""
    density = np.zeros_like(grid)
    for start in range(0, len(values), 4096):
        chunk = values[start:start + 4096]
        density += np.exp(-0.5 * ((grid[:, None] - chunk[None, :]) / bandwidth) ** 2).sum(axis=1)
    return density / (len(values) * bandwidth * math.sqrt(2 * math.pi))


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """The overlapping area of the kernel densities of two sets of values (0 to 1)."""
    if not len(a) or not len(b):
        return math.nan
    low, high = min(a.min(), b.min()), max(a.max(), b.max())
    if high - low <= 0:  # every value the same: the two densities are one
        return 1.0
    # One kernel for both, from the two sets together: two samples of one distribution then get the same
    # smoothing, so a difference in the overlap is a difference in where the values lie. (A kernel per set,
    # as scipy's gaussian_kde gives, makes a feature with a few distinct values, such as a share of 4 bars,
    # look unlike itself.)
    bandwidth = _bandwidth(np.concatenate([a, b]), BANDWIDTH_FLOOR * (high - low))
    grid = np.linspace(low - 4 * bandwidth, high + 4 * bandwidth, GRID)
    return float(min(np.trapezoid(np.minimum(_density(a, grid, bandwidth), _density(b, grid, bandwidth)), grid),
                     1.0))


def overlaps(real: Mapping[str, np.ndarray], generated: Mapping[str, np.ndarray],
             features: Sequence[Feature]) -> dict[str, float]:
    """Per feature, the overlapping area of the real and the generated windows' values, and ``"mean"`` over
    the features that have one (NaN where a set has fewer than two windows with the feature)."""
    found: dict[str, float] = {}
    for feature in features:
        a, b = real[feature.name], generated[feature.name]
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        found[feature.name] = overlap(a, b) if len(a) > 1 and len(b) > 1 else math.nan
    defined = [v for v in found.values() if not math.isnan(v)]
    found["mean"] = float(np.mean(defined)) if defined else math.nan
    return found


def pick(count: int, n: int, seed: int) -> np.ndarray:
    """``n`` of ``count`` rows (all when there are no more), seeded and sorted."""
    rows = np.random.Generator(np.random.PCG64([seed, count])).permutation(count)[:n]
    return np.sort(rows)

