"""Windows over step sequences: slide, drop repeats, sample — as the reference's one-hot converters do.

A track is a 1-D array with one integer event code per step; a window is a run of
consecutive steps of it. The helpers keep the order windows first appear in, so a
converter's output is deterministic where the reference's (a Python set) is not.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import numpy as np

from hvae.errors import ConversionError
from hvae.interfaces import ConverterOptions
from hvae.music import MidiSource, NoteSequence, read_midi, split_on_time_changes

T = TypeVar("T")


def slide(track: np.ndarray, size: int, hop: int) -> np.ndarray:
    """Every window of ``size`` steps starting at 0, hop, 2·hop, … that fits in ``track``.

    ``track`` (L,) → windows (W, size), views into ``track``; W = 0 when L < size.
    """
    if len(track) < size:
        return np.empty((0, size), dtype=track.dtype)
    return np.lib.stride_tricks.sliding_window_view(track, size)[::hop]


def first_occurrences(windows: np.ndarray) -> np.ndarray:
    """``windows`` (W, T) without repeats, each kept where it first appears: (W', T)."""
    if len(windows) < 2:
        return windows
    _, first = np.unique(windows, axis=0, return_index=True)
    return windows[np.sort(first)]


def distinct_tracks(tracks: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Tracks of any lengths (each (L,)) without repeats, each kept where it first appears."""
    seen: set[tuple[int, bytes]] = set()
    kept = []
    for track in tracks:
        key = (len(track), track.tobytes())
        if key not in seen:
            seen.add(key)
            kept.append(track)
    return kept


def sample(items: Sequence[T], limit: int | None, rng: np.random.Generator) -> list[T]:
    """At most ``limit`` of ``items``, drawn without replacement, in their original order.

    ``limit`` None or 0 keeps everything, as the reference's ``max_tensors_per_notesequence``.
    """
    if not limit or len(items) <= limit:
        return list(items)
    chosen = np.sort(rng.choice(len(items), size=limit, replace=False))
    return [items[i] for i in chosen]


def windows_of_pieces(pieces: Sequence[T], piece_windows: Callable[[T], list[np.ndarray]], limit: int | None,
                      seed: int | None) -> list[np.ndarray]:
    """The windows of a file's pieces (stretches of constant tempo and meter), in order: at most ``limit``
    per piece, then at most ``limit`` in all, drawn with ``seed`` (the reference's
    ``max_tensors_per_notesequence``). ``piece_windows`` raises :class:`ConversionError` for a piece that
    gives none; when no piece gives any, the pieces' reasons are raised, each once."""
    rng = np.random.default_rng(seed)
    windows: list[np.ndarray] = []
    reasons: list[str] = []
    for piece in pieces:
        try:
            windows.extend(sample(piece_windows(piece), limit, rng))
        except ConversionError as exc:
            reasons.append(str(exc))
    windows = sample(windows, limit, rng)
    if not windows:
        raise ConversionError("; ".join(dict.fromkeys(reasons)) or "no notes")
    return windows


def windows_of_file(source: MidiSource, piece_windows: Callable[[NoteSequence], list[np.ndarray]],
                    options: ConverterOptions) -> list[np.ndarray]:
    """The windows of a MIDI file cut where its tempo or meter changes, as :func:`windows_of_pieces`
    with the converter's ``max_tensors_per_notesequence`` and ``seed``."""
    return windows_of_pieces(split_on_time_changes(read_midi(source)), piece_windows,
                             options.max_tensors_per_notesequence, getattr(options, "seed", None))
