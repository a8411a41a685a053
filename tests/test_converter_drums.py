"""The drums converter: the reference's DrumsConverter windows and MIDI, from real Groove MIDI files."""

from __future__ import annotations

import collections

import miditoolkit
import numpy as np
import pytest

import hvae
from hvae.errors import ConversionError, HvaeError, MidiReadError
from hvae.music import read_midi
from hvae_converters.drums import DrumsConverter, DrumsOptions

REFERENCE_FILES = 22  # Groove MIDI files covered by the reference tensors (two of them in 3/4)
BEAT = "drummer1/session1/183_afrocuban_105_beat_4-4.mid"
WALTZES = ["drummer1/session2/4_jazz_120_beat_3-4.mid", "drummer1/session2/5_jazz_200_beat_3-4.mid"]
STEPS_PER_BAR = 16
SILENT_BAR = np.zeros(STEPS_PER_BAR, dtype=np.int64)  # a bar of class 0: no drum hit


def labels(examples: list[hvae.Example]) -> list[tuple[int, ...]]:
    """Each example's one-hot outputs as a tuple of class indices, one per step."""
    return [tuple(e.outputs.argmax(-1).tolist()) for e in examples]


def onehot(classes: np.ndarray, depth: int = 512) -> np.ndarray:
    """Class indices (T,) as one-hot rows (T, depth)."""
    return np.eye(depth, dtype=np.float32)[classes]


def note_rows(midi: miditoolkit.MidiFile) -> list[tuple]:
    """(pitch, velocity, start s, end s, is_drum) of every note, sorted."""
    return sorted((n.pitch, n.velocity, n.start, n.end, n.is_drum) for n in read_midi(midi).notes)


@pytest.fixture(scope="module")
def beat(gmd_dir) -> hvae.NoteSequence:
    """BEAT, read once: 4/4 at 105 qpm, 57 two-bar windows."""
    return read_midi(gmd_dir / BEAT)


@pytest.fixture(scope="module")
def bars(beat) -> np.ndarray:
    """The first four different bars of BEAT, as drum classes per step (4, 16)."""
    played = np.array(labels(DrumsConverter(slice_bars=1).to_tensors(beat))[:4])
    assert played.shape == (4, STEPS_PER_BAR) and played.any(axis=1).all()
    return played


def bars_to_midi(*parts: np.ndarray) -> miditoolkit.MidiFile:
    """MIDI of the given bars of class indices (a bar of zeros is a silent bar), one after the other."""
    return DrumsConverter().from_tensors(onehot(np.concatenate(parts)))


# --- The reference's windows and MIDI ------------------------------------------------------------

@pytest.mark.parametrize("slice_bars", [2, 4])
@pytest.mark.parametrize("index", range(REFERENCE_FILES))
def test_windows_equal_the_references_as_a_multiset(reference, gmd_dir, slice_bars, index):
    ref = reference(f"gmd_drums_{slice_bars}bar")
    depth = int(ref["input_depth"])
    mine = ref["window_file"] == index
    expected = collections.Counter(
        (tuple(o.tolist()), i.tobytes(), int(n)) for o, i, n in
        zip(ref["outputs"][mine], np.unpackbits(ref["inputs"][mine], axis=-1)[..., :depth], ref["lengths"][mine]))

    examples = DrumsConverter(slice_bars=slice_bars).to_tensors(gmd_dir / ref["files"][index])

    got = collections.Counter((tuple(e.outputs.argmax(-1).tolist()), e.inputs.astype(np.uint8).tobytes(), e.length)
                              for e in examples)
    assert got == expected


@pytest.mark.parametrize("slice_bars", [2, 4])
def test_from_tensors_writes_the_references_notes(reference, slice_bars):
    ref = reference(f"gmd_drums_{slice_bars}bar")
    converter = DrumsConverter(slice_bars=slice_bars)
    rows = ref["rt_notes"]

    for window, outputs in enumerate(ref["outputs"]):
        got = np.array(note_rows(converter.from_tensors(onehot(outputs))), dtype=np.float64)
        expected = rows[rows[:, 0] == window, 1:]
        expected = expected[np.lexsort(expected.T[::-1])]
        assert got.shape == expected.shape, f"window {window}"
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, err_msg=f"window {window}")


@pytest.mark.parametrize("waltz", WALTZES)
def test_a_file_in_3_4_gives_no_windows(gmd_dir, waltz):
    assert DrumsConverter().to_tensors(gmd_dir / waltz) == []


