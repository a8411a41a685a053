"""Converting the whole Groove MIDI Dataset to 4-bar tensors, as ``hvae data prepare`` does, in files/s."""

from __future__ import annotations

import pytest

import cases
import workloads
from hvae.data import prepare_dataset
from hvae.plugins import make_converter
from hvae.presets import get_preset

@pytest.mark.parametrize("converter", sorted(cases.CONVERTERS))
def test_convert_gmd(benchmark, converter, gmd_dir, tmp_path):
    preset = get_preset(cases.CONVERTERS[converter])
    made = make_converter(preset.converter, preset.converter_options)

    def prepare():
        return prepare_dataset(made, gmd_dir, tmp_path / "cache", workers=workloads.THREADS, progress=False,
                               force=True)

    report = benchmark.pedantic(prepare, rounds=2, warmup_rounds=0)
    cases.CONVERSIONS.append(cases.Conversion(converter, len(report.files), report.windows,
                                              benchmark.stats.stats.median))
    benchmark.extra_info.update(files=len(report.files), windows=report.windows,
                                files_per_s=len(report.files) / benchmark.stats.stats.median)

