"""``hvae evaluate``, ``hvae compare`` and ``hvae report``: measure a model, compare combinations, show a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from hvae.cli.latent import MAX_INTERPOLATION
from hvae.cli.params import QPM, SEED, TEMPERATURE, THREADS, FiniteRange
from hvae.checkpoint import write_atomic
from hvae.compare import Budget, Grid, plan, run_grid, write_results
from hvae.data import SPLITS
from hvae.evaluation import evaluate_checkpoint
from hvae.music import DEFAULT_QPM
from hvae.presets import list_presets
from hvae.report.run import ReportOptions, write_run_report


def register(main: click.Group) -> None:
    """Add ``evaluate``, ``compare`` and ``report`` to the ``hvae`` command line."""
    main.add_command(evaluate)
    main.add_command(compare)
    main.add_command(report)


def _split_option(default: str):
    return click.option("--split", type=click.Choice(SPLITS), default=default, show_default=True,
                        help="The data split to evaluate on.")


def _data_option(what: str):
    return click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
                        default=None, help=f"Folder of MIDI files {what} Default: the run's own data.")


def _qpm_option():
    return click.option("--qpm", type=QPM, default=DEFAULT_QPM, show_default=True,
                        help="Tempo, in quarter notes per minute, at which timing errors are turned into ms (and "
                             "MIDI is written).")


def _device_option():
    return click.option("--device", "-d", metavar="DEVICE", default="auto", show_default=True,
                        help="auto (CUDA when there is one), cpu, cuda, cuda:N or mps (Apple silicon).")


def _progress_option():
    return click.option("--progress/--no-progress", default=True, show_default=True,
                        help="Show progress bars on stderr.")


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@_split_option("test")
@_data_option("to take the split from (converted with the run's converter).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON instead of a table.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the metrics as JSON to this file.")
@_qpm_option()
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=256, show_default=True,
              help="Windows per batch.")
@_device_option()
@_progress_option()
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
@click.option("--minutes", type=FiniteRange(min=0, min_open=True), default=None,
              help="Budget per combination in minutes of training (its speed is measured over the first "
                   "10 steps).")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=None,
              help="Examples per step for every combination. Default: each preset's.")
@click.option("--seed", type=SEED, default=None, help="Seed of every combination. Default: 0.")
@click.option("--threads", type=THREADS, default=None,
              help="CPU threads for training. Default: PyTorch's (one per core).")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of MIDI files all combinations train on. Default: the bundled demo subset.")
@click.option("--cache", "cache_root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the prepared windows (a subfolder per converter). Default: under $HVAE_CACHE "
                   "(else ~/.cache/hvae).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for results.md, results.csv, loss_curves.png, report.html and runs/.")
@_split_option("test")
@click.option("--force", is_flag=True,
              help="Train combinations whose loss does not fit the converter's outputs instead of refusing them.")
@click.option("--audio/--no-audio", default=True, show_default=True,
              help="Render the runs' reports' MIDI to WAV where fluidsynth and a soundfont are installed.")
@_qpm_option()
@_device_option()
@_progress_option()
def compare(presets: tuple[str, ...], converters: tuple[str, ...], decoders: tuple[str, ...],
            losses: tuple[str, ...], converter_options: tuple[str, ...], model_options: tuple[str, ...],
            steps: int | None, minutes: float | None, batch_size: int | None, seed: int | None,
            threads: int | None, data_dir: Path | None, cache_root: Path | None, out_dir: Path, split: str,
            force: bool, audio: bool, qpm: float, device: str, progress: bool) -> None:
    """Train combinations of converter, decoder and loss on the same data and budget; compare them.

    The grid is each --preset crossed with each --converter, --decoder and --loss (a preset's own
    when none is given). Every combination trains for the same --steps (or --minutes), is evaluated
    on the same split (as 'hvae evaluate') and gets its own report. A loss that does not fit its
    converter is refused with the reason, unless --force (or a preset made to reproduce it, like
    hier-groove-4bar).

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
    train_options: dict[str, Any] = {"batch_size": batch_size, "seed": seed, "threads": threads, "device": device,
                                     "eval_every": 0, "keep_checkpoints": 1}
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
    options = ReportOptions(split=split, qpm=qpm, audio=audio, device=device)
    outcomes = run_grid(configs, out_dir, budget, split, options, progress, echo=click.echo)
    paths = write_results(out_dir, outcomes, refused, budget, split, qpm)
    click.echo(paths["results.md"].read_text(encoding="utf-8"))
    for name, path in paths.items():
        click.echo(f"{name}: {path}")


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, path_type=Path))
@_split_option("test")
@_data_option("to take the split from (converted with the run's converter).")
@click.option("--samples", "-n", type=click.IntRange(min=0), default=4, show_default=True,
              help="Sequences drawn from the prior.")
@click.option("--temperature", "-t", type=TEMPERATURE, default=0.5, show_default=True,
              help="Temperature of the samples and the interpolation.")
@click.option("--reconstructions", type=click.IntRange(min=0), default=3, show_default=True,
              help="Windows of the split reconstructed (from different files where possible).")
@click.option("--interpolation-steps", type=click.IntRange(min=0, max=MAX_INTERPOLATION), default=5, show_default=True,
              help="Sequences in the interpolation between two of those windows (0: none).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the samples and the interpolation.")
@click.option("--audio/--no-audio", default=True, show_default=True,
              help="Render the MIDI to WAV where fluidsynth and a General MIDI soundfont are installed.")
@_qpm_option()
@_device_option()
@_progress_option()
def report(run_dir: Path, split: str, data_dir: Path | None, samples: int, temperature: float,
           reconstructions: int, interpolation_steps: int, seed: int, audio: bool, qpm: float, device: str,
           progress: bool) -> None:
    """Write a run's HTML report into RUN_DIR/report/ and print the page's path.

    RUN_DIR is a run directory (its newest checkpoint is reported). The page shows the
    reconstruction metrics (as 'hvae evaluate'), the loss curves, samples, reconstructions and an
    interpolation as piano rolls, links their MIDI, and plays them where fluidsynth and a General
    MIDI soundfont are installed (a note says so where they are not).

    \b
    Examples:
      hvae report runs/hier-drums
      hvae report runs/groovae --split validation --no-audio
    """
    options = ReportOptions(split=split, data_dir=str(data_dir) if data_dir else None, samples=samples,
                            temperature=temperature, reconstructions=reconstructions,
                            interpolation_steps=interpolation_steps, seed=seed, qpm=qpm, audio=audio, device=device)
    click.echo(str(write_run_report(run_dir, options, progress=progress)))