@pytest.mark.parametrize("waltz", WALTZES)
def test_convert_says_why_a_file_in_3_4_gives_nothing(gmd_dir, waltz):
    with pytest.raises(ConversionError, match=r"^3/4 time: 12 steps per bar, 16 needed$"):
        DrumsConverter().convert(gmd_dir / waltz)


# --- Examples -----------------------------------------------------------------------------------

def test_defaults_are_cat_drums_2bar_small():
    converter = DrumsConverter()
    assert converter.options == DrumsOptions(max_bars=100, slice_bars=2, gap_bars=1.0, pitch_classes="reduced",
                                             steps_per_quarter=4, quarters_per_bar=4, roll_input=True,
                                             roll_output=False, add_end_token=False, pad_to_total_time=False)
    assert (converter.steps, converter.input_depth, converter.output_depth, converter.control_depth) == (32, 10, 512, 0)
    assert converter.output_kind == "onehot"


def test_get_converter_with_slice_bars_4_is_the_4_bar_reference_setting():
    converter = hvae.get_converter("drums", slice_bars=4)
    assert converter.options == DrumsOptions(max_bars=100, slice_bars=4, steps_per_quarter=4, roll_input=True)
    assert (converter.steps, converter.input_depth, converter.output_depth) == (64, 10, 512)


def test_examples_are_float32_steps_by_depth_with_empty_controls(beat):
    converter = DrumsConverter()
    for example in converter.to_tensors(beat):
        assert example.inputs.dtype == example.outputs.dtype == example.controls.dtype == np.float32
        assert example.inputs.shape == (32, 10)
        assert example.outputs.shape == (32, 512)
        assert example.controls.shape == (32, 0)
        assert example.length == 32


def test_roll_input_is_the_class_bits_of_the_output_and_a_no_hit_bit(beat):
    for example in DrumsConverter().to_tensors(beat):
        classes = example.outputs.argmax(-1)
        bits = (classes[:, None] >> np.arange(9)) & 1
        np.testing.assert_array_equal(example.inputs[:, :9], bits)
        np.testing.assert_array_equal(example.inputs[:, 9], classes == 0)


def test_one_hot_input_equals_the_output(beat):
    for example in DrumsConverter(roll_input=False).to_tensors(beat):
        assert example.inputs.shape == (32, 512)
        np.testing.assert_array_equal(example.inputs, example.outputs)


def test_roll_output_is_multihot_class_bits_of_the_one_hot_windows(beat):
    converter = DrumsConverter(roll_output=True)
    rolls = converter.to_tensors(beat)
    classes = labels(DrumsConverter().to_tensors(beat))

    assert (converter.output_kind, converter.output_depth) == ("multihot", 9)
    assert [tuple(((np.array(c)[:, None] >> np.arange(9)) & 1).ravel().tolist()) for c in classes] == \
        [tuple(r.outputs.astype(int).ravel().tolist()) for r in rolls]


def test_end_token_adds_a_final_end_step(beat):
    converter = DrumsConverter(add_end_token=True)
    plain = DrumsConverter().to_tensors(beat)
    ended = converter.to_tensors(beat)

    assert (converter.steps, converter.input_depth, converter.output_depth) == (33, 11, 513)
    assert [e.outputs.argmax(-1)[:32].tolist() for e in ended] == [e.outputs.argmax(-1).tolist() for e in plain]
    for example in ended:
        assert example.outputs[32].argmax() == 512
        np.testing.assert_array_equal(example.inputs[32], np.eye(11)[9])


def test_full_pitch_classes_need_rolls_both_ways():
    with pytest.raises(HvaeError, match="2\\*\\*61 combinations is too large"):
        DrumsConverter(pitch_classes="full")
    converter = DrumsConverter(pitch_classes="full", roll_input=True, roll_output=True)
    assert (converter.input_depth, converter.output_depth) == (62, 61)


# --- Tracks and windows -------------------------------------------------------------------------

def test_windows_slide_one_bar_at_a_time(bars):
    a, b, c, d = bars
    assert labels(DrumsConverter().to_tensors(bars_to_midi(a, b, c, d))) == \
        [tuple(np.concatenate(p)) for p in ((a, b), (b, c), (c, d))]


def test_a_window_seen_before_is_kept_once_where_it_first_appears(bars):
    a, b = bars[:2]
    midi = bars_to_midi(a, b, a, b, a, b)
    assert labels(DrumsConverter().to_tensors(midi)) == [tuple(np.concatenate(p)) for p in ((a, b), (b, a))]


