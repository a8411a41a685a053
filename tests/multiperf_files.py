"""Random multi-instrument MIDI files that exercise the multi-instrument performance converter's rules:
sustain pedals (also set before a track's first note or program), two to eleven instruments, several
on one program, drum tracks, notes held across bars, dense bars (more events than a track may have),
velocities over the whole range, notes on and half a step off the bar lines, tempo and meter changes.

The same files are written by tests/test_converter_multiperf.py and by experiments/reference_multiperf.py
(in the reference's environment, whose mido is older), so they use nothing of mido that differs between
versions. ``digest`` names the files' bytes: the reference's windows were made from those.
"""

from __future__ import annotations

import random
from pathlib import Path

import mido

from multitrack import digest, track  # noqa: F401  (digest: the files' sha256, as for the trio files)

FILES = 40
# The converter settings the reference's windows were made with, by name (hvae's options are the reference's):
# the hier-multiperf_vel_1bar presets' converter, two-bar windows of two chunks, 3/4 bars without velocities.
# Three GMD files (drums only, under ../shared/data/groove): the reference takes no window of one instrument.
GMD_FILES = ("drummer1/session1/101_dance-disco_120_beat_4-4.mid", "drummer7/session3/100_hiphop_70_fill_4-4.mid",
             "drummer3/session1/11_rock_120_beat_4-4.mid")
SETTINGS = {
    "med": dict(num_velocity_bins=8, hop_size_bars=1, max_num_instruments=8, max_events_per_instrument=64),
    "two_chunks": dict(num_velocity_bins=4, hop_size_bars=2, chunk_size_bars=1, max_num_instruments=4,
                       max_events_per_instrument=40, min_total_events=4),
    "plain_3_4": dict(num_velocity_bins=0, hop_size_bars=1, quarters_per_bar=3, steps_per_quarter=12,
                      max_num_instruments=6, max_events_per_instrument=48),
}
SUSTAIN = 64  # the sustain pedal's control number


def _tempo(qpm: float) -> int:
    return int(round(60_000_000 / qpm))


def write_files(folder: Path, count: int = FILES) -> list[Path]:
    """Write ``count`` files ``p00.mid``, ``p01.mid``, ... into ``folder``; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    return [_write(folder / f"p{k:02d}.mid", random.Random(1000 + k)) for k in range(count)]


def _write(path: Path, r: random.Random) -> Path:
    midi = mido.MidiFile(type=1, ticks_per_beat=r.choice([96, 220, 480]))
    tpq = midi.ticks_per_beat
    bar = 4 * tpq
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("time_signature", numerator=r.choice([4] * 8 + [3]), denominator=4, time=0))
    conductor.append(mido.MetaMessage("set_tempo", tempo=_tempo(r.uniform(70, 160)), time=0))
    if r.random() < 0.15:
        conductor.append(mido.MetaMessage("set_tempo", tempo=_tempo(r.uniform(70, 160)), time=bar * r.randint(2, 6)))
    midi.tracks.append(conductor)
    bars = r.randint(2, 10)
    tracks = r.choice([2, 2, 3, 3, 4, 5, 6, 8, 9, 11])
    for t in range(tracks):
        drums = r.random() < 0.25
        channel = 9 if drums else r.choice([0, 1, 2, 3])
        events = []
        if not drums:
            if r.random() < 0.3:  # a pedal before the program: the reference keeps it for the next instrument
                events.append((0, mido.Message("control_change", channel=channel, control=SUSTAIN, value=127)))
            events.append((0, mido.Message("program_change", channel=channel,
                                           program=r.choice([0, 0, 4, 24, 33, 40, 48, 73]))))
            if r.random() < 0.15:
                events.append((bar * r.randint(1, bars), mido.Message("program_change", channel=channel,
                                                                      program=r.choice([0, 33]))))
        dense = r.random() < 0.2
        for b in range(bars):
            if r.random() < 0.2:
                continue
            for _ in range(r.randint(1, 30 if dense else 6)):
                start = b * bar + r.randint(0, bar - 1)
                if r.random() < 0.5:
                    start = start // (tpq // 4) * (tpq // 4)
                elif r.random() < 0.2:  # on or just before a bar line
                    start = (b + 1) * bar - r.choice([0, 1, 2])
                length = r.randint(1, 3 * bar if r.random() < 0.1 else tpq)
                pitch = r.choice([36, 38, 42, 46, 49]) if drums else r.randint(0, 127)
                events.append((start, mido.Message("note_on", channel=channel, note=pitch,
                                                   velocity=r.randint(1, 127))))
                events.append((start + length, mido.Message("note_off", channel=channel, note=pitch)))
            if not drums and r.random() < 0.5:  # the pedal down and up inside the bar, or held over it
                down = b * bar + r.randint(0, bar - 1)
                events.append((down, mido.Message("control_change", channel=channel, control=SUSTAIN,
                                                  value=r.choice([64, 100, 127]))))
                events.append((down + r.randint(1, 2 * bar), mido.Message("control_change", channel=channel,
                                                                          control=SUSTAIN, value=r.choice([0, 63]))))
        midi.tracks.append(track(events))
    midi.save(str(path))
    return path
