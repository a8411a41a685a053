"""``hvae import``: a Magenta checkpoint (TensorFlow or magenta.js) as an ordinary hvae run directory.

    result = import_checkpoint("groovae_4bar.tar", "groovae_4bar", "runs/groovae")
    result.run_dir, result.step, result.skipped   # run directory, TF global_step, variables read past

The run directory is what ``hvae train`` writes: ``config.json`` (the preset's run configuration,
``steps`` set to the checkpoint's step), one checkpoint at that step (without optimiser state:
fine-tuning with ``hvae train --resume DIR --steps N`` starts a fresh Adam) and ``imported.json``,
a note of where the weights came from. Nothing is written until every variable has been read,
checked and placed; the directory appears whole (it is built beside the target and renamed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import torch

from hvae.checkpoint import MAX_STEP, Checkpoint, capture_rng, write_checkpoint
from hvae.data import DEMO_DIR, default_cache_dir
from hvae.errors import CheckpointError, HvaeError, plain_errors_as
from hvae.magenta import jsformat, tfbundle
from hvae.interfaces import Converter
from hvae.magenta.variables import (GLOBAL_STEP, check_reference, describe_architecture, expected_shapes,
                                    format_architecture, load_reference, matching)
from hvae.model import ModelConfig, MusicVAE, build_model, trainable_parameters
from hvae.plugins import make_converter
from hvae.presets import PRESETS, Preset, get_preset
from hvae.rundir import RunConfig, RunDir, TrainConfig, checkpoint_meta
from hvae.runlock import RunLock
from hvae.safefiles import atomic_directory, check_output_folder, read_plain_file, sigterm_as_exit, write_atomic

TF_STATE_FILE = "checkpoint"  # TensorFlow's CheckpointState file in a checkpoint folder
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
MAX_MEMBERS = 10_000  # entries an archive may hold (a released checkpoint's holds a folder and 3 or 4 files)
# Bytes an archive's entries may declare in all: they are listed (and, compressed, decompressed) to find the
# checkpoint, whose files alone are then unpacked beside the run directory.
MAX_ARCHIVE_BYTES = 16 << 30
STATE_LIMIT = 1 << 20  # bytes of a `checkpoint` state file read at most (TensorFlow's are a few hundred)
METADATA_LIMIT = tfbundle.INDEX_LIMIT  # bytes an archive's index, state file, manifest or config may declare
UNPACKING = ".hvae-import-"  # prefix of the hidden folder an archive's checkpoint is unpacked into


@dataclasses.dataclass(frozen=True)
class Source:
    """A checkpoint found on disk: its format, and its variables' shapes (read from its table of contents)
    and values (read on demand: :attr:`read`, while the :func:`open_source` block lasts)."""

    description: str  # what to call it in messages: the path read, and its format
    format: str  # "tensorflow" or "magenta-js"
    shapes: dict[str, tuple[int, ...]]  # every variable's shape, by name
    read: Callable[[str], np.ndarray]  # one variable's values, checked
    step: int  # the TF global_step; 0 where the checkpoint has none (magenta.js)
    js_config: dict[str, Any]  # a magenta.js folder's config.json (empty otherwise)


@dataclasses.dataclass(frozen=True)
class ImportResult:
    run_dir: Path
    checkpoint: Path
    step: int
    source: str
    skipped: list[str]  # checkpoint variables read past on purpose (optimiser slots, global_step)
    parameters: int
    preset: str  # the preset the run is built from: the one given, or the only one the variables fit


@contextlib.contextmanager
def open_source(path: str | os.PathLike, scratch: str | os.PathLike | None = None) -> Iterator[Source]:
    """The checkpoint at ``path``: a TF checkpoint prefix (or its ``.index`` / data file), a folder
    holding one (Magenta's archives' layout), a ``.tar`` / ``.tar.gz`` of such a folder, or a
    magenta.js checkpoint folder. Its variables can be read inside the block.

    Of an archive, only the checkpoint's files are unpacked (see :func:`_unpacked`), into a hidden folder in
    ``scratch`` (default: the system's temporary folder) that goes when the block ends."""
    path = Path(path)
    if path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES):
        with _unpacked(path, Path(scratch or tempfile.gettempdir())) as folder:
            source = _folder_source(folder)
            yield dataclasses.replace(source, description=f"{path} ({source.format})")
        return
    if path.is_dir():
        yield _folder_source(path)
        return
    prefix = _prefix_of_file(path)
    if prefix is None and not path.exists():
        raise CheckpointError(f"No checkpoint at {path}: it does not exist (nor {path.name}.index beside it).")
    if prefix is None:
        raise CheckpointError(f"{path} is not a checkpoint: give a TensorFlow checkpoint prefix (model.ckpt-4000), "
                              f"a folder holding one, a .tar of it, or a magenta.js checkpoint folder.")
    yield _tf_source(prefix)


