"""The sample-quality ceiling: real windows of the training split against real windows of the test split,
N of each, per feature (hvae.quality), over several seeds: what a perfect model's samples would score.

    python experiments/ceilings.py --gmd ../shared/data/groove [--n 256] [--seeds 5]

Prints one Markdown table per converter setting (drums 4 bars, groove 4 bars, groove 2 bars).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hvae import quality
from hvae.data import default_cache_dir, load_split, prepare_dataset
from hvae.evaluation import step_milliseconds
from hvae.music import DEFAULT_QPM
from hvae.plugins import make_converter
from hvae.presets import get_preset

SETTINGS = {"drums, 4 bars (hier-drums-4bar)": "hier-drums-4bar", "groove, 4 bars (groovae_4bar)": "groovae_4bar",
            "groove, 2 bars (groovae_2bar_humanize)": "groovae_2bar_humanize"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gmd", type=Path, required=True)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    for label, preset_name in SETTINGS.items():
        preset = get_preset(preset_name)
        converter = make_converter(preset.converter, preset.converter_options)
        cache = default_cache_dir(args.gmd, converter.name, converter.options)
        prepare_dataset(converter, args.gmd, cache, progress=False)
        train, test = load_split(cache, "train"), load_split(cache, "test")
        features = quality.features_of(converter)
        step_ms = step_milliseconds(converter, DEFAULT_QPM)
        found = []
        for seed in range(args.seeds):
            real = quality.measure(converter, test.outputs[quality.pick(len(test), args.n, seed)], step_ms)
            other = quality.measure(converter, train.outputs[quality.pick(len(train), args.n, seed)], step_ms)
            found.append(quality.overlaps(real, other, features))
        print(f"\n{label}: {len(train):,} training and {len(test):,} test windows; N = {args.n}, "
              f"{args.seeds} seeds\n\n| feature | mean | lowest | highest |\n|---|---:|---:|---:|")
        for name in [f.name for f in features] + ["mean"]:
            values = np.array([f[name] for f in found])
            print(f"| {name} | {values.mean():.3f} | {values.min():.3f} | {values.max():.3f} |")


if __name__ == "__main__":
    main()
