"""The melody converter: MAESTRO piano performances in, the reference's windows and notes out.

Reference: ``maestro_mel_4bar.npz`` (the reference's OneHotMelodyConverter with programs 0-31,
the highest note kept where notes start together, melodies cut to 100 bars, 4-bar windows;
evaluation mode, every window kept). A step is one of 90 classes: no event, note-off, then
the pitches 21-108.
"""

from __future__ import annotations

import collections
import functools

import miditoolkit
import numpy as np
import pytest

import hvae
from hvae.errors import ConversionError, HvaeError, MidiReadError
from hvae.music import read_midi
from hvae_converters.melody import MelodyConverter, MelodyOptions

PERFORMANCES = (
    "2015/MIDI-Unprocessed_R2_D1-2-3-6-7-8-11_mid--AUDIO-from_mp3_11_R2_2015_wav--1.midi",  # 97 windows
    "2015/MIDI-Unprocessed_R1_D1-1-8_mid--AUDIO-from_mp3_04_R1_2015_wav--4.midi",  # 66 windows
    "2015/MIDI-Unprocessed_R2_D1-2-3-6-7-8-11_mid--AUDIO-from_mp3_07_R2_2015_wav--1.midi",  # 291 windows
)
LONG = PERFORMANCES[0]  # one unbroken melody of more than 100 bars
SHORT = PERFORMANCES[1]
DRUM_BEAT = "drummer1/session2/32_punk_140_beat_4-4.mid"
DRUM_BEAT_IN_3_4 = "drummer1/session2/4_jazz_120_beat_3-4.mid"
DEPTH = 90
SECONDS = 1e-6  # tolerance on note times read back from MIDI


@functools.lru_cache(maxsize=None)
def windows(path: str, **options) -> tuple[hvae.Example, ...]:
    """hvae's examples for one file (cached: without sampling, conversion is deterministic)."""
    return tuple(MelodyConverter(**options).convert(path))


def classes(example: hvae.Example) -> np.ndarray:
    return example.outputs.argmax(axis=-1)


def reference_rows(ref: dict, name: str) -> np.ndarray:
    return np.flatnonzero(ref["window_file"] == list(ref["files"]).index(name))


def onehot(indices: np.ndarray, depth: int = DEPTH) -> np.ndarray:
    return np.eye(depth, dtype=np.float32)[indices]


def note_table(midi: miditoolkit.MidiFile) -> np.ndarray:
    """(pitch, velocity, start s, end s) rows of the MIDI read back, sorted by start."""
    rows = np.array([[n.pitch, n.velocity, n.start, n.end] for n in read_midi(midi).notes]).reshape(-1, 4)
    return rows[np.argsort(rows[:, 2], kind="stable")]


@pytest.mark.parametrize("name", PERFORMANCES)
def test_windows_equal_the_reference_windows(maestro_dir, reference, name):
    """Same multiset of (outputs, inputs, length): the reference keeps its windows in a set."""
    ref = reference("maestro_mel_4bar")
    rows = reference_rows(ref, name)
    theirs = collections.Counter(
        (ref["outputs"][j].astype(np.int64).tobytes(),
         np.unpackbits(ref["inputs"][j], axis=-1)[:, :DEPTH].astype(bool).tobytes(), int(ref["lengths"][j]))
        for j in rows)
    ours = collections.Counter(
        (classes(e).astype(np.int64).tobytes(), e.inputs.astype(bool).tobytes(), e.length)
        for e in windows(str(maestro_dir / name), slice_bars=4))
    assert sum(ours.values()) == len(rows)
    assert ours == theirs


@pytest.mark.parametrize("name", PERFORMANCES)
def test_from_tensors_gives_the_reference_notes(reference, name):
    """Pitch and velocity exactly, start and end to a microsecond, for every reference window."""
    ref = reference("maestro_mel_4bar")
    converter = MelodyConverter(slice_bars=4)
    for window in reference_rows(ref, name):
        theirs = ref["rt_notes"][ref["rt_notes"][:, 0] == window, 1:5]
        ours = note_table(converter.from_tensors(onehot(ref["outputs"][window])))
        assert ours.shape == theirs.shape, window
        np.testing.assert_array_equal(ours[:, :2], theirs[:, :2], err_msg=f"window {window}")
        np.testing.assert_allclose(ours[:, 2:], theirs[:, 2:], rtol=0, atol=SECONDS, err_msg=f"window {window}")


def test_from_tensors_writes_one_piano_track_at_120_qpm(reference):
    midi = MelodyConverter(slice_bars=4).from_tensors(onehot(reference("maestro_mel_4bar")["outputs"][0]))
    assert [t.tempo for t in midi.tempo_changes] == [120.0]
    assert [(i.program, i.is_drum) for i in midi.instruments] == [(0, False)]


