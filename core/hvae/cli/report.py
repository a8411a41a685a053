"""``hvae report``: one run's HTML page (see :mod:`hvae.report.run`)."""

from __future__ import annotations

from pathlib import Path

import click

from hvae.cli.params import MAX_QUALITY_SAMPLES, RUN, SEED, TEMPERATURE, data_option, device_option, progress_option, \
    qpm_option, split_option
from hvae.evaluation import SAMPLES
from hvae.report.pianoroll import MAX_PANELS
from hvae.report.run import MAX_INTERPOLATION_STEPS, MAX_RECONSTRUCTIONS, MAX_SAMPLES, ReportOptions, \
    write_run_report


def register(main: click.Group) -> None:
    """Add ``report`` to the ``hvae`` command line."""
    main.add_command(report)


@click.command()
@click.argument("run_dir", type=RUN)
@split_option("test")
@data_option("to take the split from (converted with the run's converter).")
@click.option("--samples", "-n", type=click.IntRange(min=0, max=MAX_SAMPLES), default=4, show_default=True,
              help=f"Sequences drawn from the prior, at most {MAX_SAMPLES}: each is a MIDI file, a WAV and a roll on "
                   f"the page (its picture draws {MAX_PANELS} at most).")
@click.option("--temperature", "-t", type=TEMPERATURE, default=0.5, show_default=True,
              help="Temperature of the samples and the interpolation.")
@click.option("--quality-samples", type=click.IntRange(min=0, max=MAX_QUALITY_SAMPLES), default=SAMPLES,
              show_default=True,
              help="Prior samples drawn for the sample-quality table (as 'hvae evaluate --samples'); 0: none.")
@click.option("--reconstructions", type=click.IntRange(min=0, max=MAX_RECONSTRUCTIONS), default=3, show_default=True,
              help=f"Windows of the split reconstructed (from different files where possible), at most "
                   f"{MAX_RECONSTRUCTIONS}: each is two MIDI files, two WAVs and a picture on the page.")
@click.option("--interpolation-steps", type=click.IntRange(min=0, max=MAX_INTERPOLATION_STEPS), default=5,
              show_default=True,
              help=f"Sequences in the interpolation between two of those windows (0: none), at most "
                   f"{MAX_INTERPOLATION_STEPS}: the page plays them one after another (hvae interpolate writes "
                   f"longer ones).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the samples and the interpolation.")
@click.option("--audio/--no-audio", default=True, show_default=True,
              help="Render the MIDI to WAV where fluidsynth and a General MIDI soundfont are installed.")
@qpm_option()
@device_option()
@progress_option()
def report(run_dir: Path, split: str, data_dir: Path | None, samples: int, temperature: float,
           quality_samples: int, reconstructions: int, interpolation_steps: int, seed: int, audio: bool, qpm: float, device: str,
           progress: bool) -> None:
    """Write a run's HTML report into RUN_DIR/report/ and print the page's path.

    RUN_DIR is a run directory (its newest checkpoint is reported). The page shows the
    reconstruction metrics and the sample quality (as 'hvae evaluate'), the loss curves, samples, reconstructions and an
    interpolation as piano rolls, links their MIDI, and plays them where fluidsynth and a General
    MIDI soundfont are installed (a note says so where they are not).

    \b
    Examples:
      hvae report runs/hier-drums
      hvae report runs/groovae --split validation --no-audio
    """
    options = ReportOptions(split=split, data_dir=str(data_dir) if data_dir else None, samples=samples,
                            temperature=temperature, reconstructions=reconstructions,
                            interpolation_steps=interpolation_steps, seed=seed, qpm=qpm, audio=audio, device=device,
                            quality_samples=quality_samples)
    click.echo(str(write_run_report(run_dir, options, progress=progress)))
