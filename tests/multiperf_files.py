"""Random multi-instrument MIDI files that exercise the multi-instrument performance converter's rules:
sustain pedals (some never released; also set, or a pitch bend sent, before a track's first note or program: the reference's reader
then shares the pedals among the track's instruments), one to eleven instruments, several on one program, drum
tracks, notes held across bars, dense bars (more events than a track may have), velocities over the whole
range, notes on and half a step off the bar lines, tempo and meter changes, files of one track (type 0),
files without tempo or meter, note-offs written as note-ons of velocity 0.

The same files are written by tests/test_converter_multiperf.py and by experiments/reference_multiperf.py
(in the reference's environment, whose mido is older), so they use nothing of mido that differs between
versions. ``digest`` names the files' bytes: the reference's windows were made from those.
"""

from __future__ import annotations

import random
from pathlib import Path

import mido

from multitrack import digest, track  # noqa: F401  (digest: the files' sha256, as for the trio files)

FILES = 60
# Three GMD files (drums only, under ../shared/data/groove): the reference takes no window of one instrument.
GMD_FILES = ("drummer1/session1/101_dance-disco_120_beat_4-4.mid", "drummer7/session3/100_hiphop_70_fill_4-4.mid",
             "drummer3/session1/11_rock_120_beat_4-4.mid")
# The converter settings the reference's windows were made with, by name (hvae's options are the reference's):
# the hier-multiperf_vel_1bar presets' converter, two-bar windows of two chunks, 3/4 bars without velocities,
# a narrow pitch range with one instrument enough (drums alone too), and only files of at most four bars.
SETTINGS = {
    "med": dict(num_velocity_bins=8, hop_size_bars=1, max_num_instruments=8, max_events_per_instrument=64),
    "two_chunks": dict(num_velocity_bins=4, hop_size_bars=2, chunk_size_bars=1, max_num_instruments=4,
                       max_events_per_instrument=40, min_total_events=4),
    "plain_3_4": dict(num_velocity_bins=0, hop_size_bars=1, quarters_per_bar=3, steps_per_quarter=12,
                      max_num_instruments=6, max_events_per_instrument=48),
    "narrow": dict(num_velocity_bins=16, steps_per_quarter=4, min_pitch=30, max_pitch=90, min_num_instruments=1,
                   max_num_instruments=3, max_events_per_instrument=32, min_total_events=1),
    "first_only": dict(num_velocity_bins=2, hop_size_bars=4, chunk_size_bars=4, first_subsequence_only=True,
                       max_events_per_instrument=256),
}
# The chord-conditioned settings (option chord_encoding="triad"; the reference's TriadChordOneHotEncoding): the
# hier-multiperf_vel_1bar_*_chords presets' converter, two-bar windows of two chunks (chords of a later chunk),
# and 3/4 bars (one chord a bar).
CHORD_SETTINGS = {
    "med_chords": dict(SETTINGS["med"], chord_encoding="triad"),
    "two_chunks_chords": dict(SETTINGS["two_chunks"], chord_encoding="triad"),
    "plain_3_4_chords": dict(SETTINGS["plain_3_4"], chord_encoding="triad"),
}
SUSTAIN = 64  # the sustain pedal's control number


def _tempo(qpm: float) -> int:
    return int(round(60_000_000 / qpm))


