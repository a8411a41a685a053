"""The groove converter: Groove MIDI Dataset files in, the reference's tensors and notes out.

Reference: ``gmd_groove_4bar.npz`` (the reference converter as ``groovae_4bar``, evaluation
mode, every window kept). A step is 27 values: 9 hits, 9 velocities, 9 offsets.
"""

from __future__ import annotations

import functools

import miditoolkit
import numpy as np
import pytest

from hvae.errors import ConversionError, HvaeError, MidiReadError
from hvae.music import read_midi
from hvae_converters.groove import GrooveConverter

FOUR_FOUR = (
    "drummer3/session2/22_rock_92_beat_4-4.mid",
    "drummer8/session2/21_afrobeat_110_beat_4-4.mid",
    "drummer8/session1/2_funk_95_beat_4-4.mid",
    "drummer10/session1/9_jazz-swing_110_beat_4-4.mid",
    "drummer6/session2/1_rock_95_beat_4-4.mid",
    "drummer8/session2/28_latin-bounce_106_beat_4-4.mid",
    "drummer7/session2/80_country_78_beat_4-4.mid",
    "drummer8/session2/39_rock-indie_104_beat_4-4.mid",
    "drummer8/session2/13_afrobeat_103_beat_4-4.mid",
    "drummer1/session2/32_punk_140_beat_4-4.mid",
    "drummer8/session2/29_latin-bounce_106_beat_4-4.mid",
    "drummer1/session1/183_afrocuban_105_beat_4-4.mid",
    "drummer7/session2/78_funk_100_beat_4-4.mid",
    "drummer3/session2/33_hiphop_92_beat_4-4.mid",
    "drummer8/session1/23_hiphop_70_beat_4-4.mid",
    "drummer3/session2/20_rock_92_beat_4-4.mid",
    "drummer1/session2/108_funk-rock_92_fill_4-4.mid",
    "drummer7/session3/56_funk_112_fill_4-4.mid",
    "drummer7/session3/61_funk_112_fill_4-4.mid",
    "drummer7/session2/90_hiphop_75_fill_4-4.mid",
)
THREE_FOUR = ("drummer1/session2/4_jazz_120_beat_3-4.mid", "drummer1/session2/5_jazz_200_beat_3-4.mid")
BEAT = "drummer8/session1/2_funk_95_beat_4-4.mid"  # 16 windows; Roland pitches 22 and 26 among its notes
SHORT_BEAT = "drummer3/session2/22_rock_92_beat_4-4.mid"  # 2 windows; plays pitch 22 (a hi-hat edge)
ONE_BAR_FILL = "drummer1/session2/108_funk-rock_92_fill_4-4.mid"

TOLERANCE = 1e-5  # the reference's tensors are float32
# from_tensors writes MIDI at 220 ticks per quarter: at 120 qpm a tick is 1/440 s, and a time
# written to the nearest tick is off by at most half of one.
HALF_TICK_SECONDS = 0.5 * 60.0 / (120.0 * 220)
# The same half tick as an offset: (1/880 s) / (0.125 s per step) * 2 offset units per step.
HALF_TICK_OFFSET = HALF_TICK_SECONDS / 0.125 * 2.0
HITS, VELOCITIES, OFFSETS = slice(0, 9), slice(9, 18), slice(18, 27)


@functools.lru_cache(maxsize=None)
def windows(path: str, **options) -> tuple:
    """hvae's examples for one file (cached: conversion is deterministic in evaluation)."""
    return tuple(GrooveConverter(**options).convert(path))


def reference_windows(ref: dict, name: str) -> list[int]:
    index = list(ref["files"]).index(name)
    return np.flatnonzero(ref["window_file"] == index).tolist()


def unmatched(ours: list[tuple[np.ndarray, ...]], theirs: list[tuple[np.ndarray, ...]]) -> int:
    """How many of ``ours`` find no distinct equal partner in ``theirs`` (multiset comparison)."""
    free = list(range(len(theirs)))
    missing = 0
    for mine in ours:
        partner = next((j for j in free if all(a.shape == b.shape and np.allclose(a, b, atol=TOLERANCE)
                                                for a, b in zip(mine, theirs[j]))), None)
        if partner is None:
            missing += 1
        else:
            free.remove(partner)
    return missing


