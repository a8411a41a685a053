"""Monophonic melodies as one-hot steps: the reference's OneHotMelodyConverter.

Each step is one of ``2 + max_pitch - min_pitch + 1`` classes (90 for the piano range):

    0                      no event (a sounding note goes on, silence stays silent)
    1                      note-off
    2 + pitch - min_pitch  note-on of ``pitch``

How a file becomes windows, as the reference does it:

1. Split the file where the tempo or the time signature changes (``presplit_on_time_changes``).
   The sustain pedal is not applied: a note lasts from its key's press to its release.
2. Keep the notes of ``valid_programs`` within ``[min_pitch, max_pitch]``; quantize; a piece
   whose bar is not ``steps_per_quarter * quarters_per_bar`` steps yields nothing.
3. Per instrument, read melodies left to right: notes sorted by start step, highest pitch
   first; drum notes are ignored; a note starting on the step of the previous note's onset is
   dropped (or, with ``skip_polyphony``, the instrument is abandoned); a note starting while
   another sounds cuts that one short; ``gap_bars`` of silence end a melody. Each melody starts
   on the bar of its first note and is padded with no-events to a whole number of bars.
4. Melodies longer than ``max_bars`` are cut to it (padded to whole bars, none is shorter than
   one bar, the reference's shortest).
5. Every ``slice_bars`` window at a one-bar hop; note-offs before the first note-on of a window
   become no-events; duplicate windows of a piece are kept once, in order of first appearance.

With ``chord_encoding="triad"`` (the reference's ``cat-mel_2bar_med_chords``) each window also carries the
chord in force at each step as controls, one-hot over 49 triad classes (:mod:`hvae_converters.chords`). MIDI
files have no chord symbols, so the chords of each piece are inferred from all its kept notes, after step 2,
as the reference infers them; a piece where that fails gives no windows. A window is kept once per distinct
melody and chord sequence (chords told apart by their inferred names, C and Cmaj7 alike, as the reference);
with ``add_end_token`` the end step repeats the last chord.
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Iterator, Sequence

import miditoolkit
import numpy as np

from hvae.arguments import tempo
from hvae.errors import ConversionError, HvaeError
from hvae.interfaces import Converter, ConverterOptions, Example
from hvae.music import (DEFAULT_QPM, MidiSource, Note, NoteSequence, quantize, read_midi, split_on_time_changes,
                        to_midi)
from hvae_converters import chords
from hvae_converters.windows import first_occurrences, slide, windows_of_pieces

NO_EVENT = 0  # class of a step where nothing starts or stops
NOTE_OFF = 1  # class of a step where the sounding note stops
FIRST_PITCH_CLASS = 2  # class of min_pitch; the pitches follow in ascending order
OUTPUT_VELOCITY = 80  # velocity of every note written by from_tensors, as the reference


@dataclasses.dataclass(frozen=True)
class MelodyOptions(ConverterOptions):
    """The reference's OneHotMelodyConverter settings; defaults are its ``cat-mel_2bar_small``."""

    min_pitch: int = 21  # lowest MIDI pitch modelled; lower notes are dropped
    max_pitch: int = 108  # highest MIDI pitch modelled (inclusive); higher notes are dropped
    valid_programs: tuple[int, ...] | None = tuple(range(32))  # GM programs melodies come from; None: all
    skip_polyphony: bool = False  # True: abandon an instrument where two notes start on one step
    max_bars: int | None = 100  # melodies are cut to this many bars before slicing; None: no limit
    slice_bars: int | None = 2  # window length in bars, hop one bar; None: whole melodies
    gap_bars: float | None = 1.0  # this many bars of silence end a melody; None or 0: never
    pad_to_total_time: bool = False  # pad each melody with no-events from step 0 to the piece's end
    add_end_token: bool = False  # append an end-of-sequence class (depth + 1) after each window
    presplit_on_time_changes: bool = True  # convert each stretch of constant tempo and meter apart
    seed: int = 0  # random state for choosing windows when max_tensors_per_notesequence is set
    chord_encoding: str | None = None  # "triad": the chord of each step as controls (49 one-hot classes)


