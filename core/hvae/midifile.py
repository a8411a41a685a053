"""MIDI files as a DAW takes them, written next to others without ever replacing one.

``midi_bytes`` turns a ``miditoolkit.MidiFile`` into the bytes of a file whose every track ends at the
same whole bar (at least ``max_tick``, the length a converter gives its window), marked by a text
event "end" there as well so that readers which only look at events (pretty_midi) see the same
length, and whose every note track is named ("drums", or the General MIDI program).

``concatenate`` joins files one after another, and ``write_midi`` writes one file in place atomically.

``write_new`` puts files into a folder under names no other file has: each is written to a temporary
file, fsynced, and hard-linked into place, which fails rather than replaces when the name exists, so
two processes writing into one folder at the same moment both keep all their files.
"""

from __future__ import annotations

import copy
import io
import itertools
import math
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import miditoolkit
import mido

from hvae.music import END_MARKER, track_name
from hvae.safefiles import shared_mode, write_atomic

END_TEXT = END_MARKER  # text of the event on a file's last tick


def length_ticks(midi: miditoolkit.MidiFile) -> int:
    """The file's length in ticks: ``max_tick`` (a window's length, as the converters set it; the last
    note's end where it is 0), rounded up to a whole bar of its first time signature (4/4 without one);
    at least one bar. A file miditoolkit read has ``max_tick`` one past its last event: a file that ends
    on a bar line keeps its bars (its last tick, not the one after, is rounded up)."""
    signature = midi.time_signature_changes[0] if midi.time_signature_changes else None
    quarters_per_bar = signature.numerator * 4 / signature.denominator if signature else 4.0
    bar = round(quarters_per_bar * midi.ticks_per_beat)
    last = midi.max_tick - 1 if midi.max_tick else max([0] + [n.end for i in midi.instruments for n in i.notes])
    return max(1, math.ceil(last / bar)) * bar


def within(midi: miditoolkit.MidiFile, end: int) -> miditoolkit.MidiFile:
    """A copy of ``midi`` that ends by tick ``end``: a note sounding past it is cut there, one that would
    start there or later is left out (a loop lasts its bars, whatever a late hit's timing), and so is
    every other event after it (controllers, pitch bends, tempo and meter changes, lyrics, markers)."""
    cut = copy.copy(midi)
    cut.instruments = []
    for instrument in midi.instruments:
        kept = copy.copy(instrument)
        kept.notes = [miditoolkit.Note(n.velocity, n.pitch, n.start, min(n.end, end))
                      for n in instrument.notes if n.start < end]
        kept.control_changes = [c for c in instrument.control_changes if c.time <= end]
        kept.pitch_bends = [b for b in instrument.pitch_bends if b.time <= end]
        cut.instruments.append(kept)
    for events in ("markers", "lyrics", "tempo_changes", "time_signature_changes", "key_signature_changes"):
        setattr(cut, events, [e for e in getattr(midi, events) if e.time <= end])
    cut.max_tick = end
    return cut


def midi_bytes(midi: miditoolkit.MidiFile) -> bytes:
    """The bytes of ``midi`` as a standard MIDI file: every track ends at :func:`length_ticks`, what would
    sound past it cut (:func:`within`), the first track holds a text event "end" there, and every note
    track has a name."""
    end = length_ticks(midi)
    midi = within(midi, end)
    buffer = io.BytesIO()
    midi.dump(file=buffer)
    parsed = mido.MidiFile(file=io.BytesIO(buffer.getvalue()))
    for index, track in enumerate(parsed.tracks):  # the tempo track, then one per instrument
        events, tick = [], 0
        for message in track:
            tick += message.time
            if message.type != "end_of_track":
                events.append((tick, message))
        if index == 0:
            events.append((end, mido.MetaMessage("text", text=END_TEXT)))
        elif not any(message.type == "track_name" for _, message in events):
            instrument = midi.instruments[index - 1]
            events.insert(0, (0, mido.MetaMessage("track_name", name=track_name(instrument.program,
                                                                                 instrument.is_drum))))
        track[:] = _relative(events) + [mido.MetaMessage("end_of_track", time=end - max([0] + [t for t, _ in events]))]
    out = io.BytesIO()
    parsed.save(file=out)
    return out.getvalue()


def _relative(events: list[tuple[int, mido.Message]]) -> list[mido.Message]:
    """Messages with delta times from ``(absolute tick, message)`` pairs in order."""
    messages, before = [], 0
    for tick, message in events:
        messages.append(message.copy(time=tick - before))
        before = tick
    return messages


