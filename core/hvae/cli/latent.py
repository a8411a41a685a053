"""``hvae interpolate``, ``mean``, ``similar``, ``reconstruct``, ``humanize`` and ``drumify``: a trained model's
latent space, on MIDI files."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Iterable

import click
from tqdm import tqdm

from hvae.cli import os_error_line
from hvae.cli.params import CHORDS, GREEDY_OR_TEMPERATURE, QPM, RUN, SEED, FiniteRange
from hvae.data.splits import MIDI_SUFFIXES
from hvae.device import resolve_device
from hvae.errors import HvaeError
from hvae.generation import INTERPOLATION_MODES, MAX_INTERPOLATION, SLERP
from hvae.latent import (DRUM_CHANNEL_10, DRUM_CHANNELS, Written, check_drumifier, check_groove_transfer,
                         check_humanizer, drumify_file, grid_files, groove_transfer_file, humanize_file,
                         interpolate_files, mean_file, reconstruct_file, similar_file)
from hvae.rundir import LoadedRun, open_run

MIDI_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
MIDI_INPUTS = click.Path(path_type=Path)  # files or folders; each checked (and reported) by itself


MAX_GRID = 16  # rows (and columns) of a grid: 256 cells, each in the one picture
MAX_SIMILAR = 1000  # variations of one call: its MIDI file and picture are one piece each
MODE = click.option("--mode", type=click.Choice(INTERPOLATION_MODES), default=SLERP, show_default=True,
                    help="How latent codes are blended: slerp (along the sphere, as the reference's Python) or "
                         "linear (as magenta.js).")
def _windows_a_b(func: Callable) -> Callable:
    """``--window-a`` and ``--window-b``: which window of each of two files."""
    for letter in "ba":
        func = click.option(f"--window-{letter}", type=click.IntRange(min=0), default=None,
                            help=f"Which window of {letter.upper()} (0-based). Default: the first.")(func)
    return func


WHOLE = click.option("--whole", is_flag=True,
                     help="The whole file, however long: cut into windows of the model's bars (the last padded), "
                          "each encoded and decoded, joined into one file of the input's length.")


def register(main: click.Group) -> None:
    """Add the latent-space commands to the ``hvae`` command line."""
    for command in (interpolate, mean, similar, reconstruct, humanize, drumify, groove_transfer):
        main.add_command(command)


def _common(default_temperature: float, out_folder: str, drum_channel: bool = True) -> Callable:
    """The options every latent-space command takes (``--drum-channel`` where drums are read as drums)."""

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
            *([click.option("--drum-channel", type=click.Choice(DRUM_CHANNELS), default=DRUM_CHANNEL_10,
                            show_default=True,
                            help="Where drums are read from: channel 10 (General MIDI), or any channel (files "
                                 "from DAWs that put drums on channel 1).")] if drum_channel else []),
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
@click.argument("midi_files", metavar="A.mid B.mid [C.mid D.mid]", nargs=-1, required=True, type=MIDI_FILE)
@click.option("--steps", "-n", type=click.IntRange(min=2, max=MAX_INTERPOLATION), default=8, show_default=True,
              help=f"Sequences in the interpolation, both ends included (at most {MAX_INTERPOLATION}).")
@click.option("--grid", type=click.IntRange(min=2, max=MAX_GRID), default=None,
              help=f"With four files: the N x N grid between them (at most {MAX_GRID}), instead of --steps.")
@_windows_a_b
@MODE
@_common(0.5, "interpolations")
@CHORDS
def interpolate(checkpoint: Path, midi_files: tuple[Path, ...], steps: int, grid: int | None, window_a: int | None,
                window_b: int | None, mode: str, out_dir: Path | None, temperature: float, seed: int | None,
                qpm: float | None, drum_channel: str, device: str, chords: str | None) -> None:
    """Decode the way from one MIDI file to another, or the grid between four, through the latent space.

    Two files, A and B: both are encoded to their means (mu); STEPS latent vectors on the way
    between them (--mode slerp, the default, or linear), ends included, are decoded. Writes one
    MIDI file per step (<A>-w0_to_<B>-w0-00-of-08.mid, ...), one with all steps in a row
    (-all.mid), and a piano-roll PNG; prints their paths.

    Four files with --grid N: the N x N grid between the first windows of A, B, C and D, laid
    out as magenta.js lays out four inputs (Beat Blender's square):

    \b
      A . . C      row 0 (top):    A to C
      . . . .
      B . . D      row N-1 (bottom): B to D

    --mode linear is magenta.js's bilinear grid; slerp blends each way along the sphere. Writes
    one file per cell named by row and column from the top left (<stem>-r0c0.mid ... -r4c4.mid),
    all cells row by row (-all.mid), and a PNG.

    The MIDI is at A's tempo (or --qpm) and lasts whole bars; names in use get a number (-2,
    -3, ...), so nothing is replaced.

    \b
    Examples:
      hvae interpolate gmd-drums-4bar a.mid b.mid --steps 8
      hvae interpolate runs/hier-drums a.mid b.mid --window-a 2 -t 0 --mode linear --out interp/
      hvae interpolate gmd-drums-4bar a.mid b.mid c.mid d.mid --grid 5 --out grid/
    """
    if len(midi_files) == 4 and grid is None:
        raise click.ClickException("Four files make a grid: give its size with --grid N (a 5 x 5 grid: --grid 5).")
    if len(midi_files) not in (2, 4) or (grid is not None and len(midi_files) != 4):
        raise click.ClickException(f"An interpolation takes 2 files (A to B), or 4 corners with --grid N; got "
                               f"{len(midi_files)} file{'s' if len(midi_files) != 1 else ''}"
                               f"{' with --grid' if grid is not None else ''}.")
    if grid is not None and chords is not None:
        raise click.ClickException("--chords plays an interpolation between two files over a progression; a grid "
                                   "takes none.")
    if grid is not None and (window_a is not None or window_b is not None):
        raise click.ClickException("--window-a and --window-b choose the windows of two files; a grid reads the "
                               "first window of each corner.")
    loaded = _load(checkpoint, device)
    out = out_dir or loaded.outputs.interpolations
    if grid is not None:
        _report(grid_files(loaded, midi_files, out, size=grid, temperature=temperature, seed=seed, qpm=qpm,
                           drum_channel=drum_channel, mode=mode))
        return
    start, end = midi_files
    _report(interpolate_files(loaded, start, end, out, steps=steps, window_a=window_a, window_b=window_b,
                              temperature=temperature, seed=seed, qpm=qpm, drum_channel=drum_channel, mode=mode,
                              chords=chords))


@click.command()
@click.argument("checkpoint", type=RUN)
@click.argument("start", metavar="A.mid", type=MIDI_FILE)
@click.argument("end", metavar="B.mid", type=MIDI_FILE)
@_windows_a_b
@MODE
@_common(0.0, "interpolations")
def mean(checkpoint: Path, start: Path, end: Path, window_a: int | None, window_b: int | None, mode: str,
         out_dir: Path | None, temperature: float, seed: int | None, qpm: float | None, drum_channel: str,
         device: str) -> None:
    """Decode the midpoint between two MIDI files in the latent space.

    Both files are encoded to their means (mu); the point halfway between them (on the slerp,
    or the plain mean with --mode linear) is decoded. Writes <A>-w0_mean_<B>-w0.mid and a
    piano-roll PNG of A, the mean and B; prints their paths. The MIDI is at A's tempo (or
    --qpm) and lasts whole bars; nothing is replaced.

    \b
    Examples:
      hvae mean gmd-drums-4bar funk.mid rock.mid
      hvae mean runs/hier-drums a.mid b.mid --mode linear --out means/
    """
    loaded = _load(checkpoint, device)
    _report(mean_file(loaded, start, end, out_dir or loaded.outputs.interpolations, window_a=window_a,
                      window_b=window_b, temperature=temperature, seed=seed, qpm=qpm, drum_channel=drum_channel,
                      mode=mode))


@click.command("groove-transfer")
@click.argument("checkpoint", type=RUN)
@click.option("--groove", "groove", metavar="A.mid", type=MIDI_FILE, required=True,
              help="The file whose feel (velocities and timing) is played.")
@click.option("--pattern", "pattern", metavar="B.mid", type=MIDI_FILE, required=True,
              help="The file whose hits (which drum on which step) are played.")
@click.option("--window-groove", type=click.IntRange(min=0), default=None,
              help="Which window of the groove file (0-based). Default: the first.")
@click.option("--window-pattern", type=click.IntRange(min=0), default=None,
              help="Which window of the pattern file (0-based). Default: the first.")
@_common(0.0, "interpolations")
def groove_transfer(checkpoint: Path, groove: Path, pattern: Path, window_groove: int | None,
                    window_pattern: int | None, out_dir: Path | None, temperature: float, seed: int | None,
                    qpm: float | None, drum_channel: str, device: str) -> None:
    """Play one file's drum hits with another file's feel (velocities and timing).

    Needs a GrooVAE that takes the hits to play as controls (the groove converter's
    hits_as_controls=True, as the reference's groovae_2bar_hits_control):

    \b
      hvae train --preset groovae_2bar_hits_control --data grooves/ --out runs/transfer

    The groove file is encoded (with its own hits); its code is decoded under the pattern's
    hits. Writes <B>-w0_with_<A>-w0.mid and a piano-roll PNG of the pattern, the groove and the
    result; prints their paths, and on stderr how many of the pattern's hits were played. The
    MIDI is at the pattern's tempo (or --qpm), lasts whole bars and replaces nothing.

    \b
    Examples:
      hvae groove-transfer runs/transfer --groove laid-back.mid --pattern straight.mid
    """
    loaded = _load(checkpoint, device)
    check_groove_transfer(loaded)
    _report(groove_transfer_file(loaded, groove, pattern, out_dir or loaded.outputs.interpolations,
                                 window_groove=window_groove, window_pattern=window_pattern, temperature=temperature,
                                 seed=seed, qpm=qpm, drum_channel=drum_channel))


@click.command()
@click.argument("checkpoint", type=RUN)
@click.argument("midi_file", metavar="IN.mid", type=MIDI_FILE)
@click.option("-n", "count", type=click.IntRange(min=1, max=MAX_SIMILAR), default=8, show_default=True,
              help=f"How many variations (at most {MAX_SIMILAR}).")
@click.option("--similarity", "-s", type=FiniteRange(min=0.0, max=1.0), default=0.8, show_default=True,
              help="1: the input's reconstruction; 0: samples from the prior that owe nothing to it.")
@click.option("--window", "-w", type=click.IntRange(min=0), default=None,
              help="Which window of IN.mid (0-based). Default: the first.")
@MODE
@_common(0.5, "similar")
def similar(checkpoint: Path, midi_file: Path, count: int, similarity: float, window: int | None, mode: str,
            out_dir: Path | None, temperature: float, seed: int | None, qpm: float | None, drum_channel: str,
            device: str) -> None:
    """Decode variations of a MIDI file: its latent code blended with draws from the prior.

    The window is encoded to its mean (mu); each of N draws z ~ N(0, I) is blended towards it by
    SIMILARITY: along the sphere (--mode slerp, the default) or linearly as magenta.js's
    similar() does (--mode linear: SIMILARITY * mu + (1 - SIMILARITY) * z). Writes one MIDI file
    per variation (<name>-w0-similar0.8-00-of-08.mid, ...), all of them in a row (-all.mid) and a
    piano-roll PNG; prints their paths. The same --seed gives the same variations. The MIDI keeps
    the input's tempo (or takes --qpm), lasts whole bars, and never replaces a file.

    \b
    Examples:
      hvae similar gmd-drums-4bar beat.mid -n 8 --similarity 0.8
      hvae similar runs/hier-drums beat.mid --similarity 0.5 --mode linear --seed 1 --out variations/
    """
    loaded = _load(checkpoint, device)
    _report(similar_file(loaded, midi_file, out_dir or loaded.outputs.similar, n=count, similarity=similarity,
                         window=window, temperature=temperature, seed=seed, qpm=qpm, drum_channel=drum_channel,
                         mode=mode))


@click.command()
@click.argument("checkpoint", type=RUN)
@click.argument("midi_files", metavar="IN.mid...", nargs=-1, required=True, type=MIDI_INPUTS)
@click.option("--window", "-w", type=click.IntRange(min=0), default=None,
              help="Which window of each file (0-based). Default: the first.")
@WHOLE
@_common(0.0, "reconstructions")
def reconstruct(checkpoint: Path, midi_files: tuple[Path, ...], window: int | None, whole: bool, out_dir: Path | None,
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
    With --whole, all of each file, however long, is reconstructed window by window into one
    file of its length (<name>-original.mid, <name>-reconstruction.mid).

    \b
    Examples:
      hvae reconstruct runs/hier-drums beat.mid
      hvae reconstruct runs/groovae beat.mid --window 3 --out recon/
      hvae reconstruct runs/hier-drums my-grooves/ --out recon/
      hvae reconstruct gmd-drums-4bar song.mid --whole
    """
    _refuse_window_and_whole(window, whole)
    loaded = _load(checkpoint, device)
    out = out_dir or loaded.outputs.reconstructions
    _each_file(midi_files, "reconstruct",
               lambda path, name: reconstruct_file(loaded, path, out, window=window, temperature=temperature,
                                                   seed=seed, qpm=qpm, name=name, drum_channel=drum_channel,
                                                   whole=whole))


@click.command()
@click.argument("checkpoint", type=RUN)
@click.argument("midi_files", metavar="IN.mid...", nargs=-1, required=True, type=MIDI_INPUTS)
@click.option("--window", "-w", type=click.IntRange(min=0), default=None,
              help="Which window of each file (0-based). Default: the first.")
@WHOLE
@_common(0.0, "humanized")
def humanize(checkpoint: Path, midi_files: tuple[Path, ...], window: int | None, whole: bool, out_dir: Path | None,
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
    With --whole, all of each file, however long, is humanized window by window into one file of
    its length, tempo and meter (<name>-input.mid, <name>-humanized.mid), as Magenta Studio's
    Groove did.

    \b
    Examples:
      hvae humanize runs/humanize quantised.mid
      hvae humanize runs/humanize quantised/ --out humanized/
      hvae humanize gmd-humanize-2bar whole-song.mid --whole
    """
    _refuse_window_and_whole(window, whole)
    loaded = _load(checkpoint, device)
    check_humanizer(loaded)  # before any file: the model is wrong for all of them
    out = out_dir or loaded.outputs.humanized
    _each_file(midi_files, "humanize",
               lambda path, name: humanize_file(loaded, path, out, window=window, temperature=temperature,
                                                seed=seed, qpm=qpm, name=name, drum_channel=drum_channel,
                                                whole=whole))


@click.command()
@click.argument("checkpoint", type=RUN)
@click.argument("midi_files", metavar="IN.mid...", nargs=-1, required=True, type=MIDI_INPUTS)
@_common(0.0, "drumified", drum_channel=False)
def drumify(checkpoint: Path, midi_files: tuple[Path, ...], out_dir: Path | None, temperature: float,
            seed: int | None, qpm: float | None, device: str) -> None:
    """Turn any rhythm (taps on one key, a bass line, a melody) into a drum groove.

    Needs a tap-to-drums GrooVAE, trained with the groove converter's tapify=True: the model in
    the box gmd-drumify-2bar, or one you train:

    \b
      hvae train --preset groovae_2bar_tap_fixed_velocity --data DIR --out runs/drumify

    IN.mid... are MIDI files or folders (searched for *.mid and *.midi). Every note of every
    channel is a tap; each file, however long, is cut into windows of the model's bars (the last
    padded), each decoded as drums, and joined into one file of the input's length, tempo and
    meter. Writes the taps as read (<name>-taps.mid), the drums (<name>-drums.mid) and a
    piano-roll PNG of both; prints their paths, and on stderr how many taps the drums keep (a hit
    within a step of each) and on how many drums. Nothing is replaced; a file that cannot be used
    is named with the reason and skipped.

    \b
    Examples:
      hvae drumify gmd-drumify-2bar bass-line.mid
      hvae drumify gmd-drumify-2bar taps/ --out grooves/ -t 0.3 --seed 1
    """
    loaded = _load(checkpoint, device)
    check_drumifier(loaded)  # before any file: the model is wrong for all of them
    out = out_dir or loaded.outputs.drumified
    _each_file(midi_files, "drumify",
               lambda path, name: drumify_file(loaded, path, out, temperature=temperature, seed=seed, qpm=qpm,
                                               name=name))


def _refuse_window_and_whole(window: int | None, whole: bool) -> None:
    if window is not None and whole:
        raise click.ClickException("--window K takes one window of each file and --whole all of it: give one of them.")
