"""Presets: the reference's sizes, the report's runs, and that each one builds."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hvae.errors import IncompatibleError, UnknownComponentError
from hvae.model import DataSpec, build_model
from hvae.plugins import registry
from hvae.presets import Preset, get_preset, list_presets

torch.set_num_threads(1)

REFERENCE = ["cat-drums_2bar_small", "cat-mel_2bar_small", "hierdec-mel_16bar", "groovae_4bar"]
REPORT = ["hier-groove-4bar", "groovae-4bar", "hier-drums-4bar", "hier-mel-4bar"]
# What each converter writes, for building without the converter itself: (kind, input depth, output depth).
SHAPES = {"drums": ("onehot", 10, 512), "groove": ("groove", 27, 27), "melody": ("onehot", 90, 90)}
BARS_KEY = {"drums": "slice_bars", "melody": "slice_bars", "groove": "split_bars"}


def spec_for(preset: Preset) -> DataSpec:
    kind, input_depth, output_depth = SHAPES[preset.converter]
    bars = preset.converter_options[BARS_KEY[preset.converter]]
    return DataSpec(converter=preset.converter, output_kind=kind, input_depth=input_depth,
                    output_depth=output_depth, control_depth=0, steps=16 * bars)


def test_every_named_preset_is_there():
    assert set(REFERENCE + REPORT + ["demo"]) <= set(list_presets())
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
    assert all(get_preset(n).batch_size == 512 for n in REFERENCE)


def test_four_bar_hierarchical_presets_have_four_bars_of_sixteen_steps():
    for name in ["hier-groove-4bar", "hier-drums-4bar", "hier-mel-4bar", "demo"]:
        model = get_preset(name).model
        assert model.decoder == "hierarchical" and model.decoder_options["level_lengths"] == (4, 16)


def test_the_failing_run_needs_force_and_the_others_do_not():
    failing = get_preset("hier-groove-4bar")
    assert failing.force and failing.converter == "groove" and failing.model.loss == "categorical"
    assert [n for n in list_presets() if get_preset(n).force] == ["hier-groove-4bar"]


@pytest.mark.parametrize("name", [n for n in list_presets() if n != "hierdec-mel_16bar"])
def test_each_preset_builds(name):
    preset = get_preset(name)
    if preset.force:
        with pytest.raises(IncompatibleError):
            build_model(preset.model, spec_for(preset))
    model = build_model(preset.model, spec_for(preset), force=preset.force)
    assert model.spec.steps == 16 * preset.converter_options[BARS_KEY[preset.converter]]


def test_the_demo_is_small():
    model = build_model(get_preset("demo").model, spec_for(get_preset("demo")))
    assert sum(p.numel() for p in model.parameters()) < 1_500_000
    assert get_preset("demo").steps * get_preset("demo").batch_size <= 100_000


@pytest.mark.parametrize("name", list_presets())
def test_preset_converter_options_are_the_converters(name):
    preset = get_preset(name)
    try:
        registry().get("converters", preset.converter)
        converter = preset.make_converter()
    except (UnknownComponentError, ImportError) as missing:
        pytest.skip(f"converter {preset.converter!r} is not installed: {missing}")
    spec = DataSpec.of(converter)
    assert (spec.output_kind, spec.steps) == (spec_for(preset).output_kind, spec_for(preset).steps)


def test_presets_are_plain_frozen_data():
    preset = get_preset("demo")
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.steps = 1
    assert isinstance(dataclasses.asdict(preset), dict)
