"""Multi-instrument performance models: a checkpoint the reference wrote of hier-multiperf_vel_1bar imports (as
TensorFlow wrote it and as a magenta.js folder) and computes what the reference computed; exported, magenta.js
loads it and computes the same; the presets train and sample from the command line on real multi-instrument
files; their windows transpose as the reference's augmentation."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import miditoolkit
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import hvae

from hvae.cli import main
from hvae.errors import HvaeError
from hvae.magenta.exporting import magenta_js_config
from hvae.model import Batch, build_model, trainable_parameters, valid_steps
from hvae.presets import get_preset
from hvae.plugins import make_converter

from test_magenta import assert_computes_what_the_reference_computed
from test_magentajs import SCRIPT, node_modules, serve  # noqa: F401  (fixtures: magenta.js and a web server)

REFERENCE = Path(__file__).parent / "data" / "reference" / "hier-multiperf_1bar"
TRIO_FILES = sorted((Path(__file__).parent / "data" / "trio").glob("*.mid"))
TINY = ["-m", "z_size=16", "-m", "encoder.rnn_sizes=32", "-m", "decoder.rnn_sizes=32", "--batch-size", "8",
        "--threads", "1", "--no-progress"]


def test_the_presets_have_the_references_sizes():
    # parameters: the reference's trainable variables of the configuration, counted in its graph
    for name, encoder, decoder, parameters in (("hier-multiperf_vel_1bar_med", 1024, 512, 55_638_506),
                                               ("hier-multiperf_vel_1bar_big", 2048, 1024, 204_598_762)):
        preset = get_preset(name)
        converter = make_converter(preset.converter, preset.converter_options)
        with torch.device("meta"):
            assert sum(p.numel() for p in trainable_parameters(build_model(preset.model, converter))) == parameters
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
    assert np.array_equal([converter.segment_lengths(o) for o in expected["outputs"]], expected["lengths"])
    assert len(set(map(tuple, expected["lengths"]))) > 4  # segments of many lengths
    expected["lengths"] = np.full(len(expected["inputs"]), 512)
    assert_computes_what_the_reference_computed(tmp_path / "run", expected)


def imported(tmp_path: Path, form: str) -> Path:
    result = CliRunner().invoke(main, ["import", str(REFERENCE / form), "--preset", "hier-multiperf_vel_1bar_med",
                                       "-m", "encoder.rnn_sizes=16", "-m", "decoder.rnn_sizes=16,16,16",
                                       "-m", "z_size=8", "--out", str(tmp_path / form)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return tmp_path / form


def test_the_references_magenta_js_folder_imports_to_the_checkpoints_weights(tmp_path):
    tf_state = hvae.load_model(imported(tmp_path, "tf")).model.state_dict()
    js_state = hvae.load_model(imported(tmp_path, "js")).model.state_dict()
    assert tf_state.keys() == js_state.keys() and all(torch.equal(tf_state[k], js_state[k]) for k in tf_state)


def test_magenta_js_loads_the_export_and_computes_what_the_reference_computed(tmp_path, node_modules, serve):  # noqa: F811
    """``hvae export`` of the imported checkpoint writes the reference's variables and a MultitrackConverter
    config; magenta.js (@magenta/music) loads the folder, encodes windows to the reference's mu and decodes
    mu greedily as the reference did."""
    web = tmp_path / "web"
    result = CliRunner().invoke(main, ["export", str(imported(tmp_path, "tf")), "--format", "magenta-js",
                                       "--out", str(web)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    config = json.loads((web / "config.json").read_text())["dataConverter"]
    assert config == {"type": "MultitrackConverter", "args": {
        "numSteps": 512, "numSegments": 8, "stepsPerQuarter": 24, "totalSteps": 96, "numVelocityBins": 8,
        "minPitch": 0, "maxPitch": 127}}
    ours = {w["name"]: w["shape"] for w in json.loads((web / "weights_manifest.json").read_text())[0]["weights"]}
    theirs = {w["name"]: w["shape"] for w in
              json.loads((REFERENCE / "js" / "weights_manifest.json").read_text())[0]["weights"]}
    assert ours == theirs

    with np.load(REFERENCE / "expected.npz") as data:
        e = {k: data[k][:2] for k in ("inputs", "mu", "greedy", "margin")}
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"inputs": e["inputs"].tolist(), "z": e["mu"].tolist(), "one_by_one": True}))
    done = subprocess.run(["node", str(SCRIPT), serve(web), str(request)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "NODE_PATH": str(node_modules)})
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert np.abs(np.array(out["mu"]) - e["mu"]).max() <= 1e-5 * np.abs(e["mu"]).max()
    decisive = e["margin"] > 1e-4
    same = np.array(out["decoded"]).argmax(-1) == e["greedy"].argmax(-1)
    assert decisive.mean() > 0.9 and same[decisive].all()


def test_export_refuses_windows_magenta_js_cannot_read():
    """magenta.js's MultitrackConverter reads one bar of 4 quarters (its time shifts span the window): a model
    of two-bar windows is refused in one line, before anything is written."""
    preset = get_preset("hier-multiperf_vel_1bar_med")
    converter = make_converter("multiperf", {**preset.converter_options, "hop_size_bars": 2, "chunk_size_bars": 2})
    small = dataclasses.replace(preset.model, z_size=8, encoder_options={**preset.model.encoder_options,
                                                                         "rnn_sizes": (16,)},
                                decoder_options={**preset.model.decoder_options, "rnn_sizes": (16,)})
    with pytest.raises(HvaeError, match="2 bars of 4 quarters in chunks of 2 cannot be exported"):
        magenta_js_config(build_model(small, converter), converter)


def test_the_loss_and_metrics_count_each_instruments_rows_not_the_padding(tmp_path):
    """As the reference's per-segment lengths: a step of the loss and metrics is a row of an instrument's
    segment, up to its end token; the padding after it is no step."""
    with np.load(REFERENCE / "expected.npz") as data:
        outputs, lengths = torch.from_numpy(data["outputs"]), data["lengths"]
    model = hvae.load_model(imported(tmp_path, "tf")).model
    mask = valid_steps(model.spec, outputs, torch.full((8,), 512))
    assert np.array_equal(mask.view(8, 8, 64).sum(dim=-1).numpy(), lengths)
    assert mask.mean() < 0.5  # most rows are padding
    with torch.no_grad():
        out = model(Batch(outputs, outputs, torch.full((8,), 512)), 100)
    correct = (out.raw.argmax(dim=-1) == outputs.argmax(dim=-1)).float()
    assert out.metrics["accuracy"].item() == pytest.approx(((correct * mask).sum() / mask.sum()).item())


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
