"""``hvae attributes`` and ``hvae transform``: attribute vectors in a model's latent space, and using them."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click
from tqdm import tqdm

from hvae.attributes import (attribute_vectors, attributes_of, find_vectors, parse_setting,
                             parse_sweep, settings_of, transform_file, vectors_path)
from hvae.cli.params import GREEDY_OR_TEMPERATURE, QPM, RUN, SEED
from hvae.data import SPLITS
from hvae.device import resolve_device
from hvae.latent import DRUM_CHANNEL_10, DRUM_CHANNELS
from hvae.rundir import open_run


def register(main: click.Group) -> None:
    """Add ``attributes`` and ``transform`` to the ``hvae`` command line."""
    main.add_command(attributes)
    main.add_command(transform)


@click.command()
@click.argument("checkpoint", type=RUN)
@click.option("--split", type=click.Choice(SPLITS), default="train", show_default=True,
              help="The data split whose windows are encoded and measured.")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="MIDI folder to measure instead of the run's data (converted with the run's converter).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The vectors file to write. Default: RUN/attributes.json, where 'hvae transform' looks.")
@click.option("--device", "-d", metavar="DEVICE", default="auto", show_default=True,
              help="auto (CUDA when there is one), cpu, cuda, cuda:N or mps (Apple silicon).")
@click.option("--progress/--no-progress", default=None, help="Show a progress bar. Default: on a terminal.")
def attributes(checkpoint: Path, split: str, data_dir: Path | None, out_file: Path | None, device: str,
               progress: bool | None) -> None:
    """Find attribute vectors: latent directions that make a window denser, more syncopated or busier on one drum.

    Encodes the windows of a data split, measures each window's attributes, and for each
    attribute saves the mean code (mu) of the windows in its top quartile minus that of its
    bottom quartile (MusicVAE's paper, section 5.3). Drums: density (hits per bar), syncopation
    (share of onsets off the eighths), kick, snare, hats, toms, cymbals (hits per bar), and for
    groove models velocity (spread) and swing (mean |microtiming|). Melodies: density, interval,
    diatonic, syncopation8, syncopation16, register. A converter plugin may add its own. Prints
    each attribute's bottom and top quartile means; the file belongs to this model's weights.

    \b
    Examples:
      hvae attributes gmd-drums-4bar                  # a model in the box ships its vectors already
      hvae attributes runs/my-drums --data grooves/ --out drums-attributes.json
    """
    loaded = open_run(checkpoint, resolve_device(device))
    with tqdm(desc="encoding", unit="window", file=sys.stderr, leave=False, dynamic_ncols=True,
              disable=None if progress is None else not progress) as bar:
        def advance(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        vectors = attribute_vectors(loaded, split, data_dir, progress=advance)
    path = vectors.save(out_file or vectors_path(loaded))
    click.echo(f"Measured: {vectors.source}")
    click.echo(f"{'attribute':<15}{'bottom 25 %':>12}{'top 25 %':>12}  what it measures")
    for name, vector in vectors.vectors.items():
        unit = f" ({vector.attribute.unit})" if vector.attribute.unit else ""
        click.echo(f"{name:<15}{vector.bottom:>12.3g}{vector.top:>12.3g}  {vector.attribute.description}{unit}")
    missing = [a.name for a in attributes_of(loaded.converter) if a.name not in vectors.vectors]
    if missing:
        click.echo(f"No vector for {', '.join(missing)}: too few windows have a value, or all have the same.",
                   err=True)
    click.echo(f"Vectors:  {path}")
    click.echo(f"Next:     hvae transform {loaded.name if loaded.out else checkpoint} IN.mid "
               f"--sweep {next(iter(vectors.vectors), 'density')}=-1.5:1.5:7")


@click.command()
@click.argument("checkpoint", type=RUN)
@click.argument("midi_file", metavar="IN.mid", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--attribute", "-a", "fixed", multiple=True, metavar="NAME=SCALE",
              help="Add NAME's vector times SCALE (+1: as far as from the bottom quartile's centre to the top "
                   "one's; negative: the other way). Repeat for several.")
@click.option("--sweep", metavar="NAME=FROM:TO:COUNT", default=None,
              help="One file per scale of NAME's vector, COUNT values from FROM to TO (with any --attribute).")
@click.option("--vectors", "vectors_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="The vectors file. Default: RUN/attributes.json (hvae attributes writes it).")
@click.option("--window", "-w", type=click.IntRange(min=0), default=None,
              help="Which window of IN.mid (0-based). Default: the first.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the MIDI files and the picture. Default: the run directory's transformed/.")
@click.option("--temperature", "-t", type=GREEDY_OR_TEMPERATURE, default=0.0, show_default=True,
              help="Decoding temperature; 0 decodes greedily (the most likely class, a hit where p > 0.5).")
@click.option("--seed", type=SEED, default=None, help="Seed of the draws (temperature above 0).")
@click.option("--qpm", type=QPM, default=None,
              help="Tempo of the written MIDI, in quarter notes per minute. Default: the input's.")
@click.option("--drum-channel", type=click.Choice(DRUM_CHANNELS), default=DRUM_CHANNEL_10, show_default=True,
              help="Where drums are read from: channel 10 (General MIDI), or any channel.")
@click.option("--device", "-d", metavar="DEVICE", default="auto", show_default=True,
              help="auto (CUDA when there is one), cpu, cuda, cuda:N or mps (Apple silicon).")
def transform(checkpoint: Path, midi_file: Path, fixed: tuple[str, ...], sweep: str | None,
              vectors_file: Path | None, window: int | None, out_dir: Path | None, temperature: float,
              seed: int | None, qpm: float | None, drum_channel: str, device: str) -> None:
    """Change a MIDI file's attributes with the model's attribute vectors.

    Encodes one window of IN.mid, adds the scaled vectors (hvae attributes makes them), and
    decodes: one file per setting, named by it (<name>-w<K>-density+0.5.mid), and a piano-roll
    PNG of the window as read above them; prints their paths (on stderr, the attributes measured on
    the window as read and on each file). Files
    keep the input's tempo (or take --qpm), last whole bars and never replace a file.

    \b
    Examples:
      hvae transform gmd-drums-4bar beat.mid --attribute density=+1
      hvae transform gmd-drums-4bar beat.mid --sweep density=-1.5:1.5:7 --attribute syncopation=-0.5
    """
    loaded = open_run(checkpoint, resolve_device(device))
    vectors, _ = find_vectors(loaded, vectors_file)
    settings = settings_of(vectors, dict(map(parse_setting, fixed)), parse_sweep(sweep) if sweep else None)
    done = transform_file(loaded, vectors, midi_file, settings, out_dir or loaded.outputs.transformed,
                          window=window, temperature=temperature, seed=seed, qpm=qpm, drum_channel=drum_channel)
    for note in done.notes:
        click.echo(note, err=True)
    shown = list(dict.fromkeys([*settings[0], *vectors.vectors]))[:4]  # the attributes changed first
    click.echo(f"as read: {_values(shown, done.measured[0])}", err=True)
    for path, measured in zip(done.midi, done.measured[1:]):
        click.echo(str(path))
        click.echo(f"  {_values(shown, measured)}", err=True)
    click.echo(str(done.picture))


def _values(names: list[str], measured: dict[str, float]) -> str:
    """``density 12.5, syncopation 0.1, ...``: the measured attributes (- where a window has none)."""
    shown = ((name, measured.get(name, math.nan)) for name in names)
    return ", ".join(f"{name} {value:.3g}" if math.isfinite(value) else f"{name} -" for name, value in shown)
