"""Chord-conditioned multi-instrument performances (hier-multiperf_vel_1bar_*_chords): a checkpoint the reference
wrote imports and computes what the reference computed under the windows' chords; the preset trains and samples
from the command line on real files; `hvae sample --chords` plays a chord (one: several are refused in one line);
chords move with transposed windows."""

from __future__ import annotations

from pathlib import Path

import miditoolkit
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hvae.cli import main
import hvae
from hvae.errors import HvaeError
from hvae.generation import sample_checkpoint
from hvae.magenta.exporting import magenta_js_config
from hvae.model import build_model, trainable_parameters
from hvae.plugins import make_converter
from hvae.presets import get_preset
from hvae_converters import chords

from test_magenta import assert_computes_what_the_reference_computed

REFERENCE = Path(__file__).parent / "data" / "reference" / "hier-multiperf_chords_1bar"
TRIO = Path(__file__).parent / "data" / "trio"
PRESET = "hier-multiperf_vel_1bar_med_chords"
TINY = ["-m", "z_size=16", "-m", "encoder.rnn_sizes=32", "-m", "decoder.rnn_sizes=32", "--batch-size", "8",
        "--threads", "1", "--no-progress"]


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_the_chord_presets_have_the_references_sizes():
    # parameters: the reference's trainable variables of the configuration, counted in its graph (the plain
    # presets' plus the 49 chord values a row that the encoder's first LSTMs and the decoder's first layer read)
    for name, parameters in ((PRESET, 56_140_266), ("hier-multiperf_vel_1bar_big_chords", 205_602_282)):
        preset = get_preset(name)
        converter = make_converter(preset.converter, preset.converter_options)
        assert (converter.input_depth, converter.control_depth, converter.steps) == (490, 49, 512)
        with torch.device("meta"):
            assert sum(p.numel() for p in trainable_parameters(build_model(preset.model, converter))) == parameters


