"""The multi-instrument performance converter: several instruments in, the reference's windows and one
track per instrument out.

References, made by experiments/reference_multiperf.py with the reference's own
MultiInstrumentPerformanceConverter (every window kept, in its order), each at the five settings of
tests/multiperf_files.py: the hier-multiperf_vel_1bar presets' converter ("med"), two-bar windows of two
chunks, 3/4 bars without velocities, a narrow pitch range with one instrument enough, and only files of at
most four bars:

- ``tests/data/multiperf/reference.npz``: the real trio files (Bach chorales' voices over Groove MIDI
  Dataset drummers, see tests/data/trio/SOURCES.md) and three GMD files (drums alone: no window, of one
  instrument or of too many events);
- ``tests/data/multiperf/random_reference.npz``: the 60 random files of tests/multitrack.py and the 61 of
  tests/multiperf_files.py (sustain pedals, pedals shared by a track's instruments, up to eleven instruments,
  dense bars, files of one track or without tempo and meter).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hvae
from hvae.errors import HvaeError
from hvae.midifile import midi_bytes
from hvae.music import Note, NoteSequence, apply_sustain
from hvae.plugins import make_converter
from hvae_converters.multiperf import MultiperfConverter

import multiperf_files
import multitrack

DATA = Path(__file__).parent / "data" / "multiperf"
TRIO_FILES = sorted((Path(__file__).parent / "data" / "trio").glob("*.mid"))
GROOVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "groove"


def tokens(examples: list[hvae.Example], converter: MultiperfConverter) -> tuple[np.ndarray, np.ndarray] | None:
    """Each row's token (-1: padding) and each segment's length, as the references store them."""
    if not examples:
        return None
    for e in examples:
        assert np.array_equal(e.inputs, e.outputs)
        assert e.outputs.shape == (converter.steps, converter.output_depth) and e.length == converter.steps
        assert e.controls.shape == (converter.steps, 0)
        assert set(np.unique(e.outputs.sum(axis=1))) <= {0.0, 1.0}  # one-hot rows or padding
    rows = np.stack([np.where(e.outputs.sum(axis=1) == 1, e.outputs.argmax(axis=1), -1) for e in examples])
    return rows, np.stack([converter.segment_lengths(e.outputs) for e in examples])


def compare(paths: list[Path], reference: np.lib.npyio.NpzFile, key) -> int:
    """Assert every file's windows equal the reference's under every setting; the windows compared."""
    compared = 0
    for name, options in multiperf_files.SETTINGS.items():
        converter = MultiperfConverter(**options)
        for path in paths:
            got = tokens(converter.to_tensors(path), converter)
            k = f"{key(path)}/{name}"
            if k not in reference.files or got is None:
                assert got is None and k not in reference.files, \
                    f"{k}: hvae {None if got is None else len(got[0])} windows, reference " \
                    f"{len(reference[k]) if k in reference.files else None}"
                continue
            rows, lengths = got
            assert rows.shape == reference[k].shape, f"{k}: hvae {rows.shape}, reference {reference[k].shape}"
            assert np.array_equal(rows, reference[k]), f"{k}: windows differ at {np.argwhere(rows != reference[k])[:3]}"
            assert np.array_equal(lengths, reference[f"{k}/lengths"]), f"{k}: segment lengths differ"
            compared += len(rows)
    return compared


def test_real_files_equal_the_reference_window_for_window():
    assert len(TRIO_FILES) == 10
    assert compare(TRIO_FILES, np.load(DATA / "reference.npz"), lambda p: p.stem) == 106


def test_from_tensors_writes_the_notes_the_reference_reads_back_one_track_per_instrument():
    """Each window of the real files, read back: the reference's notes (pitch, velocity, start and end, at the
    ticks hvae writes), one track per instrument that has notes, in the instruments' order, with its program
    (drums on channel 10)."""
    reference = np.load(DATA / "reference.npz")
    compared = 0
    for name in ("med", "two_chunks"):
        converter = MultiperfConverter(**multiperf_files.SETTINGS[name])
        for path in TRIO_FILES:
            if f"{path.stem}/{name}/notes" not in reference.files:
                continue
            theirs = reference[f"{path.stem}/{name}/notes"]
            for w, example in enumerate(converter.to_tensors(path)):
                midi = converter.from_tensors(example.outputs)
                ticks = midi.ticks_per_beat * 2.0  # per second at 120 qpm
                want = theirs[theirs[:, 0] == w]
                slots = sorted(set(want[:, 1].astype(int)))
                assert [(i.program, i.is_drum) for i in midi.instruments] == [
                    (0 if d else int(p), bool(d)) for d, p in (want[want[:, 1] == s][0, [3, 2]] for s in slots)]
                got = sorted((k, n.pitch, n.velocity, n.start, n.end) for k, i in enumerate(midi.instruments)
                             for n in i.notes)
                assert got == sorted((slots.index(int(s)), int(p), int(v), int(np.floor(a * ticks + 0.5)),
                                      int(np.floor(b * ticks + 0.5))) for _, s, _, _, p, v, a, b in want)
                compared += 1
    assert compared == 74


def test_single_instrument_gmd_files_give_no_window_as_in_the_reference():
    paths = [GROOVE / f for f in multiperf_files.GMD_FILES]
    if not all(p.exists() for p in paths):
        pytest.skip("the Groove MIDI Dataset is not here")
    assert compare(paths, np.load(DATA / "reference.npz"), lambda p: "gmd_" + p.stem) == 0
    assert "2 to 8 instruments" in str(pytest.raises(hvae.errors.ConversionError, MultiperfConverter().convert,
                                                     paths[0]).value)


def test_random_files_with_pedals_and_many_instruments_equal_the_reference(tmp_path):
    reference = np.load(DATA / "random_reference.npz")
    trio = multitrack.write_files(tmp_path / "trio")
    perf = multiperf_files.write_files(tmp_path / "perf")
    for paths, digest in ((trio, "multitrack_digest"), (perf, "multiperf_digest")):
        assert multitrack.digest(paths) == str(reference[digest]), "the random files are no longer those the " \
            "reference converted: run experiments/reference_multiperf.py again"
    assert compare(trio + perf, reference, lambda p: p.stem) == 1605


def test_the_presets_converter_has_the_references_sizes():
    converter = make_converter("multiperf", {"num_velocity_bins": 8})
    # 128 note-ons, 128 note-offs, 96 time shifts, 8 velocities, 129 programs, the end token
    assert converter.output_depth == converter.input_depth == 490 and converter.end_token == 489
    assert converter.level_lengths == (1, 8, 64) and converter.steps == 512


def test_sustain_pedal_holds_notes_until_it_comes_up_or_the_pitch_is_struck_again():
    notes = [Note(60, 90, 0.0, 1.0), Note(64, 90, 0.5, 1.0), Note(60, 90, 3.0, 3.5),
             Note(62, 90, 0.0, 1.0, instrument=1), Note(36, 90, 0.0, 0.1, is_drum=True, instrument=2)]
    piece = NoteSequence(notes=notes, total_time=3.5, sustain=[(0.2, 0, 127), (5.0, 0, 0), (0.0, 2, 127)])
    held = apply_sustain(piece)
    assert [(n.pitch, n.start, n.end) for n in held.notes] == [(60, 0.0, 3.0), (64, 0.5, 5.0), (60, 3.0, 5.0),
                                                                (62, 0.0, 1.0), (36, 0.0, 0.1)]
    assert held.total_time == 5.0 and piece.notes[0].end == 1.0  # a copy


def test_a_window_written_and_read_again_is_the_same_window():
    converter = MultiperfConverter(num_velocity_bins=8)
    windows = [e for path in TRIO_FILES for e in converter.to_tensors(path)]
    assert len(windows) == 71
    for example in windows:
        again = converter.to_tensors(midi_bytes(converter.from_tensors(example.outputs)))
        assert np.array_equal(again[0].outputs, example.outputs)


def test_from_tensors_writes_one_track_per_instrument_with_its_program_and_drums_on_channel_10():
    converter = MultiperfConverter(num_velocity_bins=8)
    example = converter.to_tensors(DATA.parent / "trio" / "two_melodies.mid")[0]
    midi = converter.from_tensors(example.outputs, qpm=90)
    programs = [(i.program, i.is_drum) for i in midi.instruments]
    assert programs == [(0, False), (24, False), (33, False), (0, True)]
    assert [i.name for i in midi.instruments] == ["Acoustic Grand Piano", "Acoustic Guitar (nylon)",
                                                  "Electric Bass (finger)", "drums"]
    assert midi.tempo_changes[0].tempo == 90 and midi.max_tick == 4 * midi.ticks_per_beat
    with pytest.raises(HvaeError, match=r"decodes outputs of shape \(512, 490\)"):
        converter.from_tensors(example.outputs[:64])


@pytest.mark.parametrize("options, message", [
    ({"hop_size_bars": 3, "chunk_size_bars": 2}, "must be a multiple of chunk_size_bars"),
    ({"max_events_per_instrument": 2}, "must be at least 3"),
    ({"min_pitch": 60, "max_pitch": 50}, "min_pitch <= max_pitch"),
    ({"num_velocity_bins": 128}, "must be 0 to 127"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(HvaeError, match=message):
        MultiperfConverter(**options)