def note_table(midi: miditoolkit.MidiFile) -> np.ndarray:
    """(pitch, velocity, start s, end s, is_drum) rows, sorted by pitch then start."""
    rows = np.array([[n.pitch, n.velocity, n.start, n.end, n.is_drum] for n in read_midi(midi).notes])
    return rows[np.lexsort((rows[:, 2], rows[:, 0]))]


@pytest.mark.parametrize("name", FOUR_FOUR)
def test_windows_equal_the_reference_windows(gmd_dir, reference, name):
    ref = reference("gmd_groove_4bar")
    theirs = reference_windows(ref, name)
    ours = GrooveConverter().to_tensors(gmd_dir / name)
    assert len(ours) == len(theirs)
    assert [e.length for e in ours] == [int(ref["lengths"][j]) for j in theirs]
    assert unmatched([(e.outputs, e.inputs) for e in ours],
                     [(ref["outputs"][j], ref["inputs"][j]) for j in theirs]) == 0


@pytest.mark.parametrize("name", THREE_FOUR)
def test_three_four_files_give_no_windows_and_say_why(gmd_dir, reference, name):
    assert reference_windows(reference("gmd_groove_4bar"), name) == []
    assert GrooveConverter().to_tensors(gmd_dir / name) == []
    with pytest.raises(ConversionError, match=r"^3/4 time: 12 steps per bar, 16 needed$"):
        GrooveConverter().convert(gmd_dir / name)


def test_from_tensors_gives_the_reference_notes(reference):
    """Pitch, velocity and is_drum exactly; start (clamped at 0) and end to within half a MIDI tick."""
    ref = reference("gmd_groove_4bar")
    converter = GrooveConverter()
    for window, outputs in enumerate(ref["outputs"]):
        theirs = ref["rt_notes"][ref["rt_notes"][:, 0] == window, 1:].copy()
        theirs[:, 2] = np.maximum(theirs[:, 2], 0.0)
        theirs = theirs[np.lexsort((theirs[:, 2], theirs[:, 0]))]
        ours = note_table(converter.from_tensors(outputs))
        assert ours.shape == theirs.shape, window
        np.testing.assert_array_equal(ours[:, [0, 1, 4]], theirs[:, [0, 1, 4]], err_msg=f"window {window}")
        np.testing.assert_allclose(ours[:, 2:4], theirs[:, 2:4], rtol=0, atol=HALF_TICK_SECONDS + 1e-9,
                                   err_msg=f"window {window}")


def test_an_early_hit_on_the_first_step_starts_at_zero(gmd_dir):
    """Kick and closed hi-hat are played early on step 0: the notes start at 0 s, end on time."""
    outputs = windows(str(gmd_dir / BEAT))[2].outputs
    assert (outputs[0, HITS] > 0.5).tolist()[:3] == [True, False, True] and (outputs[0, OFFSETS][[0, 2]] > 0).all()
    notes = note_table(GrooveConverter().from_tensors(outputs))
    for drum, pitch in ((0, 36), (2, 42)):
        first = notes[notes[:, 0] == pitch][0]
        assert first[2] == 0.0
        assert first[3] == pytest.approx(0.125 * (1 - outputs[0, OFFSETS][drum] / 2), abs=HALF_TICK_SECONDS + 1e-9)


def test_default_shape_is_groovae_4bar():
    converter = GrooveConverter()
    assert (converter.input_depth, converter.output_depth, converter.control_depth, converter.steps) == (27, 27, 0, 64)
    assert converter.output_kind == "groove"


def test_examples_are_float32_with_empty_controls(gmd_dir):
    example = windows(str(gmd_dir / SHORT_BEAT))[0]
    assert example.inputs.dtype == example.outputs.dtype == example.controls.dtype == np.float32
    assert example.outputs.shape == (64, 27) and example.controls.shape == (64, 0) and example.length == 64


def test_inputs_equal_outputs_by_default(gmd_dir):
    for example in windows(str(gmd_dir / BEAT)):
        np.testing.assert_array_equal(example.inputs, example.outputs)


