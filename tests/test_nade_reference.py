"""The reference's NADE drum models (nade-drums_2bar_reduced, nade-drums_2bar_full): checkpoints the reference
wrote at small sizes, in TensorFlow's format and, for the reduced one, as a quantised magenta.js folder like the
hosted drums_2bar_nade_9_q2 (experiments/reference_nade.py). Imported through the command line with the small
sizes as model options, hvae computes the reference's mu, sigma, loss, one training step and greedy decoding on
the same real GMD windows, which hvae's own converter makes as the reference's did."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import hvae
from clihelp import invoke
from hvae.data import DEMO_DIR
from hvae.plugins import make_converter
from hvae.presets import get_preset
from test_magenta import as_the_reference_ran_it, assert_computes_what_the_reference_computed, batch_of

torch.set_num_threads(1)

FIXTURES = Path(__file__).parent / "data" / "reference"
CONFIGS = ["nade-drums_2bar_reduced", "nade-drums_2bar_full"]
SMALL = ("-m", "encoder.rnn_sizes=24", "-m", "decoder.rnn_sizes=32,32", "-m", "z_size=16")


def expected(config: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / config / "expected.npz") as data:
        return {k: data[k] for k in data.files}


def imported(tmp_path: Path, source: Path, config: str) -> Path:
    result = invoke("import", source, "--preset", config, *SMALL, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    return tmp_path / "run"


@pytest.mark.parametrize("config", CONFIGS)
def test_the_configurations_converter_makes_the_windows_the_reference_made(config):
    preset = get_preset(config)
    converter = make_converter(preset.converter, preset.converter_options)
    e = expected(config)
    for number, name in enumerate(e["files"]):  # the reference's windows of a file are in no set order
        examples = converter.to_tensors(Path(DEMO_DIR) / str(name))
        assert any(np.array_equal(x.inputs, e["inputs"][number]) and np.array_equal(x.outputs, e["outputs"][number])
                   for x in examples)
    assert e["outputs"].sum(-1).max() > 1  # steps with several drums: rolls, not one class a step


@pytest.mark.parametrize("config", CONFIGS)
def test_an_imported_nade_checkpoint_computes_what_the_reference_computed(tmp_path, config):
    run = imported(tmp_path, FIXTURES / config / "tf", config)
    model = hvae.load_model(run).model
    assert model.config.loss == "nade" and model.loss.w_enc.shape == (model.spec.output_depth, 1, 128)
    e = expected(config)
    with torch.no_grad():
        mu, sigma = model.encode(torch.from_numpy(e["inputs"]), torch.from_numpy(e["lengths"]).long())
    assert np.abs(mu.numpy() - e["mu"]).max() <= 1e-6 and np.abs(sigma.numpy() - e["sigma"]).max() <= 1e-6
    out = as_the_reference_ran_it(model)(batch_of(e), int(e["step"]), noise=torch.from_numpy(e["eps"]))
    assert abs(out.loss.item() / float(e["loss"]) - 1) <= 1e-6  # 2.5e-7 when made; log(p) for log(1e-6 + p): 3e-6
    # a drum whose greedy probability lies within 1e-4 of 0.5 could round the other way: 88 % of the full
    # configuration's steps (61 drums each) are that decisive, every step of the reduced one's
    assert_computes_what_the_reference_computed(run, e, decisive_share=0.85)
    greedy = model.decode(torch.from_numpy(e["mu"]), temperature=0.0).numpy()
    assert np.array_equal(greedy, e["greedy"])  # every step, decisive or not (when made: all 256 of each)


def test_the_magenta_js_folder_imports_as_its_quantised_weights_and_decodes_as_the_reference(tmp_path):
    """The reduced checkpoint as magenta.js hosts drums_2bar_nade_9_q2: LSTM kernels in 2 bytes, the rest in 1.
    Its weights are the TensorFlow checkpoint's to within the quantisation steps, so it encodes to nearly the
    reference's mu, and imports to exactly the values the manifest's scale and min give."""
    config = "nade-drums_2bar_reduced"
    js = FIXTURES / config / "js"
    tf_run = imported(tmp_path / "tf", FIXTURES / config / "tf", config)
    js_run = imported(tmp_path / "js", js, config)
    tf_state, js_state = hvae.load_model(tf_run).model.state_dict(), hvae.load_model(js_run).model.state_dict()
    assert tf_state.keys() == js_state.keys()
    from hvae.magenta.jsformat import read_js_folder
    from hvae.magenta.variables import to_reference

    stored = read_js_folder(js)
    ours = to_reference(hvae.load_model(js_run).model)
    assert set(ours) == set(stored) - {"global_step"}
    for name, value in ours.items():
        assert np.allclose(value, stored[name], atol=1e-6), name
    e = expected(config)
    model = hvae.load_model(js_run).model
    with torch.no_grad():
        mu, _ = model.encode(torch.from_numpy(e["inputs"]), torch.from_numpy(e["lengths"]).long())
    assert np.abs(mu.numpy() - e["mu"]).max() <= 0.02 * np.abs(e["mu"]).max()
    assert not all(torch.equal(tf_state[k], js_state[k]) for k in tf_state)  # quantised: not the same floats


@pytest.mark.parametrize("config", CONFIGS)
def test_the_preset_builds_the_variables_the_reference_builds_for_its_configuration(config):
    """variables_full_size.json: every variable (name and shape) the reference's configs.py builds for the
    configuration at its own sizes; the preset's model has exactly those, and a checkpoint of them fits it alone."""
    import json

    from hvae.magenta.variables import describe_architecture, expected_shapes, matching
    from hvae.model import build_model
    from hvae.presets import PRESETS

    theirs = {name: tuple(shape) for name, shape in
              json.loads((FIXTURES / config / "variables_full_size.json").read_text()).items() if name != "global_step"}
    preset = get_preset(config)
    with torch.device("meta"):
        model = build_model(preset.model, make_converter(preset.converter, preset.converter_options))
    assert expected_shapes(model) == theirs
    fits = describe_architecture(theirs)
    with torch.device("meta"):
        candidates = [(name, describe_architecture(expected_shapes(build_model(
            p.model, make_converter(p.converter, p.converter_options), force=p.force)))) for name, p in PRESETS.items()]
    assert matching(fits, candidates) == [config]


@pytest.mark.parametrize("config", CONFIGS)
def test_scheduled_sampling_feeds_back_the_greedy_roll_as_the_reference(tmp_path, config):
    """At sampling probability 1 every step after the first is fed the NADE's draw from the step before; the
    reference's training helper draws it without a temperature (greedy), so its loss is deterministic and hvae's
    equals it (a draw at temperature 1 fed back instead gives another loss)."""
    import dataclasses

    from hvae.model import build_model

    model = hvae.load_model(imported(tmp_path, FIXTURES / config / "tf", config)).model
    fed_back = build_model(dataclasses.replace(model.config, sampling_schedule="constant", sampling_rate=1.0),
                           model.spec)
    fed_back.load_state_dict(model.state_dict())
    e = expected(config)
    out = fed_back.train()(batch_of(e), int(e["step"]), noise=torch.from_numpy(e["eps"]))
    assert out.sampling_probability == 1.0
    assert abs(out.r_loss.item() / e["r_loss_fed_back"].mean() - 1) <= 1e-6
    assert np.abs(e["r_loss_fed_back"] - e["r_loss"]).max() > 1.0  # it differs from teacher forcing
