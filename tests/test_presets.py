"""Presets: the reference's sizes, the report's runs, and that each one builds."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from hvae.errors import IncompatibleError, UnknownComponentError
from hvae.model import DataSpec, build_model, trainable_parameters
from hvae.plugins import make_converter, registry
from hvae.presets import UNSUPPORTED, Preset, get_preset, list_presets

torch.set_num_threads(1)

NADE = ["nade-drums_2bar_reduced", "nade-drums_2bar_full"]
REFERENCE = ["cat-drums_2bar_small", "cat-drums_2bar_big", "cat-mel_2bar_small", "cat-mel_2bar_big", "flat-mel_16bar",
             "cat-mel_2bar_med_chords",
             "hierdec-mel_16bar", "groovae_4bar", "groovae_2bar_humanize", "groovae_2bar_tap_fixed_velocity",
             "groovae_2bar_tap_fixed_velocity_note_dropout", "groovae_2bar_add_closed_hh",
             "groovae_2bar_hits_control", "hier-multiperf_vel_1bar_med", "hier-multiperf_vel_1bar_big",
             "hier-multiperf_vel_1bar_med_chords", "hier-multiperf_vel_1bar_big_chords"] + NADE
TRIO = ["flat-trio_16bar", "hierdec-trio_16bar", "hier-trio_16bar"]
REPORT = ["hier-groove-4bar", "groovae_4bar", "hier-drums-4bar", "hier-mel-4bar"]
# What each converter writes, for building without the converter itself: (kind, input depth, output depth).
SHAPES = {"drums": ("onehot", 10, 512), "groove": ("groove", 27, 27), "melody": ("onehot", 90, 90),
          "trio": ("onehot-parts", 692, 692), "multiperf": ("onehot", 490, 490)}
BARS_KEY = {"drums": "slice_bars", "melody": "slice_bars", "groove": "split_bars", "trio": "slice_bars"}
PARTS = {"trio": (("melody", 90), ("bass", 90), ("drums", 512))}


def spec_for(preset: Preset) -> DataSpec:
    kind, input_depth, output_depth = SHAPES[preset.converter]
    if preset.converter_options.get("roll_output"):  # rolls of the drum classes
        converter = make_converter(preset.converter, preset.converter_options)
        kind, input_depth, output_depth = converter.output_kind, converter.input_depth, converter.output_depth
    # multiperf: one bar of 8 instruments' segments of 64 events
    steps = 512 if preset.converter == "multiperf" else 16 * preset.converter_options[BARS_KEY[preset.converter]]
    return DataSpec(converter=preset.converter, output_kind=kind, input_depth=input_depth,
                    output_depth=output_depth, control_depth=0, steps=steps, parts=PARTS.get(preset.converter, ()))


def test_every_named_preset_is_there():
    assert set(REFERENCE + TRIO + REPORT + ["demo"]) <= set(list_presets())
    assert list_presets() == sorted(list_presets())


def test_an_unknown_preset_lists_the_presets():
    with pytest.raises(UnknownComponentError, match="Presets: .*cat-drums_2bar_small.*demo"):
        get_preset("cat-drums_4bar")


def test_reference_presets_keep_the_references_sizes():
    drums = get_preset("cat-drums_2bar_small").model
    assert (drums.z_size, drums.encoder_options["rnn_sizes"], drums.decoder_options["rnn_sizes"]) == (256, (512,), (256, 256))
    assert (drums.free_bits, drums.max_beta, drums.beta_rate) == (48.0, 0.2, 0.0)
    assert (drums.sampling_schedule, drums.sampling_rate) == ("inverse_sigmoid", 1000.0)
    melody = get_preset("cat-mel_2bar_small").model
    assert (melody.free_bits, melody.max_beta, melody.beta_rate) == (0.0, 0.2, 0.99999)
    hier = get_preset("hierdec-mel_16bar").model
    assert (hier.z_size, hier.encoder_options["rnn_sizes"], hier.decoder_options["rnn_sizes"]) == (512, (2048, 2048), (1024, 1024))
    assert hier.decoder_options["level_lengths"] == (16, 16) and (hier.free_bits, hier.max_beta) == (256.0, 0.2)
    groove = get_preset("groovae_4bar").model
    assert (groove.decoder, groove.loss, groove.dropout) == ("groove", "groove", 0.7)
    assert (groove.z_size, groove.free_bits, groove.max_beta) == (256, 48.0, 0.2)
    assert all(get_preset(n).batch_size == (256 if "multiperf" in n else 512) for n in REFERENCE)


@pytest.mark.parametrize("name,classes", [("nade-drums_2bar_reduced", 9), ("nade-drums_2bar_full", 61)])
def test_nade_presets_keep_the_references_sizes(name, classes):
    preset = get_preset(name)
    nade = preset.model
    assert (nade.z_size, nade.encoder_options["rnn_sizes"], nade.decoder_options["rnn_sizes"]) == (256, (1024,), (512, 512))
    assert (nade.loss, dict(nade.loss_options)) == ("nade", {"num_hidden": 128})
    assert (nade.free_bits, nade.max_beta, nade.sampling_schedule, nade.sampling_rate) == (48.0, 0.2, "inverse_sigmoid", 1000.0)
    converter = make_converter(preset.converter, preset.converter_options)
    assert (converter.output_kind, converter.input_depth, converter.output_depth) == ("multihot", classes + 1, classes)
    model = build_model(nade, converter)
    assert model.decoder.core.output.out_features == 128 + classes  # the NADE's two biases, per step


def test_four_bar_hierarchical_presets_have_four_bars_of_sixteen_steps():
    for name in ["hier-groove-4bar", "hier-drums-4bar", "hier-mel-4bar", "demo"]:
        model = get_preset(name).model
        assert model.decoder == "hierarchical" and model.decoder_options["level_lengths"] == (4, 16)


def test_the_failing_run_needs_force_and_the_others_do_not():
    failing = get_preset("hier-groove-4bar")
    assert failing.force and failing.converter == "groove" and failing.model.loss == "categorical"
    assert [n for n in list_presets() if get_preset(n).force] == ["hier-groove-4bar"]


@pytest.mark.parametrize("name", list_presets())
def test_each_preset_builds(name):
    preset = get_preset(name)
    if preset.force:
        with pytest.raises(IncompatibleError):
            build_model(preset.model, spec_for(preset))
    big = max(preset.model.encoder_options["rnn_sizes"]) >= 2048
    with torch.device("meta" if big else "cpu"):  # the big ones: shapes only
        model = build_model(preset.model, spec_for(preset), force=preset.force)
    assert model.spec.steps == spec_for(preset).steps


# The reference's variable count of each trio configuration, from its own graphs (configs.py built in TensorFlow).
TRIO_VARIABLES = {"flat-trio_16bar": 251_279_028, "hierdec-trio_16bar": 230_975_156, "hier-trio_16bar": 122_529_460}


@pytest.mark.parametrize("name", TRIO)
def test_the_trio_presets_keep_the_references_sizes_and_variable_count(name):
    preset = get_preset(name)
    with torch.device("meta"):
        model = build_model(preset.model, spec_for(preset))
    assert sum(p.numel() for p in trainable_parameters(model)) == TRIO_VARIABLES[name]
    assert (preset.converter, dict(preset.converter_options)) == ("trio", {"slice_bars": 16, "gap_bars": 2,
                                                                           "steps_per_quarter": 4})
    assert (preset.batch_size, preset.origin, model.config.loss, model.config.z_size) == \
        (256, "reference", "multi-categorical", 512)
    assert (model.loss.depths, model.loss.names) == ((90, 90, 512), ("melody", "bass", "drums"))
    cfg = model.config
    if name == "flat-trio_16bar":
        assert (cfg.decoder, cfg.decoder_options["rnn_sizes"]) == ("flat", (2048, 2048, 2048))
        assert (cfg.free_bits, cfg.max_beta) == (0.0, 1.0)
    else:
        assert (cfg.decoder, cfg.decoder_options["rnn_sizes"], cfg.decoder_options["level_lengths"]) == \
            ("hierarchical", (1024, 1024), (16, 16))
        assert cfg.decoder_options["split_depths"] == (90, 90, 512) and (cfg.free_bits, cfg.max_beta) == (256.0, 0.2)
    encoder = ("hierarchical", (1024,)) if name == "hier-trio_16bar" else ("bidirectional", (2048, 2048))
    assert (cfg.encoder, cfg.encoder_options["rnn_sizes"]) == encoder


def test_every_reference_configuration_is_a_preset_none_unsupported():
    assert UNSUPPORTED == {}
    # configs.py's 23 configurations; groovae_2bar_hits_control_tfds is groovae_2bar_hits_control here
    assert len(set(REFERENCE + TRIO)) == 22 and set(REFERENCE + TRIO) <= set(list_presets())


def test_the_multiperf_chord_presets_keep_the_references_converter_and_sizes():
    for size, (encoder, decoder) in {"med": (1024, 512), "big": (2048, 1024)}.items():
        plain, chords = get_preset(f"hier-multiperf_vel_1bar_{size}"), get_preset(f"hier-multiperf_vel_1bar_{size}_chords")
        assert dict(chords.converter_options) == {**dict(plain.converter_options), "chord_encoding": "triad"}
        assert chords.model == plain.model and chords.transpose_range == plain.transpose_range == (-3, 3)
        assert (chords.model.encoder_options["rnn_sizes"], chords.model.decoder_options["rnn_sizes"]) == \
            ((encoder,), (decoder,) * 3)
        converter = make_converter(chords.converter, chords.converter_options)
        assert (converter.input_depth, converter.control_depth, converter.steps) == (490, 49, 512)


def test_big_reference_presets_keep_the_references_sizes():
    big = get_preset("cat-mel_2bar_big").model
    assert (big.z_size, big.encoder_options["rnn_sizes"], big.decoder_options["rnn_sizes"]) == (512, (2048,), (2048,) * 3)
    assert (big.free_bits, big.max_beta, big.beta_rate) == (0.0, 0.5, 0.99999)
    assert get_preset("cat-drums_2bar_big").model.free_bits == 48.0
    assert dict(get_preset("groovae_2bar_hits_control").converter_options)["hits_as_controls"] is True
    assert dict(get_preset("groovae_2bar_add_closed_hh").converter_options)["add_instruments"] == (2,)
    assert all(get_preset(n).origin == "reference" for n in REFERENCE)
    assert {get_preset(n).origin for n in REPORT} == {"reference", "report"}


def test_the_demo_is_small():
    model = build_model(get_preset("demo").model, spec_for(get_preset("demo")))
    assert sum(p.numel() for p in model.parameters()) < 1_500_000
    assert get_preset("demo").steps * get_preset("demo").batch_size <= 100_000


@pytest.mark.parametrize("name", list_presets())
def test_preset_converter_options_are_the_converters(name):
    preset = get_preset(name)
    try:
        registry().get("converters", preset.converter)
        converter = make_converter(preset.converter, preset.converter_options)
    except (UnknownComponentError, ImportError) as missing:
        pytest.skip(f"converter {preset.converter!r} is not installed: {missing}")
    spec = DataSpec.of(converter)
    assert (spec.output_kind, spec.steps) == (spec_for(preset).output_kind, spec_for(preset).steps)


def test_presets_are_plain_frozen_data():
    preset = get_preset("demo")
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.steps = 1
    assert isinstance(dataclasses.asdict(preset), dict)


def test_hvae_presets_lists_each_preset_with_its_size_and_origin():
    from clihelp import invoke

    result = invoke("presets")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line and not line.startswith(" ")}
    assert set(list_presets()) <= set(rows)
    # The reference's own variable count (encoder, decoder, dense layers) for cat-drums_2bar_small.
    assert rows["cat-drums_2bar_small"][-2:] == ["4,636,672", "reference"]
    assert rows["demo"][-1] == "hvae" and rows["hier-drums-4bar"][-1] == "report"
    assert "does not support" not in result.output and "hier-multiperf_vel_1bar_med_chords" in rows
    assert "hier-trio_16bar: " not in result.output and "nade-drums_2bar_full: " not in result.output
    assert rows["hierdec-trio_16bar"][-2:] == [f"{TRIO_VARIABLES['hierdec-trio_16bar']:,}", "reference"]
    table = json.loads(invoke("presets", "--json").output)
    assert {r["name"] for r in table["presets"]} == set(list_presets())
