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
import json
import os
import re
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from hvae.checkpoint import Checkpoint, capture_rng, write_checkpoint
from hvae.data import DEMO_DIR, default_cache_dir
from hvae.errors import CheckpointError
from hvae.magenta import jsformat, tfbundle
from hvae.magenta.variables import (GLOBAL_STEP, describe_architecture, expected_shapes, format_architecture,
                                    load_reference, matching)
from hvae.model import ModelConfig, build_model, trainable_parameters
from hvae.plugins import make_converter
from hvae.presets import PRESETS, Preset, get_preset
from hvae.run import RunConfig, RunDir, TrainConfig, checkpoint_meta
from hvae.safefiles import atomic_directory, check_output_folder, write_atomic

TF_STATE_FILE = "checkpoint"  # TensorFlow's CheckpointState file in a checkpoint folder
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


@dataclasses.dataclass(frozen=True)
class Source:
    """A checkpoint found on disk: its format and the variables in it."""

    description: str  # what to call it in messages: the path read, and its format
    format: str  # "tensorflow" or "magenta-js"
    variables: dict[str, np.ndarray]
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


def read_source(path: str | os.PathLike) -> Source:
    """Read the checkpoint at ``path``: a TF checkpoint prefix (or its ``.index`` / data file), a folder
    holding one (Magenta's archives' layout), a ``.tar`` / ``.tar.gz`` of such a folder, or a
    magenta.js checkpoint folder."""
    path = Path(path)
    if path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES):
        with _unpacked(path) as folder:
            source = read_source(_archive_root(folder, path))
            return dataclasses.replace(source, description=f"{path} ({source.format})")
    if path.is_dir():
        if jsformat.is_js_folder(path):
            return Source(f"{path} (magenta.js)", "magenta-js", jsformat.read_js_folder(path), 0,
                          jsformat.read_js_config(path))
        return _read_tf(_prefix_in(path))
    prefix = _prefix_of_file(path)
    if prefix is None and not path.exists():
        raise CheckpointError(f"No checkpoint at {path}: it does not exist (nor {path.name}.index beside it).")
    if prefix is None:
        raise CheckpointError(f"{path} is not a checkpoint: give a TensorFlow checkpoint prefix (model.ckpt-4000), "
                              f"a folder holding one, a .tar of it, or a magenta.js checkpoint folder.")
    return _read_tf(prefix)


def _read_tf(prefix: Path) -> Source:
    bundle = tfbundle.read_bundle(prefix)
    variables = {name: bundle.read(name) for name in bundle.tensors}
    step = 0
    if GLOBAL_STEP in variables:
        value = np.asarray(variables[GLOBAL_STEP])
        if value.shape != () or value.dtype.kind not in "iu" or int(value) < 0:
            raise CheckpointError(f"{prefix}: global_step is {value.dtype} {list(value.shape)}, not a step count.")
        step = int(value)
    return Source(f"{prefix} (TensorFlow)", "tensorflow", variables, step, {})


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
        match = re.search(r'^model_checkpoint_path:\s*"(.*)"\s*$', state.read_text(errors="replace"), re.M)
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
def _unpacked(archive: Path) -> Iterator[Path]:
    """The archive's regular files and folders unpacked in a temporary folder (nothing outside it)."""
    with tempfile.TemporaryDirectory(prefix="hvae-import-") as folder:
        try:
            with tarfile.open(archive) as tar:
                members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
                for member in members:
                    if member.name.startswith("/") or ".." in Path(member.name).parts:
                        raise CheckpointError(f"{archive} holds {member.name}, a path outside the archive.")
                tar.extractall(folder, members=members, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise CheckpointError(f"{archive} is not a readable tar archive ({reason}).") from None
        yield Path(folder)


def _archive_root(folder: Path, archive: Path) -> Path:
    """Where an unpacked archive's checkpoint lies: the folder, or its one sub-folder."""
    if jsformat.is_js_folder(folder) or list(folder.glob("*.index")):
        return folder
    found = {p.parent for p in folder.rglob("*.index")} | {p.parent for p in folder.rglob(jsformat.MANIFEST)}
    if len(found) == 1:
        return found.pop()
    if not found:
        raise CheckpointError(f"{archive} holds no checkpoint (no *.index and no {jsformat.MANIFEST}).")
    raise CheckpointError(f"{archive} holds several checkpoint folders; unpack it and give one of them.")


def _preset_sizes(preset: Preset) -> dict[str, object]:
    """The architecture a preset builds, described as :func:`describe_architecture` describes a checkpoint."""
    with torch.device("meta"):  # shapes only: nothing allocated
        model = build_model(preset.model, make_converter(preset.converter, preset.converter_options),
                            force=preset.force)
    return describe_architecture(expected_shapes(model))


def fitting_presets(source: Source, besides: str = "") -> tuple[dict[str, object], list[str]]:
    """What the checkpoint's variables say of its architecture, and the presets (other than ``besides``)
    that build it; no presets where the variables say nothing."""
    fits = describe_architecture({name: tuple(np.shape(v)) for name, v in source.variables.items()})
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
                      model: ModelConfig | None = None, data_dir: str | os.PathLike | None = None,
                      cache_dir: str | os.PathLike | None = None, overwrite: bool = False) -> ImportResult:
    """Import the checkpoint ``source`` as a run directory ``out`` built from ``preset``; None picks the
    only preset whose model the checkpoint's variables fit (:func:`preset_for`).

    ``model`` replaces the preset's model configuration (sizes that differ from the preset's);
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
    found = read_source(source)
    chosen = chosen or get_preset(preset_for(found))
    config_model = model or chosen.model
    converter = make_converter(chosen.converter, chosen.converter_options)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        built = build_model(config_model, converter, force=chosen.force)
    skipped = load_reference(built, found.variables, found.description, lambda: _hint(found, chosen.name))
    run = RunConfig(name=chosen.name, converter=chosen.converter,
                    converter_options=dataclasses.asdict(converter.options), model=built.config,
                    train=TrainConfig(batch_size=chosen.batch_size, steps=max(found.step, 1),
                                      transpose_range=chosen.transpose_range),
                    data_dir=_data_dir(chosen, data_dir), cache_dir="", preset=chosen.name, force=chosen.force)
    if run.data_dir:
        run = dataclasses.replace(run, cache_dir=str(cache_dir or default_cache_dir(run.data_dir, converter.name,
                                                                                    converter.options)))
    note = {"source": str(source), "format": found.format, "global_step": found.step, "preset": chosen.name,
            "variables": len(found.variables) - len(skipped), "skipped": skipped}
    meta = checkpoint_meta(run, built, lr_schedule=None, grad_scaler=None, metrics={}, imported=note)
    with RunDir(out).lock() if replacing else contextlib.nullcontext(), \
            atomic_directory(out, replace=replacing) as building:
        write_checkpoint(building, Checkpoint(step=found.step, model=built.state_dict(), optimizer=None,
                                              rng=capture_rng(), meta=meta))
        RunDir(building).write_config(run)
        write_atomic(RunDir(building).import_note, (json.dumps(note, indent=2) + "\n").encode())
    checkpoint = next(RunDir(out).checkpoints.iterdir())
    return ImportResult(run_dir=out, checkpoint=checkpoint, step=found.step, source=found.description,
                        skipped=skipped, parameters=sum(p.numel() for p in trainable_parameters(built)),
                        preset=chosen.name)


def _data_dir(preset: Preset, data_dir: str | os.PathLike | None) -> str:
    if data_dir is not None:
        return str(Path(data_dir).resolve())
    if preset.dataset == "gmd":
        return str(Path(DEMO_DIR).resolve())
    return ""
