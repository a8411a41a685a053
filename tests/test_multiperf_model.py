"""Multi-instrument performance models: a checkpoint the reference wrote of hier-multiperf_vel_1bar imports and
computes what the reference computed; the presets train and sample from the command line on real
multi-instrument files; their windows transpose as the reference's augmentation."""

from __future__ import annotations

from pathlib import Path

import miditoolkit
import numpy as np
from click.testing import CliRunner

from hvae.cli import main
from hvae.presets import get_preset
from hvae.plugins import make_converter
from hvae_converters.multiperf import segment_lengths

from test_magenta import assert_computes_what_the_reference_computed

REFERENCE = Path(__file__).parent / "data" / "reference" / "hier-multiperf_1bar"
TRIO_FILES = sorted((Path(__file__).parent / "data" / "trio").glob("*.mid"))
TINY = ["-m", "z_size=16", "-m", "encoder.rnn_sizes=32", "-m", "decoder.rnn_sizes=32", "--batch-size", "8",
        "--threads", "1", "--no-progress"]


def test_the_presets_have_the_references_sizes():
    for name, encoder, decoder in (("hier-multiperf_vel_1bar_med", 1024, 512), ("hier-multiperf_vel_1bar_big", 2048, 1024)):
        preset = get_preset(name)
        assert (preset.model.z_size, preset.batch_size, preset.transpose_range) == (512, 256, (-3, 3))
        assert preset.model.encoder_options["rnn_sizes"] == (encoder,)
        assert preset.model.encoder_options["level_lengths"] == (64, 8)
        assert preset.model.decoder_options == {"rnn_sizes": (decoder,) * 3, "level_lengths": (8, 64)}
        assert make_converter(preset.converter, preset.converter_options).steps == 512


def test_the_references_checkpoint_imports_and_computes_what_the_reference_computed(tmp_path):
    """A checkpoint the reference wrote of hier-multiperf_vel_1bar_med's model at small sizes (encoder 16 units a
    level, conductor and decoder 3x16, z 8; experiments/reference_multiperf_fixture.py) on eight windows of the
    real trio files, imported with the preset: mu and sigma, the loss, one training step and the greedy decoding
    are the reference's. The encoder reads each instrument's segment up to its end token, as the reference reads
    its per-segment lengths (stored with the windows; hvae takes them from the padding)."""
    result = CliRunner().invoke(main, ["import", str(REFERENCE / "tf"), "--preset", "hier-multiperf_vel_1bar_med",
                                       "-m", "encoder.rnn_sizes=16", "-m", "decoder.rnn_sizes=16,16,16",
                                       "-m", "z_size=8", "--out", str(tmp_path / "run")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with np.load(REFERENCE / "expected.npz") as data:
        expected = {k: data[k] for k in data.files}
    converter = make_converter("multiperf", get_preset("hier-multiperf_vel_1bar_med").converter_options)
    assert np.array_equal([segment_lengths(o, converter) for o in expected["outputs"]], expected["lengths"])
    assert len(set(map(tuple, expected["lengths"]))) > 4  # segments of many lengths
    expected["lengths"] = np.full(len(expected["inputs"]), 512)
    assert_computes_what_the_reference_computed(tmp_path / "run", expected)


def test_run_trains_20_steps_and_samples_one_track_per_instrument(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for path in TRIO_FILES:
        (data / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--preset", "hier-multiperf_vel_1bar_med", "--data", str(data),
                                       "--steps", "20", *TINY, "--cache", str(tmp_path / "cache"), "--out", str(out),
                                       "-n", "3", "--temperature", "1.0"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Trained to step 20" in result.output
    paths = [Path(line.strip()) for line in result.output.splitlines() if line.strip().endswith(".mid")]
    assert len(paths) == 3
    for path in paths:
        midi = miditoolkit.MidiFile(str(path))
        assert midi.instruments and all(i.notes for i in midi.instruments)
        assert len(midi.instruments) <= 8 and midi.max_tick <= 4 * midi.ticks_per_beat + 1


def test_transposing_moves_pitched_instruments_and_leaves_drums():
    converter = make_converter("multiperf", {"num_velocity_bins": 8})
    window = converter.to_tensors(TRIO_FILES[-1])[0].outputs  # two_melodies: piano, guitar, bass, drums
    tokens = window.argmax(axis=1)
    inputs, outputs = converter.transpose(window[None], window[None], np.array([2]))
    moved = outputs[0].argmax(axis=1)
    present = window.max(axis=1) > 0
    assert np.array_equal(outputs[0].max(axis=1) > 0, present) and np.array_equal(inputs, outputs)
    drums = slice(3 * 64, 4 * 64)  # the fourth instrument: drums sort last
    assert np.array_equal(moved[drums], tokens[drums])
    pitched = present[:3 * 64] & (tokens[:3 * 64] < 256)
    assert pitched.any() and np.array_equal(moved[:3 * 64][pitched], tokens[:3 * 64][pitched] + 2)
    assert np.array_equal(moved[:3 * 64][~pitched], tokens[:3 * 64][~pitched])
    # a window moved too far stops at the pitch range's edge
    _, far = converter.transpose(window[None], window[None], np.array([200]))
    assert (far[0].argmax(axis=1)[:3 * 64][pitched] % 128).max() == 127
