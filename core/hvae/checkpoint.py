"""Checkpoints: safetensors for tensors, one JSON file for everything else, no pickle anywhere.

A checkpoint is a directory ``RUN_DIR/checkpoints/step-00000100/`` holding

- ``model.safetensors``      the model's state dict;
- ``optimizer.safetensors``  the optimiser's per-parameter tensors (Adam's moments and step counts);
- ``rng.safetensors``        the torch random-number generator states (CPU, and each CUDA device);
- ``checkpoint.json``        the commit marker, written last: step, the full model and training
                             configs, converter name and options, the plugins (and versions) that
                             provided each component, the optimiser's scalar settings, and the
                             SHA-256 of each tensor file.

Each file is written to a temporary name, fsynced and renamed into place; the JSON comes last, so a
directory without it (a run killed mid-write) is not a checkpoint. Reading checks every hash before
parsing, and parsing is safetensors' and json's only: loading a checkpoint never executes code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import typing
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from hvae.errors import CheckpointError

FORMAT = "hvae-checkpoint"
FORMAT_VERSION = 1
CHECKPOINTS = "checkpoints"  # sub-directory of a run directory
MANIFEST = "checkpoint.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+, and torch.save's zip container


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One checkpoint, in memory."""

    step: int  # optimiser steps taken
    model: dict[str, torch.Tensor]  # model state dict (CPU tensors)
    optimizer: dict[str, Any] | None  # torch optimiser state dict; None when not read or not saved
    rng: dict[str, torch.Tensor]  # "cpu", "cuda:0", ... -> uint8 generator state
    meta: dict[str, Any]  # the JSON sidecar's content beyond the tensors (configs, names, versions)
    path: Path | None = None  # the checkpoint directory it was read from


