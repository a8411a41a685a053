"""Notes in seconds and in steps: the reference's MIDI semantics, without TensorFlow.

``read_midi`` reads a MIDI file the way the reference does (its MIDI layer is pretty_midi
under note_seq): tempo and time-signature events are read from the first track only, a
note-off closes every open note of its channel and pitch that started on an earlier tick,
and a note that opens and closes on the same tick is dropped. Parsing is mido's (the MIDI
library under miditoolkit); writing uses miditoolkit.

``quantize`` follows the reference's quantisation: one time signature and one tempo per
file (or an error), steps = int(seconds * steps_per_second + 0.5), a note is at least one
step long, and no note may start before zero.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import stat
from collections import defaultdict
from typing import Callable, Iterable, Sequence, Union

import miditoolkit
import mido
import numpy as np

from hvae.errors import ConversionError, MidiReadError

DEFAULT_QPM = 120.0
STANDARD_PPQ = 220  # ticks per quarter the reference writes
END_MARKER = "end"  # text of the marker (and, in files hvae writes, the text event) on a window's last tick
MAX_TICK = 10**10  # the reference reads MIDI with absurd tick values too; we refuse beyond this
# Larger files are refused before parsing. mido's time and memory grow with the events: the densest file
# at the limit (a million 4-byte events) reads in 9.8 s with a 534 MB peak on 2 busy cores, where the
# issue's 6-8 MB files took a minute and 1.3 GB; the largest files of the GMD and MAESTRO are 160 KB.
MAX_MIDI_BYTES = 4 << 20
MAX_STEPS = 1_000_000  # longest quantized sequence converted (35 hours at 4 steps per quarter, 120 qpm)
DRUM_CHANNEL = 9
SUSTAIN_CONTROL = 64  # the sustain pedal's MIDI control number; values 64-127 hold it down
GM_PROGRAMS = (  # General MIDI program names, by program number 0-127
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano",
    "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavinet", "Celesta", "Glockenspiel", "Music Box",
    "Vibraphone", "Marimba", "Xylophone", "Tubular Bells", "Dulcimer", "Drawbar Organ", "Percussive Organ",
    "Rock Organ", "Church Organ", "Reed Organ", "Accordion", "Harmonica", "Tango Accordion",
    "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)", "Electric Guitar (jazz)", "Electric Guitar (clean)",
    "Electric Guitar (muted)", "Overdriven Guitar", "Distortion Guitar", "Guitar Harmonics", "Acoustic Bass",
    "Electric Bass (finger)", "Electric Bass (pick)", "Fretless Bass", "Slap Bass 1", "Slap Bass 2",
    "Synth Bass 1", "Synth Bass 2", "Violin", "Viola", "Cello", "Contrabass", "Tremolo Strings",
    "Pizzicato Strings", "Orchestral Harp", "Timpani", "String Ensemble 1", "String Ensemble 2",
    "Synth Strings 1", "Synth Strings 2", "Choir Aahs", "Voice Oohs", "Synth Voice", "Orchestra Hit", "Trumpet",
    "Trombone", "Tuba", "Muted Trumpet", "French Horn", "Brass Section", "Synth Brass 1", "Synth Brass 2",
    "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax", "Oboe", "English Horn", "Bassoon", "Clarinet",
    "Piccolo", "Flute", "Recorder", "Pan Flute", "Blown Bottle", "Shakuhachi", "Whistle", "Ocarina",
    "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)", "Lead 5 (charang)",
    "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)", "Pad 1 (new age)", "Pad 2 (warm)",
    "Pad 3 (polysynth)", "Pad 4 (choir)", "Pad 5 (bowed)", "Pad 6 (metallic)", "Pad 7 (halo)", "Pad 8 (sweep)",
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)", "FX 5 (brightness)",
    "FX 6 (goblins)", "FX 7 (echoes)", "FX 8 (sci-fi)", "Sitar", "Banjo", "Shamisen", "Koto", "Kalimba",
    "Bagpipe", "Fiddle", "Shanai", "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock", "Taiko Drum",
    "Melodic Tom", "Synth Drum", "Reverse Cymbal", "Guitar Fret Noise", "Breath Noise", "Seashore",
    "Bird Tweet", "Telephone Ring", "Helicopter", "Applause", "Gunshot")

MidiSource = Union[str, os.PathLike, bytes, miditoolkit.MidiFile, "NoteSequence"]


@dataclasses.dataclass
class Note:
    pitch: int
    velocity: int
    start: float  # seconds
    end: float  # seconds
    is_drum: bool = False
    program: int = 0
    instrument: int = 0  # index of the MIDI instrument (track, channel, program) it came from
    start_step: int = 0  # filled by quantize()
    end_step: int = 0


@dataclasses.dataclass
class NoteSequence:
    """Notes plus the tempo and meter information a converter needs. Times in seconds."""

    notes: list[Note] = dataclasses.field(default_factory=list)
    tempos: list[tuple[float, float]] = dataclasses.field(default_factory=list)  # (time s, qpm)
    time_signatures: list[tuple[float, int, int]] = dataclasses.field(default_factory=list)  # (time s, num, den)
    total_time: float = 0.0  # end of the last note, seconds
    # Sustain-pedal changes (control 64): (time s, instrument, value), each instrument's in file order. A
    # pedal set before an instrument's first note counts for it, as the reference reads it.
    sustain: list[tuple[float, int, int]] = dataclasses.field(default_factory=list)
    # Chord symbols (time s, chord), as the reference's chord annotations: each holds until the next. Split
    # like tempos (a piece opens with the chord in force); MIDI files carry none, converters infer them.
    chords: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    ticks_per_quarter: int = STANDARD_PPQ
    source: str = ""  # file name, for messages
    # Filled by quantize():
    steps_per_quarter: int = 0
    qpm: float = DEFAULT_QPM
    total_steps: int = 0
    numerator: int = 4
    denominator: int = 4

    @property
    def steps_per_bar(self) -> float:
        """Steps in one bar of this (quantized) sequence; may be fractional (e.g. 7/8 at 1 step/quarter)."""
        quarters_per_bar = 4.0 * self.numerator / self.denominator
        return quarters_per_bar * self.steps_per_quarter

    @property
    def steps_per_second(self) -> float:
        return self.steps_per_quarter * self.qpm / 60.0


def _open_mido(source: MidiSource, name: str) -> mido.MidiFile:
    try:
        if isinstance(source, (bytes, bytearray)):
            return mido.MidiFile(file=io.BytesIO(source), clip=True)
        return mido.MidiFile(filename=os.fspath(source), clip=True)
    except FileNotFoundError:
        raise MidiReadError(f"{name}: no such file") from None
    except PermissionError:
        raise MidiReadError(f"{name}: permission denied") from None
    except IsADirectoryError:
        raise MidiReadError(f"{name}: is a directory") from None
    except EOFError:
        raise MidiReadError(f"{name}: not a readable MIDI file (it ends early: empty or truncated)") from None
    except (OSError, ValueError, KeyError, IndexError, TypeError, mido.KeySignatureError) as exc:
        raise MidiReadError(f"{name}: not a readable MIDI file ({type(exc).__name__}: {exc})") from None


def _check_source(source: str | os.PathLike | bytes, name: str) -> None:
    """Refuse, without opening it, a path that is not a plain file (a FIFO would block the read for ever;
    a device never ends), and any MIDI larger than ``MAX_MIDI_BYTES``."""
    if isinstance(source, (bytes, bytearray)):
        size = len(source)
    else:
        try:
            info = os.stat(source)
        except FileNotFoundError:
            raise MidiReadError(f"{name}: no such file") from None
        except OSError as exc:
            raise MidiReadError(f"{name}: cannot be read ({exc.strerror or exc})") from None
        if stat.S_ISDIR(info.st_mode):
            raise MidiReadError(f"{name}: is a directory")
        if not stat.S_ISREG(info.st_mode):
            kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                     (stat.S_ISSOCK, "a socket"))
            kind = next((what for test, what in kinds if test(info.st_mode)), "not a plain file")
            raise MidiReadError(f"{name}: is {kind}, not a MIDI file (not opened)")
        size = info.st_size
    if size > MAX_MIDI_BYTES:
        raise MidiReadError(f"{name}: {size / 2**20:.0f} MiB, more than the {MAX_MIDI_BYTES // 2**20} MiB a MIDI file "
                            f"may have (its events would take minutes to read; the largest in GMD and MAESTRO are 160 KB)")


def read_midi(source: MidiSource) -> NoteSequence:
    """Read MIDI (a path, bytes, a ``miditoolkit.MidiFile`` or a NoteSequence) into seconds.

    Raises :class:`MidiReadError` for anything that is not readable MIDI.
    """
    if isinstance(source, NoteSequence):
        return source
    if isinstance(source, miditoolkit.MidiFile):
        return from_miditoolkit(source)
    name = "<bytes>" if isinstance(source, (bytes, bytearray)) else os.fspath(source)
    _check_source(source, name)
    midi = _open_mido(source, name)
    try:
        return _from_mido(midi, name)
    except MidiReadError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, OverflowError, MemoryError) as exc:
        raise MidiReadError(f"{name}: malformed MIDI ({type(exc).__name__}: {exc})") from None


def _from_mido(midi: mido.MidiFile, name: str) -> NoteSequence:
    if midi.type == 2:
        raise MidiReadError(f"{name}: MIDI type 2 (independent sequences) is not supported")
    if not midi.tracks:
        raise MidiReadError(f"{name}: no tracks")
    resolution = midi.ticks_per_beat
    if not resolution or resolution <= 0:
        raise MidiReadError(f"{name}: invalid ticks per quarter {resolution}")

    # Absolute ticks per event, track by track.
    tracks: list[list[tuple[int, mido.Message]]] = []
    max_tick = 0
    for track in midi.tracks:
        tick = 0
        events = []
        for msg in track:
            tick += msg.time
            events.append((tick, msg))
        if events:
            max_tick = max(max_tick, events[-1][0])
        tracks.append(events)
    if max_tick > MAX_TICK:
        raise MidiReadError(f"{name}: largest tick {max_tick} is absurd; the file is probably corrupt")

    # Tempo map from the first track only, as the reference.
    scales = [(0, 60.0 / (DEFAULT_QPM * resolution))]  # (tick, seconds per tick)
    for tick, msg in tracks[0]:
        if msg.type == "set_tempo":
            if msg.tempo <= 0:
                raise MidiReadError(f"{name}: tempo of zero at tick {tick}")
            scale = 60.0 / ((6e7 / msg.tempo) * resolution)
            if tick == 0:
                scales = [(0, scale)]
            elif scale != scales[-1][1]:
                scales.append((tick, scale))
    seconds = _tick_seconds(scales)

    ns = NoteSequence(ticks_per_quarter=resolution, source=name)
    for tick, scale in scales:
        ns.tempos.append((seconds(tick), 60.0 / (scale * resolution)))
    for tick, msg in tracks[0]:
        if msg.type == "time_signature":
            ns.time_signatures.append((seconds(tick), msg.numerator, msg.denominator))

    # Instruments keyed by (program, channel, track), in order of first note, as the reference. Its
    # pedals: those set while it plays, and, as the reference's reader keeps them, those of one list that its
    # track and channel start when a control change or pitch bend comes with no instrument of the current
    # program there: every instrument made there later shares that list.
    instrument_index: dict[tuple[int, int, int], int] = {}
    notes_by_instrument: list[list[Note]] = []
    pedals_by_instrument: list[list[tuple[float, int]]] = []
    early_pedals: dict[tuple[int, int], list[tuple[float, int]]] = {}
    for track_idx, events in enumerate(tracks):
        open_notes: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        program = [0] * 16
        for tick, msg in events:
            kind = msg.type
            if kind == "program_change":
                program[msg.channel] = msg.program
            elif kind == "control_change" or kind == "pitchwheel":
                ikey = (program[msg.channel], msg.channel, track_idx)
                if ikey in instrument_index:
                    pedals = pedals_by_instrument[instrument_index[ikey]]
                else:
                    pedals = early_pedals.setdefault((msg.channel, track_idx), [])
                if kind == "control_change" and msg.control == SUSTAIN_CONTROL:
                    pedals.append((seconds(tick), msg.value))
            elif kind == "note_on" and msg.velocity > 0:
                open_notes[(msg.channel, msg.note)].append((tick, msg.velocity))
            elif kind == "note_off" or kind == "note_on":
                key = (msg.channel, msg.note)
                if key not in open_notes:
                    continue
                opened = open_notes[key]
                to_close = [(s, v) for s, v in opened if s != tick]
                to_keep = [(s, v) for s, v in opened if s == tick]
                for start_tick, velocity in to_close:
                    ikey = (program[msg.channel], msg.channel, track_idx)
                    if ikey not in instrument_index:
                        instrument_index[ikey] = len(notes_by_instrument)
                        notes_by_instrument.append([])
                        pedals_by_instrument.append(early_pedals.get((msg.channel, track_idx), []))
                    inst = instrument_index[ikey]
                    notes_by_instrument[inst].append(Note(
                        pitch=msg.note, velocity=velocity, start=seconds(start_tick), end=seconds(tick),
                        is_drum=msg.channel == DRUM_CHANNEL, program=program[msg.channel], instrument=inst))
                if to_close and to_keep:
                    open_notes[key] = to_keep
                else:
                    del open_notes[key]
    for notes in notes_by_instrument:
        ns.notes.extend(notes)
    ns.sustain = [(time, inst, value) for inst, pedals in enumerate(pedals_by_instrument) for time, value in pedals]
    ns.total_time = max((n.end for n in ns.notes), default=0.0)
    return ns


def _tick_seconds(scales: Sequence[tuple[int, float]]) -> Callable[[int], float]:
    """Tick -> seconds for a tempo map of ``(tick, seconds per tick)`` changes, the first at tick 0.

    The seconds at each change are accumulated change by change, the way the reference builds
    its tick table, so times agree with it to the last bit.
    """
    scale_ticks = np.array([t for t, _ in scales], dtype=np.int64)
    scale_values = np.array([s for _, s in scales], dtype=np.float64)
    scale_starts = np.zeros(len(scales))
    for i in range(1, len(scales)):
        scale_starts[i] = scale_starts[i - 1] + scale_values[i - 1] * (scale_ticks[i] - scale_ticks[i - 1])

    def seconds(tick: int) -> float:
        i = int(np.searchsorted(scale_ticks, tick, side="right")) - 1
        return float(scale_starts[i] + scale_values[i] * (tick - scale_ticks[i]))

    return seconds


def from_miditoolkit(midi: miditoolkit.MidiFile) -> NoteSequence:
    """Convert an in-memory ``miditoolkit.MidiFile`` (ticks) to a NoteSequence (seconds).

    Seconds and tempos use the same arithmetic as reading the file's bytes, so a file gives
    the same times either way (to the last bit, which matters for notes half a step off the grid).
    """
    resolution = midi.ticks_per_beat
    scales = [(0, 60.0 / (DEFAULT_QPM * resolution))]  # (tick, seconds per tick)
    for change in sorted(midi.tempo_changes, key=lambda t: t.time):
        scale = 60.0 / (change.tempo * resolution)
        if change.time == 0:
            scales = [(0, scale)]
        elif scale != scales[-1][1]:
            scales.append((change.time, scale))
    seconds = _tick_seconds(scales)

    ns = NoteSequence(ticks_per_quarter=resolution, source="<MidiFile>")
    ns.tempos = [(seconds(tick), 60.0 / (scale * resolution)) for tick, scale in scales]
    ns.time_signatures = [(seconds(ts.time), ts.numerator, ts.denominator) for ts in midi.time_signature_changes]
    for index, inst in enumerate(midi.instruments):
        for n in inst.notes:
            if n.end <= n.start:
                continue
            ns.notes.append(Note(n.pitch, n.velocity, seconds(n.start), seconds(n.end),
                                 bool(inst.is_drum), int(inst.program), index))
        ns.sustain += [(seconds(c.time), index, c.value) for c in inst.control_changes if c.number == SUSTAIN_CONTROL]
    ns.total_time = max((n.end for n in ns.notes), default=0.0)
    return ns



def quantize_to_step(seconds: float, steps_per_second: float, cutoff: float = 0.5) -> int:
    """The reference's rounding: ``int(seconds * steps_per_second + (1 - cutoff))``."""
    return int(seconds * steps_per_second + (1.0 - cutoff))