def _folder_source(folder: Path) -> Source:
    if jsformat.is_js_folder(folder):
        variables = jsformat.read_js_folder(folder)
        return Source(f"{folder} (magenta.js)", "magenta-js", {n: v.shape for n, v in variables.items()},
                      variables.__getitem__, 0, jsformat.read_js_config(folder))
    return _tf_source(_prefix_in(folder))


def _tf_source(prefix: Path) -> Source:
    bundle = tfbundle.read_bundle(prefix)
    step = 0
    if GLOBAL_STEP in bundle.tensors:
        info = bundle.tensors[GLOBAL_STEP]
        value = bundle.read(GLOBAL_STEP) if info.shape == () and info.dtype_name in ("int32", "int64") else None
        if value is None or not 0 <= int(value) <= MAX_STEP:
            shown = f"{int(value):,}" if value is not None else f"{info.dtype_name} {list(info.shape)}"
            raise CheckpointError(f"{prefix}: global_step is {shown}, not a step count from 0 to {MAX_STEP:,}.")
        step = int(value)
    return Source(f"{prefix} (TensorFlow)", "tensorflow", {n: info.shape for n, info in bundle.tensors.items()},
                  bundle.read, step, {})


def _prefix_of_file(path: Path) -> Path | None:
    """The checkpoint prefix ``path`` names: itself, or the prefix of its ``.index`` or data file."""
    if path.with_name(path.name + ".index").exists():
        return path
    if path.name.endswith(".index"):
        return path.with_name(path.name[:-len(".index")])
    match = re.match(r"(.*)\.data-\d{5}-of-\d{5}$", path.name)
    if match:
        return path.with_name(match.group(1))
    return None


def _prefix_in(folder: Path) -> Path:
    """The checkpoint in a folder: the one its ``checkpoint`` file names, else its only ``*.index``."""
    state = folder / TF_STATE_FILE
    if state.is_file():
        try:
            text = read_plain_file(state, STATE_LIMIT).decode("utf-8", errors="replace")
        except OSError as exc:
            raise CheckpointError(f"Cannot read {state}: {exc.strerror or exc} (a TensorFlow checkpoint state "
                                  f"file).") from None
        match = re.search(r'^model_checkpoint_path:\s*"(.*)"\s*$', text, re.M)
        if match:  # written as an absolute path on the machine that trained it: the name is what counts
            prefix = folder / Path(match.group(1)).name
            if prefix.with_name(prefix.name + ".index").exists():
                return prefix
    indexes = sorted(folder.glob("*.index"))
    if len(indexes) == 1:
        return indexes[0].with_name(indexes[0].name[:-len(".index")])
    if not indexes:
        if (folder / TF_STATE_FILE).exists() or list(folder.glob("*.meta")):
            raise CheckpointError(f"{folder} holds no *.index file: a TensorFlow checkpoint's index is missing "
                                  f"(or it is the old V1 format, which hvae does not read).")
        raise CheckpointError(f"{folder} is not a checkpoint folder: it holds no TensorFlow *.index file "
                              f"and no magenta.js {jsformat.MANIFEST}.")
    names = ", ".join(p.name[:-len(".index")] for p in indexes)
    raise CheckpointError(f"{folder} holds several checkpoints ({names}): give the one to import as "
                          f"{folder}/NAME.")


