"""Fuzzing: no input makes hvae raise anything but its own errors, and what a format can express
survives a round trip through it.

Spec:
- ``read_midi`` on any bytes (random, after a valid header, real GMD files with bits flipped,
  cut short or with another file's bytes spliced in) returns notes or raises ``MidiReadError``;
  the converters, given whatever it read, return examples or raise ``ConversionError``.
- Every converter's ``to_tensors`` on valid MIDI (random drum and piano notes, tempos and
  meters, written by miditoolkit) returns a list of examples of the converter's shape.
- ``from_tensors(to_tensors(x))`` keeps every note of each window: drum patterns on the grid
  (pitch and step), grooves (hits, velocities within 1/127, timing within a tick) and
  monophonic melodies (pitch, start and end step).
"""

from __future__ import annotations

import io
import random
import struct

import miditoolkit
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hvae
from hvae.errors import ConversionError, MidiReadError
from hvae.music import read_midi
from badmidi import DEMO_DIR

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUND_TRIPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REAL = [path.read_bytes() for path in sorted(DEMO_DIR.rglob("*.mid"), key=lambda p: p.stat().st_size)[:4]]
CONVERTERS = {"drums": {"slice_bars": 4}, "groove": {"split_bars": 4}, "melody": {"slice_bars": 4}}
HEADER = b"MThd" + struct.pack(">LHHH", 6, 0, 1, 480)
STEPS_PER_SECOND = 8  # 4 steps a quarter at 120 qpm
RANDOM_INPUTS = 2_000


def read_or_refuse(data: bytes) -> None:
    """``read_midi(data)``, letting only MidiReadError through."""
    try:
        read_midi(data)
    except MidiReadError:
        pass


def converters() -> list[hvae.Converter]:
    return [hvae.get_converter(name, **options) for name, options in CONVERTERS.items()]


def midi_bytes(midi: miditoolkit.MidiFile) -> bytes:
    buffer = io.BytesIO()
    midi.dump(file=buffer)
    return buffer.getvalue()


def small_file() -> miditoolkit.MidiFile:
    """Two bars of drums and piano with tempo, meter and key: every kind of event a converter reads."""
    midi = miditoolkit.MidiFile(ticks_per_beat=96)
    midi.tempo_changes = [miditoolkit.TempoChange(100.0, 0), miditoolkit.TempoChange(140.0, 384)]
    midi.time_signature_changes = [miditoolkit.TimeSignature(4, 4, 0)]
    midi.key_signature_changes = [miditoolkit.KeySignature("E", 0)]
    drums = miditoolkit.Instrument(program=0, is_drum=True, name="drums")
    drums.notes = [miditoolkit.Note(100, 36 + 2 * (i % 3), i * 24, i * 24 + 12) for i in range(32)]
    piano = miditoolkit.Instrument(program=0, name="piano")
    piano.notes = [miditoolkit.Note(80, 60 + i, i * 96, i * 96 + 90) for i in range(8)]
    midi.instruments = [drums, piano]
    return midi


# --- (a) read_midi on arbitrary and damaged bytes -------------------------------------------------------------------

@FUZZ
@given(st.binary(max_size=4096))
def test_read_midi_raises_only_midi_read_error_on_arbitrary_bytes(data):
    read_or_refuse(data)


@FUZZ
@given(st.binary(max_size=2048))
def test_read_midi_raises_only_midi_read_error_on_any_track_after_a_valid_header(body):
    read_or_refuse(HEADER + b"MTrk" + struct.pack(">L", len(body)) + body)


@FUZZ
@given(st.sampled_from(REAL), st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 7)), min_size=1, max_size=20))
def test_read_midi_raises_only_midi_read_error_on_real_files_with_flipped_bits(real, flips):
    data = bytearray(real)
    for position, bit in flips:
        data[position % len(data)] ^= 1 << bit
    read_or_refuse(bytes(data))


@FUZZ
@given(st.sampled_from(REAL), st.integers(0, 2**31))
def test_read_midi_raises_only_midi_read_error_on_real_files_cut_short(real, cut):
    read_or_refuse(real[:cut % len(real)])


@FUZZ
@given(st.sampled_from(REAL), st.sampled_from(REAL), st.integers(0, 2**31), st.integers(0, 2**31),
       st.integers(1, 512), st.booleans())
def test_read_midi_raises_only_midi_read_error_on_real_files_with_spliced_chunks(into, source, at, start, length,
                                                                                 replace):
    at, start = at % len(into), start % len(source)
    piece = source[start:start + length]
    read_or_refuse(into[:at] + piece + into[at + (len(piece) if replace else 0):])


@FUZZ
@given(st.sampled_from(REAL), st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), min_size=1,
                                       max_size=8))
def test_converters_raise_only_conversion_errors_on_whatever_damaged_real_files_read_as(real, changes):
    data = bytearray(real)
    for position, value in changes:
        data[position % len(data)] = value
    try:
        sequence = read_midi(bytes(data))
    except MidiReadError:
        return
    for converter in converters():
        try:
            converter.convert(sequence)
        except ConversionError:
            pass