def test_humanize_keeps_input_hits_and_zeroes_velocities_and_offsets(gmd_dir):
    plain, humanized = windows(str(gmd_dir / BEAT)), windows(str(gmd_dir / BEAT), humanize=True)
    for p, h in zip(plain, humanized, strict=True):
        np.testing.assert_array_equal(h.outputs, p.outputs)
        np.testing.assert_array_equal(h.inputs[:, HITS], p.outputs[:, HITS])
        assert not h.inputs[:, VELOCITIES].any() and not h.inputs[:, OFFSETS].any()


def test_tapify_puts_each_steps_loudest_hit_on_the_open_hihat_class(gmd_dir):
    plain, tapped = windows(str(gmd_dir / BEAT)), windows(str(gmd_dir / BEAT), tapify=True)
    for p, t in zip(plain, tapped, strict=True):
        np.testing.assert_array_equal(t.outputs, p.outputs)
        loudest = np.argmax(p.outputs[:, VELOCITIES], axis=1)
        rows = np.arange(len(loudest))
        for part in (HITS, VELOCITIES, OFFSETS):
            np.testing.assert_array_equal(t.inputs[:, part][:, 3], p.outputs[:, part][rows, loudest])
            assert not np.delete(t.inputs[:, part], 3, axis=1).any()


def test_fixed_velocities_zeroes_input_velocities_only(gmd_dir):
    plain, fixed = windows(str(gmd_dir / BEAT)), windows(str(gmd_dir / BEAT), fixed_velocities=True)
    for p, f in zip(plain, fixed, strict=True):
        assert not f.inputs[:, VELOCITIES].any()
        np.testing.assert_array_equal(f.inputs[:, HITS], p.outputs[:, HITS])
        np.testing.assert_array_equal(f.inputs[:, OFFSETS], p.outputs[:, OFFSETS])


def test_add_instruments_removes_those_classes_from_the_inputs(gmd_dir):
    plain, added = windows(str(gmd_dir / BEAT)), windows(str(gmd_dir / BEAT), add_instruments=(2,))
    removed = [2, 11, 20]  # closed hi-hat's hit, velocity and offset
    assert any(p.outputs[:, 2].any() for p in plain)
    for p, a in zip(plain, added, strict=True):
        np.testing.assert_array_equal(a.outputs, p.outputs)
        assert not a.inputs[:, removed].any()
        np.testing.assert_array_equal(np.delete(a.inputs, removed, axis=1), np.delete(p.outputs, removed, axis=1))


def test_hits_as_controls_gives_the_output_hits_as_controls(gmd_dir):
    converter = GrooveConverter(hits_as_controls=True)
    assert converter.control_depth == 9
    for example in converter.convert(gmd_dir / BEAT):
        np.testing.assert_array_equal(example.controls, example.outputs[:, HITS])


def test_split_instruments_gives_one_class_per_step(gmd_dir):
    converter = GrooveConverter(split_instruments=True)
    assert (converter.output_depth, converter.control_depth, converter.steps) == (3, 9, 576)
    plain = windows(str(gmd_dir / BEAT))
    split = converter.convert(gmd_dir / BEAT)
    for p, s in zip(plain, split, strict=True):
        per_class = p.outputs.reshape(64, 3, 9).transpose(0, 2, 1).reshape(576, 3)
        np.testing.assert_array_equal(s.outputs, per_class)
        np.testing.assert_array_equal(s.controls, np.tile(np.eye(9), (64, 1)))


def test_hop_size_slides_the_window_by_that_many_steps(gmd_dir):
    whole = GrooveConverter(split_bars=None).convert(gmd_dir / BEAT)[0].outputs
    hopped = GrooveConverter(hop_size=16).convert(gmd_dir / BEAT)
    assert len(hopped) == len(whole) // 16 - 3
    for i, example in enumerate(hopped):
        np.testing.assert_array_equal(example.outputs, whole[16 * i:16 * i + 64])


def test_split_bars_none_gives_the_whole_file_padded_to_a_bar(gmd_dir):
    (whole,) = GrooveConverter(split_bars=None).convert(gmd_dir / BEAT)
    assert whole.length % 16 == 0 and whole.outputs[-16:, HITS].any()
    np.testing.assert_array_equal(whole.outputs[:64], windows(str(gmd_dir / BEAT))[0].outputs)