def write_checkpoint(run_dir: str | os.PathLike, checkpoint: Checkpoint, keep: int = 3) -> Path:
    """Write ``checkpoint`` under ``run_dir/checkpoints`` atomically; keep the newest ``keep`` (>= 1).

    Returns the checkpoint directory. Older checkpoints, and directories left uncommitted by a
    killed run, are removed only after the new one is committed.
    """
    root = Path(run_dir) / CHECKPOINTS
    target = root / f"step-{checkpoint.step:08d}"
    target.mkdir(parents=True, exist_ok=True)
    (target / MANIFEST).unlink(missing_ok=True)  # uncommitted while its files are replaced
    for leftover in target.glob(".*.tmp-*"):  # temporary files of a run killed while writing here
        leftover.unlink()
    files = {MODEL_FILE: _portable(checkpoint.model), RNG_FILE: dict(checkpoint.rng)}
    optimizer_json = None
    if checkpoint.optimizer is not None:
        files[OPTIMIZER_FILE], optimizer_json = _split_optimizer_state(checkpoint.optimizer)
    hashes = {}
    for name, tensors in files.items():
        data = save_tensors(tensors)
        write_atomic(target / name, data)
        hashes[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "step": checkpoint.step,
                **checkpoint.meta, "optimizer": optimizer_json, "files": hashes}
    write_atomic(target / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
    _fsync_dir(target)
    _fsync_dir(root)
    _prune(root, keep=keep, current=target)
    return target


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Committed checkpoint directories of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / MANIFEST).is_file())


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint directory meant by ``path``: a run directory (its newest checkpoint), a
    checkpoint directory, or a file in one (its ``checkpoint.json``, say)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"No checkpoint at {path}: it does not exist.")
    if path.is_file():
        if (path.parent / MANIFEST).is_file():  # checkpoint.json, or one of the files it lists
            return path.parent
        with open(path, "rb") as f:
            head = f.read(4)
        if any(head.startswith(magic) for magic in _PICKLE_MAGIC):
            raise CheckpointError(
                f"{path} is a pickle (torch.save) file; hvae never unpickles, because unpickling can run "
                f"code. Give a run directory or an hvae checkpoint directory.")
        raise CheckpointError(f"{path} is not an hvae checkpoint: give a run directory, a checkpoint "
                              f"directory or its {MANIFEST}.")
    if (path / MANIFEST).is_file():
        return path
    found = list_checkpoints(path)
    if not found:
        raise CheckpointError(f"No checkpoint in {path}: expected {CHECKPOINTS}/step-*/{MANIFEST} "
                              f"(a run killed before its first checkpoint leaves none).")
    return found[-1]


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON sidecar of the checkpoint meant by ``path`` (see :func:`find_checkpoint`)."""
    directory = find_checkpoint(path)
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"Corrupt checkpoint {directory}: {MANIFEST} is not readable JSON ({exc}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{directory / MANIFEST} is not an hvae checkpoint manifest.")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{directory} has checkpoint format version {manifest.get('format_version')}; "
                              f"this hvae reads version {FORMAT_VERSION}.")
    if not isinstance(manifest.get("step"), int) or not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"Corrupt checkpoint {directory}: {MANIFEST} has no step or no file list.")
    return manifest


def read_checkpoint(path: str | os.PathLike, with_optimizer: bool = True) -> Checkpoint:
    """Read and verify the checkpoint meant by ``path``. Tensors come back on the CPU.

    Raises :class:`CheckpointError` for a missing, truncated, corrupt or foreign file.
    """
    directory = find_checkpoint(path)
    manifest = read_manifest(directory)
    model = _read_tensors(directory, MODEL_FILE, manifest)
    rng = _read_tensors(directory, RNG_FILE, manifest)
    optimizer = None
    if with_optimizer and manifest.get("optimizer") is not None:
        optimizer = _join_optimizer_state(_read_tensors(directory, OPTIMIZER_FILE, manifest), manifest["optimizer"])
    meta = {k: v for k, v in manifest.items()
            if k not in ("format", "format_version", "step", "optimizer", "files")}
    return Checkpoint(step=int(manifest["step"]), model=model, optimizer=optimizer, rng=rng, meta=meta,
                      path=directory)


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A trained model rebuilt from a checkpoint, with what it needs to write MIDI."""

    model: Any  # hvae.model.MusicVAE, weights loaded, in eval mode, on the requested device
    converter: Any  # hvae.interfaces.Converter with the run's options
    name: str  # the run's name (prefixes sample files)
    step: int  # optimiser steps it was trained for
    run_dir: Path  # the run directory holding the checkpoint


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild the model (architecture from the JSON, weights from safetensors) and its converter."""
    from hvae.model import model_from_dict

    checkpoint = read_checkpoint(path, with_optimizer=False)
    try:
        run = checkpoint.meta["run"]
        model = model_from_dict(checkpoint.meta["model"])
        model.load_state_dict(checkpoint.model)
        converter = converter_from(run["converter"], run["converter_options"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"Checkpoint {checkpoint.path} does not fit this hvae and its plugins: "
                              f"{type(exc).__name__}: {exc}") from None
    model.to(device).eval()
    return LoadedModel(model, converter, checkpoint.meta.get("name", run["converter"]), checkpoint.step,
                       checkpoint.path.parent.parent)


def converter_from(name: str, options: dict[str, Any]) -> Any:
    """A registered converter with options read back from JSON (lists turned back into tuples)."""
    from hvae.plugins import registry

    factory = registry().get("converters", name).factory
    return factory(from_jsonable(factory.Options, dict(options)))


def capture_rng() -> dict[str, torch.Tensor]:
    """The torch generator states (CPU and every CUDA device), to store in a checkpoint."""
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda:{index}"] = state
    return states


def restore_rng(states: dict[str, torch.Tensor]) -> None:
    """Put back generator states captured by :func:`capture_rng`."""
    torch.set_rng_state(states["cpu"])
    if torch.cuda.is_available():
        for key, state in states.items():
            if key.startswith("cuda:") and int(key[5:]) < torch.cuda.device_count():
                torch.cuda.set_rng_state(state, device=int(key[5:]))


def from_jsonable(cls: type, data: Any) -> Any:
    """Rebuild a (frozen, possibly nested) dataclass from ``dataclasses.asdict`` output read from JSON.

    JSON turns tuples into lists; this turns them back, following the field types.
    """
    if not isinstance(data, dict):
        raise CheckpointError(f"Expected a mapping for {cls.__name__}, found {type(data).__name__}.")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise CheckpointError(f"{cls.__name__} has no field(s) {', '.join(unknown)}: the checkpoint was written "
                              f"by a different version of the code that defines it.")
    return cls(**{k: _typed(hints.get(k, Any), v) for k, v in data.items()})


def _typed(annotation: Any, value: Any) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if value is None:
        return None
    if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
        return from_jsonable(annotation, value)
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(args[0], v) for v in value)
        if args and len(args) == len(value):
            return tuple(_typed(a, v) for a, v in zip(args, value))
        return tuple(value)
    if args and origin is not None and origin not in (list, dict, tuple):  # Optional / Union
        for arg in args:
            if arg is type(None):
                continue
            if (dataclasses.is_dataclass(arg) and isinstance(value, dict)) or \
                    (typing.get_origin(arg) is tuple and isinstance(value, list)):
                return _typed(arg, value)
    return value


def _portable(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous copies: safetensors refuses views that share storage."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A torch optimiser state dict as tensors (``state.<param>.<name>``) plus JSON for the rest."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param, per_param in state["state"].items():
        for name, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"state.{param}.{name}"] = value.detach().to("cpu", copy=True).contiguous()
            else:
                scalars.setdefault(str(param), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], saved: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, param, name = key.split(".", 2)
        state.setdefault(int(param), {})[name] = value
    for param, values in saved.get("scalars", {}).items():
        state.setdefault(int(param), {}).update(values)
    groups = [{k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in group.items()}
              for group in saved["param_groups"]]
    return {"state": state, "param_groups": groups}


def _read_tensors(directory: Path, name: str, manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    expected = manifest.get("files", {}).get(name)
    if expected is None:
        raise CheckpointError(f"Corrupt checkpoint {directory}: {MANIFEST} does not list {name}.")
    try:
        data = (directory / name).read_bytes()
    except OSError as exc:
        raise CheckpointError(f"Corrupt checkpoint {directory}: cannot read {name} ({exc.strerror}).") from None
    if len(data) != expected["bytes"] or hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise CheckpointError(f"Corrupt checkpoint {directory}: {name} is {len(data)} bytes and does not match "
                              f"the {expected['bytes']} bytes recorded in {MANIFEST} (truncated or altered).")
    try:
        return load_tensors(data)
    except Exception as exc:  # safetensors raises its own error type for every malformed file
        raise CheckpointError(f"Corrupt checkpoint {directory}: {name} is not a safetensors file ({exc}).") from None


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """A temporary folder beside ``target`` to fill; renamed to ``target`` (absent or an empty folder)
    when the block ends, removed if it raises: ``target`` appears whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield building
        if target.exists():
            target.rmdir()
        os.replace(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename: never a half file."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prune(root: Path, keep: int, current: Path) -> None:
    """Remove all but the newest ``keep`` committed checkpoints, and any uncommitted leftovers."""
    committed = list_checkpoints(root.parent)
    doomed = [p for p in committed[:-keep] if p != current]
    doomed += [p for p in root.iterdir() if p.is_dir() and p not in committed and p != current]
    for directory in doomed:
        (directory / MANIFEST).unlink(missing_ok=True)  # uncommit first, then delete
        shutil.rmtree(directory, ignore_errors=True)
