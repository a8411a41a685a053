"""A corpus of bad and awkward MIDI inputs, written to disk on demand.

``write_bad_corpus(folder)`` writes every input of ``BAD_INPUTS`` into ``folder`` and returns
their paths by name. Nothing is stored in the repository: each input is built here, with
mido where a valid MIDI structure is needed and from raw bytes where the point is a broken
one (the 100,000-note file is also built from bytes, because mido takes seconds to write it).

Each input says what is wrong with it and whether ``read_midi`` accepts it (``readable``):
a readable input is well-formed MIDI whose content is the trouble (no notes, 3/4 time,
tempo changes, absurd times, ...); the others must be refused with ``MidiReadError``.

Unreadable on disk: the tests run as root, for whom ``chmod 000`` does not stop reading,
so the corpus holds a directory named like a MIDI file and a symbolic link to nothing instead.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import zlib
from pathlib import Path
from typing import Callable, Iterable, Sequence

import mido
import numpy as np

import hvae

PPQ = 480  # ticks per quarter of the files built here
STEP = PPQ // 4  # ticks per sixteenth note, one grid step of the converters
DEMO_DIR = Path(hvae.__file__).parent / "demo" / "groove"
REAL_FILE = DEMO_DIR / "drummer1" / "session1" / "145_latin-brazilian-baiao_95_beat_4-4.mid"  # a GMD beat
MAX_DELTA = 2**28 - 1  # the largest delta time a MIDI variable-length number holds
HUGE_NOTES = 100_000

BEAT = {0: (36, 42), 4: (38, 42), 8: (36, 42), 12: (38, 42)}  # step in the bar: kick, snare, closed hi-hat
OTHER_BEAT = {0: (49, 51), 4: (45, 51), 8: (48, 46), 12: (50, 51)}  # crash, toms, open hi-hat, ride
TUNE = (60, 62, 64, 65, 67, 69, 71, 72)  # a C major scale, one note a quarter
OTHER_TUNE = (86, 84, 83, 81, 79, 77, 76, 74)  # an octave higher, down from D: no pitch of TUNE


@dataclasses.dataclass(frozen=True)
class BadInput:
    name: str  # file name in the corpus folder
    what: str  # what is wrong with it
    readable: bool  # True: read_midi accepts it and the trouble is in its content
    write: Callable[[Path], None]  # writes it at the given path


# --- building blocks ------------------------------------------------------------------------------------------------

Event = tuple[int, mido.Message | mido.MetaMessage]  # (absolute tick, message)


def _track(events: Iterable[Event]) -> mido.MidiTrack:
    """Events at absolute ticks as a track of delta times; events on one tick keep their order."""
    track = mido.MidiTrack()
    now = 0
    for tick, message in sorted(events, key=lambda e: e[0]):
        track.append(message.copy(time=tick - now))
        now = tick
    return track


def _save(path: Path, tracks: Sequence[Iterable[Event]], ppq: int = PPQ) -> None:
    midi = mido.MidiFile(type=1 if len(tracks) > 1 else 0, ticks_per_beat=ppq)
    midi.tracks.extend(_track(events) for events in tracks)
    midi.save(path)


def _meter(tick: int, numerator: int, denominator: int) -> Event:
    return tick, mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator)


def _tempo(tick: int, qpm: float) -> Event:
    return tick, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(qpm))


def _note(tick: int, length: int, pitch: int, channel: int, velocity: int = 90) -> list[Event]:
    return [(tick, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)),
            (tick + length, mido.Message("note_off", channel=channel, note=pitch))]


def _beat(bars: int, first_bar: int = 0, steps_per_bar: int = 16, beat: dict = BEAT, ticks_per_step: int = STEP,
          start_tick: int = 0, length: int = STEP // 2) -> list[Event]:
    """Drum hits (channel 10) of ``beat`` in ``bars`` bars, from bar ``first_bar`` after ``start_tick``."""
    events = []
    for bar in range(first_bar, first_bar + bars):
        for step, pitches in beat.items():
            if step < steps_per_bar:
                for pitch in pitches:
                    events += _note(start_tick + (bar * steps_per_bar + step) * ticks_per_step, length, pitch, 9)
    return events


def _tune(bars: int, first_bar: int = 0, quarters_per_bar: int = 4, tune: Sequence[int] = TUNE,
          start_tick: int = 0, length: int = 3 * PPQ // 4) -> list[Event]:
    """Piano (channel 1, program 0): one note of ``tune`` a quarter, each ``length`` ticks long."""
    first = first_bar * quarters_per_bar
    return [event for quarter in range(first, first + bars * quarters_per_bar)
            for event in _note(start_tick + quarter * PPQ, length, tune[quarter % len(tune)], 0)]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack(">L", len(body)) + body


def _header(midi_format: int = 0, tracks: int = 1, division: int = PPQ) -> bytes:
    """An MThd chunk; ``division`` is written as an unsigned 16-bit number (SMPTE when its top bit is set)."""
    return _chunk(b"MThd", struct.pack(">HHH", midi_format, tracks, division))


def _varint(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _raw_track(events: Iterable[tuple[int, bytes]]) -> bytes:
    """An MTrk chunk of ``(delta ticks, event bytes)``, closed by an end-of-track."""
    body = b"".join(_varint(delta) + event for delta, event in events) + b"\x00\xff\x2f\x00"
    return _chunk(b"MTrk", body)


def _raw_beat(bars: int, ticks_per_step: int = STEP) -> list[tuple[int, bytes]]:
    """Kick and snare on alternate quarters, half a step long (at least a tick), as raw
    ``(delta ticks, event)``; the last note-off falls inside the last step."""
    length = max(1, ticks_per_step // 2)
    events = []
    for quarter in range(bars * 4):
        pitch = 36 if quarter % 2 == 0 else 38
        rest = 0 if quarter == 0 else 4 * ticks_per_step - length
        events += [(rest, bytes([0x99, pitch, 100])), (length, bytes([0x89, pitch, 0]))]
    return events


def _png() -> bytes:
    """A real 1x1 black PNG image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">L", len(data)) + kind + data + struct.pack(">L", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">LLBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b""))


# --- the inputs -----------------------------------------------------------------------------------------------------

def _truncated(cut: int) -> Callable[[Path], None]:
    """The first ``cut`` bytes of REAL_FILE (negative: all but the last ``-cut``)."""
    def write(path: Path) -> None:
        data = REAL_FILE.read_bytes()
        path.write_bytes(data[:cut if cut >= 0 else len(data) + cut])
    return write


def _no_notes(path: Path) -> None:
    _save(path, [[_tempo(0, 120), _meter(0, 4, 4), (16 * PPQ, mido.MetaMessage("marker", text="end"))]])


def _only_piano(path: Path) -> None:
    _save(path, [[_tempo(0, 120), _meter(0, 4, 4), *_tune(8)]])


def _tempo_change(path: Path) -> None:
    """8 bars of BEAT and TUNE at 120 qpm, then 8 bars of OTHER_BEAT and OTHER_TUNE at 90 qpm."""
    change = 8 * 4 * PPQ
    _save(path, [[_tempo(0, 120), _meter(0, 4, 4), _tempo(change, 90)],
                 _beat(8) + _beat(8, first_bar=8, beat=OTHER_BEAT),
                 _tune(8) + _tune(8, first_bar=8, tune=OTHER_TUNE)])


def _meter_change(path: Path) -> None:
    """8 bars of BEAT and TUNE in 4/4, then 8 bars of OTHER_BEAT and OTHER_TUNE in 3/4."""
    change = 8 * 4 * PPQ
    _save(path, [[_tempo(0, 120), _meter(0, 4, 4), _meter(change, 3, 4)],
                 _beat(8) + _beat(8, steps_per_bar=12, beat=OTHER_BEAT, start_tick=change),
                 _tune(8) + _tune(8, quarters_per_bar=3, tune=OTHER_TUNE, start_tick=change)])


def _waltz(numerator: int, denominator: int) -> Callable[[Path], None]:
    """8 bars of drums and piano in a meter of 12 sixteenths a bar (3/4 or 6/8)."""
    def write(path: Path) -> None:
        _save(path, [[_tempo(0, 120), _meter(0, numerator, denominator)],
                     _beat(8, steps_per_bar=12), _tune(8, quarters_per_bar=3)])
    return write


def _zero_length(path: Path) -> None:
    """8 bars of drums and piano, every note-off on the tick of its note-on."""
    _save(path, [[_tempo(0, 120), _meter(0, 4, 4), *_beat(8, length=0), *_tune(8, length=0)]])


def _negative_length(path: Path) -> None:
    """Every note-off a step before its note-on (events reversed); each pitch sounds once."""
    events = []
    for index, pitch in enumerate(list(range(35, 60)) + list(range(60, 84))):
        channel = 9 if pitch < 60 else 0
        events += [(index * PPQ, mido.Message("note_off", channel=channel, note=pitch)),
                   (index * PPQ + STEP, mido.Message("note_on", channel=channel, note=pitch, velocity=90))]
    _save(path, [[_tempo(0, 120), *events]])


def _overlapping(path: Path) -> None:
    """Hi-hat hits three steps long every second step; piano notes of one pitch overlapping by a quarter."""
    hats = [event for step in range(0, 8 * 16, 2) for event in _note(step * STEP, 3 * STEP, 42, 9)]
    piano = [event for quarter in range(0, 8 * 4) for event in _note(quarter * PPQ, 2 * PPQ, 64, 0)]
    _save(path, [[_tempo(0, 120), *_beat(8), *hats], piano])


def _absurd_delta(ppq: int, deltas: int) -> Callable[[Path], None]:
    """8 bars of kick and snare, then ``deltas`` delta times of 2**28 - 1 ticks before one last hit."""
    def write(path: Path) -> None:
        far = [(MAX_DELTA, b"\xff\x01\x00")] * (deltas - 1)  # empty text events
        hit = [(MAX_DELTA, b"\x99\x2a\x64"), (max(1, ppq // 8), b"\x89\x2a\x00")]
        path.write_bytes(_header(division=ppq) + _raw_track(_raw_beat(8, ppq // 4) + far + hit))
    return write


def _huge(path: Path) -> None:
    """100,000 notes over 25,000 steps: on each, a kick (every 8th step) or a snare, a closed hi-hat
    and a two-note piano chord."""
    steps = HUGE_NOTES // 4
    rng = np.random.default_rng(0)
    chords = rng.integers(48, 72, size=steps)
    velocities = rng.integers(30, 128, size=steps)
    events = bytearray()
    for step in range(steps):
        drum = 36 if step % 8 == 0 else 38
        low, velocity = int(chords[step]), int(velocities[step])
        events += bytes([0, 0x99, drum, velocity, 0, 0x99, 42, 80, 0, 0x90, low, 80, 0, 0x90, low + 7, 80])
        events += _varint(STEP) + bytes([0x89, drum, 0, 0, 0x89, 42, 0, 0, 0x80, low, 0, 0, 0x80, low + 7, 0])
    body = bytes(events) + b"\x00\xff\x2f\x00"
    path.write_bytes(_header() + _chunk(b"MTrk", body))


def _raw(data: bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(data)
    return write


def _with_meta(meta: bytes) -> Callable[[Path], None]:
    """An 8-bar beat whose track opens with the raw meta event ``meta`` (FF, type, length, data)."""
    return _raw(_header() + _raw_track([(0, meta)] + _raw_beat(8)))


def _directory(path: Path) -> None:
    path.mkdir()


def _dangling_link(path: Path) -> None:
    path.symlink_to(path.with_name("nothing-here.mid"))


BAD_INPUTS: tuple[BadInput, ...] = (
    BadInput("empty.mid", "an empty file", False, _raw(b"")),
    BadInput("random-bytes.mid", "4 kB of random bytes", False, _raw(np.random.default_rng(1).bytes(4096))),
    BadInput("png-image.mid", "a PNG image", False, _raw(_png())),
    BadInput("text.mid", "a text file", False, _raw(b"MIDI notes: C4 E4 G4\nthis is not a MIDI file\n")),
    BadInput("truncated-in-header.mid", "a GMD file cut inside its header", False, _truncated(10)),
    BadInput("truncated-after-header.mid", "a GMD file cut after its header chunk", False, _truncated(14)),
    BadInput("truncated-after-track-header.mid", "a GMD file cut after its MTrk header", False, _truncated(22)),
    BadInput("truncated-in-half.mid", "a GMD file cut in half", False, _truncated(REAL_FILE.stat().st_size // 2)),
    BadInput("truncated-by-one-byte.mid", "a GMD file missing its last byte", False, _truncated(-1)),
    BadInput("header-without-tracks.mid", "a valid header announcing no tracks, and nothing else", False,
             _raw(_header(tracks=0))),
    BadInput("smpte-division.mid", "SMPTE time division (25 fps), no ticks per quarter", False,
             _raw(_header(division=0xE728) + _raw_track(_raw_beat(8)))),
    BadInput("type-2.mid", "MIDI type 2 (independent sequences)", False,
             _raw(_header(midi_format=2) + _raw_track(_raw_beat(8)))),
    BadInput("running-status-without-status.mid", "a track opening with a data byte", False,
             _raw(_header() + _raw_track([(0, b"\x40\x40")]))),
    BadInput("bad-key-signature.mid", "a key signature of mode 8", False, _with_meta(b"\xff\x59\x02\x00\x08")),
    BadInput("zero-tempo.mid", "a tempo of 0 microseconds per quarter", False, _with_meta(b"\xff\x51\x03\x00\x00\x00")),
    BadInput("absurd-ticks-beyond-limit.mid", "40 delta times of 2**28 - 1 ticks: past 10**10 ticks", False,
             _absurd_delta(PPQ, 40)),
    BadInput("directory.mid", "a directory named like a MIDI file", False, _directory),
    BadInput("dangling-link.mid", "a symbolic link to a file that does not exist", False, _dangling_link),
    BadInput("no-notes.mid", "tempo, meter and a marker, but no notes", True, _no_notes),
    BadInput("only-piano.mid", "8 bars of piano, no drums", True, _only_piano),
    BadInput("tempo-change.mid", "drums and piano, 120 qpm for 8 bars then 90 qpm for 8 bars", True, _tempo_change),
    BadInput("meter-change.mid", "drums and piano, 4/4 for 8 bars then 3/4 for 8 bars", True, _meter_change),
    BadInput("waltz-3-4.mid", "8 bars of drums and piano in 3/4", True, _waltz(3, 4)),
    BadInput("jig-6-8.mid", "8 bars of drums and piano in 6/8", True, _waltz(6, 8)),
    BadInput("zero-numerator.mid", "a time signature of 0/4", True, _with_meta(b"\xff\x58\x04\x00\x02\x18\x08")),
    BadInput("absurd-denominator.mid", "a time signature of 4/2**255", True,
             _with_meta(b"\xff\x58\x04\x04\xff\x18\x08")),
    BadInput("zero-length-notes.mid", "every note-off on the tick of its note-on", True, _zero_length),
    BadInput("negative-length-notes.mid", "every note-off a step before its note-on", True, _negative_length),
    BadInput("overlapping-notes.mid", "notes of one pitch overlapping the next", True, _overlapping),
    BadInput("absurd-delta.mid", "8 bars, then a delta time of 2**28 - 1 ticks (2.2 million steps)", True,
             _absurd_delta(PPQ, 1)),
    BadInput("absurd-delta-coarse.mid", "8 bars at 4 ticks a quarter, then 2**28 - 1 ticks (268 million steps)",
             True, _absurd_delta(4, 1)),
    BadInput("hundred-thousand-notes.mid", "100,000 notes: drums and piano chords over 25,000 steps", True, _huge),
)


def write_bad_corpus(folder: str | os.PathLike) -> dict[str, Path]:
    """Write every input of ``BAD_INPUTS`` into ``folder`` (created if needed); their paths by name."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for bad in BAD_INPUTS:
        paths[bad.name] = folder / bad.name
        bad.write(paths[bad.name])
    return paths