def quantize(ns: NoteSequence, steps_per_quarter: int) -> NoteSequence:
    """A quantized copy of ``ns`` (note steps filled in), as the reference quantizes.

    Raises :class:`ConversionError` for a time-signature change, a tempo change, a bad
    time signature, a note at negative time or notes reaching beyond ``MAX_STEPS`` steps.
    """
    numerator, denominator = 4, 4
    if ns.time_signatures:
        sigs = sorted(ns.time_signatures, key=lambda ts: ts[0])
        if sigs[0][0] != 0 and not (sigs[0][1] == 4 and sigs[0][2] == 4):
            raise ConversionError(f"implicit time-signature change from 4/4 to {sigs[0][1]}/{sigs[0][2]}")
        for _, num, den in sigs[1:]:
            if (num, den) != (ns.time_signatures[0][1], ns.time_signatures[0][2]):
                raise ConversionError(
                    f"time-signature change from {sigs[0][1]}/{sigs[0][2]} to {num}/{den}")
        numerator, denominator = ns.time_signatures[0][1], ns.time_signatures[0][2]
    if denominator <= 0 or denominator & (denominator - 1):
        raise ConversionError(f"time signature {numerator}/{denominator}: denominator is not a power of 2")
    if numerator == 0:
        raise ConversionError(f"time signature {numerator}/{denominator}: numerator is 0")
    qpm = DEFAULT_QPM
    if ns.tempos:
        tempos = sorted(ns.tempos, key=lambda t: t[0])
        if tempos[0][0] != 0 and tempos[0][1] != DEFAULT_QPM:
            raise ConversionError(f"implicit tempo change from 120 qpm to {tempos[0][1]:.1f} qpm")
        for _, t_qpm in tempos[1:]:
            if t_qpm != ns.tempos[0][1]:
                raise ConversionError(f"tempo change from {tempos[0][1]:.1f} qpm to {t_qpm:.1f} qpm")
        qpm = ns.tempos[0][1]
    steps_per_second = steps_per_quarter * qpm / 60.0
    notes = []
    total_steps = quantize_to_step(ns.total_time, steps_per_second)
    for n in ns.notes:
        start = quantize_to_step(n.start, steps_per_second)
        end = quantize_to_step(n.end, steps_per_second)
        if end == start:
            end += 1
        if start < 0 or end < 0:
            raise ConversionError(f"note at negative time (step {start})")
        total_steps = max(total_steps, end)
        notes.append(dataclasses.replace(n, start_step=start, end_step=end))
    if total_steps > MAX_STEPS:
        raise ConversionError(f"notes reach step {total_steps:,} ({ns.total_time:,.0f} s); at most "
                              f"{MAX_STEPS:,} steps are converted")
    return dataclasses.replace(
        ns, notes=notes, tempos=[(0.0, qpm)], time_signatures=[(0.0, numerator, denominator)],
        steps_per_quarter=steps_per_quarter, qpm=qpm, total_steps=total_steps,
        numerator=numerator, denominator=denominator)