def write_files(folder: Path, count: int = FILES) -> list[Path]:
    """Write ``count`` files ``p00.mid``, ``p01.mid``, ... into ``folder``; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    return [_write(folder / f"p{k:02d}.mid", random.Random(1000 + k)) for k in range(count)] + \
        [_shared_pedal(folder / "shared_pedal.mid")]


def _shared_pedal(path: Path) -> Path:
    """A pitch bend before any note makes the reference's reader keep one list of controls for the track's
    channel, shared by the piano played first and the guitar after the program change: the piano's pedal,
    never released, holds the guitar's notes too."""
    midi = mido.MidiFile(type=1, ticks_per_beat=96)
    bar = 4 * 96
    keys = [(0, mido.Message("pitchwheel", channel=0, pitch=500)), (0, mido.Message("program_change", channel=0,
                                                                                  program=0))]
    keys += [(0, mido.Message("note_on", channel=0, note=60, velocity=80)), (48, mido.Message("note_off", channel=0,
                                                                                              note=60))]
    keys += [(96, mido.Message("control_change", channel=0, control=SUSTAIN, value=127)),
             (bar, mido.Message("program_change", channel=0, program=24))]
    for beat in range(8):
        keys += [(bar + 48 * beat, mido.Message("note_on", channel=0, note=64 + beat, velocity=90)),
                 (bar + 48 * beat + 24, mido.Message("note_off", channel=0, note=64 + beat))]
    drums = []
    for beat in range(12):
        drums += [(96 * beat, mido.Message("note_on", channel=9, note=36, velocity=100)),
                  (96 * beat + 10, mido.Message("note_off", channel=9, note=36))]
    midi.tracks.extend([track(keys), track(drums)])
    midi.save(str(path))
    return path


def _write(path: Path, r: random.Random) -> Path:
    one_track = r.random() < 0.2
    midi = mido.MidiFile(type=0 if one_track else 1, ticks_per_beat=r.choice([96, 220, 480]))
    tpq = midi.ticks_per_beat
    bar = 4 * tpq
    meta = []
    if r.random() < 0.85:
        meta.append((0, mido.MetaMessage("time_signature", numerator=r.choice([4] * 8 + [3]), denominator=4)))
    if r.random() < 0.85:
        meta.append((0, mido.MetaMessage("set_tempo", tempo=_tempo(r.uniform(70, 160)))))
        if r.random() < 0.15:
            meta.append((bar * r.randint(2, 6), mido.MetaMessage("set_tempo", tempo=_tempo(r.uniform(70, 160)))))
    bars = r.randint(2, 10)
    parts = []
    for _ in range(r.choice([1, 2, 2, 3, 3, 4, 5, 6, 8, 9, 11])):
        drums = r.random() < 0.25
        channel = 9 if drums else r.choice([0, 1, 2, 3])
        events = []
        if not drums:
            early = r.random() < 0.4
            if early:  # before the program: the reference keeps it for the instruments made later
                events.append((0, mido.Message("pitchwheel", channel=channel, pitch=r.randint(-8000, 8000))
                               if r.random() < 0.5 else
                               mido.Message("control_change", channel=channel, control=SUSTAIN, value=127)))
            events.append((0, mido.Message("program_change", channel=channel,
                                           program=r.choice([0, 0, 4, 24, 33, 40, 48, 73]))))
            if r.random() < (0.6 if early else 0.15):  # a second instrument on the track's channel
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
                off = (mido.Message("note_on", channel=channel, note=pitch, velocity=0) if r.random() < 0.3
                       else mido.Message("note_off", channel=channel, note=pitch))
                events.append((start + length, off))
            if not drums and r.random() < 0.5:  # the pedal down and up inside the bar, held over it, or left down
                down = b * bar + r.randint(0, bar - 1)
                events.append((down, mido.Message("control_change", channel=channel, control=SUSTAIN,
                                                  value=r.choice([64, 100, 127]))))
                if r.random() < 0.85:
                    events.append((down + r.randint(1, 2 * bar), mido.Message(
                        "control_change", channel=channel, control=SUSTAIN, value=r.choice([0, 63]))))
            if r.random() < 0.1:  # other controls and bends, which no one reads
                events.append((b * bar + r.randint(0, bar - 1), mido.Message("control_change", channel=channel,
                                                                             control=r.choice([7, 11, 66]),
                                                                             value=r.randint(0, 127))))
                events.append((b * bar + r.randint(0, bar - 1), mido.Message("pitchwheel", channel=channel,
                                                                             pitch=r.randint(-8000, 8000))))
        parts.append(events)
    if one_track:
        midi.tracks.append(track(meta + [e for events in parts for e in events]))
    else:
        midi.tracks.append(track(meta))
        midi.tracks.extend(track(events) for events in parts)
    midi.save(str(path))
    return path
