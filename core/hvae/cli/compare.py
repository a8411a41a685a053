"""``hvae compare``: train combinations of converter, decoder and loss on the same data and budget, and
compare them (see :mod:`hvae.compare`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hvae.cli.params import MAX_QUALITY_SAMPLES, MINUTES, SEED, THREADS, device_option, progress_option, qpm_option, \
    split_option
from hvae.evaluation import SAMPLES
from hvae.compare import Budget, Grid, check_comparison_folder, plan, run_grid, write_results
from hvae.errors import OutputExistsError
from hvae.presets import list_presets
from hvae.report.run import ReportOptions


def register(main: click.Group) -> None:
    """Add ``compare`` to the ``hvae`` command line."""
    main.add_command(compare)


@click.command()
@click.option("--preset", "-p", "presets", multiple=True, metavar="NAME",
              help=f"A preset to start a combination from; repeat for more. Default: demo. "
                   f"Presets: {', '.join(list_presets())}.")
@click.option("--converter", "-c", "converters", multiple=True, metavar="NAME",
              help="A converter to try with every preset; repeat for more. Default: each preset's.")
@click.option("--decoder", "decoders", multiple=True, metavar="NAME",
              help="A decoder to try; repeat for more. Default: each preset's.")
@click.option("--loss", "losses", multiple=True, metavar="NAME",
              help="A loss to try; repeat for more. Default: each preset's.")
@click.option("--option", "-o", "converter_options", multiple=True, metavar="KEY=VALUE",
              help="A converter option, given to each converter that has it; repeat for more.")
@click.option("--model-option", "-m", "model_options", multiple=True, metavar="KEY=VALUE",
              help="A model option for every combination (-m z_size=64 -m decoder.rnn_sizes=128); repeat for more.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Budget per combination in training steps.")
@click.option("--minutes", type=MINUTES, default=None,
              help="Budget per combination in minutes of wall-clock training: each stops at its deadline (with a "
                   "validation and a checkpoint, as 'hvae train --minutes'), so combinations of different speeds "
                   "get the same time. The table gives the steps and examples each reached.")
@click.option("--log-every", type=click.IntRange(min=1), default=None,
              help="Steps between training lines in each run's metrics.jsonl (the loss curves' points, and the "
                   "fall in the last quarter that marks a run too short to judge). Default: 10.")
@click.option("--quality-samples", type=click.IntRange(min=0, max=MAX_QUALITY_SAMPLES), default=SAMPLES,
              show_default=True, help="Prior samples per combination for the sample quality (0: none).")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=None,
              help="Examples per step for every combination. Default: each preset's.")
@click.option("--seed", type=SEED, default=None, help="Seed of every combination. Default: 0.")
@click.option("--threads", type=THREADS, default=None,
              help="CPU threads for training. Default: one per core that other processes leave free.")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of MIDI files all combinations train on. Default: the bundled demo subset.")
@click.option("--cache", "cache_root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the prepared windows (a subfolder per converter). Default: under $HVAE_CACHE "
                   "(else ~/.cache/hvae).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for results.md, results.csv, loss_curves.png, report.html and runs/.")
@click.option("--overwrite", is_flag=True,
              help="Write into an --out that holds an earlier comparison (and nothing else): its results files are "
                   "replaced, its runs/ kept beside the new runs. Without it, --out must be new or empty.")
@split_option("test")
@click.option("--force", is_flag=True,
              help="Train combinations whose loss does not fit the converter's outputs instead of refusing them.")
@click.option("--audio/--no-audio", default=True, show_default=True,
              help="Render the runs' reports' MIDI to WAV where fluidsynth and a soundfont are installed.")
@qpm_option()
@device_option()
@progress_option()
def compare(presets: tuple[str, ...], converters: tuple[str, ...], decoders: tuple[str, ...],
            losses: tuple[str, ...], converter_options: tuple[str, ...], model_options: tuple[str, ...],
            steps: int | None, minutes: float | None, log_every: int | None, quality_samples: int, batch_size: int | None, seed: int | None,
            threads: int | None, data_dir: Path | None, cache_root: Path | None, out_dir: Path, overwrite: bool,
            split: str, force: bool, audio: bool, qpm: float, device: str, progress: bool) -> None:
    """Train combinations of converter, decoder and loss on the same data and budget; compare them.

    The grid is each --preset crossed with each --converter, --decoder and --loss (a preset's own
    when none is given). Every combination trains for the same --steps (or --minutes), is evaluated
    on the same split (as 'hvae evaluate') and gets its own report. A loss that does not fit its
    converter is refused with the reason, unless --force (or a preset made to reproduce it, like
    hier-groove-4bar).

    A run is marked too short to judge when more than 10% of its training loss's fall since the
    first step came in the last quarter of its steps (the mean loss logged there against the
    third quarter's): its loss is still falling steadily, so more budget would change it, and the
    ranking with it. So is a run that logged fewer than 2 lines in either quarter (lower
    --log-every). A line above the table says when any run is marked.

    \b
    Writes into --out: results.md, results.csv, loss_curves.png, same_input.png, report.html and
    runs/<combination>/.

    \b
    Examples:
      hvae compare -p hier-groove-4bar -p groovae_4bar -p hier-drums-4bar --steps 200 --out cmp/
      hvae compare -c drums -c groove --decoder hierarchical --decoder groove \\
                   --loss categorical --loss groove --minutes 5 --out grid/
    """
    budget = Budget(steps=steps, minutes=minutes)
    try:
        check_comparison_folder(out_dir, overwrite)
    except OutputExistsError as exc:
        raise click.ClickException(exc.worded("--out", "--overwrite")) from None
    train_options: dict[str, Any] = {"batch_size": batch_size, "seed": seed, "threads": threads, "device": device,
                                     "eval_every": 0, "keep_checkpoints": 1, "log_every": log_every}
    grid = Grid(presets=presets, converters=converters, decoders=decoders, losses=losses,
                converter_options=converter_options, model_options=model_options, train_options=train_options,
                data_dir=data_dir, cache_root=cache_root, force=force)
    configs, refused = plan(grid)
    for r in refused:
        click.echo(f"Refused {r.name}: {r.reason}", err=True)
    if not configs:
        raise click.ClickException("Nothing to train: every combination was refused (--force trains them).")
    click.echo(f"{len(configs)} combination{'s' if len(configs) != 1 else ''} to train, {budget.describe()} each"
               f"{f'; {len(refused)} refused' if refused else ''}.")
    options = ReportOptions(split=split, qpm=qpm, audio=audio, device=device, quality_samples=quality_samples)
    outcomes = run_grid(configs, out_dir, budget, split, options, progress, echo=click.echo, overwrite=overwrite)
    paths = write_results(out_dir, outcomes, refused, budget, split, qpm, overwrite=overwrite)
    click.echo(paths["results.md"].read_text(encoding="utf-8"))
    for name, path in paths.items():
        click.echo(f"{name}: {path}")
