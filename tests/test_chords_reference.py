"""A chord-conditioned melody checkpoint the reference wrote, imported by `hvae import`: it computes what the
reference computed, controls included.

``tests/data/reference/mel_chords_2bar``: the reference's cat-mel_2bar_med_chords model (bidirectional encoder,
categorical decoder, 49 triad chord controls a step concatenated to the encoder's inputs and the decoder's) at
small sizes (encoder 24, decoder 3x32, z 16), written by experiments/reference_fixture.py --config mel_chords with
its results on 8 of the reference's own chord-conditioned windows of tests/data/trio/plain.mid; ``js/`` is the same
checkpoint as magenta.js's checkpoint converter writes it, with the config.json of magenta.js's mel_chords
(experiments/reference_js_folder.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import hvae
from clihelp import invoke
from hvae.magenta import jsformat
from test_magenta import assert_computes_what_the_reference_computed
from test_magentajs import check_against_magenta_js, node_modules, serve  # noqa: F401 (fixtures)

torch.set_num_threads(1)

FIXTURE = Path(__file__).parent / "data" / "reference" / "mel_chords_2bar"
SMALL = ["-m", "encoder.rnn_sizes=24", "-m", "decoder.rnn_sizes=32,32,32", "-m", "z_size=16"]


def expected() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "expected.npz") as data:
        return {k: data[k] for k in data.files}


def test_the_references_chord_model_imports_and_computes_what_the_reference_computed(tmp_path):
    """mu and sigma to 1e-6 of their scale, the loss, one TF1 Adam step and the greedy decoding under each
    window's own chords."""
    result = invoke("import", FIXTURE / "tf", "--preset", "cat-mel_2bar_med_chords", *SMALL, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert f"Next:     hvae sample {tmp_path / 'run'} -n 4 --chords 'C G Am F'" in result.output
    e = expected()
    assert e["controls"].shape == (8, 32, 49) and len(np.unique(e["controls"].argmax(-1))) > 3
    assert_computes_what_the_reference_computed(tmp_path / "run", e)
    loaded = hvae.load_model(tmp_path / "run")
    assert loaded.converter.control_depth == 49
    with torch.no_grad():
        mu, sigma = loaded.model.encode(torch.from_numpy(e["inputs"]), torch.from_numpy(e["lengths"]).long(),
                                        torch.from_numpy(e["controls"]))
    assert np.abs(mu.numpy() - e["mu"]).max() <= 1e-6 and np.abs(sigma.numpy() - e["sigma"]).max() <= 1e-6


def test_the_chords_change_what_the_reference_model_computes(tmp_path):
    """The controls matter: without them (no chord on every step) mu and the greedy decoding move."""
    result = invoke("import", FIXTURE / "tf", "--preset", "cat-mel_2bar_med_chords", *SMALL, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    e = expected()
    model = hvae.load_model(tmp_path / "run").model
    no_chords = torch.zeros_like(torch.from_numpy(e["controls"]))
    no_chords[..., 0] = 1
    with torch.no_grad():
        mu = model.encode(torch.from_numpy(e["inputs"]), torch.from_numpy(e["lengths"]).long(), no_chords)[0]
        greedy = model.decode(torch.from_numpy(e["mu"]), temperature=0.0, controls=no_chords).numpy()
    assert np.abs(mu.numpy() - e["mu"]).max() > 1e-3
    assert (greedy.argmax(-1) != e["greedy"].argmax(-1)).any()


# --- magenta.js: the reference's mel_chords folder, and hvae's export of the model -----------------------------------

JS = FIXTURE / "js"  # the same checkpoint as magenta.js's checkpoint converter writes it (experiments/reference_js_folder.py)


def test_the_magenta_js_folder_imports_to_the_tensorflow_checkpoints_weights(tmp_path):
    assert json.loads((JS / "config.json").read_text())["chordEncoder"] == "TriadChordEncoder"
    for name, source in (("tf", FIXTURE / "tf"), ("js", JS)):
        result = invoke("import", source, "--preset", "cat-mel_2bar_med_chords", *SMALL, "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
    tf_state = hvae.load_model(tmp_path / "tf").model.state_dict()
    js_state = hvae.load_model(tmp_path / "js").model.state_dict()
    assert tf_state.keys() == js_state.keys() and all(torch.equal(tf_state[k], js_state[k]) for k in tf_state)


def test_exporting_the_chord_model_writes_magenta_js_s_triad_chord_encoder(tmp_path):
    result = invoke("import", FIXTURE / "tf", "--preset", "cat-mel_2bar_med_chords", *SMALL, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    result = invoke("export", tmp_path / "run", "--format", "magenta-js", "--out", tmp_path / "web")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "web" / "config.json").read_text())
    assert config["chordEncoder"] == "TriadChordEncoder"
    assert config["dataConverter"]["type"] == "MelodyConverter" and config["dataConverter"]["args"]["numSteps"] == 32
    exported = jsformat.read_js_folder(tmp_path / "web")
    reference = jsformat.read_js_folder(JS)
    assert exported.keys() == reference.keys()
    # the same weights; the LSTM biases to a float32 rounding (hvae holds them with the forget gate's 1.0 added)
    assert all(np.allclose(exported[k], reference[k], rtol=0, atol=1e-7) for k in reference)
    assert all(np.array_equal(exported[k], reference[k]) for k in reference if not k.endswith("lstm_cell/bias"))


@pytest.mark.parametrize("source", ["reference", "export"])
def test_magenta_js_runs_the_chord_model_under_a_progression_as_hvae_does(source, tmp_path, node_modules, serve):
    """magenta.js (@magenta/music in Node) loads the reference's mel_chords folder, or hvae's export of the
    imported model, and under "C G Am F" encodes the reference's windows to hvae's mu and decodes as hvae."""
    result = invoke("import", FIXTURE / "tf", "--preset", "cat-mel_2bar_med_chords", *SMALL, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    check_against_magenta_js(tmp_path, tmp_path / "run", expected()["inputs"][:4], node_modules, serve,
                             chords=["C", "G", "Am", "F"], folder=JS if source == "reference" else None)