def to_midi(notes: Iterable[Note], qpm: float = DEFAULT_QPM, ticks_per_quarter: int = STANDARD_PPQ,
            time_signature: tuple[int, int] | None = None, quarters: float = 0.0) -> miditoolkit.MidiFile:
    """Write notes (seconds) into a ``miditoolkit.MidiFile`` at a constant tempo.

    Drum notes go to one drum instrument (channel 10) named "drums"; other notes to one instrument
    per program, in order of first appearance, named by its General MIDI program. The notes are the
    reference's, also where one sounds past the window (a late hit's note-off). With ``quarters`` (a
    window's length) ``max_tick`` is that length and a marker "end" sits on it; without, ``max_tick``
    is the last note's end. :func:`hvae.midifile.midi_bytes` (``hvae.write_midi``) writes the file
    exactly that long, cutting what sounds past it.
    """
    midi = miditoolkit.MidiFile(ticks_per_beat=ticks_per_quarter)
    midi.tempo_changes = [miditoolkit.TempoChange(float(qpm), 0)]
    if time_signature is not None:
        midi.time_signature_changes = [miditoolkit.TimeSignature(time_signature[0], time_signature[1], 0)]
    ticks_per_second = ticks_per_quarter * qpm / 60.0
    length = round(quarters * ticks_per_quarter)  # 0: as long as the notes
    instruments: dict[tuple[int, bool], miditoolkit.Instrument] = {}
    for n in notes:
        key = (n.program, n.is_drum)
        if key not in instruments:
            instruments[key] = miditoolkit.Instrument(program=n.program, is_drum=n.is_drum,
                                                      name=track_name(n.program, n.is_drum))
        start = _nearest_tick(n.start, ticks_per_second)
        end = max(_nearest_tick(n.end, ticks_per_second), start + 1)
        instruments[key].notes.append(miditoolkit.Note(int(n.velocity), int(n.pitch), start, end))
    midi.instruments = list(instruments.values())
    if length:
        midi.markers = [miditoolkit.Marker(END_MARKER, length)]
    midi.max_tick = length or max([n.end for i in midi.instruments for n in i.notes] + [0])
    return midi


