"""``hvae evaluate``: reconstruction metrics and sample quality of a trained model on a data split."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hvae.cli.params import MAX_QUALITY_SAMPLES, RUN, SEED, TEMPERATURE, data_option, device_option, progress_option, \
    qpm_option, split_option
from hvae.evaluation import SAMPLE_TEMPERATURE, SAMPLES, evaluate_checkpoint
from hvae.errors import OutputExistsError
from hvae.safefiles import check_output_file, write_atomic


def register(main: click.Group) -> None:
    """Add ``evaluate`` to the ``hvae`` command line."""
    main.add_command(evaluate)


@click.command()
@click.argument("checkpoint", type=RUN)
@split_option("test")
@data_option("to take the split from (converted with the run's converter).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON instead of a table.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the metrics as JSON to this file: a new one (see --force); never through a link.")
@click.option("--force", is_flag=True, help="Replace an --output file that exists (a plain file, not a link).")
@qpm_option()
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=256, show_default=True,
              help="Windows per batch.")
@click.option("--samples", type=click.IntRange(min=0, max=MAX_QUALITY_SAMPLES), default=SAMPLES, show_default=True,
              help="Prior samples drawn for the sample quality (compared with as many real windows of the split); "
                   "0 skips it.")
@click.option("--temperature", "-t", type=TEMPERATURE, default=SAMPLE_TEMPERATURE, show_default=True,
              help="Temperature of those samples.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the samples and of the real windows they are compared with.")
@device_option()
@progress_option()
def evaluate(checkpoint: Path, split: str, data_dir: Path | None, as_json: bool, output: Path | None, force: bool,
             qpm: float, batch_size: int, samples: int, temperature: float, seed: int, device: str,
             progress: bool) -> None:
    """Reconstruction metrics and sample quality of a trained model on a data split.

    CHECKPOINT is a run directory (its newest checkpoint), a checkpoint directory or its
    checkpoint.json. Each window is encoded to its mean (mu) and decoded from it twice:
    teacher-forced (fed the true previous step) and sampled (free-running on its own most likely
    draws). One-hot outputs: accuracy per step. Drum outputs: hit precision, recall and F1 over
    (step, drum) cells. Groove outputs also: velocity MAE in MIDI units and timing MAE in ms
    (an offset of 1 is half a step; a step is 60000 / qpm / steps_per_quarter ms). Plus the mean
    KL in bits, and how many steps the two decodings predict alike: a model that does not use the
    steps before yet (early in training) predicts the same either way, and the table says so.

    Sample quality: --samples prior samples (the raw draws) against as many real windows of the
    split, per musical feature (drums: hits per bar, kick on one, backbeat, repetition, velocity
    spread and microtiming for grooves, ...; melodies: pitch range, intervals, note lengths, ...),
    as the overlapping area of the feature's two distributions (MGEval's measure; 1 =
    indistinguishable), with their mean. Beside it, the ceiling: as many training windows
    against the same real ones (two finite sets of real music do not reach 1 either). Drum models
    also show the share of draws with a plausible number of hits per bar, and the figures once the
    others are drawn again, as 'hvae sample' does.

    \b
    Examples:
      hvae evaluate runs/hier-drums
      hvae evaluate runs/groovae --split validation --json
      hvae evaluate runs/groovae -o metrics.json
    """
    if output is not None:
        try:
            check_output_file(output, overwrite=force)
        except OutputExistsError as exc:
            raise click.ClickException(exc.worded("--output", "--force")) from None
    result = evaluate_checkpoint(checkpoint, split=split, data_dir=data_dir, batch_size=batch_size, qpm=qpm,
                                 device=device, progress=progress, samples=samples, temperature=temperature, seed=seed)
    text = json.dumps(result.to_json(), indent=2)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(output, (text + "\n").encode())
    click.echo(text if as_json else result.table())
