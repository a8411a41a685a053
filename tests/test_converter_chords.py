"""The chord-conditioned melody converter: the reference's melody windows with the chord of every step as controls.

Reference: ``tests/data/chords/reference.npz``, made by experiments/reference_chords.py with the reference's own
OneHotMelodyConverter and ``TriadChordOneHotEncoding`` (chords inferred by note_seq, every window kept, sorted
since the reference keeps them in a set): each window as (melody class, chord class) per step, for the trio
files (Bach chorales over GMD drums), small files of other meters and unpitched programs (tests/data/chords/*.mid),
60 random multi-track files (tests/multitrack.py) and seven MAESTRO performances, in two settings: cat-mel_2bar_med_chords's converter, and 4-bar windows of programs 0-31 with an
end token.
"""

from __future__ import annotations

from pathlib import Path

import miditoolkit
import numpy as np
import pytest

import hvae
from hvae.errors import ConversionError, HvaeError
from hvae.plugins import make_converter
from hvae_converters import chords
from hvae_converters.melody import MelodyConverter

import multitrack

DATA = Path(__file__).parent / "data"
REFERENCE = DATA / "chords" / "reference.npz"
TRIOS = sorted((DATA / "trio").glob("*.mid"))
EDGES = sorted((DATA / "chords").glob("*.mid"))
SETTINGS = {  # as experiments/reference_chords.py names them
    "med_chords": dict(max_bars=100, slice_bars=2, valid_programs=None),
    "4bar_end": dict(max_bars=100, slice_bars=4, gap_bars=2.0, add_end_token=True),
}


def windows(examples: list[hvae.Example]) -> np.ndarray | None:
    """(melody class, chord class) of every step, (W, T, 2), sorted as the reference stores them."""
    if not examples:
        return None
    for e in examples:
        assert np.array_equal(e.inputs, e.outputs) and e.length == len(e.outputs)
        assert e.controls.shape == (len(e.outputs), 49) and np.all(e.controls.sum(axis=1) == 1)
    stacked = np.stack([np.stack([e.outputs.argmax(axis=1), e.controls.argmax(axis=1)], axis=1)
                        for e in examples]).astype(np.int16)
    return stacked[np.lexsort(stacked.reshape(len(stacked), -1).T[::-1])]


def compare(setting: str, source: str, paths: list[Path]) -> tuple[int, int]:
    """Assert hvae's windows of each file equal the reference's; (files compared, windows compared)."""
    converter = MelodyConverter(chord_encoding="triad", **SETTINGS[setting])
    reference = np.load(REFERENCE)
    count = 0
    for path in paths:
        key = f"{setting}/{source}/{path.stem}"
        got = windows(converter.to_tensors(path))
        want = reference[key] if key in reference.files else None
        if got is None or want is None:
            assert got is None and want is None, f"{key}: hvae {None if got is None else len(got)} windows, " \
                                                 f"reference {None if want is None else len(want)}"
            continue
        assert got.shape == want.shape, f"{key}: hvae {got.shape}, reference {want.shape}"
        assert np.array_equal(got[..., 0], want[..., 0]), f"{key}: melodies differ"
        assert np.array_equal(got, want), f"{key}: chords differ at {np.argwhere(got != want)[:3].tolist()}"
        count += len(got)
    return len(paths), count


@pytest.mark.parametrize("setting", SETTINGS)
def test_trio_files_equal_the_reference_window_for_window(setting):
    files, compared = compare(setting, "trio", TRIOS)
    assert files == 10 and compared > 250


@pytest.mark.parametrize("setting", SETTINGS)
def test_other_meters_and_unpitched_programs_equal_the_reference(setting):
    """2/2 infers one chord a bar; 6/8 has no 16-step bars; 8/8 has no chord rate; programs 98 and 115 do not
    count for the chords (counting them changes the chords of unpitched.mid)."""
    files, compared = compare(setting, "edge", EDGES)
    assert files == 4 and compared > 50
    reference = np.load(REFERENCE)
    assert {k.split("/")[-1] for k in reference.files if k.startswith(f"{setting}/edge/")} == {"cut_time", "unpitched"}


@pytest.mark.parametrize("setting", SETTINGS)
def test_random_multitrack_files_equal_the_reference(setting, tmp_path):
    paths = multitrack.write_files(tmp_path)
    assert multitrack.digest(paths) == str(np.load(REFERENCE)["digest"]), "tests/multitrack.py no longer writes " \
        "the files the reference converted: run experiments/reference_chords.py again"
    files, compared = compare(setting, "random", paths)
    assert files == 60 and compared > 300


@pytest.mark.parametrize("setting", SETTINGS)
def test_maestro_performances_equal_the_reference(setting, maestro_dir):
    names = [k.split("/")[-1] for k in np.load(REFERENCE).files if k.startswith(f"{setting}/maestro/")]
    assert len(names) == 7
    files, compared = compare(setting, "maestro", [maestro_dir / "2015" / f"{n}.midi" for n in names])
    assert compared > 450


def test_the_same_melody_over_other_chords_is_another_window():
    """Windows are told apart by melody and chords together: more windows than distinct melodies."""
    converter = MelodyConverter(chord_encoding="triad", valid_programs=None)
    examples = converter.convert(DATA / "trio" / "program_change.mid")
    melodies = {e.outputs.argmax(axis=1).tobytes() for e in examples}
    assert (len(examples), len(melodies)) == (87, 83)
    assert len(MelodyConverter(valid_programs=None).convert(DATA / "trio" / "program_change.mid")) == 83