def track_name(program: int, is_drum: bool) -> str:
    """What a track is called: "drums", or its General MIDI program's name ("Acoustic Grand Piano")."""
    return "drums" if is_drum else GM_PROGRAMS[program]


def _nearest_tick(seconds: float, ticks_per_second: float) -> int:
    """The nearest tick to ``seconds`` (clamped at 0); a time half-way between two ticks goes to
    the later one, as the reference's MIDI writer rounds."""
    return int(math.floor(max(seconds, 0.0) * ticks_per_second + 0.5))


def split_on_time_changes(ns: NoteSequence) -> list[NoteSequence]:
    """Cut ``ns`` wherever the tempo or the time signature really changes, as the reference does.

    Each piece starts at 0 s and carries the one tempo and time signature in force at its
    start (the last one set at or before it). A change to the value already in force (4/4
    and 120 qpm before any event) is no cut; neither is one at 0 s or at or after the last
    note's end. Notes go to the piece they start in and are cut at its end; notes that start
    before 0 s are dropped. A sequence without notes gives no pieces.
    """
    changes = sorted([(t, "meter", (num, den)) for t, num, den in ns.time_signatures]
                     + [(t, "tempo", qpm) for t, qpm in ns.tempos], key=lambda c: c[0])
    in_force = {"meter": (4, 4), "tempo": DEFAULT_QPM}
    cuts = [0.0]
    for time, kind, value in changes:
        if time >= ns.total_time or value == in_force[kind]:
            continue
        if time > cuts[-1]:
            cuts.append(time)
        in_force[kind] = value
    if ns.total_time > cuts[-1]:
        cuts.append(ns.total_time)
    if len(cuts) < 2:
        return []
    return _cut(ns, cuts)