def test_velocity_and_offset_bins_are_one_hot_and_decode_to_the_same_hits(gmd_dir):
    converter = GrooveConverter(num_velocity_bins=10, num_offset_bins=10)
    assert converter.output_depth == 9 * (1 + 10 + 10)
    binned = converter.convert(gmd_dir / BEAT)
    for plain, example in zip(windows(str(gmd_dir / BEAT)), binned, strict=True):
        assert (example.outputs[:, 9:].reshape(64, 18, 10).sum(axis=-1) == 1).all()
        ours = note_table(converter.from_tensors(example.outputs))
        continuous = note_table(GrooveConverter().from_tensors(plain.outputs))
        np.testing.assert_array_equal(ours[:, 0], continuous[:, 0])
        np.testing.assert_allclose(ours[:, 2], continuous[:, 2], atol=0.1 * 0.125 + HALF_TICK_SECONDS)


def test_max_tensors_per_notesequence_keeps_the_first_windows_in_evaluation(gmd_dir):
    limited = GrooveConverter(max_tensors_per_notesequence=3).convert(gmd_dir / BEAT)
    for kept, first in zip(limited, windows(str(gmd_dir / BEAT))[:3], strict=True):
        np.testing.assert_array_equal(kept.outputs, first.outputs)


def test_max_tensors_per_notesequence_samples_distinct_windows_when_training(gmd_dir):
    every = [e.outputs for e in windows(str(gmd_dir / BEAT))]
    picks = [[next(i for i, w in enumerate(every) if np.array_equal(w, e.outputs))
              for e in GrooveConverter(max_tensors_per_notesequence=3, is_training=True, seed=seed)
              .convert(gmd_dir / BEAT)] for seed in (1, 1, 2)]
    assert all(len(set(p)) == 3 for p in picks)
    assert picks[0] == picks[1] and picks[0] != picks[2]


def test_note_dropout_is_off_in_evaluation(gmd_dir):
    for example in GrooveConverter(max_note_dropout_probability=1.0).convert(gmd_dir / BEAT):
        np.testing.assert_array_equal(example.inputs, example.outputs)


def test_note_dropout_drops_input_notes_only_when_training(gmd_dir):
    dropped = GrooveConverter(max_note_dropout_probability=0.8, is_training=True, seed=3).convert(gmd_dir / BEAT)
    inputs = np.stack([e.inputs for e in dropped])
    outputs = np.stack([e.outputs for e in dropped])
    np.testing.assert_array_equal(outputs, np.stack([e.outputs for e in windows(str(gmd_dir / BEAT))]))
    kept = inputs[..., HITS] == 1  # (windows, 64, 9)
    assert kept.sum() < (outputs[..., HITS] == 1).sum()
    kept_channels = np.concatenate([kept] * 3, axis=-1)  # the hit, velocity and offset of a kept note
    np.testing.assert_array_equal(inputs[kept_channels], outputs[kept_channels])
    assert not inputs[~kept_channels].any()


def test_round_trip_keeps_hits_velocities_and_offsets_to_a_tick(gmd_dir):
    """MIDI -> tensors -> MIDI -> tensors. An early hit on step 0 comes back on time (clamped at 0 s).

    (A hit exactly half a step early, offset 1.0, sits on the boundary between two steps:
    written to the nearest tick it may land on the step before. This file has none.)
    """
    converter = GrooveConverter()
    for example in windows(str(gmd_dir / BEAT)):
        (again,) = converter.convert(converter.from_tensors(example.outputs))
        np.testing.assert_array_equal(again.outputs[:, HITS], example.outputs[:, HITS])
        np.testing.assert_allclose(again.outputs[:, VELOCITIES], example.outputs[:, VELOCITIES], atol=1e-6)
        expected_offsets = example.outputs[:, OFFSETS].copy()
        expected_offsets[0] = np.minimum(expected_offsets[0], 0.0)
        np.testing.assert_allclose(again.outputs[:, OFFSETS], expected_offsets, atol=HALF_TICK_OFFSET + 1e-6)


def test_path_bytes_and_midifile_give_the_same_windows(gmd_dir):
    path = gmd_dir / SHORT_BEAT
    converter = GrooveConverter()
    by_path = converter.convert(path)
    for source in (str(path), path.read_bytes(), miditoolkit.MidiFile(str(path))):
        again = converter.convert(source)
        assert len(again) == len(by_path) == 2
        for a, b in zip(again, by_path):
            np.testing.assert_allclose(a.outputs, b.outputs, atol=TOLERANCE)


