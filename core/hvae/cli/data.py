"""``hvae data``: turn a folder of MIDI files into cached training windows, and inspect a cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import click

from hvae.data import DEMO_DIR, SPLITS, PrepareReport, default_cache_dir, prepare_dataset, read_manifest
from hvae.data.cache import options_dict, split_file_problem
from hvae.data.download import DATA_SETS
from hvae.data.download import download as download_data_set
from hvae.data.merge import merge_caches
from hvae.data.splits import Shard
from hvae.errors import HvaeError, plain_errors_as
from hvae.interfaces import Converter
from hvae.options import parse_overrides
from hvae.plugins import make_converter, registry

SHOWN_PER_REASON = 5  # skipped files listed per reason without --verbose


def register(main: click.Group) -> None:
    """Add the ``data`` command group to the ``hvae`` command line."""
    main.add_command(data)


def converter_from_cli(name: str, pairs: Sequence[str]) -> Converter:
    """A converter by registered name with ``key=value`` options, or an :class:`HvaeError` in one line."""
    overrides = parse_overrides(registry().get("converters", name).factory.Options, pairs, what=f"converter {name!r}")
    with plain_errors_as(f"Converter {name!r} rejected its options"):
        return make_converter(name, overrides)


def _options_text(report: PrepareReport) -> str:
    """The options that differ from the converter's defaults (all of them if it is not installed)."""
    try:
        defaults = options_dict(registry().get("converters", report.converter).factory.Options())
    except HvaeError:
        defaults = {}
    changed = {k: v for k, v in report.options.items() if defaults.get(k, object()) != v}
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in changed.items()) or "defaults"


def _echo_summary(report: PrepareReport, verbose: bool) -> None:
    origin = f"{report.distribution} {report.version}" if report.distribution else "in-process plugin"
    click.echo(f"Converter: {report.converter} ({origin}), options: {_options_text(report)}")
    splits_from = f"splits from {Path(report.split_table).name}" if report.split_table else "splits by path hash"
    of_shard = f" of shard {report.shard}" if report.shard else ""
    click.echo(f"Data:      {report.data_dir} ({len(report.files)} MIDI files{of_shard}, {splits_from})")
    click.echo(f"Cache:     {report.cache_dir}")
    click.echo("")
    click.echo(f"{'split':<12}{'files':>8}{'converted':>11}{'windows':>10}")
    for name in SPLITS:
        s = report.splits[name]
        click.echo(f"{name:<12}{s.files:>8}{s.converted:>11}{s.windows:>10}")
    click.echo(f"{'total':<12}{len(report.files):>8}{len(report.converted):>11}{report.windows:>10}")
    skipped = report.skipped_by_reason()
    if skipped:
        click.echo("")
        click.echo(f"Skipped {len(report.skipped)} of {len(report.files)} files:")
        hidden = 0
        for reason, paths in skipped.items():
            click.echo(f"  {reason} ({len(paths)} file{'s' if len(paths) != 1 else ''})")
            shown = paths if verbose else paths[:SHOWN_PER_REASON]
            hidden += len(paths) - len(shown)
            for path in shown:
                click.echo(f"    {path}")
        if hidden:
            click.echo(f"  ... and {hidden} more (--verbose lists every file)")
    click.echo("")


@click.group()
def data() -> None:
    """Prepare MIDI data sets as cached training windows, and inspect prepared caches.

    \b
    Example:
      hvae data prepare --converter drums -o slice_bars=4 --data groove/ --out cache/drums4
      hvae data info cache/drums4

    \b
    A large corpus in 4 shards (on 4 machines, or one after another), then merged:
      hvae data prepare -c drums -o slice_bars=4 --data groove/ --shard 0/4 --out shards/0
      ...
      hvae data prepare -c drums -o slice_bars=4 --data groove/ --shard 3/4 --out shards/3
      hvae data merge cache/drums4 shards/0 shards/1 shards/2 shards/3
    """


@data.command(short_help="Fetch a public data set (the Groove MIDI Dataset or MAESTRO) and unpack it.")
@click.argument("name", type=click.Choice(sorted(DATA_SETS)))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data"),
              show_default=True, help="Folder to unpack into (the data set becomes a folder inside it).")
@click.option("--url", default=None, help="Fetch the archive from here instead (a mirror of the same zip).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar on stderr.")
def download(name: str, out_dir: Path, url: str | None, progress: bool) -> None:
    """Fetch a public data set from its publisher and unpack it; print its folder.

    hvae downloads nothing unless asked by this command. groove is the Groove MIDI Dataset
    v1.0.0 (its MIDI-only archive, CC BY 4.0), maestro is MAESTRO v3.0.0 (its MIDI-only
    archive, CC BY-NC-SA 4.0). A folder that is already there is kept.

    \b
    Example:
      hvae data download groove --out data/
      hvae data prepare --converter drums -o slice_bars=4 --data data/groove --out cache/drums4
    """
    target = download_data_set(name, out_dir, url, progress)
    click.echo(f"License: {DATA_SETS[name].license}", err=True)
    click.echo(str(target))


def _shard(ctx: click.Context, param: click.Parameter, value: str | None) -> Shard | None:
    try:
        return None if value is None else Shard.parse(value)
    except HvaeError as exc:
        raise click.BadParameter(str(exc)) from None


@data.command(short_help="Convert a folder of MIDI files into cached training windows.")
@click.option("--converter", "-c", "converter_name", required=True, metavar="NAME",
              help="Registered converter, e.g. drums, groove or melody ('hvae plugins' lists them).")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE",
              help="A converter option, by the reference's name; repeat for more "
                   "(-o slice_bars=4 -o roll_input=false).")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of MIDI files (*.mid, *.midi, searched recursively). "
                   "Default: the bundled 64-file Groove MIDI Dataset demo subset.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache folder to write. Default: one folder per data folder, converter and options under "
                   "$HVAE_CACHE (else ~/.cache/hvae).")
