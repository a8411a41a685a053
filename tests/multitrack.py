"""Random multi-track MIDI files that exercise the trio converter's rules: melody, bass and drum tracks
and tracks of no part, rests of any length, program changes inside a track, tempo changes, meters other
than 4/4, several resolutions, notes off the grid and out of the piano range.

The same files are written by tests/test_converter_trio.py and by experiments/reference_trio.py (in the
reference's environment, whose mido is older), so they use nothing of mido that differs between
versions. ``digest`` names the files' bytes: the reference's windows were made from those.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import mido

FILES = 60
# (slice_bars, gap_bars) pairs the reference's windows were made with
SETTINGS = ((16, 2), (4, 2), (2, 1), (1, 0), (4, 3))


def write_files(folder: Path, count: int = FILES) -> list[Path]:
    """Write ``count`` files ``r00.mid``, ``r01.mid``, ... into ``folder``; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    return [_write(folder / f"r{k:02d}.mid", random.Random(k)) for k in range(count)]


def digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.read_bytes())
    return h.hexdigest()


def _tempo(qpm: float) -> int:
    return int(round(60_000_000 / qpm))


def _write(path: Path, r: random.Random) -> Path:
    midi = mido.MidiFile(type=1, ticks_per_beat=r.choice([96, 220, 480]))
    tpq = midi.ticks_per_beat
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("time_signature", numerator=r.choice([4] * 6 + [3, 2, 6]), denominator=4,
                                      time=0))
    conductor.append(mido.MetaMessage("set_tempo", tempo=_tempo(r.uniform(60, 180)), time=0))
    if r.random() < 0.2:
        conductor.append(mido.MetaMessage("set_tempo", tempo=_tempo(r.uniform(60, 180)), time=tpq * r.randint(8, 80)))
    midi.tracks.append(conductor)
    bars = r.randint(3, 40)
    for _ in range(r.randint(2, 6)):
        drums = r.random() < 0.3
        channel = 9 if drums else r.choice([0, 1, 2, 3, 4])
        events = []
        if not drums:
            events.append((0, mido.Message("program_change", channel=channel,
                                           program=r.choice([0, 5, 24, 30, 32, 33, 38, 40, 56, 81]))))
            if r.random() < 0.15:
                events.append((tpq * r.randint(4, 60), mido.Message("program_change", channel=channel,
                                                                     program=r.choice([0, 33, 40]))))
        playing = [r.random() < 0.8 for _ in range(bars)]
        for bar in range(bars):
            if not playing[bar]:
                continue
            for _ in range(r.randint(1, 8)):
                start = bar * 4 * tpq + r.randint(0, 4 * tpq - 1)
                if r.random() < 0.5:
                    start = start // (tpq // 4) * (tpq // 4)
                length = r.randint(1, 2 * tpq)
                pitch = (r.choice([36, 38, 42, 46, 49, 51, 45, 48, 50, 35, 22, 80]) if drums
                         else r.randint(15, 112))
                events.append((start, mido.Message("note_on", channel=channel, note=pitch,
                                                   velocity=r.randint(1, 127))))
                events.append((start + length, mido.Message("note_off", channel=channel, note=pitch)))
        midi.tracks.append(track(events))
    midi.save(str(path))
    return path


def track(events: list[tuple[int, mido.Message]]) -> mido.MidiTrack:
    """A track of ``(tick, message)`` events, in time order, note-offs before note-ons at one tick."""
    out = mido.MidiTrack()
    now = 0
    for tick, msg in sorted(events, key=lambda e: (e[0], e[1].type == "note_on")):
        out.append(msg.copy(time=tick - now))
        now = tick
    return out