def test_read_midi_raises_only_midi_read_error_on_2000_seeded_random_inputs():
    """Pure noise, noise after a valid header, and a small valid file with random bytes overwritten."""
    rng = random.Random(20240611)
    small = midi_bytes(small_file())
    for index in range(RANDOM_INPUTS):
        kind = index % 4
        if kind == 0:
            data = rng.randbytes(rng.randrange(64))
        elif kind == 1:
            body = rng.randbytes(rng.randrange(256))
            data = HEADER + b"MTrk" + struct.pack(">L", rng.choice([len(body), rng.randrange(2**32)])) + body
        else:
            data = bytearray(small)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data[:rng.randrange(len(data) + 1)] if kind == 3 else data)
        read_or_refuse(data)


# --- (b) the converters on valid MIDI -------------------------------------------------------------------------------

METERS = [(4, 4), (3, 4), (2, 4), (6, 8), (5, 4), (7, 8), (2, 2), (12, 8)]


@st.composite
def valid_midi(draw) -> bytes:
    """A MIDI file of up to 8 bars: drums, piano or both; a tempo and a meter (mostly 4/4) at the
    start and maybe a few changes; notes anywhere or on the sixteenth grid, of any length
    including zero, overlapping or not, sparse or dense (a note in every half bar)."""
    ppq = draw(st.sampled_from([24, 96, 220, 384, 480, 960]))
    bars = draw(st.one_of(st.integers(4, 8), st.integers(1, 8)))
    span = bars * 4 * ppq
    grid = ppq // 4 if draw(st.booleans()) else 1
    qpms = st.floats(20, 300)
    meters = st.sampled_from([(4, 4)] * len(METERS) + METERS)  # 4/4 more than half the time
    midi = miditoolkit.MidiFile(ticks_per_beat=ppq)
    changes = draw(st.sampled_from([0, 2]))  # at most this many tempo and meter changes after the start
    midi.tempo_changes = [miditoolkit.TempoChange(qpm, tick) for tick, qpm in [(0, draw(qpms))] + draw(
        st.lists(st.tuples(st.integers(1, span), qpms), max_size=changes))]
    midi.time_signature_changes = [miditoolkit.TimeSignature(num, den, tick) for tick, (num, den) in [(0, draw(meters))]
                                   + draw(st.lists(st.tuples(st.integers(1, span), meters), max_size=changes))]
    regions = [(half * 2 * ppq, 2 * ppq) for half in range(2 * bars)] if draw(st.booleans()) else [(0, span)]
    for is_drum in draw(st.sampled_from([(True,), (False,), (True, False)])):
        program = 0 if is_drum else draw(st.one_of(st.just(0), st.integers(0, 127)))
        pitches = st.integers(22, 82) if is_drum else st.integers(0, 127)
        instrument = miditoolkit.Instrument(program=program, is_drum=is_drum)
        for first, width in regions:
            notes = st.tuples(st.integers(0, (width - 1) // grid), st.integers(0, 2 * ppq), pitches,
                              st.integers(1, 127))
            instrument.notes += [miditoolkit.Note(velocity, pitch, first + at * grid, first + at * grid + length)
                                 for at, length, pitch, velocity in draw(st.lists(notes, min_size=1, max_size=4 if
                                                                                  len(regions) > 1 else 60))]
        midi.instruments.append(instrument)
    return midi_bytes(midi)


@pytest.mark.parametrize("name", CONVERTERS)
@FUZZ
@given(data=valid_midi())
def test_to_tensors_on_valid_midi_gives_examples_of_the_converters_shape(name, data):
    converter = hvae.get_converter(name, **CONVERTERS[name])
    for example in converter.to_tensors(data):
        assert example.inputs.shape == (converter.steps, converter.input_depth)
        assert example.outputs.shape == (converter.steps, converter.output_depth)


# --- (c) round trips ------------------------------------------------------------------------------------------------

def notes_of(midi: miditoolkit.MidiFile) -> list:
    return read_midi(midi).notes


@st.composite
def drum_patterns(draw) -> tuple[int, list[int]]:
    """``(bars, class bit mask per step)``: 4 to 8 bars with a hit on every downbeat (so no bar
    of silence splits the pattern into tracks)."""
    bars = draw(st.integers(4, 8))
    masks = [draw(st.integers(1 if step % 16 == 0 else 0, 511)) for step in range(bars * 16)]
    return bars, masks


@ROUND_TRIPS
@given(drum_patterns(), st.sampled_from([220, 480]), st.data())
def test_drum_patterns_on_the_grid_survive_a_round_trip_window_by_window(pattern, ppq, data):
    bars, masks = pattern
    converter = hvae.get_converter("drums", slice_bars=4)
    first_pitch = [pitches[0] for pitches in converter.classes]
    hits = [(first_pitch[c], step) for step, mask in enumerate(masks) for c in range(9) if mask >> c & 1]
    midi = miditoolkit.MidiFile(ticks_per_beat=ppq)
    drums = miditoolkit.Instrument(program=0, is_drum=True)
    tick = ppq // 4
    drums.notes = [miditoolkit.Note(data.draw(st.integers(1, 127)), pitch, step * tick,
                                    step * tick + data.draw(st.integers(1, tick))) for pitch, step in hits]
    midi.instruments = [drums]

    examples = converter.to_tensors(midi_bytes(midi))
    decoded = [frozenset((n.pitch, round(n.start * STEPS_PER_SECOND))
                         for n in notes_of(converter.from_tensors(e.outputs))) for e in examples]
    expected = {frozenset((pitch, step - 16 * bar) for pitch, step in hits if 16 * bar <= step < 16 * bar + 64)
                for bar in range(bars - 3)}
    assert len(decoded) == len(expected) and set(decoded) == expected


@st.composite
def grooves(draw) -> tuple[int, list[tuple[int, int, int, int]]]:
    """``(bars, hits)``: hits ``(step, class, velocity, offset in ticks at 480 a quarter)``, at most
    one per class and step, played up to 0.45 steps early or late, never early on the first step
    of a 4-bar window (MIDI has no time before the window's start); the last bar has a hit."""
    bars = draw(st.sampled_from([4, 8]))
    hits = draw(st.lists(st.tuples(st.integers(0, bars * 16 - 1), st.integers(0, 8), st.integers(1, 127),
                                   st.integers(-54, 54)), max_size=120, unique_by=lambda h: h[:2]))
    last = (draw(st.integers(bars * 16 - 16, bars * 16 - 1)), draw(st.integers(0, 8)), 100, 0)
    hits = [h for h in hits if h[:2] != last[:2]] + [last]
    return bars, [(step, c, velocity, abs(offset) if step % 64 == 0 else offset) for step, c, velocity, offset in hits]


@ROUND_TRIPS
@given(grooves())
def test_grooves_survive_a_round_trip_with_velocity_and_timing(groove):
    bars, hits = groove
    converter = hvae.get_converter("groove", split_bars=4)
    first_pitch = [pitches[0] for pitches in converter.classes]
    midi = miditoolkit.MidiFile(ticks_per_beat=480)
    drums = miditoolkit.Instrument(program=0, is_drum=True)
    drums.notes = [miditoolkit.Note(velocity, first_pitch[c], step * 120 + offset, step * 120 + offset + 10)
                   for step, c, velocity, offset in hits]
    midi.instruments = [drums]

    examples = converter.to_tensors(midi_bytes(midi))
    assert len(examples) == bars // 4
    tick = 0.5 / hvae.music.STANDARD_PPQ  # seconds per tick of the MIDI from_tensors writes
    for window, example in enumerate(examples):
        decoded = sorted((n.pitch, round(n.start * STEPS_PER_SECOND), n.velocity, n.start)
                         for n in notes_of(converter.from_tensors(example.outputs)))
        expected = sorted((first_pitch[c], step - 64 * window, velocity, ((step - 64 * window) * 120 + offset) / 960)
                          for step, c, velocity, offset in hits if 64 * window <= step < 64 * window + 64)
        assert [d[:2] for d in decoded] == [e[:2] for e in expected]
        assert all(abs(d[2] - e[2]) <= 1 and abs(d[3] - e[3]) <= tick for d, e in zip(decoded, expected))


@st.composite
def melodies(draw) -> list[tuple[int, int, int]]:
    """Monophonic notes ``(pitch, start step, end step)`` in 21-108, the first in bar 0, at most
    half a bar of rest between notes, lasting at least 4 bars."""
    notes = []
    step = draw(st.integers(0, 15))
    for gap, length, pitch in draw(st.lists(st.tuples(st.integers(0, 8), st.integers(1, 16), st.integers(21, 108)),
                                            min_size=1, max_size=40)):
        step += gap if notes else 0
        notes.append((pitch, step, step + length))
        step += length
    pitch, start, end = notes[-1]
    notes[-1] = (pitch, start, max(end, 64))
    return notes


@ROUND_TRIPS
@given(melodies())
def test_melodies_on_the_grid_survive_a_round_trip_window_by_window(notes):
    converter = hvae.get_converter("melody", slice_bars=4)
    midi = miditoolkit.MidiFile(ticks_per_beat=480)
    piano = miditoolkit.Instrument(program=0)
    piano.notes = [miditoolkit.Note(90, pitch, start * 120, end * 120) for pitch, start, end in notes]
    midi.instruments = [piano]

    examples = converter.to_tensors(midi_bytes(midi))
    decoded = [frozenset((n.pitch, round(n.start * STEPS_PER_SECOND), round(n.end * STEPS_PER_SECOND))
                         for n in notes_of(converter.from_tensors(e.outputs))) for e in examples]
    bars = -(-notes[-1][2] // 16)
    expected = {frozenset((pitch, start - 16 * bar, min(end, 16 * bar + 64) - 16 * bar) for pitch, start, end in notes
                          if 16 * bar <= start < 16 * bar + 64) for bar in range(bars - 3)}
    assert len(decoded) == len(expected) and set(decoded) == expected