def test_the_references_checkpoint_imports_and_computes_what_the_reference_computed(tmp_path):
    """A checkpoint the reference wrote of hier-multiperf_vel_1bar_med_chords' model at small sizes (encoder 16
    units a level, conductor and decoder 3x16, z 8; experiments/reference_multiperf_fixture.py --chords) on eight
    windows its converter made of the real trio files, with their chords: mu and sigma, the loss, one training
    step and the greedy decoding under the windows' chords are the reference's."""
    result = invoke("import", REFERENCE / "tf", "--preset", PRESET, "-m", "encoder.rnn_sizes=16",
                    "-m", "decoder.rnn_sizes=16,16,16", "-m", "z_size=8", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert f"Next:     hvae sample {tmp_path / 'run'} -n 4 --chords 'C'\n" in result.output  # one chord a window
    with np.load(REFERENCE / "expected.npz") as data:
        expected = {k: data[k] for k in data.files}
    assert expected["controls"].shape == (8, 512, 49)
    assert len(np.unique(expected["controls"].argmax(-1))) > 5  # many chords
    # hvae's converter makes the same windows and chords of those files
    converter = make_converter("multiperf", get_preset(PRESET).converter_options)
    ours = [e for path in sorted(TRIO.glob("*.mid")) for e in converter.to_tensors(path)[:2]][:8]
    assert np.array_equal(np.stack([e.outputs for e in ours]), expected["outputs"])
    assert np.array_equal(np.stack([e.controls for e in ours]), expected["controls"])
    expected["lengths"] = np.full(len(expected["inputs"]), 512)
    assert_computes_what_the_reference_computed(tmp_path / "run", expected)
    model = hvae.load_model(tmp_path / "run").model
    with torch.no_grad():
        mu, sigma = model.encode(torch.from_numpy(expected["inputs"]), torch.from_numpy(expected["lengths"]),
                                 torch.from_numpy(expected["controls"]))
    assert np.abs(mu.numpy() - expected["mu"]).max() <= 1e-6 and np.abs(sigma.numpy() - expected["sigma"]).max() <= 1e-6
    # the encoder reads the chords: without them mu is another
    with torch.no_grad():
        unchorded, _ = model.encode(torch.from_numpy(expected["inputs"]), torch.from_numpy(expected["lengths"]),
                                    torch.zeros(8, 512, 49))
    assert np.abs(unchorded.numpy() - expected["mu"]).max() > 1e-3


@pytest.fixture(scope="module")
def chord_run(tmp_path_factory) -> Path:
    """`hvae run --preset hier-multiperf_vel_1bar_med_chords` with tiny sizes, 20 steps on the trio files, then
    3 samples over the default chord, one (a multi-instrument window plays over one chord)."""
    root = tmp_path_factory.mktemp("multiperf_chords")
    result = invoke("run", "--preset", PRESET, *TINY, "--steps", "20", "--data", TRIO, "--cache", root / "cache",
                    "--out", root / "run", "-n", "3", "--temperature", "1.0")
    assert result.exit_code == 0, result.output
    assert "Trained to step 20" in result.output and "the samples play over the chords C (choose" in result.output
    samples = sorted((root / "run" / "samples").glob("*.mid"))
    assert len(samples) == 3
    return root / "run"


def test_run_trains_and_samples_one_track_per_instrument_over_chords(chord_run):
    for path in sorted((chord_run / "samples").glob("*.mid")):
        midi = miditoolkit.MidiFile(str(path))
        assert midi.instruments and all(i.notes for i in midi.instruments) and len(midi.instruments) <= 8
        assert midi.max_tick <= 4 * midi.ticks_per_beat + 1


def test_sample_plays_the_chord_given(chord_run, tmp_path):
    result = invoke("sample", chord_run, "--chords", "Am", "-n", "3", "--seed", "1", "--temperature", "1.0",
                    "--out", tmp_path / "given")
    assert result.exit_code == 0, result.output
    paths = sorted((tmp_path / "given").glob("*.mid"))
    assert len(paths) == 3
    markers = [[m.text for m in miditoolkit.MidiFile(str(p)).markers if m.text != "end"] for p in paths]
    # the events' chords where they change, in time order: the chord given (an event drawn on a program
    # token's row has no chord), no other
    assert all("Am" in m and set(m) <= {"N.C.", "Am"} for m in markers), markers
    # the chord steers the decoder: the same seed over another chord draws other performances
    other = sample_checkpoint(chord_run, tmp_path / "other", n=3, seed=1, temperature=1.0, chords="C#dim")
    again = sample_checkpoint(chord_run, tmp_path / "again", n=3, seed=1, temperature=1.0, chords=["Am"])
    assert [p.read_bytes() for p in again.paths] == [p.read_bytes() for p in paths]
    assert [p.read_bytes() for p in other.paths] != [p.read_bytes() for p in paths]


def test_magenta_js_export_names_the_triad_chord_encoder(chord_run):
    run = hvae.open_run(chord_run)
    config = magenta_js_config(run.model, run.converter)
    assert config["chordEncoder"] == "TriadChordEncoder" and config["dataConverter"]["type"] == "MultitrackConverter"


def test_sample_without_chords_asks_for_them_in_one_line(chord_run, tmp_path):
    result = CliRunner().invoke(main, ["sample", str(chord_run), "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert result.output.strip() == ("Error: This model is conditioned on 49 control values per step (converter "
                                     "'multiperf'): drawing from it needs those controls (give a chord progression, "
                                     "e.g. --chords 'C').")


def test_chord_controls_give_each_segment_no_chord_then_the_chord():
    """As magenta.js conditions multitrack_chords: no chord on each segment's program row, the chord on the rest,
    alike in every segment."""
    converter = make_converter("multiperf", get_preset(PRESET).converter_options)
    one = converter.chord_controls("Am").argmax(axis=1).reshape(8, 64)
    assert (one[:, 0] == chords.NO_CHORD).all() and (one[:, 1:] == 22).all()
    assert np.array_equal(converter.chord_controls(["Am"]), converter.chord_controls("Am"))


SEVERAL = ("Error: A multi-instrument window plays over one chord, not 4: its events are not placed in time until "
           "decoded (give one chord, e.g. --chords 'Am').")


def test_several_chords_are_refused_in_one_line_from_the_cli_and_python(chord_run, tmp_path):
    """As magenta.js refuses a progression for its variable-length multitrack segments: the rows are events,
    whose times are only known once decoded, so chords cannot be placed on beats."""
    result = CliRunner().invoke(main, ["sample", str(chord_run), "--chords", "Am F C G", "--out", str(tmp_path)])
    assert result.exit_code != 0 and result.output.strip() == SEVERAL
    with pytest.raises(HvaeError) as refused:
        sample_checkpoint(chord_run, tmp_path / "python", n=1, chords=["Am", "F", "C", "G"])
    assert f"Error: {refused.value}" == SEVERAL
    with pytest.raises(HvaeError) as refused:
        hvae.open_run(chord_run).converter.chord_controls("Am F C G")
    assert f"Error: {refused.value}" == SEVERAL
    assert not list(tmp_path.rglob("*.mid"))


def test_transposing_moves_the_chords_with_the_notes():
    converter = make_converter("multiperf", get_preset(PRESET).converter_options)
    example = converter.to_tensors(TRIO / "two_melodies.mid")[0]
    window, controls = example.outputs[None], example.controls[None]
    _, moved = converter.transpose(window, window, np.array([2]))
    moved_controls = converter.transpose_controls(controls, window, np.array([2]))
    before, after = controls[0].argmax(-1), moved_controls[0].argmax(-1)
    present = controls[0].max(-1) > 0
    assert np.array_equal(moved_controls[0].max(-1) > 0, present)
    chord = present & (before > 0)
    assert chord.any() and np.array_equal((after[chord] - 1) % 12, (before[chord] - 1 + 2) % 12)
    assert np.array_equal((after[chord] - 1) // 12, (before[chord] - 1) // 12)  # the quality stays
    assert np.array_equal(after[present & (before == 0)], before[present & (before == 0)])


def test_a_bad_chord_encoding_is_a_one_line_error():
    with pytest.raises(HvaeError, match="^Option chord_encoding of converter 'multiperf' must be None or 'triad', "
                                        "not 'pitch'.$"):
        make_converter("multiperf", {"chord_encoding": "pitch"})
