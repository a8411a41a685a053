"""NADE drum models and magenta.js (@magenta/music, run in Node as tests/test_magentajs.py runs it): the reference's
checkpoint as a quantised magenta.js folder (like the hosted drums_2bar_nade_9_q2) loads in magenta.js and computes
what hvae computes from the same folder, and ``hvae export`` writes NADE models magenta.js runs as hvae does."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import hvae
from clihelp import invoke
from hvae.errors import HvaeError
from hvae.magenta.exporting import magenta_js_config
from hvae.model import build_model
from hvae.plugins import make_converter
from hvae.presets import get_preset
from test_magentajs import exported, magenta_js, node_modules, serve  # noqa: F401 (fixtures)

torch.set_num_threads(1)

FIXTURES = Path(__file__).parent / "data" / "reference"
SMALL = ("-m", "encoder.rnn_sizes=24", "-m", "decoder.rnn_sizes=32,32", "-m", "z_size=16")
WINDOWS = 4


def imported(tmp_path: Path, source: Path, config: str) -> Path:
    result = invoke("import", source, "--preset", config, *SMALL, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    return tmp_path / "run"


def assert_magenta_js_computes_what_hvae_computes(tmp_path: Path, run: Path, folder_url: str, inputs: np.ndarray,
                                                   node_modules: Path) -> None:  # noqa: F811
    model = hvae.load_model(run).model
    x = torch.from_numpy(inputs)
    with torch.no_grad():
        mu, _ = model.encode(x, torch.full((x.shape[0],), x.shape[1]))
        greedy = model.decode(mu, temperature=0.0)
        raw = model.decoder(mu, greedy, torch.full((x.shape[0],), x.shape[1]), loss=model.loss)
        margin = (torch.sigmoid(model.loss.conditionals(raw, greedy)) - 0.5).abs().amin(-1).numpy()  # (B, T)
    out = magenta_js(node_modules, folder_url, inputs, mu.numpy(), tmp_path)
    assert np.abs(np.array(out["mu"], np.float32) - mu.numpy()).max() <= 1e-5 * np.abs(mu.numpy()).max()
    same = (np.array(out["decoded"], np.float32) == greedy.numpy()).all(-1)  # (B, T): magenta.js decodes greedily
    decisive = margin > 1e-4
    assert decisive.mean() > 0.85 and same[decisive].all()


def test_magenta_js_runs_the_references_quantised_nade_folder_as_hvae_imports_it(tmp_path, node_modules, serve):
    config = "nade-drums_2bar_reduced"
    run = imported(tmp_path, FIXTURES / config / "js", config)
    inputs = np.load(FIXTURES / config / "expected.npz")["inputs"][:WINDOWS]
    assert_magenta_js_computes_what_hvae_computes(tmp_path, run, serve(FIXTURES / config / "js"), inputs, node_modules)


@pytest.mark.parametrize("config", ["nade-drums_2bar_reduced", "nade-drums_2bar_full"])
def test_magenta_js_runs_an_exported_nade_model_as_hvae_does(tmp_path, node_modules, serve, config):
    run = imported(tmp_path, FIXTURES / config / "tf", config)
    web = exported(tmp_path, run)
    written = (web / "config.json").read_text()
    assert '"DrumRollConverter"' in written
    inputs = np.load(FIXTURES / config / "expected.npz")["inputs"][:WINDOWS]
    assert_magenta_js_computes_what_hvae_computes(tmp_path, run, serve(web), inputs, node_modules)


def test_rolls_without_a_nade_are_refused_for_magenta_js_in_one_line():
    preset = get_preset("nade-drums_2bar_reduced")
    converter = make_converter(preset.converter, preset.converter_options)
    small = dataclasses.replace(preset.model, z_size=4, encoder_options={"rnn_sizes": (8,)},
                                decoder_options={"rnn_sizes": (8,)}, loss="bernoulli", loss_options={})
    with pytest.raises(HvaeError, match=r"^magenta.js decodes drum rolls with a NADE \(the nade loss\), not the "
                                        r"'bernoulli' loss.$"):
        magenta_js_config(build_model(small, converter), converter)