def test_a_silent_bar_ends_a_track_and_no_window_spans_it(bars):
    a, b, c, d = bars
    midi = bars_to_midi(a, b, SILENT_BAR, c, d)
    assert labels(DrumsConverter().to_tensors(midi)) == [tuple(np.concatenate(p)) for p in ((a, b), (c, d))]


def test_without_gap_bars_a_track_runs_through_silence(bars):
    a, b, c, d = bars
    midi = bars_to_midi(a, b, SILENT_BAR, c, d)
    assert labels(DrumsConverter(gap_bars=None).to_tensors(midi)) == \
        [tuple(np.concatenate(p)) for p in ((a, b), (b, SILENT_BAR), (SILENT_BAR, c), (c, d))]


def test_without_slice_bars_each_track_is_one_example(bars):
    a, b, c = bars[:3]
    midi = bars_to_midi(a, b, SILENT_BAR, c)
    examples = DrumsConverter(slice_bars=None).to_tensors(midi)
    assert labels(examples) == [tuple(np.concatenate(p)) for p in ((a, b), (c,))]
    assert [e.length for e in examples] == [32, 16]


def test_a_track_starts_on_the_bar_of_its_first_hit(bars):
    a, b = bars[:2]
    midi = bars_to_midi(SILENT_BAR, SILENT_BAR, a, b)
    assert labels(DrumsConverter().to_tensors(midi)) == [tuple(np.concatenate((a, b)))]


def test_pad_to_total_time_keeps_the_silence_before_the_first_hit(bars):
    a, b = bars[:2]
    midi = bars_to_midi(SILENT_BAR, a, b)
    assert labels(DrumsConverter(pad_to_total_time=True).to_tensors(midi))[0] == tuple(np.concatenate((SILENT_BAR, a)))


def test_max_bars_cuts_each_track_before_windowing(bars):
    a, b, c, d = bars
    midi = bars_to_midi(a, b, c, d)
    assert labels(DrumsConverter(max_bars=3).to_tensors(midi)) == [tuple(np.concatenate(p)) for p in ((a, b), (b, c))]


def test_a_tempo_change_cuts_the_file_and_no_window_spans_it(bars):
    a, b, c, d = bars
    midi = bars_to_midi(a, b, c, d)
    midi.tempo_changes.append(miditoolkit.TempoChange(90.0, 2 * 4 * midi.ticks_per_beat))
    assert labels(DrumsConverter().to_tensors(midi)) == [tuple(np.concatenate(p)) for p in ((a, b), (c, d))]


def test_a_stretch_in_3_4_after_one_in_4_4_gives_no_windows_of_its_own(bars):
    a, b, c, d = bars
    midi = bars_to_midi(a, b, c, d)
    midi.time_signature_changes.append(miditoolkit.TimeSignature(3, 4, 2 * 4 * midi.ticks_per_beat))
    assert labels(DrumsConverter().to_tensors(midi)) == [tuple(np.concatenate((a, b)))]


def test_without_presplit_a_tempo_change_is_refused(bars):
    midi = bars_to_midi(*bars)
    midi.tempo_changes.append(miditoolkit.TempoChange(90.0, 2 * 4 * midi.ticks_per_beat))
    with pytest.raises(ConversionError, match=r"^tempo change from 120\.0 qpm to 90\.0 qpm$"):
        DrumsConverter(presplit_on_time_changes=False).convert(midi)


def test_max_tensors_per_notesequence_draws_that_many_windows_in_order(beat):
    every = labels(DrumsConverter().to_tensors(beat))
    drawn = labels(DrumsConverter(max_tensors_per_notesequence=5).to_tensors(beat))

    assert len(drawn) == 5
    positions = [every.index(w) for w in drawn]
    assert positions == sorted(positions)


def test_the_drawn_windows_depend_on_the_seed_only(beat):
    def draw(seed):
        return labels(DrumsConverter(max_tensors_per_notesequence=5, seed=seed).to_tensors(beat))

    assert draw(0) == draw(0)
    assert draw(0) != draw(1)


def test_a_short_file_says_it_is_shorter_than_a_window(bars):
    midi = bars_to_midi(bars[0])
    with pytest.raises(ConversionError, match=r"^drums shorter than 2 bars \(longest track: 1 bar\)$"):
        DrumsConverter().convert(midi)