def _cut(ns: NoteSequence, cuts: Sequence[float]) -> list[NoteSequence]:
    """The pieces of ``ns`` between consecutive times of ``cuts`` (seconds, ascending), each shifted to 0 s."""
    last = len(cuts) - 1
    notes: list[list[Note]] = [[] for _ in range(last)]
    piece = -1
    for note in sorted(ns.notes, key=lambda n: n.start):
        if note.start < cuts[0]:
            continue
        while piece < last and note.start >= cuts[piece + 1]:
            piece += 1
        if piece == last:
            break
        start, end = note.start - cuts[piece], min(note.end, cuts[piece + 1]) - cuts[piece]
        same = start == note.start and end == note.end
        notes[piece].append(note if same else dataclasses.replace(note, start=start, end=end))
    meters = _state_per_piece([(t, (num, den)) for t, num, den in ns.time_signatures], cuts)
    tempos = _state_per_piece(list(ns.tempos), cuts)
    sustain = _pedals_per_piece(ns.sustain, cuts)
    chords = _state_per_piece(list(ns.chords), cuts)
    return [dataclasses.replace(
        ns, notes=notes[i], total_time=max((n.end for n in notes[i]), default=0.0),
        time_signatures=[(t, num, den) for t, (num, den) in meters[i]], tempos=tempos[i], sustain=sustain[i],
        chords=chords[i])
        for i in range(last)]


