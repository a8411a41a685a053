"""Write the multi-track test files of tests/data/trio: melody, bass and drums from real music.

Each file joins Bach chorales (public-domain music, read from the music21 corpus: its soprano, alto
and bass voices become melody and bass instruments) with a drummer's performance from the Groove MIDI
Dataset (CC BY 4.0, Magenta team: the drums of a 4/4 beat, at its own tempo). The chorales are played at
the drummer's tempo, one after the other, so each file runs 20-40 bars. The files differ in what the
trio converter has to decide: several melody instruments, gaps in a part, parts that start late or stop
early, a tempo change, an instrument that changes program, polyphony on one track, notes out of the
piano range, a missing part, a meter other than 4/4.

music21 is needed only here (``pip install --target /tmp/m21lib music21``):

    PYTHONPATH=/tmp/m21lib .venv/bin/python experiments/trio_files.py \
        --gmd ../shared/data/groove --out tests/data/trio
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
from pathlib import Path

import mido

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from multitrack import track  # noqa: E402  (the random multi-track files' writer: events in time order)

TPQ = 480  # ticks per quarter in the files written
DRUM_CHANNEL = 9
PIANO, GUITAR, ORGAN, BASS, VIOLIN = 0, 24, 19, 33, 40  # General MIDI programs (0-31 melody, 32-39 bass)


@dataclasses.dataclass
class Part:
    """One MIDI instrument: ``notes`` are (start, end, pitch, velocity) in quarters."""

    name: str
    program: int
    channel: int
    notes: list[tuple[float, float, int, int]]
    program_changes: list[tuple[float, int]] = dataclasses.field(default_factory=list)  # (quarter, program)


def chorale_voices(names: list[str]) -> tuple[dict[str, list[tuple[float, float, int]]], float]:
    """The chorales ``names`` one after another: each voice's (start, end, pitch) in quarters, and the
    total length in quarters."""
    from music21 import corpus  # only this script needs music21

    voices: dict[str, list[tuple[float, float, int]]] = {}
    offset = 0.0
    for name in names:
        score = corpus.parse(name)
        for part in score.parts:
            voice = (part.partName or "").lower()
            for note in part.stripTies().flatten().notes:
                for pitch in getattr(note, "pitches", [note.pitch]):
                    start = offset + float(note.offset)
                    voices.setdefault(voice, []).append((start, start + float(note.quarterLength), pitch.midi))
        offset += float(score.highestTime)
    return voices, offset


def meter(name: str) -> str:
    from music21 import corpus

    signatures = corpus.parse(name).parts[0].recurse().getElementsByClass("TimeSignature")
    return signatures[0].ratioString if signatures else "4/4"


def gmd_drums(path: Path, quarters: float) -> tuple[list[tuple[float, float, int, int]], float]:
    """The drum notes of a GMD file up to ``quarters`` (in quarters), and its tempo in qpm."""
    midi = mido.MidiFile(path)
    qpm = 120.0
    notes, open_notes, tick = [], {}, 0
    for msg in mido.merge_tracks(midi.tracks):
        tick += msg.time
        if msg.type == "set_tempo" and tick == 0:
            qpm = mido.tempo2bpm(msg.tempo)
        elif msg.type == "note_on" and msg.velocity > 0:
            open_notes[msg.note] = (tick, msg.velocity)
        elif msg.type in ("note_on", "note_off") and msg.note in open_notes:
            start, velocity = open_notes.pop(msg.note)
            start_q, end_q = start / midi.ticks_per_beat, tick / midi.ticks_per_beat
            if start_q < quarters:
                notes.append((start_q, max(end_q, start_q + 0.05), msg.note, velocity))
    return notes, qpm


def write(path: Path, parts: list[Part], tempos: list[tuple[float, float]], signature: tuple[int, int]) -> None:
    """A type-1 file: a conductor track (tempos, meter), then one track per part."""
    midi = mido.MidiFile(type=1, ticks_per_beat=TPQ)
    conductor = [(0, mido.MetaMessage("time_signature", numerator=signature[0], denominator=signature[1]))]
    conductor += [(round(q * TPQ), mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(qpm))) for q, qpm in tempos]
    midi.tracks.append(track(conductor))
    for part in parts:
        events = [(0, mido.MetaMessage("track_name", name=part.name))]
        if part.channel != DRUM_CHANNEL:
            events.append((0, mido.Message("program_change", channel=part.channel, program=part.program)))
        events += [(round(q * TPQ), mido.Message("program_change", channel=part.channel, program=program))
                   for q, program in part.program_changes]
        for start, end, pitch, velocity in part.notes:
            events.append((round(start * TPQ), mido.Message("note_on", channel=part.channel, note=pitch,
                                                            velocity=velocity)))
            events.append((round(end * TPQ), mido.Message("note_off", channel=part.channel, note=pitch)))
        midi.tracks.append(track(events))
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.save(path)


def notes(voice: list[tuple[float, float, int]], velocity: int = 80, shift: int = 0,
          keep=lambda start: True) -> list[tuple[float, float, int, int]]:
    return [(s, e, p + shift, velocity) for s, e, p in voice if keep(s)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gmd", type=Path, required=True, help="the Groove MIDI Dataset folder (with info.csv)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    with open(args.gmd / "info.csv") as f:
        beats = [row for row in csv.DictReader(f) if row["beat_type"] == "beat" and row["time_signature"] == "4-4"
                 and float(row["duration"]) > 75]
    beats.sort(key=lambda row: row["midi_filename"])

    def drums(index: int, quarters: float) -> tuple[Part, float, str]:
        row = beats[index * 7 % len(beats)]
        hits, qpm = gmd_drums(args.gmd / row["midi_filename"], quarters)
        return Part("drums", 0, DRUM_CHANNEL, hits), qpm, row["midi_filename"]

    sources = []

    def trio(name: str, chorales: list[str], build, index: int, signature=(4, 4), tempos=None) -> None:
        voices, quarters = chorale_voices(chorales)
        kit, qpm, drum_file = drums(index, quarters)
        parts = build(voices, kit, quarters)
        write(args.out / f"{name}.mid", parts, tempos(qpm) if tempos else [(0.0, qpm)], signature)
        sources.append((name, ", ".join(chorales), drum_file))

    def plain(v, kit, q):
        return [Part("melody", PIANO, 0, notes(v["soprano"])), Part("bass", BASS, 1, notes(v["bass"])), kit]

    trio("plain", ["bach/bwv66.6", "bach/bwv26.6", "bach/bwv40.8"], plain, 0)
    # Two melody instruments: every (melody, bass, drums) combination is a trio.
    trio("two_melodies", ["bach/bwv253", "bach/bwv255", "bach/bwv267"],
         lambda v, kit, q: [Part("soprano", PIANO, 0, notes(v["soprano"])),
                            Part("alto", GUITAR, 2, notes(v["alto"])), Part("bass", BASS, 1, notes(v["bass"])),
                            kit], 1)
    # Gaps: the bass rests 3 bars, the melody 6 bars, the drums 2 bars, at different places.
    trio("gaps", ["bach/bwv269", "bach/bwv271", "bach/bwv272"],
         lambda v, kit, q: [Part("melody", ORGAN, 0, notes(v["soprano"], keep=lambda s: not 40 <= s < 64)),
                            Part("bass", BASS, 1, notes(v["bass"], keep=lambda s: not 20 <= s < 32)),
                            dataclasses.replace(kit, notes=[n for n in kit.notes if not 80 <= n[0] < 88])], 2)
    # The drums come in late and the melody stops early.
    trio("late_and_early", ["bach/bwv276", "bach/bwv277", "bach/bwv278"],
         lambda v, kit, q: [Part("melody", PIANO, 0, notes(v["soprano"], keep=lambda s: s < q - 28)),
                            Part("bass", BASS, 1, notes(v["bass"])),
                            dataclasses.replace(kit, notes=[n for n in kit.notes if n[0] >= 13])], 3)
    # A tempo change halfway: converted as two pieces.
    trio("tempo_change", ["bach/bwv280", "bach/bwv281", "bach/bwv283", "bach/bwv285"], plain, 4,
         tempos=lambda qpm: [(0.0, qpm), (72.0, qpm * 0.8)])
    # An instrument that changes to a program no part may have (violin) is no part at all; a second
    # melody instrument keeps the file a trio.
    trio("program_change", ["bach/bwv286", "bach/bwv287", "bach/bwv288"],
         lambda v, kit, q: [Part("tenor", PIANO, 0, notes(v["tenor"]), program_changes=[(40.0, VIOLIN)]),
                            Part("soprano", GUITAR, 2, notes(v["soprano"])), Part("bass", BASS, 1, notes(v["bass"])),
                            kit], 5)
    # Soprano and alto on one track: the melody keeps the highest note where two start together.
    trio("polyphony", ["bach/bwv290", "bach/bwv291", "bach/bwv292"],
         lambda v, kit, q: [Part("upper voices", PIANO, 0, notes(v["soprano"]) + notes(v["alto"], velocity=60)),
                            Part("bass", BASS, 1, notes(v["bass"])), kit], 6)
    # Out of the piano range: the bass two octaves down (its lowest notes below A0 are dropped), the
    # melody an octave and a half up.
    trio("out_of_range", ["bach/bwv293", "bach/bwv294", "bach/bwv295"],
         lambda v, kit, q: [Part("melody", PIANO, 0, notes(v["soprano"], shift=30)),
                            Part("bass", BASS, 1, notes(v["bass"], shift=-24)), kit], 7)
    # No bass: no trio.
    trio("no_bass", ["bach/bwv296", "bach/bwv297"],
         lambda v, kit, q: [Part("melody", PIANO, 0, notes(v["soprano"])),
                            Part("tenor", VIOLIN, 1, notes(v["tenor"])), kit], 8)
    # 3/4 time: no bars of 16 steps.
    trio("three_four", ["bach/bwv298", "bach/bwv299"], plain, 9, signature=(3, 4))

    (args.out / "SOURCES.md").write_text(
        "# Sources of the trio test files\n\n"
        "Written by experiments/trio_files.py. Melody and bass: Bach chorales (public-domain music) from the\n"
        "music21 corpus, played at the drummer's tempo. Drums: the Groove MIDI Dataset (Jon Gillick, Adam\n"
        "Roberts, Jesse Engel, Mohammad Norouzi, Peter Battaglia; Magenta; CC BY 4.0).\n\n"
        "| file | chorales | drums (GMD file) |\n|---|---|---|\n"
        + "".join(f"| {name}.mid | {chorales} | {drums} |\n" for name, chorales, drums in sources))


if __name__ == "__main__":
    main()
