"""Put a trained run into the box: ``core/hvae/pretrained/<name>/``, its newest checkpoint's weights in
float16, its configuration (named <name>), metrics.jsonl, plausible.json and a model card.

    python experiments/package_model.py RUN NAME --card CARD.md

The card (Markdown, first line the title, then a one-paragraph summary) is written as MODEL_CARD.md. The
training data's folder is not recorded: a model in the box reads the bundled GMD demo subset unless a
command is given --data (hvae.run.open_run).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

import torch

from hvae.checkpoint import read_checkpoint, write_checkpoint
from hvae.plausible import training_range
from hvae.plugins import make_converter
from hvae.pretrained import CARD, PRETRAINED_DIR
from hvae.run import METRICS_FILE, RunConfig, RunDir

DATA_NAME = "groove-midi-dataset-v1.0.0"  # what config.json says of the data (the folder is not installed)


def package(run: Path, name: str, card: Path) -> Path:
    checkpoint = read_checkpoint(run, with_optimizer=False)
    config = RunConfig.from_json(checkpoint.meta["run"])
    config = dataclasses.replace(config, name=name, data_dir=DATA_NAME, cache_dir="")
    weights = {k: v.half() if v.is_floating_point() else v for k, v in checkpoint.model.items()}
    target = PRETRAINED_DIR / name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    home = RunDir(run if (run / "config.json").is_file() else checkpoint.path.parent.parent)
    RunDir(target).write_config(config)
    shutil.copyfile(home.metrics_file, target / METRICS_FILE)
    plausible = home.read_plausible()
    if plausible is None:  # a run trained before runs kept it: from its training windows
        found = training_range(make_converter(config.converter, config.converter_options),
                               RunConfig.from_json(checkpoint.meta["run"]).cache_dir)
        plausible = None if found is None else (found.low, found.high)
    if plausible is not None:
        RunDir(target).write_plausible(*plausible)
    meta = {**checkpoint.meta, "run": config.to_json(), "metrics_log": {"bytes": (target / METRICS_FILE).stat().st_size}}
    write_checkpoint(target, dataclasses.replace(checkpoint, model=weights, optimizer=None,
                                                 rng={"cpu": torch.get_rng_state()}, meta=meta), keep=1)
    shutil.copyfile(card, target / CARD)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the trained run directory")
    parser.add_argument("name", help="the model's name in the box (e.g. gmd-drums-4bar)")
    parser.add_argument("--card", type=Path, required=True, help="its model card (Markdown)")
    args = parser.parse_args()
    target = package(args.run, args.name, args.card)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"{target}: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
