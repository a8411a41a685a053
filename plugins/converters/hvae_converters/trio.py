"""Trios: a melody, a bass and a drum part played together, as the reference's TrioConverter.

A step of a window is three one-hot parts side by side (output kind ``"onehot-parts"``):

    melody   90   the melody converter's classes (no event, note-off, a note-on per pitch 21-108)
    bass     90   the same classes
    drums    512  the drums converter's one-hot over the 2^9 combinations of its nine classes

Inputs equal outputs. How a file becomes windows, as the reference does it:

1. Split the file where the tempo or the time signature changes; quantize each piece to
   ``steps_per_quarter``; a piece whose bar is not ``steps_per_quarter * quarters_per_bar`` steps
   yields nothing. The piece lasts its last note's bars, at most ``max_bars``.
2. Each MIDI instrument (track, channel, program) is a part by its notes: drum-channel notes make
   drums, programs 0-31 (pianos, chromatic percussion, organs, guitars) a melody, 32-39 a bass; an
   instrument of any other program, or of two kinds, is no part. A piece needs all three kinds.
3. Each melody and bass instrument becomes one melody over the whole piece (the melody converter's
   reading: highest note where two start together, notes outside 21-108 dropped, no gap ends it), each
   drum instrument one drum track (the drums converter's nine classes); an instrument with
   no note in 21-108, or whose drums fall in no class, is no part.
4. An instrument covers the bars its notes sound in, and also every bar within ``gap_bars`` of one it
   covers. For each combination of one melody, one bass and one drum instrument (in order of the
   instruments), every ``slice_bars`` window at a one-bar hop where all three cover every bar is a
   window; the first and last ``gap_bars`` bars count as covered for all three when any of the
   three covers any of them.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import miditoolkit
import numpy as np

from hvae.arguments import tempo
from hvae.errors import ConversionError, HvaeError
from hvae.interfaces import Converter, ConverterOptions, Example
from hvae.music import DEFAULT_QPM, MidiSource, NoteSequence, quantize, read_midi, to_midi
from hvae_converters.drums import DrumsConverter
from hvae_converters.melody import MelodyConverter
from hvae_converters.windows import windows_of_file

MELODY_PROGRAMS = range(0, 32)  # piano, chromatic percussion, organ, guitar
BASS_PROGRAMS = range(32, 40)
BASS_OUTPUT_PROGRAM = 33  # Electric Bass (finger): the program from_tensors gives the bass, as the reference
MAX_INSTRUMENT = 127  # instruments numbered above this are skipped, as the reference
MELODY, BASS, DRUMS, NO_PART = "melody", "bass", "drums", "none"


@dataclasses.dataclass(frozen=True)
class TrioOptions(ConverterOptions):
    """The reference's TrioConverter settings; defaults are its ``trio_16bar`` converter's.

    Inherited: ``steps_per_quarter`` (4), ``quarters_per_bar`` (4), ``max_tensors_per_notesequence``
    (None: every window; the reference's default is 5, drawn at random while training).
    """

    slice_bars: int = 16  # window length in bars, one window every bar
    gap_bars: int = 2  # bars a part may rest and still count (doubled, in effect, inside a piece)
    max_bars: int = 1024  # a piece is read up to this many bars
    seed: int = 0  # random state for choosing windows when max_tensors_per_notesequence is set


class TrioConverter(Converter):
    """MIDI <-> melody, bass and drums side by side, windows of ``slice_bars`` bars (the reference's)."""

    name = "trio"
    output_kind = "onehot-parts"
    Options = TrioOptions

    def __init__(self, options: TrioOptions | None = None, **overrides: Any):
        super().__init__(options, **overrides)
        o = self.options
        for field in ("steps_per_quarter", "quarters_per_bar", "slice_bars", "max_bars"):
            if getattr(o, field) < 1:
                raise HvaeError(f"Option {field} of converter 'trio' must be at least 1, not {getattr(o, field)}.")
        if o.gap_bars < 0:
            raise HvaeError(f"Option gap_bars of converter 'trio' must not be negative, not {o.gap_bars}.")
        shared = dict(steps_per_quarter=o.steps_per_quarter, quarters_per_bar=o.quarters_per_bar,
                      presplit_on_time_changes=False, pad_to_total_time=True, gap_bars=None, slice_bars=None)
        # Each instrument read whole, over the piece's length (the reference's part converters).
        self.melody = MelodyConverter(valid_programs=None, max_bars=None, **shared)
        self.drums = DrumsConverter(max_bars=o.max_bars, roll_input=False, **shared)
        self.parts = ((MELODY, self.melody.output_depth), (BASS, self.melody.output_depth),
                      (DRUMS, self.drums.output_depth))
        self._steps_per_bar = o.steps_per_quarter * o.quarters_per_bar
        self._offsets = np.cumsum([0] + [depth for _, depth in self.parts])

    @property
    def input_depth(self) -> int:
        return self.output_depth

    @property
    def output_depth(self) -> int:
        return int(self._offsets[-1])

    @property
    def steps(self) -> int:
        return self.options.slice_bars * self._steps_per_bar

    def convert(self, source: MidiSource) -> list[Example]:
        """Every window of every trio in ``source``, each ``(T, 692)`` float32: three one-hot parts."""
        windows = windows_of_file(source, self.piece_windows, self.options)
        self.check_window_memory(len(windows))
        return [self._example(w) for w in windows]

    def piece_windows(self, piece: NoteSequence) -> list[np.ndarray]:
        """The windows of one piece of constant tempo and meter: each step's class in each part, (T, 3)."""
        o = self.options
        spb = self._steps_per_bar
        q = quantize(piece, o.steps_per_quarter)
        if q.steps_per_bar != spb:
            raise ConversionError(f"{q.numerator}/{q.denominator} time: {q.steps_per_bar:g} steps per bar, "
                                  f"{spb} needed")
        bars = min(math.ceil(q.total_steps / spb), o.max_bars)
        kinds: dict[int, str] = {}
        coverage = np.zeros((bars, MAX_INSTRUMENT + 1), dtype=bool)
        for n in q.notes:
            if n.instrument > MAX_INSTRUMENT:
                continue
            kind = _kind(n.is_drum, n.program)
            kinds[n.instrument] = kind if kinds.get(n.instrument, kind) == kind else NO_PART
            first = n.start_step // spb
            if first < bars:
                coverage[first:min(math.ceil(n.end_step / spb), bars), n.instrument] = True
        by_kind = {kind: sorted(i for i, k in kinds.items() if k == kind) for kind in (MELODY, BASS, DRUMS)}
        missing = [kind for kind, found in by_kind.items() if not found]
        if missing:
            raise ConversionError(f"no {' and no '.join(missing)} part (a trio needs melody, bass and drums)")

        # Each instrument alone, over the piece's whole bars.
        whole = dataclasses.replace(piece, total_time=bars * spb * 60 / q.qpm / o.steps_per_quarter)
        tracks: dict[int, np.ndarray] = {}
        for instrument in itertools.chain(*by_kind.values()):
            alone = dataclasses.replace(whole, notes=[n for n in whole.notes if n.instrument == instrument])
            converter = self.drums if instrument in by_kind[DRUMS] else self.melody
            try:
                tracks[instrument] = converter.piece_windows(alone)[0]
            except ConversionError:
                coverage[:, instrument] = False

        # A part rests at most gap_bars: every bar within gap_bars of a covered one is covered.
        near = np.zeros_like(coverage)
        for bar in range(bars):
            near[bar] = coverage[max(0, bar - o.gap_bars):bar + o.gap_bars + 1].any(axis=0)

        windows = []
        size = o.slice_bars * spb
        for trio in itertools.product(by_kind[MELODY], by_kind[BASS], by_kind[DRUMS]):
            covered = near[:, trio].all(axis=1)
            # The edges: covered for all when any covers any of their bars. With gap_bars 0 the reference's
            # "last 0 bars" are all bars: a trio is then taken wherever any of the three plays at all.
            covered[:o.gap_bars] = near[:o.gap_bars, trio].any()
            covered[-o.gap_bars if o.gap_bars else 0:] = near[-o.gap_bars if o.gap_bars else 0:, trio].any()
            if not all(i in tracks for i in trio):
                continue
            for bar in range(bars - o.slice_bars + 1):
                if covered[bar:bar + o.slice_bars].all():
                    start = bar * spb
                    windows.append(np.stack([tracks[i][start:start + size] for i in trio], axis=-1))
        if not windows:
            raise ConversionError(f"no {o.slice_bars} bars where melody, bass and drums all play "
                                  f"(rests of at most {o.gap_bars} bars allowed)")
        return windows

    def _example(self, window: np.ndarray) -> Example:
        steps = len(window)
        onehot = np.zeros((steps, self.output_depth), dtype=np.float32)
        rows = np.arange(steps)[:, None]
        onehot[rows, self._offsets[:-1] + window.astype(np.int64)] = 1.0
        return Example(inputs=onehot, outputs=onehot.copy(), controls=np.zeros((steps, 0), dtype=np.float32),
                       length=steps)

    def from_tensors(self, outputs: np.ndarray, controls: np.ndarray | None = None,
                     qpm: float = DEFAULT_QPM) -> miditoolkit.MidiFile:
        """One window ``(T, 692)`` as three tracks: "melody" (piano), "bass" (electric bass, program 33)
        and "drums" (channel 10), each part read as its own converter reads it (the most likely class
        per step), at ``qpm``."""
        qpm = tempo(qpm)
        outputs = np.asarray(outputs)
        if outputs.ndim != 2 or outputs.shape[1] != self.output_depth:
            raise HvaeError(f"Converter 'trio' decodes outputs of shape (steps, {self.output_depth}), "
                            f"not {outputs.shape}.")
        melody, bass, drums = (outputs[:, a:b] for a, b in zip(self._offsets[:-1], self._offsets[1:]))
        notes = []
        for midi, program in ((self.melody.from_tensors(melody, qpm=qpm), 0),
                              (self.melody.from_tensors(bass, qpm=qpm), BASS_OUTPUT_PROGRAM),
                              (self.drums.from_tensors(drums, qpm=qpm), None)):
            notes += [dataclasses.replace(n, program=program if program is not None else n.program)
                      for n in read_midi(midi).notes]
        midi = to_midi(notes, qpm=qpm, time_signature=(self.options.quarters_per_bar, 4),
                       quarters=len(outputs) / self.options.steps_per_quarter)
        for instrument in midi.instruments:
            instrument.name = DRUMS if instrument.is_drum else BASS if instrument.program == BASS_OUTPUT_PROGRAM \
                else MELODY
        return midi


def _kind(is_drum: bool, program: int) -> str:
    if is_drum:
        return DRUMS
    if program in MELODY_PROGRAMS:
        return MELODY
    if program in BASS_PROGRAMS:
        return BASS
    return NO_PART
