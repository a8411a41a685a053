"""Chord-conditioned melodies from the command line: `hvae run --preset cat-mel_2bar_med_chords` trains on real
MIDI (the trio files: Bach chorales over GMD drums) and samples over a progression; `hvae sample --chords` and
`hvae interpolate --chords` play a progression; what does not fit is said in one line."""

from __future__ import annotations

from pathlib import Path

import miditoolkit
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import hvae
from hvae.cli import main
from hvae.music import read_midi
from hvae.plugins import make_converter
from hvae.presets import get_preset
from hvae.rundir import open_run
from hvae.generation import sample_checkpoint

TRIO = Path(__file__).parent / "data" / "trio"
TINY = ["-m", "z_size=8", "-m", "encoder.rnn_sizes=16", "-m", "decoder.rnn_sizes=16", "--batch-size", "16",
        "--threads", "1", "--no-progress"]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def chord_run(tmp_path_factory) -> Path:
    """`hvae run --preset cat-mel_2bar_med_chords` with tiny sizes, 20 steps on the trio files, then 5 samples."""
    root = tmp_path_factory.mktemp("chords")
    result = invoke("run", "--preset", "cat-mel_2bar_med_chords", *TINY, "--steps", "20", "--data", str(TRIO),
                    "--cache", str(root / "cache"), "--out", str(root / "run"))
    assert result.exit_code == 0, result.output
    assert "the samples play over the chords C G Am F" in result.output
    samples = sorted((root / "run" / "samples").glob("*.mid"))
    assert len(samples) == 5 and all(read_midi(p).notes for p in samples)
    return root / "run"


def test_the_preset_keeps_the_references_sizes_and_converter():
    preset = get_preset("cat-mel_2bar_med_chords")
    assert (preset.model.z_size, preset.model.encoder_options["rnn_sizes"],
            preset.model.decoder_options["rnn_sizes"]) == (256, (1024,), (512, 512, 512))
    assert (preset.batch_size, preset.transpose_range) == (512, (-3, 3))
    converter = make_converter(preset.converter, preset.converter_options)
    assert (converter.steps, converter.input_depth, converter.control_depth) == (32, 90, 49)
    assert converter.options.valid_programs is None and converter.options.max_bars == 100


def test_run_trains_the_chord_model_and_samples_over_a_progression(chord_run):
    loaded = open_run(chord_run)
    assert loaded.model.spec.control_depth == 49 and loaded.converter.control_depth == 49


def test_sample_plays_the_chords_given(chord_run, tmp_path):
    result = invoke("sample", str(chord_run), "--chords", "Am F C G", "-n", "3", "--seed", "1", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    paths = sorted(tmp_path.glob("*.mid"))
    assert len(paths) == 3 and all(read_midi(p).notes for p in paths)
    # the chords steer the decoder: the same seed over other chords draws other melodies
    other = sample_checkpoint(chord_run, tmp_path / "other", n=3, seed=1, chords="C#dim F#aug Bbm Eb")
    again = sample_checkpoint(chord_run, tmp_path / "again", n=3, seed=1, chords=["Am", "F", "C", "G"])
    assert [p.read_bytes() for p in again.paths] == [p.read_bytes() for p in paths]
    assert [p.read_bytes() for p in other.paths] != [p.read_bytes() for p in paths]


def test_interpolate_plays_the_way_over_the_chords(chord_run, tmp_path):
    a, b = TRIO / "plain.mid", TRIO / "two_melodies.mid"
    result = invoke("interpolate", str(chord_run), str(a), str(b), "--chords", "C G Am F", "--steps", "3",
                    "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.glob("*-of-03.mid"))) == 3


@pytest.mark.parametrize("args, message", [
    (["sample"], "Error: This model is conditioned on 49 control values per step (converter 'melody'): drawing "
                 "from it needs those controls (give a chord progression, e.g. --chords 'C G Am F')."),
    (["sample", "--chords", "C Hm F"], "Error: 'Hm' is not a chord symbol (write e.g. C, Am, F#m7, Bbdim, G7/B or "
                                       "N.C.)"),
    (["sample", "--chords", "Csus4"], "Error: 'Csus4' has no major, minor, augmented or diminished triad, which the "
                                      "model's chord encoding needs"),
    (["interpolate", str(TRIO / "plain.mid"), str(TRIO / "gaps.mid")],
     "Error: This model is conditioned on chords: an interpolation between two files plays over a progression "
     "(give a chord progression, e.g. --chords 'C G Am F')."),
])
def test_what_a_chord_model_cannot_use_is_said_in_one_line(chord_run, tmp_path, args, message):
    command, *rest = args
    result = CliRunner().invoke(main, [command, str(chord_run), *rest, "--out", str(tmp_path)])
    assert result.exit_code != 0 and result.output.strip() == message


def test_a_model_without_chords_refuses_them_in_one_line(trained_drums, tmp_path):
    result = CliRunner().invoke(main, ["sample", str(trained_drums), "--chords", "C G", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert result.output.strip() == ("Error: This model is not conditioned on chords (converter 'drums'): it takes "
                                     "no --chords.")


def test_chord_controls_of_the_converter_span_its_window():
    converter = make_converter("melody", {"chord_encoding": "triad", "slice_bars": 4, "add_end_token": True})
    controls = converter.chord_controls("C G Am F")
    assert controls.shape == (65, 49)
    assert controls.argmax(axis=1).tolist() == [1] * 16 + [8] * 16 + [22] * 16 + [6] * 17  # the end repeats F
    examples = converter.convert(TRIO / "plain.mid")
    assert all(np.array_equal(e.controls[-1], e.controls[-2]) for e in examples)
    assert isinstance(examples[0], hvae.Example)


def test_sampled_files_name_their_chords_in_markers(chord_run, tmp_path):
    result = invoke("sample", str(chord_run), "--chords", "C G Am F", "-n", "1", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    midi = miditoolkit.MidiFile(str(next(tmp_path.glob("*.mid"))))
    quarter = midi.ticks_per_beat
    assert [(m.text, m.time) for m in midi.markers if m.text != "end"] == [
        ("C", 0), ("G", 2 * quarter), ("Am", 4 * quarter), ("F", 6 * quarter)]


def test_from_python_a_progression_conditions_the_model(chord_run):
    run = hvae.open_run(chord_run)
    controls = torch.from_numpy(run.converter.chord_controls("C G Am F"))
    drawn = run.model.sample(2, temperature=0.5, controls=controls, generator=torch.Generator().manual_seed(0))
    assert drawn.shape == (2, 32, 90)
    with pytest.raises(hvae.HvaeError, match="is not a chord symbol"):
        run.converter.chord_controls("C X")
