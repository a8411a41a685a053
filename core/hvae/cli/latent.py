"""``hvae interpolate``, ``hvae reconstruct`` and ``hvae humanize``: a trained model's latent space, on MIDI files."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

from hvae.checkpoint import LoadedModel, load_model
from hvae.device import resolve_device
from hvae.latent import Written, humanize_file, interpolate_files, reconstruct_file
from hvae.music import DEFAULT_QPM

MIDI_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def register(main: click.Group) -> None:
    """Add ``interpolate``, ``reconstruct`` and ``humanize`` to the ``hvae`` command line."""
    main.add_command(interpolate)
    main.add_command(reconstruct)
    main.add_command(humanize)


def _common(default_temperature: float, out_folder: str) -> Callable:
    """The options every latent-space command takes."""

    def decorate(func: Callable) -> Callable:
        options = [
            click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                         help=f"Folder for the MIDI files and the picture. Default: the run directory's "
                              f"{out_folder}/."),
            click.option("--temperature", "-t", type=click.FloatRange(min=0), default=default_temperature,
                         show_default=True,
                         help="Decoding temperature; 0 decodes greedily (the most likely class, a hit where p > 0.5)."),
            click.option("--seed", type=int, default=None, help="Seed of the draws (temperature above 0)."),
            click.option("--qpm", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_QPM, show_default=True,
                         help="Tempo of the written MIDI, in quarter notes per minute."),
            click.option("--device", "-d", metavar="DEVICE", default="auto", show_default=True,
                         help="auto (CUDA when there is one), cpu, cuda or cuda:N."),
        ]
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _load(checkpoint: Path, device: str) -> LoadedModel:
    return load_model(checkpoint, resolve_device(device))


def _report(written: Written) -> None:
    """Notes on stderr; the files written on stdout, one a line (MIDI first, then the picture)."""
    for note in written.notes:
        click.echo(note, err=True)
    for path in (*written.midi, written.picture):
        click.echo(str(path))


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.argument("start", type=MIDI_FILE)
@click.argument("end", type=MIDI_FILE)
@click.option("--steps", "-n", type=click.IntRange(min=2), default=8, show_default=True,
              help="Sequences in the interpolation, both ends included.")
@click.option("--window-a", type=click.IntRange(min=0), default=None,
              help="Which window of START to start from (0-based). Default: the first.")
@click.option("--window-b", type=click.IntRange(min=0), default=None,
              help="Which window of END to end at (0-based). Default: the first.")
@_common(0.5, "interpolations")
def interpolate(checkpoint: Path, start: Path, end: Path, steps: int, window_a: int | None, window_b: int | None,
                out_dir: Path | None, temperature: float, seed: int | None, qpm: float, device: str) -> None:
    """Decode the way from one MIDI file to another through the latent space.

    Both files are encoded to their means (mu); STEPS latent vectors on the spherical
    interpolation (slerp) between them, ends included, are decoded. Writes one MIDI file per
    step, one with all steps in a row, and a piano-roll PNG; prints their paths.

    \b
    Examples:
      hvae interpolate runs/hier-drums a.mid b.mid --steps 8
      hvae interpolate runs/hier-drums a.mid b.mid --window-a 2 -t 0 --out interp/
    """
    loaded = _load(checkpoint, device)
    _report(interpolate_files(loaded, start, end, out_dir or loaded.run_dir / "interpolations", steps, window_a,
                              window_b, temperature, seed, qpm))


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.argument("midi_file", metavar="IN.mid", type=MIDI_FILE)
@click.option("--window", "-w", type=click.IntRange(min=0), default=None,
              help="Which window of the file (0-based). Default: the first.")
@_common(0.0, "reconstructions")
def reconstruct(checkpoint: Path, midi_file: Path, window: int | None, out_dir: Path | None, temperature: float,
                seed: int | None, qpm: float, device: str) -> None:
    """Encode a MIDI file and decode it again: what the model keeps of it.

    Writes the window as the converter reads it (<name>-w<K>-original.mid), its reconstruction
    (<name>-w<K>-reconstruction.mid) and a piano-roll PNG of both; prints their paths.

    \b
    Examples:
      hvae reconstruct runs/hier-drums beat.mid
      hvae reconstruct runs/groovae beat.mid --window 3 --out recon/
    """
    loaded = _load(checkpoint, device)
    _report(reconstruct_file(loaded, midi_file, out_dir or loaded.run_dir / "reconstructions", window, temperature,
                             seed, qpm))


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.argument("midi_file", metavar="IN.mid", type=MIDI_FILE)
@click.option("--window", "-w", type=click.IntRange(min=0), default=None,
              help="Which window of the file (0-based). Default: the first.")
@_common(0.0, "humanized")
def humanize(checkpoint: Path, midi_file: Path, window: int | None, out_dir: Path | None, temperature: float,
             seed: int | None, qpm: float, device: str) -> None:
    """Turn a quantised, flat-velocity drum part into an expressive one.

    Needs a GrooVAE trained with the groove converter's humanize=True (it learnt to restore
    velocities and timing from hits alone):

    \b
      hvae train --preset groovae-4bar -o humanize=true --out runs/humanize

    The drum hits of IN.mid are encoded and decoded with velocities and microtiming. Writes the
    window as read (<name>-w<K>-input.mid), the humanized part (<name>-w<K>-humanized.mid) and a
    piano-roll PNG of both; prints their paths, and on stderr how many input hits it kept.

    \b
    Examples:
      hvae humanize runs/humanize quantised.mid
    """
    loaded = _load(checkpoint, device)
    _report(humanize_file(loaded, midi_file, out_dir or loaded.run_dir / "humanized", window, temperature, seed, qpm))
