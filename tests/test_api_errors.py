"""The Python API refuses what the command line refuses, in the project's own words (issue 24, item 10): a value
of the wrong type or out of range raises :class:`hvae.errors.InvalidArgument` (an HvaeError and a ValueError)
with one line, never NumPy's, torch's or ZeroDivisionError, and a NaN is never taken silently."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hvae
from clihelp import invoke
from hvae.data import DEMO_DIR
from hvae.errors import HvaeError, InvalidArgument
from hvae.generation import write_samples

NAN = math.nan
BEAT = DEMO_DIR / "drummer1/session1/2_funk_80_beat_4-4.mid"


def refused(call) -> str:
    """The one-line message of the InvalidArgument ``call()`` raises."""
    with pytest.raises(InvalidArgument) as caught:
        call()
    assert isinstance(caught.value, (HvaeError, ValueError)) and "\n" not in str(caught.value)
    return str(caught.value)


@pytest.fixture(scope="module")
def loaded(trained_drums):
    return hvae.open_run(trained_drums)


@pytest.mark.parametrize("options, message", [
    ({"slice_bars": "x"}, "Option slice_bars of converter 'drums' must be a whole number or None, not 'x'."),
    ({"slice_bars": True}, "Option slice_bars of converter 'drums' must be a whole number or None, not True."),
    ({"gap_bars": NAN}, "Option gap_bars of converter 'drums' must be a finite number or None, not nan."),
    ({"pitch_classes": 3}, "Option pitch_classes of converter 'drums' must be a string, not 3."),
])
def test_get_converter_refuses_an_option_of_the_wrong_type(options, message):
    assert refused(lambda: hvae.get_converter("drums", **options)) == message


def test_get_converter_takes_an_int_for_a_float_and_a_list_for_a_tuple():
    assert hvae.get_converter("drums", gap_bars=2).options.gap_bars == 2
    assert hvae.get_converter("melody", max_bars=None, slice_bars=2).options.max_bars is None


@pytest.mark.parametrize("converter", ["drums", "groove", "melody", "trio"])
@pytest.mark.parametrize("qpm", [0, -120, NAN, math.inf, "120", 1e9])
def test_from_tensors_refuses_a_tempo_midi_cannot_store(converter, qpm):
    built = hvae.get_converter(converter)
    outputs = np.zeros((built.steps, built.output_depth), np.float32)
    assert refused(lambda: built.from_tensors(outputs, qpm=qpm)).startswith(
        "The tempo (quarter notes per minute) must be a finite number at least 3.57628 and at most 60,000,000, got ")


@pytest.mark.parametrize("n, message", [(-1, "The number of samples must be at least 1, got -1."),
                                        (0, "The number of samples must be at least 1, got 0."),
                                        (2.0, "The number of samples must be a whole number, not 2.0.")])
def test_model_sample_refuses_a_count_below_one(loaded, n, message):
    assert refused(lambda: loaded.model.sample(n)) == message


@pytest.mark.parametrize("temperature", [NAN, -0.5, math.inf])
def test_model_sample_and_decode_refuse_a_temperature_that_is_not_a_finite_number_at_least_0(loaded, temperature):
    message = f"The temperature must be a finite number at least 0, got {temperature!r}."
    assert refused(lambda: loaded.model.sample(1, temperature)) == message
    z = np.zeros((1, loaded.model.config.z_size), np.float32)
    assert refused(lambda: loaded.model.decode(torch.from_numpy(z), temperature)) == message


def test_the_file_functions_refuse_a_nan_temperature_and_a_zero_tempo_and_write_nothing(loaded, tmp_path):
    assert "temperature" in refused(lambda: hvae.reconstruct_file(loaded, BEAT, tmp_path / "a", temperature=NAN))
    assert "tempo" in refused(lambda: hvae.interpolate_files(loaded, BEAT, BEAT, tmp_path / "b", qpm=0))
    assert "similarity" in refused(lambda: hvae.similar_file(loaded, BEAT, tmp_path / "c", similarity=NAN))
    assert "from 2 to 256" in refused(lambda: hvae.interpolate_files(loaded, BEAT, BEAT, tmp_path / "d", steps=1))
    assert "temperature" in refused(lambda: write_samples(loaded.model, loaded.converter, tmp_path / "e", "x",
                                                          temperature=NAN))
    assert not any(p.suffix in (".mid", ".png") for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("args", [("sample", "-n", "-1"), ("sample", "-t", "nan"), ("sample", "--qpm", "0"),
                                  ("reconstruct", "BEAT", "-t", "nan"), ("similar", "BEAT", "-s", "nan")])
def test_the_command_line_refuses_the_same_values_in_one_line(trained_drums, args):
    result = invoke(args[0], trained_drums, *(BEAT if a == "BEAT" else a for a in args[1:]))
    assert result.exit_code == 2
    assert [line for line in result.output.splitlines() if line.startswith("Error: ")]