@contextlib.contextmanager
def _unpacked(archive: Path, scratch: Path) -> Iterator[Path]:
    """The folder of the checkpoint in ``archive``, holding its files and no others, unpacked into a hidden
    folder in ``scratch`` that goes when the block ends (one a killed process left is removed by the next).

    The entries are listed first: at most :data:`MAX_MEMBERS`, declaring at most :data:`MAX_ARCHIVE_BYTES`
    in all, none with a path outside the archive. Then the checkpoint's small files are unpacked (its
    index and state file, or its manifest and config), and last the data they name.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(scratch)
    folder = Path(tempfile.mkdtemp(prefix=UNPACKING, dir=scratch))
    try:
        with RunLock(folder / ".lock"), _opened_tar(archive) as tar:
            where, files = _checkpoint_files(_members(tar, archive), archive)
            root = folder / "checkpoint"
            _extract(tar, archive, root, [m for name, m in files.items() if _small(name)], METADATA_LIMIT)
            checkpoint = root / where
            wanted = _data_names(checkpoint, files)
            _extract(tar, archive, root, [m for name, m in files.items() if name in wanted])
            yield checkpoint
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _opened_tar(archive: Path) -> Iterator[tarfile.TarFile]:
    """``archive`` opened; its read errors (while listing or unpacking) as one line naming it."""
    try:
        with tarfile.open(archive) as tar:
            yield tar
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CheckpointError(f"{archive} is not a readable tar archive ({reason}).") from None


def _members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """The archive's entries, listed within :data:`MAX_MEMBERS` and :data:`MAX_ARCHIVE_BYTES`."""
    members, declared = [], 0
    for member in tar:
        if len(members) == MAX_MEMBERS:
            raise CheckpointError(f"{archive} holds more than {MAX_MEMBERS:,} entries: not a checkpoint archive.")
        declared += member.size
        if declared > MAX_ARCHIVE_BYTES:
            raise CheckpointError(f"{archive} declares more than {MAX_ARCHIVE_BYTES / 2**30:g} GiB of files, "
                                  f"more than hvae imports (see MAX_ARCHIVE_BYTES in hvae.magenta.importing).")
        if member.name.startswith("/") or ".." in PurePosixPath(member.name).parts:
            raise CheckpointError(f"{archive} holds {member.name}, a path outside the archive.")
        members.append(member)
    return members


def _checkpoint_files(members: list[tarfile.TarInfo], archive: Path) -> tuple[str, dict[str, tarfile.TarInfo]]:
    """The folder (in the archive) of its one checkpoint, and the plain files in it by name."""
    files = [m for m in members if m.isfile()]
    marked = {posixpath.dirname(posixpath.normpath(m.name)) for m in files
              if m.name.endswith(".index") or posixpath.basename(m.name) == jsformat.MANIFEST}
    if not marked:
        raise CheckpointError(f"{archive} holds no checkpoint (no *.index and no {jsformat.MANIFEST}).")
    if len(marked) > 1 and "" not in marked:
        raise CheckpointError(f"{archive} holds several checkpoint folders; unpack it and give one of them.")
    where = "" if "" in marked else marked.pop()
    inside = {posixpath.relpath(posixpath.normpath(m.name), where or "."): m for m in files}
    return where, {name: m for name, m in inside.items() if not name.startswith("..")}


def _small(name: str) -> bool:
    """Whether ``name`` (in a checkpoint's folder) is one of the small files that say which data it needs."""
    return name in (TF_STATE_FILE, jsformat.MANIFEST, jsformat.CONFIG) or ("/" not in name and name.endswith(".index"))


def _data_names(checkpoint: Path, names: Iterable[str]) -> set[str]:
    """Of ``names`` (the files in the archive's checkpoint folder), those of the data the unpacked small files
    say the checkpoint needs: a magenta.js manifest's shards, or the TF checkpoint's data files."""
    if jsformat.is_js_folder(checkpoint):
        wanted = jsformat.shard_names(checkpoint)
        return {name for name in names if name in wanted}
    data = re.compile(re.escape(_prefix_in(checkpoint).name) + r"\.data-\d{5}-of-\d{5}")
    return {name for name in names if data.fullmatch(name)}