@click.option("--workers", "-j", type=click.IntRange(min=1), default=None,
              help="Conversion processes. Default: one per CPU; 1 converts in this process.")
@click.option("--force", is_flag=True, help="Convert again even when the cache is up to date.")
@click.option("--shard", metavar="K/N", callback=_shard, default=None,
              help="Convert only shard K of N (0 to N-1): the files a hash of their path assigns to it, into a "
                   "cache of their own ('hvae data merge' joins the N). Default --out: the whole folder's "
                   "default cache folder with .shard-K-of-N appended.")
@click.option("--verbose", "-v", is_flag=True,
              help=f"List every skipped file (default: the first {SHOWN_PER_REASON} for each reason).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar on stderr.")
def prepare(converter_name: str, options: tuple[str, ...], data_dir: Path | None, out_dir: Path | None,
            workers: int | None, force: bool, shard: Shard | None, verbose: bool, progress: bool) -> None:
    """Convert every MIDI file under --data into training windows, cached per split.

    Each file goes to the split its data set assigns (the Groove MIDI Dataset's info.csv,
    MAESTRO's maestro-v3.0.0.csv, in the folder or above it); files not listed, or every file
    when there is no such table, are split by a hash of their path: about 80% train, 10%
    validation, 10% test, the same on every machine.

    Files that cannot be converted (not MIDI, truncated, wrong meter, no notes the converter
    wants) are skipped and listed with the reason. Running again with the same converter,
    options and files reuses the cache at once; a changed option or file, or a damaged cache
    file, rebuilds it.

    With --shard K/N only the files of that shard are converted, into a cache of their own; run
    every shard (on several machines, or one after another) and join them with 'hvae data merge'.
    A shard that was interrupted is converted again by the same command, a finished one is reused.

    Exits with status 1 when no file gave a window (a shard may have none).
    """
    converter = converter_from_cli(converter_name, options)
    data_dir = data_dir or DEMO_DIR
    if out_dir is None:
        out_dir = default_cache_dir(data_dir, converter.name, converter.options)
        if shard is not None:
            out_dir = out_dir.with_name(f"{out_dir.name}.shard-{shard.index}-of-{shard.count}")
    report = prepare_dataset(converter, data_dir, out_dir, workers=workers, progress=progress, force=force,
                             shard=shard)
    _echo_summary(report, verbose)
    if report.cached:
        click.echo(f"Cache up to date (built in {report.conversion_seconds:.1f} s with {report.workers} "
                   f"worker{'s' if report.workers != 1 else ''}); nothing converted. --force converts again.")
    else:
        converted = len(report.converted)
        of = f" of {len(report.files)}" if converted != len(report.files) else ""
        click.echo(f"Converted {converted}{of} file{'s' if converted != 1 or of else ''} in "
                   f"{report.conversion_seconds:.1f} s with {report.workers} worker{'s' if report.workers != 1 else ''} "
                   f"({report.rebuild_reason}).")
    if report.windows == 0 and shard is None:
        raise click.ClickException(
            f"No usable windows: none of the {len(report.files)} MIDI files under {data_dir} gave a window with "
            f"converter {converter.name!r} (reasons above).")


@data.command(short_help="Summarise a prepared cache and check its files.")
@click.argument("cache_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--verbose", "-v", is_flag=True, help="List every skipped file.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
def info(cache_dir: Path, verbose: bool, as_json: bool) -> None:
    """Summarise a cache written by 'hvae data prepare'.

    Prints the converter and its options, windows per split, the skipped files with their
    reasons, and whether the split files still match their checksums (exit status 1 if not).
    """
    manifest = read_manifest(cache_dir)
    if as_json:
        click.echo(json.dumps(manifest, indent=2))
        return
    report = PrepareReport.from_manifest(cache_dir.resolve(), manifest, cached=True, rebuild_reason=None,
                                         seconds=0.0)
    _echo_summary(report, verbose)
    click.echo(f"Built {manifest['created']} in {report.conversion_seconds:.1f} s with {report.workers} "
               f"worker{'s' if report.workers != 1 else ''}, hvae {manifest['hvae_version']}.")
    problems = [p for p in (split_file_problem(cache_dir, manifest["splits"][s]) for s in SPLITS) if p]
    if problems:
        raise click.ClickException(f"Damaged cache: {'; '.join(problems)}. "
                                   f"'hvae data prepare' with the same options rebuilds it.")
    click.echo("Checksums: all split files intact.")


@data.command(short_help="Join the caches of shards 0/N to N-1/N into one cache.")
@click.argument("out_dir", metavar="OUT", type=click.Path(file_okay=False, path_type=Path))
@click.argument("shard_dirs", metavar="SHARD_DIR...", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--verbose", "-v", is_flag=True, help="List every skipped file.")
def merge(out_dir: Path, shard_dirs: tuple[Path, ...], verbose: bool) -> None:
    """Join shard caches written by 'hvae data prepare --shard K/N' into the cache OUT.

    Every shard of the N must be given once, finished and intact (its files match their
    checksums), and all prepared with the same converter, options and hvae. OUT is then the
    cache one unsharded 'hvae data prepare' of the folder writes: give it as --cache to
    'hvae train', which finds it up to date.
    """
    report = merge_caches(out_dir, shard_dirs)
    _echo_summary(report, verbose)
    click.echo(f"Merged {len(shard_dirs)} shards in {report.seconds:.1f} s (they took "
               f"{report.conversion_seconds:.1f} s to convert with {report.workers} "
               f"worker{'s' if report.workers != 1 else ''} in all).")