def test_classes_are_no_event_note_off_then_pitches_21_to_108():
    steps = np.zeros(16, dtype=np.int64)  # no event
    steps[0] = 2  # pitch 21 on
    steps[2] = 1  # note-off
    steps[4] = 89  # pitch 108 on, sounding to the end
    notes = note_table(MelodyConverter().from_tensors(onehot(steps)))
    np.testing.assert_allclose(notes, [[21, 80, 0.0, 0.25], [108, 80, 0.5, 2.0]], rtol=0, atol=SECONDS)


def test_from_tensors_at_another_tempo_stretches_the_times(reference):
    outputs = onehot(reference("maestro_mel_4bar")["outputs"][0])
    converter = MelodyConverter(slice_bars=4)
    at_60 = converter.from_tensors(outputs, qpm=60.0)
    assert [t.tempo for t in at_60.tempo_changes] == [60.0]
    at_120 = note_table(converter.from_tensors(outputs))
    np.testing.assert_allclose(note_table(at_60)[:, 2:], 2 * at_120[:, 2:], rtol=0, atol=SECONDS)


def test_every_window_of_a_performance_comes_back_unchanged_through_midi(maestro_dir):
    converter = MelodyConverter(slice_bars=4)
    for example in windows(str(maestro_dir / SHORT), slice_bars=4):
        again = converter.convert(converter.from_tensors(example.outputs))
        assert len(again) == 1
        np.testing.assert_array_equal(again[0].outputs, example.outputs)


@pytest.mark.parametrize("kind", ["path", "bytes", "MidiFile"])
def test_path_bytes_and_midi_file_give_the_same_windows(maestro_dir, kind):
    path = maestro_dir / SHORT
    source = {"path": path, "bytes": path.read_bytes(), "MidiFile": miditoolkit.MidiFile(str(path))}[kind]
    ours = MelodyConverter(slice_bars=4).convert(source)
    assert [classes(e).tolist() for e in ours] == [classes(e).tolist() for e in windows(str(path), slice_bars=4)]


def test_examples_are_float32_one_hot_with_empty_controls(maestro_dir):
    example = windows(str(maestro_dir / SHORT), slice_bars=4)[0]
    assert example.inputs.dtype == example.outputs.dtype == example.controls.dtype == np.float32
    assert example.outputs.shape == example.inputs.shape == (64, DEPTH)
    assert example.controls.shape == (64, 0) and example.length == 64
    assert (example.outputs.sum(axis=-1) == 1).all()
    np.testing.assert_array_equal(example.inputs, example.outputs)


def test_a_drum_beat_gives_no_melody_and_says_why(gmd_dir):
    converter = MelodyConverter()
    with pytest.raises(ConversionError, match=r"^only drum notes, no melody$"):
        converter.convert(gmd_dir / DRUM_BEAT)
    assert converter.to_tensors(gmd_dir / DRUM_BEAT) == []


def test_a_file_in_3_4_gives_nothing_and_says_why(gmd_dir):
    with pytest.raises(ConversionError, match=r"^3/4 time: 12 steps per bar, 16 needed$"):
        MelodyConverter().convert(gmd_dir / DRUM_BEAT_IN_3_4)


def test_unreadable_midi_is_a_midi_read_error(maestro_dir):
    data = (maestro_dir / SHORT).read_bytes()[:100]
    with pytest.raises(MidiReadError):
        MelodyConverter().convert(data)
    with pytest.raises(MidiReadError):
        MelodyConverter().to_tensors(data)


def test_skip_polyphony_abandons_a_piano_part(maestro_dir):
    with pytest.raises(ConversionError, match=r"^1 polyphonic instrument\(s\) skipped"):
        MelodyConverter(skip_polyphony=True).convert(maestro_dir / SHORT)


def test_melodies_are_cut_to_max_bars(maestro_dir):
    """Without slicing, the long performance is one melody, cut to 100 bars (1,600 steps)."""
    (melody,) = windows(str(maestro_dir / LONG), slice_bars=None)
    assert melody.length == melody.outputs.shape[0] == 1600
    four_bars = {classes(e).tobytes() for e in windows(str(maestro_dir / LONG), slice_bars=4)}
    assert classes(melody)[:64].tobytes() in four_bars


def test_max_tensors_per_notesequence_draws_that_many_windows_by_seed(maestro_dir):
    path = str(maestro_dir / SHORT)
    every = [classes(e).tobytes() for e in windows(path, slice_bars=4)]
    drawn = [classes(e).tobytes() for e in windows(path, slice_bars=4, max_tensors_per_notesequence=5, seed=3)]
    assert len(drawn) == 5 and len(set(drawn)) == 5
    assert [every.index(w) for w in drawn] == sorted(every.index(w) for w in drawn)
    again = MelodyConverter(slice_bars=4, max_tensors_per_notesequence=5, seed=3).convert(path)
    assert [classes(e).tobytes() for e in again] == drawn