def _extract(tar: tarfile.TarFile, archive: Path, root: Path, members: list[tarfile.TarInfo],
             limit: int | None = None) -> None:
    """Unpack ``members`` into ``root`` as plain files (tarfile's "data" filter), each declaring at most
    ``limit`` bytes (None: no limit of its own)."""
    for member in members:
        if limit is not None and member.size > limit:
            raise CheckpointError(f"{archive}: {member.name} declares {member.size:,} bytes, more than a "
                                  f"checkpoint's {posixpath.basename(member.name)} holds (at most {limit:,}).")
    tar.extractall(root, members=members, filter="data")


def _remove_abandoned(scratch: Path) -> None:
    """Remove the unpacking folders in ``scratch`` whose import was killed (SIGKILL, a power cut): those
    whose lock no process holds."""
    for folder in scratch.glob(f"{UNPACKING}*"):
        if folder.is_dir() and not folder.is_symlink():
            try:
                with RunLock(folder / ".lock"):
                    shutil.rmtree(folder, ignore_errors=True)
            except (HvaeError, OSError):  # held: an import under way
                continue


def _preset_sizes(preset: Preset) -> dict[str, object]:
    """The architecture a preset builds, described as :func:`describe_architecture` describes a checkpoint."""
    with torch.device("meta"):  # shapes only: nothing allocated
        model = build_model(preset.model, make_converter(preset.converter, preset.converter_options),
                            force=preset.force)
    return describe_architecture(expected_shapes(model))


def fitting_presets(source: Source, besides: str = "") -> tuple[dict[str, object], list[str]]:
    """What the checkpoint's variables say of its architecture, and the presets (other than ``besides``)
    that build it; no presets where the variables say nothing."""
    fits = describe_architecture(source.shapes)
    if not fits:
        return fits, []
    return fits, matching(fits, [(name, _preset_sizes(p)) for name, p in PRESETS.items() if name != besides])


def _hint(source: Source, preset_name: str) -> str:
    """What the checkpoint's variables fit, and the presets that build that."""
    fits, presets = fitting_presets(source, besides=preset_name)
    if not fits:
        return ""
    advice = f" Presets that fit: {', '.join(presets)}." if presets else \
        " Set the model's sizes with -m (e.g. -m z_size=512 -m encoder.rnn_sizes=2048,2048)."
    return f" The checkpoint fits {format_architecture(fits)}.{advice}"


def preset_for(source: Source) -> str:
    """The only preset whose model the checkpoint's variables fit; :class:`CheckpointError` naming the
    presets that fit where there are several, and the sizes the variables have where none does."""
    fits, presets = fitting_presets(source)
    if len(presets) == 1:
        return presets[0]
    if presets:
        raise CheckpointError(f"{source.description} fits {len(presets)} presets: {', '.join(presets)}. Name the "
                              f"one it was trained as (docs/magenta.md lists the released checkpoints' presets).")
    sizes = f" ({format_architecture(fits)})" if fits else ""
    raise CheckpointError(f"{source.description} fits no preset{sizes}. Name the preset nearest to it and give "
                          f"the sizes that differ as model options (see docs/magenta.md).")


