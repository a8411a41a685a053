"""Write the small MIDI files of tests/data/chords: meters and programs the chord inference treats apart.

- cut_time.mid: 2/2 (16 steps a bar, one chord a bar), a melody over a bass;
- six_eight.mid: 6/8 (12 steps a bar: no 2-bar windows of 16-step bars);
- eight_eight.mid: 8/8 (16 steps a bar, but the reference infers no chords in 8/8);
- unpitched.mid: 4/4, a melody beside tracks of programs 98 and 115 (sound effects, percussive), whose notes do
  not count for the chords.

Random notes from fixed seeds, written with mido's plain messages (any version writes the same bytes):

    python experiments/chord_test_files.py tests/data/chords
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import mido

FILES = {"cut_time": ((2, 2), (0, 33)), "unpitched": ((4, 4), (0, 98, 115)), "six_eight": ((6, 8), (0, 40)),
         "eight_eight": ((8, 8), (0, 40))}  # name -> (meter, program of each track)
TICKS = 480  # per quarter
NOTES = 80  # per track


def write(path: Path, meter: tuple[int, int], programs: tuple[int, ...], seed: int) -> None:
    r = random.Random(seed)
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS)
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("time_signature", numerator=meter[0], denominator=meter[1], time=0))
    conductor.append(mido.MetaMessage("set_tempo", tempo=600_000, time=0))  # 100 qpm
    midi.tracks.append(conductor)
    for channel, program in enumerate(programs):
        track = mido.MidiTrack()
        track.append(mido.Message("program_change", channel=channel, program=program, time=0))
        events, tick = [], 0
        for _ in range(NOTES):
            length, pitch = r.choice([120, 240, 480, 960]), r.randint(40, 84)
            events.append((tick, mido.Message("note_on", channel=channel, note=pitch, velocity=90)))
            events.append((tick + length - r.choice([0, 30]),
                           mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
            tick += length + r.choice([0, 0, 120, 1920])  # sometimes a rest, sometimes a bar of one
        events.sort(key=lambda e: e[0])
        last = 0
        for at, message in events:
            track.append(message.copy(time=at - last))
            last = at
        midi.tracks.append(track)
    midi.save(str(path))


def main() -> None:
    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (name, (meter, programs)) in enumerate(FILES.items(), start=1):
        write(folder / f"{name}.mid", meter, programs, seed)


if __name__ == "__main__":
    main()
