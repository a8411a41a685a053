"""A third-party plugin, end to end: examples/hvae-example-converter (converter 'kick-snare').

Installed with pip into a temporary folder (no network, no build isolation) and used through
the real command line in a subprocess; and, without installing, registered in-process with
``hvae.testing.registered_plugin``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hvae
from hvae.data import DEMO_DIR, SPLITS, load_split, prepare_dataset, read_manifest
from hvae.errors import UnknownComponentError
from hvae.testing import registered_plugin

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hvae-example-converter"
HVAE = str(Path(sys.executable).parent / "hvae")


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    """A folder the example distribution is pip-installed into (built from a copy, so the repo stays clean)."""
    source = Path(shutil.copytree(EXAMPLE, tmp_path_factory.mktemp("example-src") / "hvae-example-converter"))
    site = tmp_path_factory.mktemp("example-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(source)], check=True)
    return site


def run_hvae(args: list[str], site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([HVAE, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def example_module(monkeypatch):
    """The example's module, importable from its source folder (not installed)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import hvae_example_converter

    return hvae_example_converter


def test_the_installed_plugin_is_listed_by_hvae_plugins(example_site):
    result = run_hvae(["plugins", "--json"], example_site)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    entry = next(p for p in report["plugins"] if p["distribution"] == "hvae-example-converter")
    assert entry["name"] == "kick-snare" and entry["version"] == "0.1.0"
    assert entry["converters"] == ["kick-snare"]
    assert report["failed"] == []


def test_the_installed_plugin_prepares_the_demo_subset_through_the_cli(example_site, tmp_path):
    out = tmp_path / "kick-snare"
    result = run_hvae(["data", "prepare", "--converter", "kick-snare", "-o", "slice_bars=4", "--data", str(DEMO_DIR),
                       "--out", str(out), "--workers", "2", "--no-progress"], example_site)
    assert result.returncode == 0, result.stderr
    assert "Converter: kick-snare (hvae-example-converter 0.1.0), options: slice_bars=4" in result.stdout
    manifest = read_manifest(out)
    assert manifest["converter"]["distribution"] == "hvae-example-converter"
    assert manifest["converter"]["output_kind"] == "multihot"
    for split in SPLITS:
        windows = load_split(out, split)  # reading a cache needs no plugin
        assert windows.outputs.shape == (manifest["splits"][split]["windows"], 64, 2)
        assert len(windows) > 0 and f"{split:<12}" in result.stdout


def test_the_installed_plugin_refuses_an_unknown_option_by_naming_its_options(example_site):
    result = run_hvae(["data", "prepare", "-c", "kick-snare", "-o", "bars=2", "--data", str(DEMO_DIR)], example_site)
    assert result.returncode == 1
    assert result.stderr.strip() == ("Error: Unknown option 'bars' for converter 'kick-snare'. Valid: "
                                     "steps_per_quarter, quarters_per_bar, max_tensors_per_notesequence, slice_bars.")


def test_without_installing_or_registering_the_name_is_unknown():
    with pytest.raises(UnknownComponentError, match="Unknown converter 'kick-snare'"):
        hvae.get_converter("kick-snare")


def test_registered_plugin_makes_it_usable_without_installing(example_module, tmp_path):
    beat = sorted(DEMO_DIR.rglob("*.mid"))[0]
    with registered_plugin(example_module, name="kick-snare") as reg:
        assert reg.get("converters", "kick-snare").distribution is None
        converter = hvae.get_converter("kick-snare", slice_bars=2)
        examples = converter.to_tensors(beat)
        assert examples and examples[0].outputs.shape == (32, 2)
        report = prepare_dataset(converter, DEMO_DIR, tmp_path / "cache", workers=2, progress=False)
        assert all(report.splits[s].windows > 0 for s in SPLITS) and not report.skipped
    assert len(load_split(tmp_path / "cache", "train")) == report.splits["train"].windows
    assert "kick-snare" not in hvae.list_components("converters")


def test_kick_snare_round_trips_through_midi(example_module):
    with registered_plugin(example_module, name="kick-snare"):
        converter = hvae.get_converter("kick-snare", slice_bars=2)
        beat = sorted(DEMO_DIR.rglob("*.mid"))[0]
        roll = converter.to_tensors(beat)[0].outputs
        midi = converter.from_tensors(roll)
        assert {n.pitch for n in midi.instruments[0].notes} <= {36, 38} and midi.instruments[0].is_drum
        np.testing.assert_array_equal(converter.to_tensors(midi)[0].outputs, roll)