def import_checkpoint(source: str | os.PathLike, preset: str | None, out: str | os.PathLike, *,
                      model: ModelConfig | None = None, converter_options: Mapping[str, Any] | None = None,
                      data_dir: str | os.PathLike | None = None,
                      cache_dir: str | os.PathLike | None = None, overwrite: bool = False) -> ImportResult:
    """Import the checkpoint ``source`` as a run directory ``out`` built from ``preset``; None picks the
    only preset whose model the checkpoint's variables fit (:func:`preset_for`).

    ``model`` replaces the preset's model configuration (sizes that differ from the preset's), and
    ``converter_options`` its converter's options (windows of other lengths);
    ``data_dir`` is the MIDI folder the run evaluates and fine-tunes on (default: the bundled GMD
    demo subset for GMD presets; none for others). ``overwrite`` replaces an ``out`` that holds a run
    (and nothing else) unless a training holds it: the new run is written whole beside it, then swapped
    in. Raises :class:`CheckpointError` (nothing written) for an unreadable source or a variable that
    does not fit, and :class:`~hvae.errors.OutputExistsError` for an ``out`` that may not be written.
    """
    out = Path(out)
    replacing = check_output_folder(out, kind="an hvae run", unlike=lambda path: RunDir(path).unlike_run(),
                                    overwrite=overwrite, sources=[source])
    chosen = get_preset(preset) if preset is not None else None
    with sigterm_as_exit(), open_source(source, scratch=out.absolute().parent) as found:
        chosen = chosen or get_preset(preset_for(found))
        with plain_errors_as(f"Converter {chosen.converter!r} rejected its options"):
            converter = make_converter(chosen.converter, converter_options or chosen.converter_options)
        _check_js_steps(found, chosen.name, converter)
        hint = functools.partial(_hint, found, chosen.name)
        with torch.device("meta"):  # shapes only: a model the checkpoint does not fit is never allocated
            check_reference(expected_shapes(build_model(model or chosen.model, converter, force=chosen.force)),
                            found.shapes, found.description, hint)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            built = build_model(model or chosen.model, converter, force=chosen.force)
        skipped = load_reference(built, found.shapes, found.read, found.description, hint)
        return _write_run(out, replacing, chosen, converter, built, found, skipped, source, data_dir, cache_dir)


def _check_js_steps(found: Source, preset: str, converter: Converter) -> None:
    """A magenta.js folder's ``config.json`` names the steps of its windows (``numSteps``): a converter of
    other windows (a 4-bar trio_4bar under the 16-bar hier-trio_16bar's) is refused, saying what to give."""
    data_converter = found.js_config.get("dataConverter")
    args = data_converter.get("args") if isinstance(data_converter, dict) else None
    steps = args.get("numSteps") if isinstance(args, dict) else None
    if isinstance(steps, int) and steps != converter.steps:
        raise CheckpointError(f"{found.description}: its config.json decodes windows of {steps} steps (numSteps), "
                              f"and preset {preset}'s converter makes {converter.steps}: give its converter "
                              f"options with -o (e.g. -o slice_bars=...) and its levels with -m.")


def _write_run(out: Path, replacing: bool, chosen: Preset, converter: Converter, built: MusicVAE, found: Source,
               skipped: list[str], source: str | os.PathLike, data_dir: str | os.PathLike | None,
               cache_dir: str | os.PathLike | None) -> ImportResult:
    """Write the imported run directory ``out`` whole (see :func:`import_checkpoint`)."""
    run = RunConfig(name=chosen.name, converter=chosen.converter,
                    converter_options=dataclasses.asdict(converter.options), model=built.config,
                    train=TrainConfig(batch_size=chosen.batch_size, steps=max(found.step, 1),
                                      transpose_range=chosen.transpose_range),
                    data_dir=_data_dir(chosen, data_dir), cache_dir="", preset=chosen.name, force=chosen.force)
    if run.data_dir:
        run = dataclasses.replace(run, cache_dir=str(cache_dir or default_cache_dir(run.data_dir, converter.name,
                                                                                    converter.options)))
    note = {"source": str(source), "format": found.format, "global_step": found.step, "preset": chosen.name,
            "variables": len(found.shapes) - len(skipped), "skipped": skipped}
    meta = checkpoint_meta(run, built, lr_schedule=None, grad_scaler=None, metrics={}, imported=note)
    with RunDir(out).lock() if replacing else contextlib.nullcontext(), \
            atomic_directory(out, replace=replacing) as building:
        checkpoint = write_checkpoint(building, Checkpoint(step=found.step, model=built.state_dict(), optimizer=None,
                                                           rng=capture_rng(), meta=meta))
        RunDir(building).write_config(run)
        write_atomic(RunDir(building).import_note, (json.dumps(note, indent=2) + "\n").encode())
    return ImportResult(run_dir=out, checkpoint=out / checkpoint.relative_to(building), step=found.step,
                        source=found.description, skipped=skipped,
                        parameters=sum(p.numel() for p in trainable_parameters(built)), preset=chosen.name)


def _data_dir(preset: Preset, data_dir: str | os.PathLike | None) -> str:
    if data_dir is not None:
        return str(Path(data_dir).resolve())
    if preset.dataset == "gmd":
        return str(Path(DEMO_DIR).resolve())
    return ""
