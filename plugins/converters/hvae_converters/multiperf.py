"""Multi-instrument performances, as the reference's MultiInstrumentPerformanceConverter.

A window is ``hop_size_bars`` bars of up to ``max_num_instruments`` instruments, each instrument's
notes as a performance: an event list of note-ons and note-offs (each of 128 pitches, or
``min_pitch``..``max_pitch``), time shifts (1 to 4 quarters of ``steps_per_quarter`` steps, 24 by
default) and, with ``num_velocity_bins``, velocity changes. The window is cut into chunks of
``chunk_size_bars``; a chunk holds one segment per instrument, each ``max_events_per_instrument`` rows:

    row 0          the instrument's program token (drums have a token of their own)
    rows 1..n      its events in the chunk, one token each
    row n+1        the end token
    the rest       zeros (padding)

and a chunk's missing instruments are a lone end token. Rows are one-hot (output kind ``"onehot"``)
over ``events + 129 programs + end``: 490 classes at the reference's settings. Inputs equal outputs;
each segment's length (its token rows: the reference's ``lengths``) is
:meth:`MultiperfConverter.segment_lengths` of the outputs. The window is
``chunks * max_num_instruments * max_events_per_instrument`` rows, laid out for the hierarchical models:
``level_lengths``.

How a file becomes windows, as the reference does it:

1. Split the file where the tempo or the time signature changes; in each piece play out the sustain
   pedals (:func:`hvae.music.apply_sustain`), then cut it every ``hop_size_bars`` bars at its first
   tempo (notes go to the bar they start in and are cut at its end). Quantize each part to
   ``steps_per_quarter``; a part whose bar is not ``steps_per_quarter * quarters_per_bar`` steps, or
   that cannot be quantized, spoils the whole piece.
2. A part gives a window when none of its notes is outside the pitch range and
   ``min_num_instruments``..``max_num_instruments`` instruments (MIDI track, channel, program) play in
   it. Instruments are ordered by program, drums last, ties in the reference's order.
3. Each instrument's performance is cut to the window's steps, then to chunks; a chunk keeps the notes
   that start in it, ended at its end (a note-off on its last step stays in it) and read back as the
   reference reads them (velocities by bin; a chunk of no note counts as drums). Every segment must have
   at most ``max_events_per_instrument - 2`` events, and the window at least ``min_total_events``.

With ``chord_encoding="triad"`` (the reference's ``hier-multiperf_vel_1bar_*_chords``) each window also
carries chords as controls, one-hot over the 49 triad classes of :mod:`hvae_converters.chords`, one per row
of a segment, as the reference aligns them with the performance events:

    row 0          no chord (the program token's row)
    rows 1..n      the chord in force at the step of each event (the step before its time shift)
    row n+1        the last chord again (no chord for a segment of no events)
    the rest       zeros (padding); an instrument a chunk lacks: no chord on its lone end token's row

MIDI files have no chord symbols, so the chords of each piece (after its pedals are played out) are
inferred once on the piece quantized at ``steps_per_quarter`` (:func:`hvae_converters.chords.infer_chord_symbols`);
a piece whose chords cannot be inferred, or whose bar is not ``steps_per_quarter * quarters_per_bar``
steps, gives no window. The chord changes are cut with the piece into windows (each window opens with the
chord in force at its start) and quantized with it; an event after the window's last note's end takes the
chord in force there, and a window where two different chords fall on one step is not taken.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any, Sequence

import miditoolkit
import numpy as np

from hvae.arguments import tempo
from hvae.errors import ConversionError, HvaeError
from hvae.interfaces import Converter, ConverterOptions, Example
from hvae.music import (DEFAULT_QPM, MidiSource, Note, NoteSequence, apply_sustain, quantize, quantize_to_step,
                        split_every, to_midi)
from hvae_converters import chords
from hvae_converters.windows import windows_of_file

NOTE_ON, NOTE_OFF, TIME_SHIFT, VELOCITY = 1, 2, 3, 4  # kinds of performance event
MAX_SHIFT_QUARTERS = 4  # a time shift spans at most this many quarters
PROGRAMS = 128  # program tokens: one per MIDI program, then one for drums
MAX_VELOCITY = 127
DEFAULT_VELOCITY = 100  # velocity of a note read back before any velocity event, as the reference
READ_BACK_QPM = 120.0  # the tempo the reference reads a chunk back at (its times only)


@dataclasses.dataclass(frozen=True)
class MultiperfOptions(ConverterOptions):
    """The reference's MultiInstrumentPerformanceConverter settings and defaults (the presets
    hier-multiperf_vel_1bar_* set ``num_velocity_bins`` 8).

    Inherited: ``quarters_per_bar`` (4), ``max_tensors_per_notesequence`` (None: every window).
    """

    steps_per_quarter: int = 24  # quantisation: steps per quarter note
    num_velocity_bins: int = 0  # velocity events in this many bins of MIDI velocity; 0: none
    hop_size_bars: int = 1  # window length in bars, windows one after the other
    chunk_size_bars: int = 1  # a window's chunks (the decoder's bars), hop_size_bars // chunk_size_bars
    min_num_instruments: int = 2  # fewer instruments in a window: no window
    max_num_instruments: int = 8  # more instruments in a window: no window
    min_total_events: int = 8  # fewer events in all of a window's segments: no window
    max_events_per_instrument: int = 64  # rows of a segment: program token, events, end token, padding
    min_pitch: int = 0  # lowest pitch of the events; a window with a note below it is not taken
    max_pitch: int = 127  # highest pitch of the events; a window with a note above it is not taken
    first_subsequence_only: bool = False  # take only pieces of one window or less, and their first window
    seed: int = 0  # random state for choosing windows when max_tensors_per_notesequence is set
    chord_encoding: str | None = None  # "triad": the chord at each event as controls (49 one-hot classes)


@dataclasses.dataclass
class _Track:
    """One instrument's performance in a window (the reference's MetricPerformance)."""

    events: list[tuple[int, int]]  # (kind, value)
    program: int
    is_drum: bool


class MultiperfConverter(Converter):
    """MIDI <-> up to ``max_num_instruments`` instruments' performances, one window per
    ``hop_size_bars`` (the reference's MultiInstrumentPerformanceConverter)."""

    name = "multiperf"
    output_kind = "onehot"
    Options = MultiperfOptions
    padded_rows = True
    default_chords = "C"  # one chord: see chord_controls

    def __init__(self, options: MultiperfOptions | None = None, **overrides: Any):
        super().__init__(options, **overrides)
        o = self.options
        for field in ("steps_per_quarter", "quarters_per_bar", "hop_size_bars", "chunk_size_bars",
                      "max_num_instruments"):
            if getattr(o, field) < 1:
                raise HvaeError(f"Option {field} of converter 'multiperf' must be at least 1, not {getattr(o, field)}.")
        if o.hop_size_bars % o.chunk_size_bars:
            raise HvaeError(f"Option hop_size_bars of converter 'multiperf' ({o.hop_size_bars}) must be a multiple "
                            f"of chunk_size_bars ({o.chunk_size_bars}).")
        if o.max_events_per_instrument < 3:
            raise HvaeError("Option max_events_per_instrument of converter 'multiperf' must be at least 3 (a "
                            f"program token, an event and the end token), not {o.max_events_per_instrument}.")
        if not 0 <= o.num_velocity_bins <= MAX_VELOCITY:
            raise HvaeError(f"Option num_velocity_bins of converter 'multiperf' must be 0 to {MAX_VELOCITY}, "
                            f"not {o.num_velocity_bins}.")
        if not 0 <= o.min_pitch <= o.max_pitch <= 127:
            raise HvaeError(f"Options min_pitch and max_pitch of converter 'multiperf' must satisfy "
                            f"0 <= min_pitch <= max_pitch <= 127, not {o.min_pitch} and {o.max_pitch}.")
        if o.chord_encoding not in (None, "triad"):
            raise HvaeError(f"Option chord_encoding of converter 'multiperf' must be None or 'triad', not "
                            f"{o.chord_encoding!r}.")
        self._pitches = o.max_pitch - o.min_pitch + 1
        self._max_shift = MAX_SHIFT_QUARTERS * o.steps_per_quarter
        self._steps_per_bar = o.steps_per_quarter * o.quarters_per_bar
        self._chunk_steps = self._steps_per_bar * o.chunk_size_bars
        self._chunks = o.hop_size_bars // o.chunk_size_bars
        # Token layout: note-ons, note-offs, time shifts, velocities (the reference's performance
        # encoding), then the program tokens, then the end token.
        self._offsets = {NOTE_ON: 0, NOTE_OFF: self._pitches, TIME_SHIFT: 2 * self._pitches,
                         VELOCITY: 2 * self._pitches + self._max_shift}
        self.num_events = 2 * self._pitches + self._max_shift + o.num_velocity_bins
        self.end_token = self.num_events + PROGRAMS + 1
        # (chunks, instruments per chunk, rows per instrument): the hierarchical models' levels
        self.level_lengths = (self._chunks, o.max_num_instruments, o.max_events_per_instrument)

    @property
    def input_depth(self) -> int:
        return self.output_depth

    @property
    def output_depth(self) -> int:
        return self.end_token + 1

    @property
    def control_depth(self) -> int:
        """49 triad classes with ``chord_encoding="triad"``, else 0."""
        return chords.TRIAD_CLASSES if self.options.chord_encoding else 0

    @property
    def steps(self) -> int:
        return int(np.prod(self.level_lengths))

    def convert(self, source: MidiSource) -> list[Example]:
        """Every window of ``source``, each ``(steps, output_depth)`` float32 one-hot rows (zero rows pad); the
        controls ``(steps, 49)`` one-hot chords with ``chord_encoding`` (zero rows pad), else ``(steps, 0)``."""
        windows = windows_of_file(source, self.piece_windows, self.options)
        self.check_window_memory(len(windows))
        return [self._example(w) for w in windows]

    def piece_windows(self, piece: NoteSequence) -> list[np.ndarray]:
        """The windows of one piece of constant tempo and meter: each row's token, -1 for padding, (steps,);
        with ``chord_encoding`` also each row's triad class, -1 for padding, (steps, 2)."""
        o = self.options
        piece = apply_sustain(piece)
        if o.chord_encoding:
            whole = quantize(piece, o.steps_per_quarter)  # for the inference only, as the reference
            if whole.steps_per_bar != self._steps_per_bar:
                raise ConversionError(f"{whole.numerator}/{whole.denominator} time: {whole.steps_per_bar:g} steps "
                                      f"per bar, {self._steps_per_bar} needed")
            piece = dataclasses.replace(piece, chords=chords.infer_chord_symbols(whole))
        qpm = piece.tempos[0][1] if piece.tempos else DEFAULT_QPM
        parts = split_every(piece, 60.0 * o.quarters_per_bar * o.hop_size_bars / qpm)
        if o.first_subsequence_only and len(parts) > 1:
            raise ConversionError(f"longer than {o.hop_size_bars} bars (first_subsequence_only)")
        quantized = []
        for part in parts:
            q = quantize(part, o.steps_per_quarter)  # a ConversionError spoils the piece, as the reference
            if q.steps_per_bar != self._steps_per_bar:
                raise ConversionError(f"{q.numerator}/{q.denominator} time: {q.steps_per_bar:g} steps per bar, "
                                      f"{self._steps_per_bar} needed")
            quantized.append(q)
        windows = [w for w in map(self._window, quantized) if w is not None]
        if not windows:
            raise ConversionError(f"no {o.hop_size_bars} bars of {o.min_num_instruments} to {o.max_num_instruments} "
                                  f"instruments with at most {o.max_events_per_instrument - 2} events each")
        return windows

    def _window(self, q: NoteSequence) -> np.ndarray | None:
        """One window's tokens (steps,) (with ``chord_encoding``, tokens and triads (steps, 2)), or None where
        the reference takes none."""
        o = self.options
        if any(not o.min_pitch <= n.pitch <= o.max_pitch for n in q.notes):
            return None
        window_steps = self._steps_per_bar * o.hop_size_bars
        tracks = []
        for instrument in set(n.instrument for n in q.notes):  # the reference's order, before sorting
            notes = [n for n in q.notes if n.instrument == instrument]
            events = self._events(notes, 0, o.num_velocity_bins)
            if _num_steps(events) > window_steps:
                events = self._set_length(events, window_steps)
            tracks.append(_Track(events, notes[0].program, all(n.is_drum for n in notes)))
        if not o.min_num_instruments <= len(tracks) <= o.max_num_instruments:
            return None
        tracks.sort(key=lambda t: (t.is_drum, -1 if t.is_drum else t.program))
        chunks: list[list[_Track]] = [[] for _ in range(self._chunks)]
        total = 0
        for track in tracks:
            segments = self._chunked(self._set_length(track.events, window_steps), track)
            if len(segments) != self._chunks or any(len(s.events) > o.max_events_per_instrument - 2 for s in segments):
                return None
            total += sum(len(s.events) for s in segments)
            for chunk, segment in zip(chunks, segments):
                chunk.append(segment)
        if total < o.min_total_events:
            return None
        window = np.full((self._chunks, o.max_num_instruments, o.max_events_per_instrument), -1, dtype=np.int64)
        window[:, :, 0] = self.end_token  # an instrument a chunk lacks: a lone end token
        for c, chunk in enumerate(chunks):
            for i, segment in enumerate(chunk):
                program = self.num_events + (PROGRAMS if segment.is_drum else segment.program)
                tokens = [program] + [self._token(e) for e in segment.events] + [self.end_token]
                window[c, i, :len(tokens)] = tokens
        if not o.chord_encoding:
            return window.reshape(-1)
        per_step = _chords_per_step(q)
        if per_step is None:
            return None
        triads = np.full_like(window, -1)
        triads[:, :, 0] = chords.NO_CHORD  # the program token's row, or a lacking instrument's end token
        for c, chunk in enumerate(chunks):
            for i, segment in enumerate(chunk):
                shifts = [value if kind == TIME_SHIFT else 0 for kind, value in segment.events]
                steps = c * self._chunk_steps + np.cumsum([0] + shifts[:-1], dtype=np.int64)[:len(shifts)]
                at_events = chords.TRIAD_OF_CHORD[chords.chords_at(per_step, steps)].tolist()
                rows = [chords.NO_CHORD] + at_events
                triads[c, i, :len(rows) + 1] = rows + rows[-1:]  # the end token's row repeats the last chord
        return np.stack([window.reshape(-1), triads.reshape(-1)], axis=1)

    def segment_lengths(self, outputs: np.ndarray) -> np.ndarray:
        """Each segment's length in rows of a window ``(steps, output_depth)``: its token rows, before the zero
        padding; ``(chunks * max_num_instruments,)`` int, the reference's ``lengths`` of the window."""
        rows = np.asarray(outputs).reshape(-1, self.level_lengths[-1], self.output_depth)
        return (rows.sum(axis=-1) > 0).sum(axis=-1)

    def _token(self, event: tuple[int, int]) -> int:
        kind, value = event
        return self._offsets[kind] + value - (self.options.min_pitch if kind in (NOTE_ON, NOTE_OFF) else 1)

    def _events(self, notes: list[Note], start_step: int, bins: int) -> list[tuple[int, int]]:
        """The performance of quantized ``notes`` from ``start_step``: at each step its note-offs and
        note-ons in the order of the notes sorted by start time and pitch, a velocity event before a
        note-on of a new bin."""
        notes = sorted((n for n in notes if n.start_step >= start_step), key=lambda n: (n.start, n.pitch))
        marks = sorted([(n.start_step, i, False) for i, n in enumerate(notes)]
                       + [(n.end_step, i, True) for i, n in enumerate(notes)])
        events: list[tuple[int, int]] = []
        step, current_bin = start_step, 0
        for at, i, is_off in marks:
            if at > step:
                while at > step + self._max_shift:
                    events.append((TIME_SHIFT, self._max_shift))
                    step += self._max_shift
                events.append((TIME_SHIFT, at - step))
                step = at
            if bins and not is_off:
                velocity_bin = _velocity_bin(notes[i].velocity, bins)
                if velocity_bin != current_bin:
                    current_bin = velocity_bin
                    events.append((VELOCITY, velocity_bin))
            events.append((NOTE_OFF if is_off else NOTE_ON, notes[i].pitch))
        return events

    def _set_length(self, events: list[tuple[int, int]], steps: int) -> list[tuple[int, int]]:
        """``events`` padded with time shifts (the last short one lengthened first) or cut to ``steps``."""
        events = list(events)
        missing = steps - _num_steps(events)
        if missing > 0:
            if events and events[-1][0] == TIME_SHIFT and events[-1][1] < self._max_shift:
                added = min(missing, self._max_shift - events[-1][1])
                events[-1] = (TIME_SHIFT, events[-1][1] + added)
                missing -= added
            while missing >= self._max_shift:
                events.append((TIME_SHIFT, self._max_shift))
                missing -= self._max_shift
            if missing > 0:
                events.append((TIME_SHIFT, missing))
        trimmed, excess = 0, -missing
        while events and trimmed < excess:
            kind, value = events[-1]
            if kind != TIME_SHIFT:
                events.pop()
            elif trimmed + value > excess:
                events[-1] = (TIME_SHIFT, value - excess + trimmed)
                trimmed = excess
            else:
                trimmed += value
                events.pop()
        return events

    def _chunked(self, events: list[tuple[int, int]], track: _Track) -> list[_Track]:
        """A track of the window's steps cut into chunks, each read back to notes and made a
        performance again, as the reference clips notes tied over a chunk's end."""
        size = self._chunk_steps
        segments: list[list[tuple[int, int]]] = [[]]
        step = 0
        for kind, value in events:
            if kind != TIME_SHIFT:
                if step == size and kind != NOTE_OFF:  # on the boundary only note-offs stay behind
                    segments.append([])
                    step = 0
                segments[-1].append((kind, value))
            elif step + value <= size:
                segments[-1].append((kind, value))
                step += value
            else:
                if size - step > 0:
                    segments[-1].append((TIME_SHIFT, size - step))
                rest = value - (size - step)
                segments.append([])
                step = 0
                if rest > 0:
                    segments[-1].append((TIME_SHIFT, rest))
                    step = rest
        if segments and _num_steps(segments[-1]) == 0:
            segments.pop()
        chunked = []
        for index, segment in enumerate(segments):
            notes = self._read_back(segment, index * size, track)
            events = self._set_length(self._events(notes, index * size, self.options.num_velocity_bins), size)
            chunked.append(_Track(events, track.program, track.is_drum or not notes))
        return chunked

    def _read_back(self, events: list[tuple[int, int]], start_step: int, track: _Track) -> list[Note]:
        """Notes of a chunk's events, as the reference reads a performance back and quantizes it again:
        note-offs close the earliest open note of their pitch, notes still open end with the chunk,
        notes of no length are dropped; velocities are their bins' lowest."""
        bins = self.options.num_velocity_bins
        seconds_per_step = 60.0 / (self.options.steps_per_quarter * READ_BACK_QPM)
        steps_per_second = self.options.steps_per_quarter * READ_BACK_QPM / 60.0
        offset = start_step * seconds_per_step
        starts: dict[int, list[tuple[int, int]]] = defaultdict(list)
        spans: list[tuple[int, int, int, int]] = []  # (start step, end step, pitch, velocity)
        step, velocity = 0, DEFAULT_VELOCITY
        for kind, value in events:
            if kind == NOTE_ON:
                starts[value].append((step, velocity))
            elif kind == NOTE_OFF:
                if starts[value]:
                    begin, v = starts[value].pop(0)
                    if begin != step:
                        spans.append((begin, step, value, v))
            elif kind == TIME_SHIFT:
                step += value
            else:
                velocity = 1 + (value - 1) * _bin_size(bins)
        spans += [(begin, step, pitch, v) for pitch, opened in starts.items() for begin, v in opened if begin != step]
        notes = []
        for begin, end, pitch, v in spans:
            start, stop = begin * seconds_per_step + offset, end * seconds_per_step + offset
            first, last = quantize_to_step(start, steps_per_second), quantize_to_step(stop, steps_per_second)
            notes.append(Note(pitch, v, start, stop, track.is_drum, track.program, start_step=first,
                              end_step=last if last != first else first + 1))
        return notes

    def _example(self, window: np.ndarray) -> Example:
        tokens = window if window.ndim == 1 else window[:, 0]
        onehot = np.zeros((len(tokens), self.output_depth), dtype=np.float32)
        rows = np.flatnonzero(tokens >= 0)
        onehot[rows, tokens[rows]] = 1.0
        controls = np.zeros((len(tokens), self.control_depth), dtype=np.float32)
        if window.ndim == 2:
            rows = np.flatnonzero(window[:, 1] >= 0)
            controls[rows, window[rows, 1]] = 1.0
        return Example(inputs=onehot, outputs=onehot.copy(), controls=controls, length=len(tokens))

    def transpose(self, inputs: np.ndarray, outputs: np.ndarray,
                  semitones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Move the note-ons and note-offs of each window's pitched instruments (not drums) by its
        ``semitones``, clamped per window so that every note stays within ``min_pitch``..``max_pitch``.

        The reference transposes the NoteSequence before converting it (drums stay, notes that leave the
        pitch range are dropped); here the cached windows are moved and none is cut short.
        """
        shift = self._shifts(outputs, semitones)

        def move(windows: np.ndarray) -> np.ndarray:
            tokens, present, pitched = self._read(windows)
            moved = np.zeros_like(windows)
            b, t = np.nonzero(present)
            moved[b, t, np.where(pitched, tokens + shift[:, None], tokens)[b, t]] = 1
            return moved

        moved = move(outputs)
        return (moved if inputs is outputs else move(inputs)), moved

    def transpose_controls(self, controls: np.ndarray, outputs: np.ndarray, semitones: np.ndarray) -> np.ndarray:
        """Chord controls ``(B, T, 49)`` moved with their windows' notes: each chord's root by the semitones
        :meth:`transpose` moves ``outputs`` (the windows before moving) by; no chord and padding stay."""
        if not self.control_depth:
            return controls
        return chords.transpose_triads(controls, self._shifts(outputs, semitones))

    def chord_controls(self, progression: str | Sequence[str]) -> np.ndarray:
        """One-hot triads ``(steps, 49)`` playing the one chord of ``progression`` (``"C"`` or ``["C"]``) in every
        segment, as magenta.js conditions its multitrack models: no chord on the program token's row, the
        chord on the other rows, the same for each instrument and chunk. Rows are events, not time: when an
        event plays is only known once it is decoded, so a window cannot be given chords on beats, and more than
        one chord is refused (:class:`HvaeError`), as magenta.js refuses them."""
        if not self.control_depth:
            return super().chord_controls(progression)
        triads = chords.parse_progression(progression)
        if len(triads) > 1:
            raise HvaeError(f"A multi-instrument window plays over one chord, not {len(triads)}: its events are "
                            f"not placed in time until decoded (give one chord, e.g. --chords "
                            f"'{chords.triad_name(triads[0])}').")
        rows = self.level_lengths[-1]
        segment = np.eye(chords.TRIAD_CLASSES, dtype=np.float32)[[chords.NO_CHORD] + triads * (rows - 1)]
        return np.tile(segment, (self.steps // rows, 1))

    def _read(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each row's token, whether the row is there (not padding) and whether it is a pitched instrument's
        (not drums') note-on or note-off, (B, T) each."""
        tokens = windows.argmax(axis=-1)  # (B, T)
        present = windows.max(axis=-1) > 0  # False on padding
        programs = tokens.reshape(len(windows), -1, self.level_lengths[-1])[:, :, 0]  # (B, segments)
        drums = np.repeat(programs == self.num_events + PROGRAMS, self.level_lengths[-1], axis=1)  # (B, T)
        return tokens, present, present & (tokens < 2 * self._pitches) & ~drums

    def _shifts(self, outputs: np.ndarray, semitones: np.ndarray) -> np.ndarray:
        """``(B,)``: ``semitones`` clamped per window so that its pitched notes stay within the pitch range."""
        tokens, _, pitched = self._read(outputs)
        pitch = tokens % self._pitches
        low = np.where(pitched, pitch, self._pitches).min(axis=1)  # (B,)
        high = np.where(pitched, pitch, -1).max(axis=1)
        return np.where(pitched.any(axis=1), np.clip(semitones, -low, self._pitches - 1 - high), 0)

    def from_tensors(self, outputs: np.ndarray, controls: np.ndarray | None = None,
                     qpm: float = DEFAULT_QPM) -> miditoolkit.MidiFile:
        """One window ``(steps, output_depth)`` as MIDI at ``qpm``, one track per instrument that plays, read
        as the reference reads it: in each segment the most likely token of each row up to the first end
        token; the instrument's program (or drums, on channel 10) is its first chunk's first program token
        (none: piano); other program tokens are ignored; its chunks' events follow one another.

        Chord ``controls`` ``(steps, 49)`` of a chord-conditioned model are written as markers named after the
        chords ("Am", "N.C."), as the reference writes chords back: each event's chord at the event's step (of
        those within its chunk), all instruments' sorted by time, a marker where the chord changes."""
        qpm = tempo(qpm)
        outputs = np.asarray(outputs)
        if outputs.shape != (self.steps, self.output_depth):
            raise HvaeError(f"Converter 'multiperf' decodes outputs of shape ({self.steps}, {self.output_depth}), "
                            f"not {outputs.shape}.")
        o = self.options
        tokens = outputs.argmax(axis=-1).reshape(self.level_lengths)
        seconds_per_step = 60.0 / (o.steps_per_quarter * qpm)
        quarters = o.hop_size_bars * o.quarters_per_bar
        midi = to_midi([], qpm=qpm, time_signature=(o.quarters_per_bar, 4), quarters=quarters)
        triads = None
        if controls is not None and self.control_depth:
            triads = np.asarray(controls).argmax(axis=-1).reshape(self.level_lengths)
        timed_chords: list[tuple[int, int]] = []  # (step, triad) of each event
        for instrument in range(o.max_num_instruments):
            events: list[tuple[int, int]] = []
            program_token = None
            for chunk in range(self._chunks):
                row = tokens[chunk, instrument].tolist()
                row = row[:row.index(self.end_token)] if self.end_token in row else row
                programs = [t - self.num_events for t in row if t >= self.num_events]
                if chunk == 0:
                    program_token = programs[0] if programs else 0
                chunk_events = [self._event(t) for t in row if t < self.num_events]
                if triads is not None:
                    at = [triads[chunk, instrument, i] for i, t in enumerate(row) if t < self.num_events]
                    steps = np.cumsum([0] + [v if k == TIME_SHIFT else 0 for k, v in chunk_events])[:len(at)]
                    timed_chords += [(chunk * self._chunk_steps + int(step), int(triad))
                                     for step, triad in zip(steps[steps < self._chunk_steps], at)]
                events += self._set_length(chunk_events, self._chunk_steps)
            is_drum = program_token == PROGRAMS
            track = _Track(events, 0 if is_drum else program_token, is_drum)
            notes = [Note(n.pitch, n.velocity, n.start_step * seconds_per_step, n.end_step * seconds_per_step,
                          track.is_drum, track.program) for n in self._read_back(events, 0, track)]
            if notes:
                midi.instruments += to_midi(notes, qpm=qpm, quarters=quarters).instruments
        current = None
        for step, triad in sorted(timed_chords):
            if triad != current:
                midi.markers.append(miditoolkit.Marker(chords.triad_name(triad),
                                                       round(step * midi.ticks_per_beat / o.steps_per_quarter)))
                current = triad
        return midi

    def _event(self, token: int) -> tuple[int, int]:
        for kind in (VELOCITY, TIME_SHIFT, NOTE_OFF, NOTE_ON):
            if token >= self._offsets[kind]:
                base = self.options.min_pitch if kind in (NOTE_ON, NOTE_OFF) else 1
                return kind, token - self._offsets[kind] + base
        raise AssertionError(token)


def _num_steps(events: list[tuple[int, int]]) -> int:
    return sum(value for kind, value in events if kind == TIME_SHIFT)


def _bin_size(bins: int) -> int:
    return -(-MAX_VELOCITY // bins)  # ceil(127 / bins)


def _velocity_bin(velocity: int, bins: int) -> int:
    return (velocity - 1) // _bin_size(bins) + 1


def _chords_per_step(q: NoteSequence) -> np.ndarray | None:
    """The inferred chord in force at each step of a quantized window ``(q.total_steps,)``, from its chord
    changes as the reference reads them: changes on or after the last step are ignored, no chord before the
    first; None where two different chords fall on one step."""
    marks = sorted(((quantize_to_step(time, q.steps_per_second), chord) for time, chord in q.chords),
                   key=lambda mark: mark[0])
    per_step = np.full(q.total_steps, chords.NO_CHORD, dtype=np.int64)
    previous = None
    for step, chord in marks:
        if step >= q.total_steps:
            break
        if previous is not None and step == previous[0]:
            if chord != previous[1]:
                return None
            continue
        per_step[step:] = chord
        previous = (step, chord)
    return per_step