def test_chord_conditioned_melody_converter_declares_its_controls():
    converter = make_converter("melody", {"chord_encoding": "triad"})
    assert (converter.input_depth, converter.output_depth, converter.control_depth) == (90, 90, 49)
    assert make_converter("melody", {}).control_depth == 0
    with pytest.raises(HvaeError, match=r"^melody option chord_encoding must be None or 'triad', got 'pitch'$"):
        make_converter("melody", {"chord_encoding": "pitch"})


def test_a_meter_without_a_chord_rate_gives_no_windows(tmp_path):
    """16 steps a bar in 8/8, but the reference infers chords only in 2/2, 2/4, 3/4, 4/4 and 6/8."""
    midi = miditoolkit.MidiFile(ticks_per_beat=480)
    midi.time_signature_changes = [miditoolkit.TimeSignature(8, 8, 0)]
    piano = miditoolkit.Instrument(program=0)
    piano.notes = [miditoolkit.Note(90, 60 + i % 5, 480 * i, 480 * i + 400) for i in range(32)]
    midi.instruments = [piano]
    midi.dump(str(tmp_path / "eight.mid"))
    assert len(MelodyConverter().convert(tmp_path / "eight.mid")) > 0
    with pytest.raises(ConversionError, match=r"^chords cannot be inferred in 8/8 time$"):
        MelodyConverter(chord_encoding="triad").convert(tmp_path / "eight.mid")


def test_inferred_chords_encode_as_their_names_parse():
    """Every chord inference can name maps to the triad class its name parses to (C7 is a C major triad)."""
    for chord in range(chords.CHORDS):
        assert chords.parse_chord(chords.chord_name(chord)) == chords.TRIAD_OF_CHORD[chord]
    assert [chords.chord_name(c) for c in (0, 1, 2, 3, 4, 8, 9)] == ["N.C.", "C", "Cm", "C+", "Cdim", "Cm7b5", "C#"]


def test_chord_symbols_parse_to_triad_classes():
    assert chords.parse_progression("C G Am F") == [1, 8, 22, 6]
    assert chords.parse_progression(["Bb", "Ebmaj7", "F#m7", "Bdim", "Caug", "G7/B", "N.C."]) == [11, 4, 19, 48, 25, 8, 0]
    assert [chords.triad_name(t) for t in chords.parse_progression("C#m, Ab+, Bbo")] == ["C#m", "G#aug", "A#dim"]


@pytest.mark.parametrize("symbol, message", [
    ("H7", r"^'H7' is not a chord symbol \(write e\.g\. C, Am, F#m7, Bbdim, G7/B or N\.C\.\)$"),
    ("Cxyz", r"^'Cxyz' is not a chord symbol"),
    ("Dsus4", r"^'Dsus4' has no major, minor, augmented or diminished triad, which the model's chord encoding needs$"),
])
def test_a_bad_chord_symbol_is_refused_in_one_line(symbol, message):
    with pytest.raises(HvaeError, match=message):
        chords.parse_progression(f"C {symbol} F")


def test_a_progression_spreads_evenly_over_the_steps():
    controls = chords.progression_controls(chords.parse_progression("C G Am F"), 32)
    assert controls.shape == (32, 49) and np.all(controls.sum(axis=1) == 1)
    assert controls.argmax(axis=1).tolist() == [1] * 8 + [8] * 8 + [22] * 8 + [6] * 8
    assert chords.progression_controls([1], 32).argmax(axis=1).tolist() == [1] * 32
    with pytest.raises(HvaeError, match="^3 chords do not fit in 2 steps$"):
        chords.progression_controls([1, 2, 3], 2)


def test_transposing_moves_the_chords_with_the_notes():
    """Training's transposition moves each chord's root by the semitones its window's notes move (clamped alike)."""
    converter = MelodyConverter(chord_encoding="triad", valid_programs=None)
    examples = converter.convert(DATA / "trio" / "plain.mid")[:4]
    outputs, controls = np.stack([e.outputs for e in examples]), np.stack([e.controls for e in examples])
    semitones = np.array([3, -3, 0, 200])
    moved_controls = converter.transpose_controls(controls, outputs, semitones)
    _, moved = converter.transpose(outputs, outputs, semitones)
    for before, after, chords_before, chords_after in zip(outputs, moved, controls, moved_controls):
        notes = before.argmax(axis=1) >= 2
        shift = int(after.argmax(axis=1)[notes][0] - before.argmax(axis=1)[notes][0])
        triads, again = chords_before.argmax(axis=1), chords_after.argmax(axis=1)
        assert np.array_equal(again == 0, triads == 0)
        assert np.array_equal((again - 1) // 12, (triads - 1) // 12)  # same qualities
        assert np.array_equal(((again - 1) % 12)[triads > 0], ((triads - 1 + shift) % 12)[triads > 0])
    assert not np.array_equal(moved_controls[0], controls[0]) and np.array_equal(moved_controls[2], controls[2])


def test_a_performance_needing_more_than_a_thousand_chords_gives_no_windows(maestro_dir):
    """The reference infers at most 1,000 chords a piece (500 bars of 4/4): this 2015 performance gives it none."""
    long = maestro_dir / "2015" / "MIDI-Unprocessed_R1_D1-9-12_mid--AUDIO-from_mp3_10_R1_2015_wav--3.midi"
    converter = MelodyConverter(chord_encoding="triad", valid_programs=None)
    with pytest.raises(ConversionError, match=r"^chords cannot be inferred for 1,252 chords, at most 1,000$"):
        converter.convert(long)
    assert len(MelodyConverter(valid_programs=None).convert(long)) > 100
