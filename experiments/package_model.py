"""Put a trained run into the box: ``core/hvae/pretrained/<name>/``, its newest checkpoint's weights in
float16, its configuration (named <name>), metrics.jsonl, plausible.json and a model card.

    python experiments/package_model.py RUN NAME --card CARD.md
    hvae evaluate NAME --data GMD --json > eval.json
    python experiments/package_model.py RUN NAME --card CARD.md --metrics eval.json   # figures onto the card

The card (Markdown, first line the title, then a one-paragraph summary) is written as MODEL_CARD.md. The
training data's folder is not recorded: a model in the box reads the bundled GMD demo subset unless a
command is given --data (hvae.rundir.open_run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import torch

from hvae.checkpoint import read_checkpoint, write_checkpoint
from hvae.plausible import training_range
from hvae.plugins import make_converter
from hvae.pretrained import CARD, PRETRAINED_DIR
from hvae.rundir import METRICS_FILE, RunConfig, RunDir

DATA_NAME = "groove-midi-dataset-v1.0.0"  # what config.json says of the data (the folder is not installed)


def metrics_section(evaluation: dict) -> str:
    """The card's measured figures, from ``hvae evaluate --json`` on the GMD test split."""
    fmt = lambda v: "–" if v is None else f"{v:.3g}"
    tf, sm = evaluation["teacher_forced"], evaluation["sampled"]
    lines = ["## Measured on the GMD test split", "",
             f"`hvae evaluate` at step {evaluation['step']:,}: {evaluation['windows']:,} test windows.", "",
             "| metric | teacher-forced | sampled (free-running from μ) |", "|---|---:|---:|"]
    labels = {"accuracy": "accuracy", "hit_precision": "hit precision", "hit_recall": "hit recall",
              "hit_f1": "hit F1", "velocity_mae": "velocity MAE (MIDI units)", "timing_mae_ms": "timing MAE (ms)"}
    lines += [f"| {label} | {fmt(tf[key])} | {fmt(sm[key])} |" for key, label in labels.items() if key in tf]
    lines += [f"| KL (bits per window) | {fmt(evaluation['kl_bits'])} | |", ""]
    for q in (evaluation.get("quality"), evaluation.get("transfer")):
        if not q:
            continue
        what = (f"{q['samples']} prior samples (temperature {q['temperature']:g}, raw draws)" if q["source"] == "prior"
                else f"{q['samples']} test windows decoded from their own inputs ({q['source']})")
        lines += [f"{'Sample quality' if q['source'] == 'prior' else 'What it makes of the inputs'}: {what} against "
                  f"{q['real']} test windows; overlapping area per feature (1 = "
                  f"indistinguishable), beside the ceiling ({q['real']} {q['ceiling_split']} windows against the same "
                  f"test windows).", "", "| feature | model | ceiling |", "|---|---:|---:|"]
        lines += [f"| {name} | {fmt(q['overlaps'][name])} | {fmt(q['ceiling'][name] if q['ceiling'] else None)} |"
                  for name in list(q["features"]) + ["mean"]]
        if q.get("plausible_share") is not None:
            low, high = q["plausible_range"]
            lines += ["", f"{q['plausible_share']:.1%} of the raw draws have {low:.1f} to {high:.1f} hits per bar (the "
                          f"training windows' 5th to 95th percentile); with the others drawn again, as `hvae sample` "
                          f"does, the mean overlap is {fmt(q['redrawn']['mean'])}."]
        lines.append("")
    return "\n".join(lines)


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


def add_metrics(name: str, evaluation: Path) -> None:
    """Append the measured figures (``hvae evaluate --json`` output) to the model's card."""
    card = PRETRAINED_DIR / name / CARD
    card.write_text(card.read_text().rstrip("\n") + "\n\n" + metrics_section(json.loads(evaluation.read_text())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the trained run directory")
    parser.add_argument("name", help="the model's name in the box (e.g. gmd-drums-4bar)")
    parser.add_argument("--card", type=Path, required=True, help="its model card (Markdown)")
    parser.add_argument("--metrics", type=Path, default=None,
                        help="only append this hvae evaluate --json output to the packaged model's card")
    args = parser.parse_args()
    if args.metrics is not None:
        add_metrics(args.name, args.metrics)
        return
    target = package(args.run, args.name, args.card)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"{target}: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
