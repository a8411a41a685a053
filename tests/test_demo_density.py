"""The default ``hvae run`` gives musical output: the demo's samples have the Groove MIDI Dataset's density.

Spec: of 20 prior samples at the default temperature, the model's own first draws (``--no-redraw``), at
least 85 % have a hit density per bar (drum hits, step and class, per bar) within the 5th to 95th percentile
of the GMD's 4-bar windows: the model's quality, not the redrawing's (which only draws again those outside).
Slow: it trains the demo preset as ``hvae run`` does (under a minute on 2 idle cores); the figures it prints
are in the README (85 %, 17 of 20 first draws).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hvae
from hvae.music import read_midi
from hvae.plausible import DensityRange, hits_per_bar
from clihelp import invoke

SAMPLES = 20
BARS = 4


def densities(paths: list[Path]) -> np.ndarray:
    """Drum hits per bar of each written 4-bar sample (one note per hit: the drums converter writes so)."""
    return np.array([len(read_midi(path).notes) / BARS for path in paths])


def printed(result) -> list[Path]:
    assert result.exit_code == 0, result.output
    return [Path(line.strip()) for line in result.stdout.splitlines() if line.strip().endswith(".mid")]


@pytest.mark.slow
def test_the_demos_samples_at_its_default_temperature_have_the_gmds_hit_density(gmd_dir, tmp_path):
    converter = hvae.get_converter("drums", slice_bars=4, max_bars=100, roll_input=True)  # the demo's
    per_file = [hits_per_bar(converter, np.stack([e.outputs for e in examples]))
                for examples in map(converter.to_tensors, sorted(gmd_dir.rglob("*.mid"))) if examples]
    windows = np.concatenate(per_file)
    gmd = DensityRange.of(windows)
    run = tmp_path / "demo"
    result = invoke("run", "--out", run, "-n", SAMPLES, "--seed", 0, "--no-progress", "--cache", tmp_path / "cache")
    default = densities(printed(result))
    raw = densities(printed(invoke("sample", run, "-n", SAMPLES, "--seed", 0, "--no-redraw", "--out", tmp_path / "raw")))
    share, raw_share = gmd.holds(default).mean(), gmd.holds(raw).mean()
    print(f"\nGMD 4-bar windows: {len(windows):,}, hits per bar 5th-95th percentile {gmd.low:g} to {gmd.high:g}; "
          f"demo samples within it: {share:.0%} as hvae run writes them, {raw_share:.0%} of the model's first "
          f"draws (--no-redraw); densities {np.round(default, 1).tolist()}, first draws {np.round(raw, 1).tolist()}")
    assert raw_share >= 0.85
