"""Trios and magenta.js: a magenta.js checkpoint folder of a reference trio model imports, an hvae trio model
exports to what magenta.js runs, and what magenta.js cannot load is refused in one line.

magenta.js decodes trios (its ``TrioConverter``) with one core decoder per track, ``core_decoder_0``, ``_1``,
``_2``, and under a conductor beside a hierarchical encoder of one layer per level: the reference's
``hier-trio_16bar`` architecture (its ``trio_4bar`` and ``trio_16bar`` folders). The folder here is the
reference's own small ``hier-trio_16bar`` checkpoint (``tests/data/reference/hier-trio_16bar``) written in
magenta.js's format with the ``config.json`` such a folder has. Node runs ``@magenta/music`` on it (as
``tests/test_magentajs.py`` does; skipped without node and npm).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import hvae
from clihelp import invoke, one_line_error
from hvae.magenta import jsformat
from hvae.magenta.tfbundle import read_bundle
from hvae.magenta.variables import GLOBAL_STEP
from test_magentajs import magenta_js, node_modules, serve  # noqa: F401 (fixtures)
from test_trio_reference import FIXTURES, SIZES

torch.set_num_threads(1)

HIER_TRIO = FIXTURES / "hier-trio_16bar"
WINDOWS = 4  # windows magenta.js encodes and decodes (its plain-JavaScript backend)
MELODY = {"minPitch": 21, "maxPitch": 108, "ignorePolyphony": True}
# magenta.js's trio converter, as a trio folder's config.json gives it: 16 bars of 16 steps, one segment a bar
TRIO_CONFIG = {"type": "MusicVAE", "dataConverter": {"type": "TrioConverter", "args": {
    "numSteps": 256, "numSegments": 16, "melArgs": MELODY, "bassArgs": MELODY,
    "drumsArgs": {"pitchClasses": [[36, 35], [38, 27, 28, 31, 32, 33, 34, 37, 39, 40, 56, 65, 66, 75, 85],
                                   [42, 44, 54, 68, 69, 70, 71, 73, 78, 80, 22], [46, 67, 72, 74, 79, 81, 26],
                                   [45, 29, 41, 43, 61, 64, 84], [48, 47, 60, 63, 77, 86, 87], [50, 30, 62, 76, 83],
                                   [49, 52, 55, 57, 58], [51, 53, 59, 82]]}}}}


def expected() -> dict[str, np.ndarray]:
    with np.load(HIER_TRIO / "expected.npz") as data:
        return {k: data[k] for k in data.files}


def js_folder(tmp_path: Path) -> Path:
    """The reference's hier-trio_16bar checkpoint as a magenta.js folder (config.json, manifest, shard)."""
    bundle = read_bundle(HIER_TRIO / "tf" / "model.ckpt")
    names = json.loads((HIER_TRIO / "variables.json").read_text())
    variables = {name: bundle.read(name) for name in sorted(names) if name != GLOBAL_STEP}
    jsformat.write_js_folder(tmp_path / "trio_16bar", variables, TRIO_CONFIG)
    return tmp_path / "trio_16bar"


def sizes() -> list[str]:
    return [arg for size in SIZES["hier-trio_16bar"] for arg in ("-m", size)]


