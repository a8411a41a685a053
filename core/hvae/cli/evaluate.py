"""``hvae evaluate``: reconstruction metrics of a trained model on a data split."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hvae.cli.params import data_option, device_option, progress_option, qpm_option, split_option
from hvae.evaluation import evaluate_checkpoint
from hvae.safefiles import write_atomic


def register(main: click.Group) -> None:
    """Add ``evaluate`` to the ``hvae`` command line."""
    main.add_command(evaluate)


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@split_option("test")
@data_option("to take the split from (converted with the run's converter).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON instead of a table.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the metrics as JSON to this file.")
@qpm_option()
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=256, show_default=True,
              help="Windows per batch.")
@device_option()
@progress_option()
def evaluate(checkpoint: Path, split: str, data_dir: Path | None, as_json: bool, output: Path | None, qpm: float,
             batch_size: int, device: str, progress: bool) -> None:
    """Reconstruction metrics of a trained model on a data split.

    CHECKPOINT is a run directory (its newest checkpoint), a checkpoint directory or its
    checkpoint.json. Each window is encoded to its mean (mu) and decoded from it twice:
    teacher-forced (fed the true previous step) and sampled (free-running on its own most likely
    draws). One-hot outputs: accuracy per step. Drum outputs: hit precision, recall and F1 over
    (step, drum) cells. Groove outputs also: velocity MAE in MIDI units and timing MAE in ms
    (an offset of 1 is half a step; a step is 60000 / qpm / steps_per_quarter ms). Plus the mean
    KL in bits, and how many steps the two decodings predict alike: a model that does not use the
    steps before yet (early in training) predicts the same either way, and the table says so.

    \b
    Examples:
      hvae evaluate runs/hier-drums
      hvae evaluate runs/groovae --split validation --json
      hvae evaluate runs/groovae -o metrics.json
    """
    result = evaluate_checkpoint(checkpoint, split, data_dir, batch_size, qpm, device, progress)
    text = json.dumps(result.to_json(), indent=2)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(output, (text + "\n").encode())
    click.echo(text if as_json else result.table())
