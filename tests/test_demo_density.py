"""The default ``hvae run`` gives musical output: the demo's samples have the Groove MIDI Dataset's density.

Spec: of the 20 samples ``hvae run`` writes at the default temperature, at least 90 % have a hit density
per bar (drum hits, step and class, per bar) within the 5th to 95th percentile of the GMD's 4-bar windows,
and of 200 of the model's own first draws (``--no-redraw``: the model's quality, not the redrawing's) at
least 80 % do.

Why 200 draws and 80 %: the trained model changes with float rounding (another CPU's kernels, one thread
instead of two, the fused cell or not), and so does its share. Five trainings on one machine (seed 0 as it
is, without the fused cell, on one thread; seeds 1 and 2) gave 87.5-91.5 % of 200 first draws but 85-95 %
of 20, and the CI machine's training 80 % of 20 (it failed the earlier bound, 85 % of 20 draws). With 200
draws, a model at 88 % falls under 80 % with a probability of 4e-4 (at 87.5 %, 1e-3). The figures are in
the README. Slow: it trains the demo preset as ``hvae run`` does (about a minute on 2 idle cores).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hvae
from hvae.music import read_midi
from hvae.plausible import DensityRange, hits_per_bar
from clihelp import invoke

SAMPLES = 20  # as hvae run writes them
FIRST_DRAWS = 200  # the model's own draws, --no-redraw
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
    raw = densities(printed(invoke("sample", run, "-n", FIRST_DRAWS, "--seed", 0, "--no-redraw", "--out", tmp_path / "raw")))
    share, raw_share = gmd.holds(default).mean(), gmd.holds(raw).mean()
    print(f"\nGMD 4-bar windows: {len(windows):,}, hits per bar 5th-95th percentile {gmd.low:g} to {gmd.high:g}; "
          f"demo samples within it: {share:.0%} as hvae run writes them, {raw_share:.0%} of the model's first "
          f"{FIRST_DRAWS} draws (--no-redraw); densities {np.round(default, 1).tolist()}, first draws outside "
          f"{np.round(raw[~gmd.holds(raw)], 1).tolist()}")
    assert share >= 0.9
    assert raw_share >= 0.80