def test_qpm_sets_the_tempo_of_the_written_midi(gmd_dir):
    outputs = windows(str(gmd_dir / BEAT))[1].outputs
    converter = GrooveConverter()
    at_120, at_60 = converter.from_tensors(outputs), converter.from_tensors(outputs, qpm=60.0)
    assert at_60.tempo_changes[0].tempo == 60.0
    np.testing.assert_allclose(note_table(at_60)[:, 2:4], 2 * note_table(at_120)[:, 2:4], atol=2 * HALF_TICK_SECONDS)


def test_notes_whose_pitch_is_in_no_class_are_skipped(gmd_dir):
    """Kicks moved to pitch 35 (in no Roland class) convert as if they were not there."""
    moved, removed = miditoolkit.MidiFile(str(gmd_dir / SHORT_BEAT)), miditoolkit.MidiFile(str(gmd_dir / SHORT_BEAT))
    for note in (n for i in moved.instruments for n in i.notes if n.pitch == 36):
        note.pitch = 35
    for instrument in removed.instruments:
        instrument.notes = [n for n in instrument.notes if n.pitch != 36]
    skipped, without = GrooveConverter().convert(moved), GrooveConverter().convert(removed)
    assert len(skipped) == len(without) == 2
    for a, b in zip(skipped, without):
        assert not a.outputs[:, 0].any()
        np.testing.assert_array_equal(a.outputs, b.outputs)


def test_a_file_whose_drums_are_all_outside_the_classes_says_so(gmd_dir):
    midi = miditoolkit.MidiFile(str(gmd_dir / SHORT_BEAT))
    for note in (n for i in midi.instruments for n in i.notes):
        note.pitch = 35
    with pytest.raises(ConversionError, match=r"^no drum note is in the roland pitch classes \(pitches 35\)$"):
        GrooveConverter().convert(midi)


def test_inferring_writes_the_inference_classes_first_pitches(gmd_dir):
    outputs = windows(str(gmd_dir / BEAT))[2].outputs
    toms = outputs[:, 4:7].sum(axis=0) > 0
    assert toms.any()
    training = set(note_table(GrooveConverter().from_tensors(outputs))[:, 0])
    inferring = set(note_table(GrooveConverter(is_inferring=True).from_tensors(outputs))[:, 0])
    assert {t for t, used in zip((43, 47, 50), toms) if used} <= training
    assert {t for t, used in zip((45, 48, 50), toms) if used} <= inferring
    assert not {43, 47} & inferring


def test_a_file_without_drums_says_so(maestro_dir):
    piano = min((maestro_dir / "2015").glob("*.midi"), key=lambda p: p.stat().st_size)
    with pytest.raises(ConversionError, match=r"^no drum notes on MIDI channel 10$"):
        GrooveConverter().convert(piano)


def test_a_file_shorter_than_a_window_says_how_long_it_is(gmd_dir):
    with pytest.raises(ConversionError, match=r"^1 bar of drums, 4 needed$"):
        GrooveConverter().convert(gmd_dir / ONE_BAR_FILL)


def test_a_file_that_is_not_midi_raises_midi_read_error(gmd_dir):
    with pytest.raises(MidiReadError):
        GrooveConverter().to_tensors(gmd_dir / "info.csv")


def test_from_tensors_refuses_outputs_of_the_wrong_depth():
    with pytest.raises(ConversionError, match=r"\(steps, 27\)"):
        GrooveConverter().from_tensors(np.zeros((64, 30), dtype=np.float32))


@pytest.mark.parametrize("options, message", [
    ({"pitch_classes": "full"}, "same number"),
    ({"num_velocity_bins": 8}, "set together"),
    ({"split_bars": None, "hop_size": 16}, "hop_size needs split_bars"),
    ({"add_instruments": (9,)}, "out of range"),
    ({"pitch_classes": "gm"}, "Unknown pitch classes"),
])
def test_contradictory_options_are_refused(options, message):
    with pytest.raises(HvaeError, match=message):
        GrooveConverter(**options)
