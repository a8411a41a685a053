"""The drums representation: which drum classes are hit on each grid step.

A file is cut where its tempo or meter changes and each piece is quantised to
``steps_per_quarter`` steps; only bars of ``steps_per_quarter * quarters_per_bar`` steps
are accepted. Drum-channel notes are folded into drum classes (nine by default: kick,
snare, closed and open hi-hat, low, mid and high tom, crash, ride) and a step holds the
set of classes with an onset on it, coded as a bit mask (bit c = class c). The hits are
grouped into tracks, a track ending where ``gap_bars`` bars pass without a hit; each
track starts on the bar of its first hit, is padded with silence to a whole bar and cut
to ``max_bars`` bars. Windows of ``slice_bars`` bars are taken every bar, and a window
seen before in the same piece is dropped.

Encodings of a step, for C classes:

- one-hot: the bit mask as a class index, depth 2**C (512 for nine classes);
- roll: the C bits, plus (inputs only) a final bit set when no class is hit.

``from_tensors`` writes the first pitch of each hit class as a one-step drum note of
velocity 80.

Where hvae departs from the reference, on purpose: windows keep the order they first
appear in (the reference's order is arbitrary), sampling under
``max_tensors_per_notesequence`` is seeded, and ``from_tensors`` writes a time signature
of ``quarters_per_bar``/4 so the MIDI reads back with the same bars.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import miditoolkit
import numpy as np
import torch

from hvae.arguments import tempo
from hvae.errors import ConversionError, HvaeError
from hvae.interfaces import Converter, ConverterOptions, Example
from hvae.music import DEFAULT_QPM, MidiSource, Note, NoteSequence, quantize, read_midi, split_on_time_changes, to_midi
from hvae_converters.drum_pitches import class_names, pitch_classes
from hvae_converters.windows import distinct_tracks, first_occurrences, slide, windows_of_pieces

OUTPUT_VELOCITY = 80  # MIDI velocity of every note from_tensors writes
MAX_ONEHOT_CLASSES = 12  # one-hot codes need 2**classes entries a step; beyond this use rolls
MIDI_PITCHES = 128


@dataclasses.dataclass(frozen=True)
class DrumsOptions(ConverterOptions):
    """Options of the drums converter, by the reference's names.

    The defaults are the reference's ``cat-drums_2bar_small``, except that every window is
    kept. Inherited: ``steps_per_quarter`` (4), ``quarters_per_bar`` (4; only bars of exactly
    ``steps_per_quarter * quarters_per_bar`` steps are accepted), ``max_tensors_per_notesequence``
    (None or 0: every window; otherwise at most this many per file, drawn at random).
    """

    max_bars: int | None = 100  # tracks are cut to this many bars before windowing; None: no cut
    slice_bars: int | None = 2  # window length in bars, one window every bar; None: each track is one example
    gap_bars: float | None = 1.0  # this many bars without a hit end a track; None or 0: tracks never end
    pitch_classes: str = "reduced"  # drum classes: "reduced" (9), "roland" (9) or "full" (61, rolls only)
    add_end_token: bool = False  # append one step holding an end class (one-hot) or end bit (roll)
    pad_to_total_time: bool = False  # pad each track with silence from step 0 to the file's last step
    roll_input: bool = True  # inputs as class bits plus a no-hit bit; False: one-hot like the outputs
    roll_output: bool = False  # outputs as class bits ("multihot"); False: one-hot over class combinations
    presplit_on_time_changes: bool = True  # cut the file where tempo or meter changes, convert each piece
    seed: int | None = 0  # seed of the sampling under max_tensors_per_notesequence; None: fresh each call


class DrumsConverter(Converter):
    """MIDI drums <-> per-step drum-class combinations, as the reference's DrumsConverter."""

    name = "drums"
    Options = DrumsOptions

    def __init__(self, options: DrumsOptions | None = None, **overrides: Any):
        super().__init__(options, **overrides)
        o = self.options
        for field in ("steps_per_quarter", "quarters_per_bar", "max_bars", "slice_bars"):
            value = getattr(o, field)
            if value is not None and value < 1:
                raise HvaeError(f"Option {field} of converter 'drums' must be at least 1, not {value}.")
        if o.slice_bars is None and o.max_bars is None:
            raise HvaeError("Converter 'drums' needs slice_bars or max_bars to bound the number of steps.")
        self.classes = pitch_classes(o.pitch_classes)
        if len(self.classes) > MAX_ONEHOT_CLASSES and not (o.roll_input and o.roll_output):
            raise HvaeError(f"pitch_classes={o.pitch_classes!r} has {len(self.classes)} classes: a one-hot over "
                            f"2**{len(self.classes)} combinations is too large; set roll_input and roll_output.")
        self._class_of_pitch = np.full(MIDI_PITCHES, -1, dtype=np.int64)
        for index, pitches in enumerate(self.classes):
            self._class_of_pitch[list(pitches)] = index

    @property
    def output_kind(self) -> str:
        return "multihot" if self.options.roll_output else "onehot"

    @property
    def steps_per_bar(self) -> int:
        return self.options.steps_per_quarter * self.options.quarters_per_bar

    @property
    def input_depth(self) -> int:
        o = self.options
        return (len(self.classes) + 1 if o.roll_input else 2 ** len(self.classes)) + o.add_end_token

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the drum lanes, in class order (for piano rolls and reports)."""
        return class_names(self.classes)

    @property
    def output_depth(self) -> int:
        o = self.options
        return (len(self.classes) if o.roll_output else 2 ** len(self.classes)) + o.add_end_token

    def drum_hits(self, outputs: torch.Tensor) -> torch.Tensor | None:
        """The hits ``(B, T, C)`` of outputs ``(B, T, D)``: a roll's C class bits above 0.5, or the bits of
        each step's most likely one-hot combination (none on the end token)."""
        n = len(self.classes)
        if self.options.roll_output:
            return (outputs[..., :n] > 0.5).float()
        labels = outputs.argmax(dim=-1)  # (B, T)
        bits = (labels.unsqueeze(-1) >> torch.arange(n, device=labels.device)) & 1
        return (bits * (labels < 2 ** n).unsqueeze(-1)).float()

    @property
    def steps(self) -> int:
        """Steps of a window (one more with the end token); with ``slice_bars=None``, of the longest track."""
        o = self.options
        bars = o.slice_bars if o.slice_bars is not None else o.max_bars
        return bars * self.steps_per_bar + o.add_end_token

    def convert(self, source: MidiSource) -> list[Example]:
        o = self.options
        ns = read_midi(source)
        pieces = split_on_time_changes(ns) if o.presplit_on_time_changes else [ns]
        windows = windows_of_pieces(pieces, self.piece_windows, o.max_tensors_per_notesequence, o.seed)
        self.check_window_memory(len(windows) if o.slice_bars is not None else
                                 sum(len(w) for w in windows) // max(self.steps, 1))
        if o.slice_bars is not None:
            return self._examples(np.stack(windows))
        return [example for window in windows for example in self._examples(window[None])]

    def tile(self, source: MidiSource, bars: int) -> list[Example]:
        """The first ``bars`` bars of ``source`` (quantised at its first tempo, uncut) as consecutive windows
        of ``slice_bars`` bars, the last padded with silent steps; hits on step ``bars`` bars and later
        left out."""
        o = self.options
        if o.slice_bars is None or o.add_end_token:
            raise HvaeError("the drums converter cuts a file into consecutive windows only with slice_bars set "
                            "and add_end_token off")
        onsets, masks = self._hits(self._quantized(read_midi(source)))
        kept, window = bars * self.steps_per_bar, o.slice_bars * self.steps_per_bar
        grid = np.zeros(-(-kept // window) * window, dtype=np.int64)  # bit masks, whole windows
        grid[onsets[onsets < kept]] = masks[onsets < kept]
        return self._examples(grid.reshape(-1, window))

    def piece_windows(self, piece: NoteSequence) -> list[np.ndarray]:
        """The distinct windows of one piece of constant tempo and meter: bit masks, each (T,)."""
        o = self.options
        q = self._quantized(piece)
        onsets, masks = self._hits(q)
        tracks = drum_tracks(onsets, masks, self.steps_per_bar,
                             gap_steps=o.gap_bars * self.steps_per_bar if o.gap_bars else math.inf,
                             max_steps=o.max_bars * self.steps_per_bar if o.max_bars else None)
        if o.pad_to_total_time:
            tracks = [(0, _fit(np.concatenate([np.zeros(start, np.int64), track]), q.total_steps))
                      for start, track in tracks]
        if o.slice_bars is None:
            return distinct_tracks([track for _, track in tracks])
        size = o.slice_bars * self.steps_per_bar
        windows = np.concatenate([slide(track, size, self.steps_per_bar) for _, track in tracks])
        if not len(windows):
            longest = max(len(track) for _, track in tracks) // self.steps_per_bar
            raise ConversionError(f"drums shorter than {o.slice_bars} bars "
                                  f"(longest track: {longest} bar{'' if longest == 1 else 's'})")
        return list(first_occurrences(windows))

    def _quantized(self, piece: NoteSequence) -> NoteSequence:
        """``piece`` quantised to ``steps_per_quarter``; refused when its bars are not this converter's."""
        q = quantize(piece, self.options.steps_per_quarter)
        if q.steps_per_bar != self.steps_per_bar:
            raise ConversionError(f"{q.numerator}/{q.denominator} time: {q.steps_per_bar:g} steps per bar, "
                                  f"{self.steps_per_bar} needed")
        return q

    def _hits(self, q: NoteSequence) -> tuple[np.ndarray, np.ndarray]:
        """Steps with a drum onset (ascending, (H,)) and the bit mask of the classes hit on each (H,)."""
        drums = [(n.start_step, n.pitch) for n in q.notes if n.is_drum and n.velocity > 0]
        if not drums:
            raise ConversionError("no drum notes on MIDI channel 10")
        steps, pitches = np.array(drums, dtype=np.int64).T
        in_range = (pitches >= 0) & (pitches < MIDI_PITCHES)
        classes = np.full(len(pitches), -1, dtype=np.int64)
        classes[in_range] = self._class_of_pitch[pitches[in_range]]
        steps, classes = steps[classes >= 0], classes[classes >= 0]
        if not len(steps):
            raise ConversionError(f"no drum notes in the {self.options.pitch_classes} pitch classes")
        onsets, which = np.unique(steps, return_inverse=True)
        masks = np.zeros(len(onsets), dtype=np.int64)
        np.bitwise_or.at(masks, which, np.left_shift(1, classes))
        return onsets, masks

    def _examples(self, windows: np.ndarray) -> list[Example]:
        """Examples from bit-mask windows (W, T): inputs and outputs of T (+1 with the end token) steps."""
        o = self.options
        count, length = windows.shape
        n = len(self.classes)
        roll = ((windows[..., None] >> np.arange(n)) & 1).astype(np.float32)  # (W, T, C)
        labels = windows
        if o.add_end_token:
            roll = np.concatenate([roll, np.zeros((count, length, 1), np.float32)], axis=-1)
            end_bit = np.zeros((count, 1, n + 1), np.float32)
            end_bit[..., n] = 1.0
            roll = np.concatenate([roll, end_bit], axis=1)  # (W, T + 1, C + 1)
            labels = np.concatenate([labels, np.full((count, 1), 2 ** n, np.int64)], axis=1)
        onehot = None
        if not (o.roll_input and o.roll_output):
            onehot = np.zeros(labels.shape + (2 ** n + o.add_end_token,), np.float32)
            np.put_along_axis(onehot, labels[..., None], 1.0, axis=-1)
        if o.roll_input:
            none_bit = (roll.max(axis=-1, keepdims=True) == 0).astype(np.float32)
            inputs = np.concatenate([roll, none_bit], axis=-1)
        else:
            inputs = onehot
        outputs = roll if o.roll_output else onehot
        controls = np.zeros((labels.shape[1], 0), np.float32)
        return [Example(inputs[i], outputs[i], controls, labels.shape[1]) for i in range(count)]

    def from_tensors(self, outputs: np.ndarray, controls: np.ndarray | None = None,
                     qpm: float = DEFAULT_QPM) -> miditoolkit.MidiFile:
        """One example's outputs ``(steps, output_depth)`` as drum MIDI at ``qpm``.

        One-hot outputs are read by their largest entry on each step (so scores or
        probabilities work too); roll outputs by their non-zero entries. Decoding stops at
        the first end token. Each hit class gives its first pitch, velocity 80, one step long; the file lasts the window's steps.
        """
        qpm = tempo(qpm)
        o = self.options
        outputs = np.asarray(outputs)
        if outputs.ndim != 2 or outputs.shape[1] != self.output_depth:
            raise HvaeError(f"Converter 'drums' decodes outputs of shape (steps, {self.output_depth}), "
                            f"not {outputs.shape}.")
        n = len(self.classes)
        if o.roll_output:
            hits = outputs != 0
            if o.add_end_token:
                ends = np.flatnonzero(hits[:, n])
                hits = hits[:ends[0] if len(ends) else len(hits), :n]
        else:
            labels = outputs.argmax(axis=-1)
            if o.add_end_token:
                ends = np.flatnonzero(labels == 2 ** n)
                labels = labels[:ends[0] if len(ends) else len(labels)]
            hits = ((labels[:, None] >> np.arange(n)) & 1).astype(bool)
        seconds_per_step = 60.0 / qpm / o.steps_per_quarter
        notes = [Note(pitch=self.classes[c][0], velocity=OUTPUT_VELOCITY, start=step * seconds_per_step,
                      end=(step + 1) * seconds_per_step, is_drum=True)
                 for step, c in zip(*np.nonzero(hits))]
        return to_midi(notes, qpm=qpm, time_signature=(o.quarters_per_bar, 4), quarters=len(hits) / o.steps_per_quarter)


def drum_tracks(onsets: np.ndarray, masks: np.ndarray, steps_per_bar: int, gap_steps: float,
                max_steps: int | None) -> list[tuple[int, np.ndarray]]:
    """Group hits into tracks as the reference's drum-track extraction does (pad to bar ends, min 1 bar).

    ``onsets`` (H,) ascending steps with a hit and ``masks`` (H,) their class bit masks.
    A track starts on the bar of its first hit (bars counted from where the search for it
    began) and ends before the first hit that follows ``gap_steps`` or more silent steps;
    it is padded with silence to a whole bar, and the next track is searched from there.
    A track longer than ``max_steps`` (a whole number of bars) is cut to it. Returns
    ``(first step, bit masks (L,))`` per track, L a multiple of ``steps_per_bar``.
    """
    after_gap = np.flatnonzero(np.diff(onsets) - 1 >= gap_steps) + 1  # hits that follow a long silence
    tracks = []
    search = 0
    first = int(np.searchsorted(onsets, search))
    while first < len(onsets):
        start = int(onsets[first] - (onsets[first] - search) % steps_per_bar)
        gap = int(np.searchsorted(after_gap, first, side="right"))
        stop = int(after_gap[gap]) if gap < len(after_gap) else len(onsets)
        length = int(onsets[stop - 1]) - start + 1
        length += -length % steps_per_bar
        track = np.zeros(length, dtype=np.int64)
        track[onsets[first:stop] - start] = masks[first:stop]
        end = start + length
        search = end + (search - end) % steps_per_bar
        if max_steps is not None and length > max_steps:
            track = track[:max_steps]
        tracks.append((start, track))
        first = int(np.searchsorted(onsets, search))
    return tracks


def _fit(track: np.ndarray, length: int) -> np.ndarray:
    """``track`` cut or padded with silence at the end to ``length`` steps."""
    if len(track) >= length:
        return track[:length]
    return np.concatenate([track, np.zeros(length - len(track), track.dtype)])
