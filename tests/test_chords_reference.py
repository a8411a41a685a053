"""A chord-conditioned melody checkpoint the reference wrote, imported by `hvae import`: it computes what the
reference computed, controls included.

``tests/data/reference/mel_chords_2bar``: the reference's cat-mel_2bar_med_chords model (bidirectional encoder,
categorical decoder, 49 triad chord controls a step concatenated to the encoder's inputs and the decoder's) at
small sizes (encoder 24, decoder 3x32, z 16), written by experiments/reference_fixture.py --config mel_chords with
its results on 8 of the reference's own chord-conditioned windows of tests/data/trio/plain.mid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import hvae
from clihelp import invoke
from test_magenta import assert_computes_what_the_reference_computed

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