# --- Sources and errors -------------------------------------------------------------------------

def test_path_bytes_and_midifile_give_the_same_examples(gmd_dir):
    path = gmd_dir / BEAT
    converter = DrumsConverter()
    from_path = converter.to_tensors(path)
    for source in (str(path), path.read_bytes(), miditoolkit.MidiFile(str(path))):
        examples = converter.to_tensors(source)
        assert len(examples) == len(from_path)
        for got, expected in zip(examples, from_path):
            np.testing.assert_array_equal(got.inputs, expected.inputs)
            np.testing.assert_array_equal(got.outputs, expected.outputs)


def test_piano_music_has_no_drum_notes(maestro_dir):
    piano = sorted(maestro_dir.glob("2015/*.mid*"))[0]
    with pytest.raises(ConversionError, match=r"^no drum notes on MIDI channel 10$"):
        DrumsConverter().convert(piano)


def test_unreadable_midi_raises_midi_read_error():
    with pytest.raises(MidiReadError):
        DrumsConverter().to_tensors(b"not a MIDI file")


def test_an_unknown_option_is_a_one_line_error_naming_it():
    with pytest.raises(HvaeError, match=r"^Unknown option\(s\) for converter 'drums': slice_bar\. ") as error:
        hvae.get_converter("drums", slice_bar=4)
    assert "\n" not in str(error.value)


def test_unknown_pitch_classes_are_a_one_line_error():
    with pytest.raises(HvaeError, match="Unknown pitch classes 'gm'") as error:
        DrumsConverter(pitch_classes="gm")
    assert "\n" not in str(error.value)


# --- MIDI out -----------------------------------------------------------------------------------

def test_round_trip_midi_tensors_midi_tensors_is_stable(beat):
    converter = DrumsConverter()
    for example in converter.to_tensors(beat):
        again = converter.to_tensors(converter.from_tensors(example.outputs))
        assert labels(again) == labels([example])
        np.testing.assert_array_equal(again[0].inputs, example.inputs)


def test_from_tensors_writes_first_pitches_at_velocity_80_one_step_long():
    classes = np.zeros(32, dtype=np.int64)
    classes[0] = 0b1_0000_0011  # kick, snare, ride
    classes[5] = 0b0_0000_0100  # closed hi-hat
    midi = DrumsConverter().from_tensors(onehot(classes))
    assert note_rows(midi) == [(36, 80, 0.0, 0.125, True), (38, 80, 0.0, 0.125, True),
                               (42, 80, 0.625, 0.75, True), (51, 80, 0.0, 0.125, True)]


def test_from_tensors_writes_at_the_chosen_tempo(bars):
    midi = DrumsConverter().from_tensors(onehot(np.concatenate(bars[:2])), qpm=90.0)
    seconds_per_step = 60.0 / 90.0 / 4
    starts = sorted({n.start for n in read_midi(midi).notes})
    steps = np.flatnonzero(np.concatenate(bars[:2]))
    np.testing.assert_allclose(starts, steps * seconds_per_step, atol=1e-6)
    assert midi.tempo_changes[0].tempo == 90.0


def test_from_tensors_reads_one_hot_scores_by_their_largest_entry(bars):
    classes = np.concatenate(bars[:2])
    scores = np.random.default_rng(0).normal(size=(32, 512)).astype(np.float32)
    scores[np.arange(32), classes] = 10.0
    assert note_rows(DrumsConverter().from_tensors(scores)) == note_rows(DrumsConverter().from_tensors(onehot(classes)))


def test_from_tensors_stops_at_the_end_token(bars):
    classes = np.concatenate(bars[:2])
    classes[8] = 512
    converter = DrumsConverter(add_end_token=True)
    notes = read_midi(converter.from_tensors(onehot(classes, 513))).notes
    assert notes and max(n.start for n in notes) < 8 * 0.125


def test_from_tensors_of_a_roll_writes_the_same_notes_as_its_one_hot(bars):
    classes = np.concatenate(bars[:2])
    roll = ((classes[:, None] >> np.arange(9)) & 1).astype(np.float32)
    assert note_rows(DrumsConverter(roll_output=True).from_tensors(roll)) == \
        note_rows(DrumsConverter().from_tensors(onehot(classes)))


def test_from_tensors_refuses_the_wrong_depth():
    with pytest.raises(HvaeError, match=r"shape \(steps, 512\)"):
        DrumsConverter().from_tensors(np.zeros((32, 10), np.float32))
