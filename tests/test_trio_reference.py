"""The reference's trio models imported and computing what the reference computed.

``tests/data/reference/{flat,hierdec,hier}-trio_16bar`` hold checkpoints the reference (Magenta 2.1.4 on
TensorFlow) wrote of its three trio configurations at small sizes, with its own results on 8 real 16-bar
trio windows (``experiments/reference_fixture.py``; the arrays as in ``../shared/reference/magenta-checkpoints``).
Each is imported through the command line with its preset and its sizes as model options, as a user imports
a checkpoint of other sizes, and must give the reference's mu and sigma, loss, loss after one training step
and greedy decode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import hvae
from clihelp import invoke
from test_magenta import assert_computes_what_the_reference_computed

torch.set_num_threads(1)

FIXTURES = Path(__file__).parent / "data" / "reference"
# Each configuration's sizes in the fixture, as model options: encoder 24 units a layer, decoder 32, z 16.
SIZES = {
    "flat-trio_16bar": ["encoder.rnn_sizes=24,24", "decoder.rnn_sizes=32,32,32", "z_size=16"],
    "hierdec-trio_16bar": ["encoder.rnn_sizes=24,24", "decoder.rnn_sizes=32,32", "z_size=16"],
    "hier-trio_16bar": ["encoder.rnn_sizes=24", "decoder.rnn_sizes=32,32", "z_size=16"],
}


def expected(config: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / config / "expected.npz") as data:
        return {k: data[k] for k in data.files}


def imported(tmp_path: Path, source: Path, config: str) -> Path:
    options = [arg for size in SIZES[config] for arg in ("-m", size)]
    result = invoke("import", source, "--preset", config, *options, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    return tmp_path / "run"


@pytest.mark.parametrize("config", sorted(SIZES))
def test_the_references_trio_checkpoint_imports_and_computes_what_the_reference_computed(tmp_path, config):
    run = imported(tmp_path, FIXTURES / config / "tf", config)
    e = expected(config)
    model = hvae.load_model(run).model
    assert e["outputs"].shape == (8, 256, 692) and model.loss.names == ("melody", "bass", "drums")
    with torch.no_grad():
        mu, sigma = model.encode(torch.from_numpy(e["inputs"]), torch.from_numpy(e["lengths"]).long())
    assert np.abs(mu.numpy() - e["mu"]).max() <= 1e-6 and np.abs(sigma.numpy() - e["sigma"]).max() <= 1e-6
    assert_computes_what_the_reference_computed(run, e)  # mu, sigma, loss, one Adam step, greedy decoding


@pytest.mark.parametrize("config", sorted(SIZES))
def test_a_full_size_trio_checkpoint_finds_its_preset_and_a_small_one_says_its_sizes(config):
    """Without --preset, the variables of each trio configuration at the reference's sizes fit that preset
    alone; the small fixture fits none, and the message gives its sizes, the tracks' depths among them."""
    from hvae.errors import CheckpointError
    from hvae.magenta.importing import Source, preset_for
    from hvae.magenta.tfbundle import read_bundle
    from hvae.magenta.variables import expected_shapes
    from hvae.model import build_model
    from hvae.plugins import make_converter
    from hvae.presets import get_preset

    preset = get_preset(config)
    with torch.device("meta"):
        model = build_model(preset.model, make_converter(preset.converter, preset.converter_options))
    full = Source(config, "tensorflow", expected_shapes(model), lambda name: None, 0, {})
    assert preset_for(full) == config
    bundle = read_bundle(FIXTURES / config / "tf" / "model.ckpt")
    small = Source(config, "tensorflow", {n: tuple(t.shape) for n, t in bundle.tensors.items()}, bundle.read, 100, {})
    with pytest.raises(CheckpointError, match="fits no preset.*z_size=16") as error:
        preset_for(small)
    assert ("decoder.split_depths=90,90,512" in str(error.value)) == (config != "flat-trio_16bar")