def split_every(ns: NoteSequence, seconds: float) -> list[NoteSequence]:
    """Cut ``ns`` every ``seconds`` (the last piece ends with the last note), as the reference's
    fixed-length split: notes go to the piece they start in and are cut at its end."""
    cuts = [0.0] + np.arange(seconds, ns.total_time, seconds).tolist()
    if ns.total_time > cuts[-1]:
        cuts.append(ns.total_time)
    return _cut(ns, cuts) if len(cuts) > 1 else []


def _pedals_per_piece(pedals: list[tuple[float, int, int]], cuts: Sequence[float]) -> list[list[tuple[float, int, int]]]:
    """Sustain changes ``(time s, instrument, value)`` of each piece between ``cuts``, as the reference
    carries pedals: a piece opens with each instrument's pedal in force at its start (at 0 s; instruments
    in the order their pedals were first seen) and keeps the changes strictly inside it, shifted."""
    last = len(cuts) - 1
    pieces: list[list[tuple[float, int, int]]] = [[] for _ in range(last)]
    in_force: dict[int, tuple[float, int, int]] = {}
    piece = -1
    for pedal in sorted(pedals, key=lambda p: p[0]):
        time, instrument, value = pedal
        if time <= cuts[0]:
            in_force[instrument] = pedal
            continue
        while piece < last and time > cuts[piece + 1]:
            piece += 1
            if piece == last:
                break
            pieces[piece] += [(0.0, i, v) for _, i, v in in_force.values()]
        if piece == last:
            break
        if time < cuts[piece + 1]:
            pieces[piece].append((time - cuts[piece], instrument, value))
        in_force[instrument] = pedal
    while piece < last - 1:
        piece += 1
        pieces[piece] += [(0.0, i, v) for _, i, v in in_force.values()]
    return pieces