def write_new(folder: str | os.PathLike, contents: Sequence[bytes], names: Callable[[int], Sequence[str]]) -> list[Path]:
    """Write ``contents`` into ``folder`` (created) as new files named ``names(1)``; when any of those
    exists, under ``names(2)``, ``names(3)``, ... : the first attempt whose names are all free. No file
    is ever replaced, and a reader never sees a half-written one. Returns the paths written, in order."""
    return write_new_from(folder, contents, names)[0]


def write_new_from(folder: str | os.PathLike, contents: Sequence[bytes], names: Callable[[int], Sequence[str]],
                   first: int = 1) -> tuple[list[Path], int]:
    """:func:`write_new` trying the attempts from ``first`` on; returns the paths and the attempt whose names
    were free (a series of calls that goes on with it keeps one attempt's names)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    temporaries = []
    try:
        for data in contents:
            temporaries.append(_temporary(folder, data))
        for attempt in itertools.count(first):
            linked = _link_all(temporaries, [folder / name for name in names(attempt)])
            if linked is not None:
                return linked, attempt
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)
    raise AssertionError("unreachable")


def _temporary(folder: Path, data: bytes) -> Path:
    """``data`` in a new hidden file of ``folder``, fsynced."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".hvae-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.chmod(name, shared_mode())  # as the umask gives any new file (mkstemp's is owner-only)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:  # a full disk, say: no half file left, and the folder named
        Path(name).unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(folder)) from None
    return Path(name)


def _link_all(temporaries: Sequence[Path], paths: Sequence[Path]) -> list[Path] | None:
    """Link each temporary file to its path; None (and nothing left linked) when a path exists."""
    linked: list[Path] = []
    try:
        for temporary, path in zip(temporaries, paths):
            _link(temporary, path)
            linked.append(path)
    except FileExistsError:
        for path in linked:
            path.unlink()
        return None
    return linked


def _link(temporary: Path, path: Path) -> None:
    """Give ``temporary``'s content the new name ``path``; FileExistsError when it is taken. Where the
    file system has no hard links (FAT, some network shares) the file is created exclusively and copied."""
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise
    except OSError:
        with open(path, "xb") as f:
            f.write(temporary.read_bytes())
            f.flush()
            os.fsync(f.fileno())


def numbered(stem: str, suffix: str) -> Callable[[int], list[str]]:
    """``names`` for one file: ``stem + suffix``, then ``stem-2 + suffix``, ``stem-3 + suffix``, ..."""
    return lambda attempt: [f"{stem}{'' if attempt == 1 else f'-{attempt}'}{suffix}"]


def concatenate(midis: Sequence[miditoolkit.MidiFile], quarters: float) -> miditoolkit.MidiFile:
    """The files one after another, each starting ``quarters`` quarter notes after the one before (the
    whole lasting ``len(midis) * quarters``: :func:`midi_bytes` cuts what the last would sound past it);
    tempo and time signature of the first, instruments matched by program and drum flag."""
    joined = miditoolkit.MidiFile(ticks_per_beat=midis[0].ticks_per_beat)
    joined.tempo_changes = list(midis[0].tempo_changes[:1])
    joined.time_signature_changes = list(midis[0].time_signature_changes[:1])
    instruments: dict[tuple[int, bool], miditoolkit.Instrument] = {}
    for k, midi in enumerate(midis):
        shift = round(k * quarters * midi.ticks_per_beat)
        scale = joined.ticks_per_beat / midi.ticks_per_beat
        for instrument in midi.instruments:
            key = (instrument.program, instrument.is_drum)
            target = instruments.setdefault(key, miditoolkit.Instrument(instrument.program, instrument.is_drum,
                                                                        instrument.name))
            target.notes.extend(miditoolkit.Note(n.velocity, n.pitch, round((n.start + shift) * scale),
                                                 round((n.end + shift) * scale)) for n in instrument.notes)
    joined.instruments = list(instruments.values())
    joined.max_tick = round(len(midis) * quarters * joined.ticks_per_beat)
    return joined


def write_midi(midi: miditoolkit.MidiFile, path: str | os.PathLike) -> Path:
    """Write ``midi`` to ``path`` atomically as a DAW takes it (:func:`midi_bytes`: exactly its window's whole
    bars, what sounds past them cut, named tracks); the folder is created. ``hvae.write_midi`` in the API."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, midi_bytes(midi))
    return path