def test_a_magenta_js_trio_folder_imports_and_computes_what_the_reference_computed(tmp_path):
    """Imported from the magenta.js folder, the model is the one imported from the reference's TensorFlow
    checkpoint, weight for weight (which computes the reference's loss and training step:
    tests/test_trio_reference.py), and gives the reference's mu, sigma and greedy decode."""
    folder = js_folder(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "group1-shard1of1", "weights_manifest.json"]
    for source, name in ((folder, "js"), (HIER_TRIO / "tf", "tf")):
        result = invoke("import", source, "--preset", "hier-trio_16bar", *sizes(), "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
    js, tf = (hvae.load_model(tmp_path / name).model for name in ("js", "tf"))
    assert all(torch.equal(value, tf.state_dict()[key]) for key, value in js.state_dict().items())
    e = expected()
    with torch.no_grad():
        mu, sigma = js.encode(torch.from_numpy(e["inputs"]), torch.from_numpy(e["lengths"]).long())
    assert np.abs(mu.numpy() - e["mu"]).max() <= 1e-6 and np.abs(sigma.numpy() - e["sigma"]).max() <= 1e-6
    assert np.array_equal(js.decode(torch.from_numpy(e["mu"]), temperature=0.0).numpy(), e["greedy"])


def test_magenta_js_runs_the_reference_trio_folder_as_the_reference_does(tmp_path, node_modules, serve):
    """magenta.js itself loads the folder: it encodes the reference's windows to the reference's mu and
    decodes that mu greedily to the reference's greedy decode (on every step the reference chose decisively)."""
    e = expected()
    out = magenta_js(node_modules, serve(js_folder(tmp_path)), e["inputs"][:WINDOWS], e["mu"][:WINDOWS], tmp_path)
    assert np.abs(np.array(out["mu"]) - e["mu"][:WINDOWS]).max() <= 1e-5 * np.abs(e["mu"]).max()
    decoded = np.array(out["decoded"], dtype=np.float32)
    decisive = e["margin"][:WINDOWS] > 1e-4
    assert decisive.mean() > 0.9 and (decoded == e["greedy"][:WINDOWS]).all(-1)[decisive].all()


def test_hvae_export_writes_the_trio_folder_magenta_js_runs(tmp_path, node_modules, serve):
    """The imported reference model exported again: magenta.js's TrioConverter config (16 segments) and the
    same variables, and magenta.js encodes and decodes with it as hvae does."""
    result = invoke("import", HIER_TRIO / "tf", "--preset", "hier-trio_16bar", *sizes(), "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    result = invoke("export", tmp_path / "run", "--format", "magenta-js", "--out", tmp_path / "web")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "web" / "config.json").read_text())
    assert config == TRIO_CONFIG
    ours, theirs = jsformat.read_js_folder(tmp_path / "web"), jsformat.read_js_folder(js_folder(tmp_path))
    assert ours.keys() == theirs.keys() and all(np.abs(ours[k] - theirs[k]).max() <= 1e-6 for k in ours)
    model = hvae.load_model(tmp_path / "run").model
    e = expected()
    inputs = torch.from_numpy(e["inputs"][:WINDOWS])
    with torch.no_grad():
        mu, _ = model.encode(inputs, torch.full((WINDOWS,), 256))
    greedy = model.decode(mu, temperature=0.0).numpy()
    out = magenta_js(node_modules, serve(tmp_path / "web"), inputs.numpy(), mu.numpy(), tmp_path)
    assert np.abs(np.array(out["mu"]) - mu.numpy()).max() <= 1e-5 * np.abs(mu.numpy()).max()
    same = (np.array(out["decoded"], dtype=np.float32) == greedy).all(-1)
    decisive = e["margin"][:WINDOWS] > 1e-4  # hvae's greedy decode is the reference's (test above)
    assert decisive.mean() > 0.9 and same[decisive].all()


@pytest.mark.parametrize("preset, words", [
    ("flat-trio_16bar", "one core decoder per track.*not one flat decoder for the three tracks, and runs "
                        r"single-layer encoders only \(this model's has 2\)"),
    ("hierdec-trio_16bar", "hierarchical decoder only beside a hierarchical encoder")])
def test_a_trio_model_magenta_js_cannot_load_is_refused_in_one_line(preset, words, tmp_path):
    source = FIXTURES / preset / "tf"
    options = [arg for size in SIZES[preset] for arg in ("-m", size)]
    assert invoke("import", source, "--preset", preset, *options, "--out", tmp_path / "run").exit_code == 0
    message = one_line_error(invoke("export", tmp_path / "run", "--format", "magenta-js", "--out", tmp_path / "web"))
    assert re.search(words, message), message
    assert not (tmp_path / "web").exists()


def test_a_4_bar_trio_folder_as_magenta_js_s_trio_4bar_imports_and_runs_as_in_magenta_js(tmp_path, node_modules,
                                                                                        serve):
    """A folder laid out as magenta.js's trio_4bar (64 steps in 4 segments; the reference's small
    hier-trio_16bar weights, which do not depend on the window's length) imports with the 4-bar converter
    and levels given as options, and hvae encodes real 4-bar trio windows (the reference's converter's) to
    magenta.js's mu and decodes them greedily as magenta.js does."""
    folder = js_folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["dataConverter"]["args"].update(numSteps=64, numSegments=4)
    (folder / "config.json").write_text(json.dumps(config))
    result = invoke("import", folder, "--preset", "hier-trio_16bar", *sizes(), "-o", "slice_bars=4",
                    "-m", "encoder.level_lengths=16,4", "-m", "decoder.level_lengths=4,16", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    model = hvae.load_model(tmp_path / "run").model
    assert model.spec.steps == 64
    with np.load(Path(__file__).parent / "data" / "trio" / "reference.npz") as data:
        classes = np.stack([data[k][0] for k in sorted(k for k in data.files if k.endswith("/4"))[:WINDOWS]])
    depths = (90, 90, 512)
    inputs = np.concatenate([np.eye(d, dtype=np.float32)[classes[..., i]] for i, d in enumerate(depths)], -1)
    with torch.no_grad():
        mu, _ = model.encode(torch.from_numpy(inputs), torch.full((WINDOWS,), 64))
        greedy = model.decode(mu, temperature=0.0)
        raw = model.decoder(mu, greedy, torch.full((WINDOWS,), 64))  # the decode's own logits
    margin = np.min([(part.topk(2, -1).values[..., 0] - part.topk(2, -1).values[..., 1]).numpy()
                     for part in raw.split(depths, -1)], axis=0)
    out = magenta_js(node_modules, serve(folder), inputs, mu.numpy(), tmp_path)
    assert np.abs(np.array(out["mu"]) - mu.numpy()).max() <= 1e-5 * np.abs(mu.numpy()).max()
    same = (np.array(out["decoded"], dtype=np.float32) == greedy.numpy()).all(-1)
    decisive = margin > 1e-4
    assert decisive.mean() > 0.9 and same[decisive].all()


def test_a_folder_of_other_windows_than_the_presets_is_refused_saying_what_to_give(tmp_path):
    folder = js_folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["dataConverter"]["args"].update(numSteps=64, numSegments=4)
    (folder / "config.json").write_text(json.dumps(config))
    message = one_line_error(invoke("import", folder, "--preset", "hier-trio_16bar", *sizes(), "--out", tmp_path / "run"))
    assert "windows of 64 steps (numSteps)" in message and "makes 256" in message and "-o" in message
    assert not (tmp_path / "run").exists()