def apply_sustain(ns: NoteSequence) -> NoteSequence:
    """A copy of ``ns`` (unquantized) with its sustain pedals played out, as the reference's
    ``apply_sustain_control_changes``: while an instrument's pedal is down its notes sound on until the
    pedal comes up or the same pitch is struck again (a note so cut to no length is dropped); drum notes
    are left alone; notes still held at the last event end there."""
    notes = [dataclasses.replace(n) for n in ns.notes]
    NOTE_ON, NOTE_OFF, PEDAL_DOWN, PEDAL_UP = 2, 3, 0, 1  # the reference's order of events at one time
    events: list[tuple[float, int, object]] = [(n.start, NOTE_ON, n) for n in notes if not n.is_drum]
    events += [(n.end, NOTE_OFF, n) for n in notes if not n.is_drum]
    events += [(time, PEDAL_DOWN if value >= 64 else PEDAL_UP, instrument) for time, instrument, value in ns.sustain]
    events.sort(key=lambda e: (e[0], e[1]))
    total_time = ns.total_time
    sounding: dict[int, list[Note]] = defaultdict(list)
    down: dict[int, bool] = defaultdict(bool)
    dropped: set[int] = set()
    time = 0.0
    for time, kind, what in events:
        if kind == PEDAL_DOWN:
            down[what] = True
        elif kind == PEDAL_UP:
            down[what] = False
            still = []
            for note in sounding[what]:
                if note.end < time:  # sounding only for the pedal: it ends now
                    note.end = time
                    total_time = max(total_time, time)
                else:
                    still.append(note)
            sounding[what] = still
        elif kind == NOTE_ON:
            if down[what.instrument]:
                kept = []
                for note in sounding[what.instrument]:
                    if note.pitch == what.pitch:
                        note.end = time
                        if note.start == note.end:
                            dropped.add(id(note))
                    else:
                        kept.append(note)
                sounding[what.instrument] = kept
            sounding[what.instrument].append(what)
        elif not down[what.instrument]:
            sounding[what.instrument] = [note for note in sounding[what.instrument] if note is not what]
    for held in sounding.values():
        for note in held:
            note.end = time
            total_time = time
    return dataclasses.replace(ns, notes=[n for n in notes if id(n) not in dropped], total_time=total_time)


def _state_per_piece(events: list[tuple[float, object]], cuts: Sequence[float]) -> list[list[tuple[float, object]]]:
    """Tempo, meter or chord events ``(time s, value)`` of each piece between ``cuts``.

    A piece opens with the event in force at its start (moved to 0 s) and keeps the events
    strictly inside it, shifted; an event on a cut belongs to the next piece's opening.
    """
    last = len(cuts) - 1
    pieces: list[list[tuple[float, object]]] = [[] for _ in range(last)]
    before = None
    piece = -1
    for time, value in sorted(events, key=lambda e: e[0]):
        if time <= cuts[0]:
            before = (time, value)
            continue
        while piece < last and time > cuts[piece + 1]:
            piece += 1
            if piece == last:
                break
            if before is not None:
                pieces[piece].append((0.0, before[1]))
        if piece == last:
            break
        if time < cuts[piece + 1]:
            pieces[piece].append((time - cuts[piece], value))
        before = (time, value)
    while piece < last - 1:
        piece += 1
        if before is not None:
            pieces[piece].append((0.0, before[1]))
    return pieces
