"""``hvae interpolate``, ``hvae reconstruct`` and ``hvae humanize``: a trained model's latent space, on MIDI files."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Iterable

import click
from tqdm import tqdm

from hvae.cli import os_error_line
from hvae.cli.params import GREEDY_OR_TEMPERATURE, QPM, RUN, SEED
from hvae.data.splits import MIDI_SUFFIXES
from hvae.device import resolve_device
from hvae.errors import HvaeError
from hvae.latent import (DRUM_CHANNEL_10, DRUM_CHANNELS, Written, check_humanizer, humanize_file, interpolate_files,
                         reconstruct_file)
from hvae.run import LoadedRun, open_run

MIDI_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
MIDI_INPUTS = click.Path(path_type=Path)  # files or folders; each checked (and reported) by itself


MAX_INTERPOLATION = 1000  # sequences in one interpolation: its MIDI file and picture are one piece each


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
            click.option("--temperature", "-t", type=GREEDY_OR_TEMPERATURE, default=default_temperature,
                         show_default=True,
                         help="Decoding temperature; 0 decodes greedily (the most likely class, a hit where p > 0.5)."),
            click.option("--seed", type=SEED, default=None, help="Seed of the draws (temperature above 0)."),
            click.option("--qpm", type=QPM, default=None,
                         help="Tempo of the written MIDI, in quarter notes per minute. Default: the input's."),
            click.option("--drum-channel", type=click.Choice(DRUM_CHANNELS), default=DRUM_CHANNEL_10,
                         show_default=True,
                         help="Where drums are read from: channel 10 (General MIDI), or any channel (files "
                              "from DAWs that put drums on channel 1)."),
            click.option("--device", "-d", metavar="DEVICE", default="auto", show_default=True,
                         help="auto (CUDA when there is one), cpu, cuda, cuda:N or mps (Apple silicon)."),
        ]
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _load(checkpoint: Path, device: str) -> LoadedRun:
    return open_run(checkpoint, resolve_device(device))


def _report(written: Written) -> None:
    """Notes on stderr; the files written on stdout, one a line (MIDI first, then the picture)."""
    for note in written.notes:
        click.echo(note, err=True)
    for path in (*written.midi, written.picture):
        click.echo(str(path))


def expand_inputs(inputs: Iterable[Path]) -> list[Path]:
    """The MIDI files meant by ``inputs``: files as given (whatever their name; each is checked when
    read), folders searched recursively for *.mid and *.midi (any case), in path order."""
    files: list[Path] = []
    for given in inputs:
        if given.is_dir() and given.suffix.lower() not in MIDI_SUFFIXES:
            found = [Path(folder) / name for folder, _, names in os.walk(given) for name in names
                     if name.lower().endswith(MIDI_SUFFIXES)]
            if not found:
                raise click.ClickException(f"No MIDI files (*.mid, *.midi) under {given}.")
            files += sorted(found)
        else:
            files.append(given)
    return files


def _each_file(inputs: tuple[Path, ...], what: str, work: Callable[[Path, str], Written]) -> None:
    """Run ``work(path, name)`` on every MIDI file of ``inputs``; a file that fails is reported on one
    line and skipped. One file: its failure is the command's error. Several: the command fails
    (exit status 1) only when none succeeded. Output names are made unique across the files."""
    files = expand_inputs(inputs)
    if len(files) == 1:
        _report(work(files[0], files[0].stem))
        return
    names: dict[str, int] = {}
    done, skipped = 0, 0
    with tqdm(files, desc=what, unit="file", file=sys.stderr, leave=False, dynamic_ncols=True,
              disable=None) as bar:  # a bar on a terminal only
        for path in bar:
            seen = names[path.stem] = names.get(path.stem, 0) + 1
            try:
                written = work(path, path.stem if seen == 1 else f"{path.stem}-{seen}")
            except (HvaeError, OSError) as exc:  # the file, or writing what came of it (a name too long, ...)
                skipped += 1
                bar.write(f"Skipped: {os_error_line(exc) if isinstance(exc, OSError) else exc}", file=sys.stderr)
                continue
            done += 1
            for note in written.notes:
                bar.write(note, file=sys.stderr)
            for out in (*written.midi, written.picture):
                bar.write(str(out), file=sys.stdout)
    if not done:
        raise click.ClickException(f"Nothing written: none of the {len(files)} files could be used (reasons above).")
    if skipped:
        click.echo(f"{what}: {done} of {len(files)} files; {skipped} skipped (reasons above).", err=True)


@click.command()
@click.argument("checkpoint", type=RUN)
@click.argument("start", type=MIDI_FILE)
@click.argument("end", type=MIDI_FILE)
@click.option("--steps", "-n", type=click.IntRange(min=2, max=MAX_INTERPOLATION), default=8, show_default=True,
              help=f"Sequences in the interpolation, both ends included (at most {MAX_INTERPOLATION}).")
@click.option("--window-a", type=click.IntRange(min=0), default=None,
              help="Which window of START to start from (0-based). Default: the first.")
@click.option("--window-b", type=click.IntRange(min=0), default=None,
              help="Which window of END to end at (0-based). Default: the first.")
@_common(0.5, "interpolations")
def interpolate(checkpoint: Path, start: Path, end: Path, steps: int, window_a: int | None, window_b: int | None,
                out_dir: Path | None, temperature: float, seed: int | None, qpm: float | None, drum_channel: str,
                device: str) -> None:
    """Decode the way from one MIDI file to another through the latent space.

    Both files are encoded to their means (mu); STEPS latent vectors on the spherical
    interpolation (slerp) between them, ends included, are decoded. Writes one MIDI file per
    step, one with all steps in a row, and a piano-roll PNG; prints their paths. The MIDI is at
    START's tempo (or --qpm) and lasts whole bars; names in use get a number (-2, -3, ...), so
    nothing is replaced.

    \b
    Examples:
      hvae interpolate runs/hier-drums a.mid b.mid --steps 8
      hvae interpolate runs/hier-drums a.mid b.mid --window-a 2 -t 0 --out interp/
    """
    loaded = _load(checkpoint, device)
    _report(interpolate_files(loaded, start, end, out_dir or loaded.outputs.interpolations, steps, window_a,
                              window_b, temperature, seed, qpm, drum_channel))


@click.command()
@click.argument("checkpoint", type=RUN)
@click.argument("midi_files", metavar="IN.mid...", nargs=-1, required=True, type=MIDI_INPUTS)
@click.option("--window", "-w", type=click.IntRange(min=0), default=None,
              help="Which window of each file (0-based). Default: the first.")
@_common(0.0, "reconstructions")
def reconstruct(checkpoint: Path, midi_files: tuple[Path, ...], window: int | None, out_dir: Path | None,
                temperature: float, seed: int | None, qpm: float | None, drum_channel: str, device: str) -> None:
    """Encode MIDI files and decode them again: what the model keeps of each.

    IN.mid... are MIDI files or folders (searched for *.mid and *.midi). For each file, writes
    the window as the converter reads it (<name>-w<K>-original.mid), its reconstruction
    (<name>-w<K>-reconstruction.mid) and a piano-roll PNG of both; prints their paths. Both files
    keep the input's tempo (or take --qpm) and time signature and last the window's whole bars.
    The original is written once: a later call on the same window finds it (same bytes) and
    writes only a new reconstruction and PNG, numbered (<name>-w<K>-2-reconstruction.mid, ...);
    nothing is ever replaced. A file
    that cannot be used is named with the reason and skipped; the exit status is 1 only when no
    file could be used. Drums are read from channel 10; --drum-channel any reads every channel.

    \b
    Examples:
      hvae reconstruct runs/hier-drums beat.mid
      hvae reconstruct runs/groovae beat.mid --window 3 --out recon/
      hvae reconstruct runs/hier-drums my-grooves/ --out recon/
    """
    loaded = _load(checkpoint, device)
    out = out_dir or loaded.outputs.reconstructions
    _each_file(midi_files, "reconstruct",
               lambda path, name: reconstruct_file(loaded, path, out, window, temperature, seed, qpm, name,
                                                   drum_channel))


@click.command()
@click.argument("checkpoint", type=RUN)
@click.argument("midi_files", metavar="IN.mid...", nargs=-1, required=True, type=MIDI_INPUTS)
@click.option("--window", "-w", type=click.IntRange(min=0), default=None,
              help="Which window of each file (0-based). Default: the first.")
@_common(0.0, "humanized")
def humanize(checkpoint: Path, midi_files: tuple[Path, ...], window: int | None, out_dir: Path | None,
             temperature: float, seed: int | None, qpm: float | None, drum_channel: str, device: str) -> None:
    """Turn quantised, flat-velocity drum parts into expressive ones.

    Needs a GrooVAE trained with the groove converter's humanize=True (it learnt to restore
    velocities and timing from hits alone):

    \b
      hvae train --preset groovae_4bar -o humanize=true --out runs/humanize

    IN.mid... are MIDI files or folders (searched for *.mid and *.midi). The drum hits of each
    file are encoded and decoded with velocities and microtiming. Writes the window as read
    (<name>-w<K>-input.mid), the humanized part (<name>-w<K>-humanized.mid) and a piano-roll PNG
    of both; prints their paths, and on stderr how many input hits it kept. The files keep the
    input's tempo (or take --qpm), last whole bars and never replace a file; the input is written
    once (a later call on the same window writes a new, numbered humanized part). A file that cannot be
    used is named with the reason and skipped; the exit status is 1 only when no file could be used.

    \b
    Examples:
      hvae humanize runs/humanize quantised.mid
      hvae humanize runs/humanize quantised/ --out humanized/
    """
    loaded = _load(checkpoint, device)
    check_humanizer(loaded)  # before any file: the model is wrong for all of them
    out = out_dir or loaded.outputs.humanized
    _each_file(midi_files, "humanize",
               lambda path, name: humanize_file(loaded, path, out, window, temperature, seed, qpm, name,
                                                drum_channel))