class _PolyphonicInstrument(Exception):
    """Two notes of one instrument start on the same step and ``skip_polyphony`` is set."""


class MelodyConverter(Converter):
    """MIDI <-> one-hot monophonic melodies, windows of ``slice_bars`` bars (the reference's)."""

    name = "melody"
    output_kind = "onehot"
    Options = MelodyOptions

    def __init__(self, options: MelodyOptions | None = None, **overrides):
        super().__init__(options, **overrides)
        _check(self.options)
        o = self.options
        self._steps_per_bar = o.steps_per_quarter * o.quarters_per_bar
        self._programs = None if o.valid_programs is None else frozenset(o.valid_programs)
        self._eye = np.eye(self.output_depth, dtype=np.float32)

    def transpose(self, inputs: np.ndarray, outputs: np.ndarray,
                  semitones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Move each window's note-ons by its ``semitones`` (clamped per window so that every note
        stays within ``[min_pitch, max_pitch]``); no-event, note-off, the end token and padding stay.

        The reference transposes the NoteSequence before converting and drops notes that leave the
        piano range; here the cached windows are moved and a window is never cut short.
        """
        def move(read: tuple[np.ndarray, np.ndarray, np.ndarray], shift: np.ndarray) -> np.ndarray:
            classes, present, pitched = read
            return self._eye[np.where(pitched, classes + shift[:, None], classes)] * present[..., None]

        read = self._read(outputs)
        shift = self._shifts(read, semitones)
        return move(self._read(inputs) if inputs is not outputs else read, shift), move(read, shift)

    def transpose_controls(self, controls: np.ndarray, outputs: np.ndarray, semitones: np.ndarray) -> np.ndarray:
        """Chord controls ``(B, T, 49)`` moved with their windows' notes: each chord's root by the semitones
        :meth:`transpose` moves ``outputs`` (the windows before moving) by; no chord and padding stay."""
        if not self.control_depth:
            return controls
        return chords.transpose_triads(controls, self._shifts(self._read(outputs), semitones))

    def chord_controls(self, progression: str | Sequence[str]) -> np.ndarray:
        """One-hot triads ``(steps, 49)`` playing ``progression`` (``"C G Am F"`` or a list of symbols) evenly
        over a window, as magenta.js spreads a chord progression: with four chords over 2 bars, each lasts
        half a bar. The end token's step repeats the last chord, as the reference's windows do."""
        if not self.control_depth:
            return super().chord_controls(progression)
        triads = chords.parse_progression(progression)
        controls = chords.progression_controls(triads, self.steps - int(self.options.add_end_token))
        return np.concatenate([controls, controls[-1:]]) if self.options.add_end_token else controls

    def _read(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each step's class, whether the step is there (not padding) and whether it is a note-on, (B, T) each."""
        classes = windows.argmax(axis=-1)
        present = windows.max(axis=-1) > 0
        return classes, present, present & (classes >= FIRST_PITCH_CLASS) & (classes < self.num_classes)

    def _shifts(self, read: tuple[np.ndarray, np.ndarray, np.ndarray], semitones: np.ndarray) -> np.ndarray:
        """The semitones ``(B,)`` each window moves by: ``semitones`` clamped so that its notes stay in range."""
        classes, _, pitched = read
        low = np.where(pitched, classes, self.num_classes).min(axis=1)  # (B,): lowest pitch class
        high = np.where(pitched, classes, -1).max(axis=1)
        shift = np.clip(semitones, FIRST_PITCH_CLASS - low, self.num_classes - 1 - high)
        return np.where(pitched.any(axis=1), shift, 0)

    @property
    def num_classes(self) -> int:
        """Event classes without the end token: no-event, note-off and one per pitch."""
        return FIRST_PITCH_CLASS + self.options.max_pitch - self.options.min_pitch + 1

    @property
    def input_depth(self) -> int:
        return self.output_depth

    @property
    def control_depth(self) -> int:
        """49 triad classes with ``chord_encoding="triad"``, else 0."""
        return chords.TRIAD_CLASSES if self.options.chord_encoding else 0

    @property
    def output_depth(self) -> int:
        return self.num_classes + int(self.options.add_end_token)

    @property
    def steps(self) -> int:
        """Steps of a window; without slicing, the longest melody (``max_bars``)."""
        bars = self.options.slice_bars or self.options.max_bars
        if not bars:
            raise HvaeError("converter 'melody' has no fixed length: set slice_bars or max_bars")
        return bars * self._steps_per_bar + int(self.options.add_end_token)

    def convert(self, source: MidiSource) -> list[Example]:
        """Every window of every melody in ``source``, each ``(T, depth)`` float32 one-hot.

        ``T`` is ``slice_bars`` bars of steps (plus one with ``add_end_token``); inputs equal
        outputs; controls are ``(T, 49)`` one-hot chords with ``chord_encoding``, else ``(T, 0)``.
        """
        o = self.options
        ns = read_midi(source)
        pieces = split_on_time_changes(ns) if o.presplit_on_time_changes else [ns]
        windows = windows_of_pieces(pieces, self.piece_windows, o.max_tensors_per_notesequence, o.seed)
        self.check_window_memory(len(windows))
        return [self._example(w) for w in windows]

    def from_tensors(self, outputs: np.ndarray, controls: np.ndarray | None = None,
                     qpm: float = DEFAULT_QPM) -> miditoolkit.MidiFile:
        """One window ``(T, depth)`` as a melody: the most likely class per step, read as
        note-on / hold / note-off, velocity 80, program 0, at ``qpm`` quarters per minute.

        Steps from the first end token on are ignored. A note still sounding at the last step
        ends with the window. Chord ``controls`` ``(T, 49)`` of a chord-conditioned model are written as
        markers named after the chords ("Am", "N.C."), one where each chord starts.
        """
        qpm = tempo(qpm)
        outputs = np.asarray(outputs)
        if outputs.ndim != 2 or outputs.shape[1] != self.output_depth:
            raise HvaeError(f"melody outputs must be (steps, {self.output_depth}), got {outputs.shape}")
        classes = outputs.argmax(axis=-1).tolist()
        if self.options.add_end_token and self.num_classes in classes:
            classes = classes[:classes.index(self.num_classes)]
        seconds_per_step = 60.0 / qpm / self.options.steps_per_quarter
        notes: list[Note] = []
        sounding: Note | None = None
        for step, cls in enumerate(classes):
            if cls == NO_EVENT:
                continue
            if sounding is not None:
                sounding.end = step * seconds_per_step
                sounding = None
            if cls >= FIRST_PITCH_CLASS:
                sounding = Note(pitch=cls - FIRST_PITCH_CLASS + self.options.min_pitch,
                                velocity=OUTPUT_VELOCITY, start=step * seconds_per_step, end=0.0)
                notes.append(sounding)
        if sounding is not None:
            sounding.end = len(classes) * seconds_per_step
        midi = to_midi(notes, qpm=qpm, time_signature=(self.options.quarters_per_bar, 4),
                       quarters=len(classes) / self.options.steps_per_quarter)
        if controls is not None and self.control_depth:
            triads = np.asarray(controls)[:len(classes)].argmax(axis=-1).tolist()
            ticks_per_step = midi.ticks_per_beat // self.options.steps_per_quarter
            midi.markers += [miditoolkit.Marker(chords.triad_name(t), step * ticks_per_step)
                             for step, t in enumerate(triads) if step == 0 or t != triads[step - 1]]
        return midi

    def piece_windows(self, piece: NoteSequence) -> list[np.ndarray]:
        """The distinct windows ``(T,)`` of class indices of one constant-tempo piece; with
        ``chord_encoding``, ``(T, 2)``: each step's class and inferred chord index."""
        o = self.options
        kept = [n for n in piece.notes
                if (self._programs is None or n.program in self._programs)
                and o.min_pitch <= n.pitch <= o.max_pitch]
        if not kept:
            raise ConversionError(f"no notes of {_describe_programs(o.valid_programs)} "
                                  f"between pitches {o.min_pitch} and {o.max_pitch}")
        qns = quantize(dataclasses.replace(piece, notes=kept), o.steps_per_quarter)
        if qns.steps_per_bar != self._steps_per_bar:
            raise ConversionError(f"{qns.numerator}/{qns.denominator} time: {qns.steps_per_bar:g} steps "
                                  f"per bar, {self._steps_per_bar} needed")
        per_step = chords.infer_chords(qns) if o.chord_encoding else None
        melodies = self._melodies(qns)
        windows: list[np.ndarray] = []
        for start_step, events in melodies:
            if o.pad_to_total_time:
                events = [NO_EVENT] * start_step + events
                _set_length(events, qns.total_steps)
                start_step = 0
            melody = np.array(events, dtype=np.int16)
            tracks = [melody]
            if per_step is not None:
                tracks.append(chords.chords_at(per_step, start_step + np.arange(len(melody))).astype(np.int16))
            if o.slice_bars:
                size = o.slice_bars * self._steps_per_bar
                windows.extend(np.stack([slide(t, size, self._steps_per_bar) for t in tracks], axis=-1))
            else:
                windows.append(np.stack(tracks, axis=-1))
        if not windows:
            longest = max(len(e) for _, e in melodies) // self._steps_per_bar
            raise ConversionError(f"melodies of at most {longest} bars, {o.slice_bars} needed per window")
        if o.slice_bars:
            stacked = np.stack(windows)  # (W, T, 1 or 2)
            stacked[..., 0] = _silence_leading_note_offs(stacked[..., 0])
            kept = first_occurrences(stacked)
        else:
            kept = list({(len(w), w.tobytes()): w for w in windows}.values())
        return [w if per_step is not None else w[:, 0] for w in kept]

    def _melodies(self, qns: NoteSequence) -> list[tuple[int, list[int]]]:
        """``(start step, classes)`` of every melody, cut to ``max_bars``.

        A melody lasts whole bars, at least one: the reference's shortest (``min_bars=1``)."""
        o = self.options
        by_instrument: dict[int, list[Note]] = {}
        for n in qns.notes:
            by_instrument.setdefault(n.instrument, []).append(n)
        gap_steps = (o.gap_bars or float("inf")) * self._steps_per_bar
        max_steps = o.max_bars * self._steps_per_bar if o.max_bars else None
        melodies: list[tuple[int, list[int]]] = []
        polyphonic = 0
        for instrument in sorted(by_instrument):
            notes = sorted(by_instrument[instrument], key=lambda n: (n.start_step, -n.pitch))
            try:
                for start_step, events in _read_melodies(notes, self._steps_per_bar, gap_steps,
                                                         not o.skip_polyphony, o.min_pitch):
                    if max_steps is not None and len(events) > max_steps:
                        _set_length(events, max_steps - max_steps % self._steps_per_bar)
                    melodies.append((start_step, events))
            except _PolyphonicInstrument:
                polyphonic += 1
        if not melodies:
            if all(n.is_drum for n in qns.notes):
                raise ConversionError("only drum notes, no melody")
            if polyphonic:
                raise ConversionError(f"{polyphonic} polyphonic instrument(s) skipped (skip_polyphony)")
            raise ConversionError("no melody")
        return melodies

    def _example(self, window: np.ndarray) -> Example:
        classes = window if window.ndim == 1 else window[:, 0]
        if self.options.add_end_token:
            classes = np.append(classes, np.int16(self.num_classes))
        onehot = self._eye[classes]
        controls = np.zeros((len(classes), 0), dtype=np.float32)
        if window.ndim == 2:
            triads = chords.TRIAD_OF_CHORD[window[:, 1]]
            if self.options.add_end_token:  # the end step repeats the last chord, as the reference
                triads = np.append(triads, triads[-1])
            controls = np.eye(chords.TRIAD_CLASSES, dtype=np.float32)[triads]
        return Example(inputs=onehot, outputs=onehot.copy(), controls=controls, length=len(classes))