def test_end_token_adds_a_class_and_a_final_step(maestro_dir):
    path = str(maestro_dir / SHORT)
    converter = MelodyConverter(slice_bars=4, add_end_token=True)
    assert converter.output_depth == converter.input_depth == DEPTH + 1 and converter.steps == 65
    with_end = converter.convert(path)[0]
    assert with_end.length == 65 and classes(with_end)[-1] == DEPTH
    np.testing.assert_array_equal(classes(with_end)[:-1], classes(windows(path, slice_bars=4)[0]))


def test_from_tensors_stops_at_the_end_token(reference):
    steps = reference("maestro_mel_4bar")["outputs"][0].astype(np.int64)
    cut = steps.copy()
    cut[32:] = DEPTH  # the end token from bar 3 on
    converter = MelodyConverter(slice_bars=4, add_end_token=True)
    first_half = MelodyConverter(slice_bars=2).from_tensors(onehot(steps[:32]))
    np.testing.assert_array_equal(note_table(converter.from_tensors(onehot(cut, DEPTH + 1))),
                                  note_table(first_half))


def test_maestro_mel_4bar_is_the_melody_converter_with_slice_bars_4():
    converter = hvae.get_converter("melody", slice_bars=4)
    assert isinstance(converter, MelodyConverter)
    assert converter.options == MelodyOptions(
        min_pitch=21, max_pitch=108, valid_programs=tuple(range(32)), skip_polyphony=False, max_bars=100,
        slice_bars=4, gap_bars=1.0, steps_per_quarter=4, quarters_per_bar=4, pad_to_total_time=False,
        add_end_token=False, presplit_on_time_changes=True, max_tensors_per_notesequence=None)
    assert (converter.input_depth, converter.output_depth, converter.control_depth, converter.steps) == (90, 90, 0, 64)
    assert converter.output_kind == "onehot"


def test_default_settings_are_cat_mel_2bar_small():
    converter = MelodyConverter()
    assert converter.options.slice_bars == 2 and converter.steps == 32
    assert converter.options.valid_programs == tuple(range(32)) and converter.options.max_bars == 100


def test_an_empty_pitch_range_is_refused():
    with pytest.raises(HvaeError, match=r"^melody pitches must satisfy"):
        MelodyConverter(min_pitch=60, max_pitch=48)


# --- transposition (training augmentation) -----------------------------------------------------------------------

def test_transposing_moves_every_note_by_the_semitones_asked_for(maestro_dir):
    converter = MelodyConverter()
    chosen = windows(str(maestro_dir / SHORT))[:3]
    outputs = np.stack([w.outputs for w in chosen])
    inputs, moved = converter.transpose(outputs.copy(), outputs, np.array([-5, 0, 4]))
    assert np.array_equal(inputs, moved)
    for window, shift, after in zip(chosen, (-5, 0, 4), moved):
        before_notes = note_table(converter.from_tensors(window.outputs))
        after_notes = note_table(converter.from_tensors(after))
        assert np.array_equal(after_notes[:, 0], before_notes[:, 0] + shift)  # pitches moved
        assert np.allclose(after_notes[:, 2:], before_notes[:, 2:], atol=SECONDS)  # same times


def test_a_window_is_moved_only_as_far_as_its_notes_stay_in_the_piano_range():
    converter = MelodyConverter()
    # no event, note-on of pitch 106 (class 87), note-off, pitch 30 (class 11), then padding
    window = onehot(np.array([0, 87, 1, 11, 0, 0]))
    window[-2:] = 0  # padding: all zeros
    _, up = converter.transpose(window[None], window[None], np.array([5]))
    assert list(up[0, :4].argmax(-1)) == [0, 89, 1, 13]  # +2 at most: pitch 108 is the top
    assert not up[0, -2:].any()
    _, down = converter.transpose(window[None], window[None], np.array([-12]))
    assert list(down[0, :4].argmax(-1)) == [0, 78, 1, 2]  # -9 at most: pitch 21 is the bottom
    silent = onehot(np.array([0, 0, 1]))[None]
    assert np.array_equal(converter.transpose(silent, silent, np.array([3]))[1], silent)


def test_converters_without_pitches_cannot_transpose():
    assert MelodyConverter().transposable
    drums = hvae.get_converter("drums")
    assert not drums.transposable
    with pytest.raises(NotImplementedError, match="cannot transpose"):
        drums.transpose(np.zeros((1, 2, 512)), np.zeros((1, 2, 512)), np.zeros(1, dtype=int))
