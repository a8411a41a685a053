"""``hvae import`` and ``hvae export``: the reference's checkpoints (Magenta, magenta.js) in and out."""

from __future__ import annotations

from pathlib import Path

import click

from hvae.cli.params import RUN


def register(main: click.Group) -> None:
    """Add ``import`` and ``export`` to the ``hvae`` command line."""
    main.add_command(import_command)
    main.add_command(export_command)


@click.command("import")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--preset", "-p", metavar="NAME", default=None,
              help="The hvae preset with the checkpoint's architecture (e.g. cat-drums_2bar_small for "
                   "cat-drums_2bar_small.lokl.tar; see docs/magenta.md and 'hvae presets'). Default: the only "
                   "preset whose sizes the checkpoint's variables fit; where several fit, they are listed.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run directory to create (it must not exist, or be empty; see --force).")
@click.option("--model-option", "-m", "model_options", multiple=True, metavar="KEY=VALUE",
              help="Change the preset's model where the checkpoint's sizes differ (-m z_size=512 "
                   "-m encoder.rnn_sizes=2048); repeat for more.")
@click.option("--option", "-o", "converter_options", multiple=True, metavar="KEY=VALUE",
              help="Change the preset's converter where the checkpoint was trained on other windows (a "
                   "4-bar trio: -o slice_bars=4); repeat for more.")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="MIDI folder the run evaluates and fine-tunes on. Default: the bundled Groove MIDI Dataset "
                   "subset for drum presets; none for melody presets.")
@click.option("--force", is_flag=True,
              help="Replace an --out that holds an hvae run (and nothing else): the new run is written whole "
                   "beside it, then swapped in; if the import fails, the old run stays as it was.")
def import_command(source: Path, preset: str | None, out_dir: Path, model_options: tuple[str, ...],
                   converter_options: tuple[str, ...], data_dir: Path | None, force: bool) -> None:
    """Import a Magenta checkpoint (TensorFlow or magenta.js) as an hvae run directory.

    SOURCE is a TensorFlow checkpoint prefix (model.ckpt-4000), a folder holding one (the
    released archives' layout), a .tar or .tar.gz of such a folder, or a magenta.js checkpoint
    folder (config.json, weights_manifest.json and shards, quantised ones included). Every
    variable must fit the preset's model; the optimiser's slots and global_step are read past.
    Without --preset, the preset is the only one whose sizes the variables fit (the GrooVAE
    presets share one architecture: name yours). Of an archive, only the checkpoint's own files
    are unpacked, into a hidden folder beside --out that goes when the import ends; an archive of
    more than 10,000 entries or 16 GiB is refused before anything is unpacked.
    The run directory works with every command: sample, evaluate, reconstruct, interpolate,
    humanize, report, and 'hvae train --resume DIR --steps N' to fine-tune.

    \b
    Examples:
      hvae import cat-drums_2bar_small.lokl.tar --preset cat-drums_2bar_small --out runs/drums-lokl
      hvae import groovae_4bar/ --preset groovae_4bar --out runs/groovae
      hvae import drums_2bar_lokl_small/ --out runs/js-drums   # the one preset it fits
      hvae import mel_2bar_small/ --preset cat-mel_2bar_small --out runs/mel --data maestro/
    """
    from hvae.rundir import plan_model
    from hvae.magenta.importing import import_checkpoint
    from hvae.options import parse_overrides
    from hvae.plugins import registry
    from hvae.presets import get_preset

    if (model_options or converter_options) and preset is None:
        raise click.UsageError("-m and -o change a preset's model and converter: give --preset too.")
    model = plan_model(get_preset(preset).model, None, None, None, model_options) if model_options else None
    converter = None
    if converter_options:
        chosen = get_preset(preset)
        factory = registry().get("converters", chosen.converter).factory
        converter = {**chosen.converter_options, **parse_overrides(factory.Options, converter_options,
                                                                  what=f"converter {chosen.converter!r}")}
    result = import_checkpoint(source, preset, out_dir, model=model, converter_options=converter, data_dir=data_dir,
                               overwrite=force)
    if preset is None:
        click.echo(f"Preset:   {result.preset}, the only preset whose sizes the checkpoint's variables fit")
    click.echo(f"Imported: {result.source}, global_step {result.step}: {result.parameters:,} parameters")
    if result.skipped:
        names = "global_step" if result.skipped == ["global_step"] else \
            f"{len(result.skipped)} variables: the optimiser's slots and global_step"
        click.echo(f"Skipped:  {names} (fine-tuning starts a fresh optimiser)")
    click.echo(f"Run:      {result.run_dir}  (preset {result.preset}, checkpoint {result.checkpoint.name})")
    imported = get_preset(result.preset)
    chords = (f" --chords '{registry().get('converters', imported.converter).factory.default_chords}'"
              if imported.converter_options.get("chord_encoding") else "")
    click.echo(f"Next:     hvae sample {result.run_dir} -n 4{chords}")


@click.command("export")
@click.argument("checkpoint", type=RUN)
@click.option("--format", type=click.Choice(["magenta-js"]), default="magenta-js", show_default=True,
              expose_value=False,  # the one format there is; the option names it, so commands say what they write
              help="Checkpoint format to write: magenta-js, the folder @magenta/music's MusicVAE loads.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to create (it must not exist, or be empty; see --force).")
@click.option("--force", is_flag=True,
              help="Replace an --out that holds a magenta.js checkpoint (and nothing else): the new one is written "
                   "whole beside it, then swapped in; if the export fails, the old one stays as it was.")
def export_command(checkpoint: Path, out_dir: Path, force: bool) -> None:
    """Export a trained model as a magenta.js checkpoint folder for web apps.

    CHECKPOINT is a run directory (its newest checkpoint) or a checkpoint directory. Writes
    config.json, weights_manifest.json and float32 shards of at most 4 MB. magenta.js runs
    flat models with a single-layer bidirectional encoder (drums, melody and groove), and
    hierarchical ones beside a two-level hierarchical encoder of one layer per level (also
    multi-instrument performances of one bar); other models are refused with the reason.

    \b
    Example:
      hvae export runs/drums --format magenta-js --out web/drums_2bar
      # then, in JavaScript: new mm.MusicVAE('web/drums_2bar')
    """
    from hvae.magenta.exporting import export_magenta_js

    result = export_magenta_js(checkpoint, out_dir, overwrite=force)
    click.echo(f"Exported: {result.variables} variables ({result.bytes / 1e6:.1f} MB) as "
               f"{result.config['dataConverter']['type']} model to {result.out}")