def _read_melodies(notes: Sequence[Note], steps_per_bar: int, gap_steps: float, keep_highest: bool,
                   min_pitch: int) -> Iterator[tuple[int, list[int]]]:
    """The melodies of one instrument's quantized notes, left to right, as the reference reads them.

    ``notes`` are sorted by start step, highest pitch first. Yields ``(start step, classes)``:
    the melody begins on the bar of its first note and lasts a whole number of bars. Raises
    :class:`_PolyphonicInstrument` at a polyphonic onset unless ``keep_highest``.
    """
    starts = [n.start_step for n in notes]
    search = 0
    while True:
        first = bisect.bisect_left(starts, search)
        if first == len(notes):
            return
        origin = starts[first] - (starts[first] - search) % steps_per_bar
        events: list[int] = []
        last_on = last_off = 0
        for n in notes[first:]:
            if n.is_drum or not n.velocity:
                continue
            on, off = n.start_step - origin, n.end_step - origin
            if events:
                if on == last_on:
                    if keep_highest:
                        continue
                    raise _PolyphonicInstrument
                if on - last_off >= gap_steps:
                    break
            _set_length(events, off + 1)
            events[on] = FIRST_PITCH_CLASS + n.pitch - min_pitch
            events[on + 1:off] = [NO_EVENT] * (off - on - 1)
            events[off] = NOTE_OFF
            last_on, last_off = on, off
        if not events:
            return
        del events[-1]
        _set_length(events, len(events) + -len(events) % steps_per_bar)
        end = origin + len(events)
        yield origin, events
        search = end + -end % steps_per_bar


def _silence_leading_note_offs(windows: np.ndarray) -> np.ndarray:
    """``windows`` (W, T) with every note-off before a window's first note-on made a no-event,
    as the reference's melodies are when a window is cut out of them."""
    before_first_note = ~np.logical_or.accumulate(windows >= FIRST_PITCH_CLASS, axis=1)
    return np.where(before_first_note & (windows == NOTE_OFF), np.int16(NO_EVENT), windows)


def _set_length(events: list[int], length: int) -> None:
    """Cut ``events`` to ``length`` steps, or pad them with no-events; when padding, a note
    still sounding at the old end is stopped there by a note-off (the reference's rule)."""
    old = len(events)
    if length <= old:
        del events[length:]
        return
    events.extend([NO_EVENT] * (length - old))
    for i in range(old - 1, -1, -1):
        if events[i] == NOTE_OFF:
            return
        if events[i] != NO_EVENT:
            events[old] = NOTE_OFF
            return


def _describe_programs(programs: tuple[int, ...] | None) -> str:
    """``"programs 0-31"``, ``"programs 0, 5"`` or ``"any program"`` for messages."""
    if programs is None:
        return "any program"
    values = sorted(set(programs))
    if values and values == list(range(values[0], values[-1] + 1)) and len(values) > 2:
        return f"programs {values[0]}-{values[-1]}"
    return "programs " + ", ".join(map(str, values))


def _check(o: MelodyOptions) -> None:
    """Refuse settings the reference cannot run with, in one line."""
    if not 0 <= o.min_pitch <= o.max_pitch <= 127:
        raise HvaeError(f"melody pitches must satisfy 0 <= min_pitch <= max_pitch <= 127, "
                        f"got {o.min_pitch} and {o.max_pitch}")
    for name in ("steps_per_quarter", "quarters_per_bar"):
        if getattr(o, name) < 1:
            raise HvaeError(f"melody option {name} must be at least 1, got {getattr(o, name)}")
    for name in ("max_bars", "slice_bars", "max_tensors_per_notesequence"):
        value = getattr(o, name)
        if value is not None and value < 1:
            raise HvaeError(f"melody option {name} must be None or at least 1, got {value}")
    if o.gap_bars is not None and o.gap_bars < 0:
        raise HvaeError(f"melody option gap_bars must not be negative, got {o.gap_bars}")
    if o.chord_encoding not in (None, "triad"):
        raise HvaeError(f"melody option chord_encoding must be None or 'triad', got {o.chord_encoding!r}")
