"""Checkpoints: safetensors for tensors, one JSON file for everything else, no pickle anywhere.

A checkpoint is a directory ``RUN_DIR/checkpoints/step-00000100/`` (the step, zero-padded to 8 digits;
more digits past 99,999,999) holding

- ``model.safetensors``      the model's state dict;
- ``optimizer.safetensors``  the optimiser's per-parameter tensors (Adam's moments and step counts);
- ``rng.safetensors``        the torch random-number generator states (CPU, and each CUDA device);
- ``checkpoint.json``        the commit marker, written last: step, the full model and training
                             configs, converter name and options, the plugins (and versions) that
                             provided each component, the optimiser's scalar settings, the
                             SHA-256 of each tensor file, and the SHA-256 of the JSON itself.

Each file is written to a temporary name, fsynced and renamed into place; the JSON comes last, so a
directory without it (a run killed mid-write) is not a checkpoint (:mod:`hvae.manifest`: the self-checksum,
the commit and its fsync policy, shared with the data caches). Reading checks every hash and the
JSON's shape (types, ranges, names that are plain file names) before using anything, and parsing
is safetensors' and json's only: loading a checkpoint never executes code.

Nothing is written through a symbolic link (:mod:`hvae.safefiles`). Pruning old checkpoints removes
only ``step-N`` folders whose manifest says the same run (``run_id``) wrote them, file by file
(the files the manifest lists), never a folder it does not recognise, nor anything through a link.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from hvae import manifest as manifests
from hvae.errors import CheckpointError, UnsafePathError
from hvae.manifest import SELF_HASH, is_count
from hvae.safefiles import ensure_dir, is_plain_name, read_plain_file, remove_leftovers, write_atomic

FORMAT = "hvae-checkpoint"
FORMAT_VERSION = 2  # 2: the manifest carries its own checksum; version 1 (without it) is still read
READABLE_VERSIONS = (1, 2)
CHECKPOINTS = "checkpoints"  # sub-directory of a run directory
MANIFEST = "checkpoint.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
JSON_LIMIT = 64 << 20  # bytes of checkpoint.json read at most (a real one is tens of kilobytes)
STEP_DIR = re.compile(r"step-([0-9]+)")  # any number of digits; new ones are padded to 8 (see step_dir_name)
MAX_STEP = 10 ** 12  # optimiser steps a checkpoint may record: years of training at thousands of steps a second
TENSOR_FILES = (MODEL_FILE, OPTIMIZER_FILE, RNG_FILE)
# What rebuilding a model or converter from JSON of the right shape, but with values its classes refuse, raises.
# Not AttributeError: that is a bug in a plugin's code, reported as a PluginError naming it (Registration.build)
REBUILD_ERRORS = (KeyError, TypeError, ValueError, RuntimeError, OverflowError)
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+, and torch.save's zip container


@contextlib.contextmanager
def rebuilding(path: str | os.PathLike) -> Iterator[None]:
    """Inside the block, what rebuilding from the checkpoint at ``path`` raises (:data:`REBUILD_ERRORS`)
    becomes a :class:`CheckpointError` naming it, in one line."""
    try:
        yield
    except REBUILD_ERRORS as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"Checkpoint {path} does not fit this hvae and its plugins: "
                              f"{type(exc).__name__}: {reason}") from None


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

    Returns the checkpoint directory. Older checkpoints of the same run (``checkpoint.meta["run_id"]``),
    and directories left uncommitted by a killed run, are removed only after the new one is committed.
    Raises :class:`hvae.errors.UnsafePathError` when ``checkpoints/`` or the step's folder is a link, or
    the step's folder holds another run's checkpoint.
    """
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    root = ensure_dir(Path(run_dir) / CHECKPOINTS)
    target = ensure_dir(root / step_dir_name(checkpoint.step))
    run_id = checkpoint.meta.get("run_id")
    if (target / MANIFEST).is_file() and _readable_run_id(target, run_id) is False:
        raise UnsafePathError(f"{target} holds a checkpoint of another run; hvae will not overwrite it. "
                              f"Move it out of {root}.")
    (target / MANIFEST).unlink(missing_ok=True)  # uncommitted while its files are replaced
    remove_leftovers(target, (MANIFEST, *TENSOR_FILES))
    files = {MODEL_FILE: _portable(checkpoint.model), RNG_FILE: dict(checkpoint.rng)}
    optimizer_json = None
    if checkpoint.optimizer is not None:
        files[OPTIMIZER_FILE], optimizer_json = _split_optimizer_state(checkpoint.optimizer)
    hashes = {}
    for name, tensors in files.items():
        data = save_tensors(tensors)
        write_atomic(target / name, data)
        hashes[name] = manifests.file_entry(data)
    manifests.commit(target, MANIFEST, {"format": FORMAT, "format_version": FORMAT_VERSION, "step": checkpoint.step,
                                        **checkpoint.meta, "optimizer": optimizer_json, "files": hashes}, indent=2)
    manifests.fsync_folder(root)  # the step's folder itself
    _prune(root, keep=keep, current=target, run_id=run_id)
    return target


def step_dir_name(step: int) -> str:
    """The folder name of the checkpoint at ``step``: ``step-`` and the step, zero-padded to 8 digits (more
    digits past 99,999,999; folders are ordered by the number, not the name)."""
    return f"step-{step:08d}"


def _step_of(directory: Path) -> int:
    return int(STEP_DIR.fullmatch(directory.name).group(1))


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Committed checkpoint directories of a run (``step-N`` folders, not links), oldest (lowest step) first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if STEP_DIR.fullmatch(p.name) and p.is_dir() and not p.is_symlink()
             and (p / MANIFEST).is_file()]
    return sorted(found, key=lambda p: (_step_of(p), p.name))


def unrecognised_checkpoints(run_dir: str | os.PathLike) -> list[str]:
    """Names of the folders in the run's ``checkpoints/`` that hold a manifest but are not named ``step-N``
    (renamed by hand, or written by something else): hvae reads none of them."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir() or root.is_symlink():
        return []
    return sorted(p.name for p in root.iterdir() if not STEP_DIR.fullmatch(p.name) and (p / MANIFEST).is_file())


def no_checkpoint_error(run_dir: str | os.PathLike) -> CheckpointError:
    """Why the run at ``run_dir`` has no checkpoint to read: none was written, or the ones there have names
    hvae does not recognise (which a fresh start must not silently pass over)."""
    strangers = unrecognised_checkpoints(run_dir)
    if strangers:
        more = f" (and {len(strangers) - 1} more)" if len(strangers) > 1 else ""
        return CheckpointError(f"{run_dir} holds {CHECKPOINTS}/{strangers[0]}{more} with a {MANIFEST}, but hvae "
                               f"reads only folders named step-N (N the step): rename it to step- and its step.")
    return CheckpointError(f"No checkpoint in {run_dir}: expected {CHECKPOINTS}/step-*/{MANIFEST} "
                           f"(a run killed before its first checkpoint leaves none).")


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
        raise no_checkpoint_error(path)
    return found[-1]


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON sidecar of the checkpoint meant by ``path`` (see :func:`find_checkpoint`), checked
    against its own checksum and the manifest's schema. Raises :class:`CheckpointError` otherwise."""
    directory = find_checkpoint(path)
    try:
        manifest = manifests.load(directory / MANIFEST, JSON_LIMIT)
    except manifests.READ_ERRORS as exc:
        raise CheckpointError(f"Corrupt checkpoint {directory}: {MANIFEST} is not readable JSON "
                              f"({type(exc).__name__}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{directory / MANIFEST} is not an hvae checkpoint manifest.")
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise CheckpointError(f"{directory} has checkpoint format version {version!r}; this hvae reads versions "
                              f"{', '.join(map(str, READABLE_VERSIONS))}.")
    if version >= 2 and not manifests.is_intact(manifest):
        raise CheckpointError(f"Corrupt checkpoint {directory}: {MANIFEST} does not match its own checksum "
                              f"(altered or damaged).")
    problem = _manifest_problem(directory, manifest)
    if problem:
        raise CheckpointError(f"Corrupt checkpoint {directory}: {MANIFEST} {problem}.")
    return manifest


_OBJECTS = ("run", "model", "plugins", "lr_schedule", "grad_scaler", "metrics", "metrics_log", "interval")


def _manifest_problem(directory: Path, manifest: dict[str, Any]) -> str | None:
    """What is wrong with a manifest's shape, or None: types, ranges and names (see read_manifest)."""
    step = manifest.get("step")
    if not is_count(step) or step > MAX_STEP:
        return f"has no step count from 0 to {MAX_STEP:,} (step {step!r})"
    if STEP_DIR.fullmatch(directory.name) and _step_of(directory) != step:
        return f"says step {step}, not the step of its folder"
    files = manifest.get("files")
    if not isinstance(files, dict) or not {MODEL_FILE, RNG_FILE} <= set(files) or not set(files) <= set(TENSOR_FILES):
        return "does not list the model and rng files (and nothing else)"
    for name, entry in files.items():
        if not manifests.is_file_entry(entry):
            return f"has no size and SHA-256 for {name}"
    optimizer = manifest.get("optimizer")
    if optimizer is not None:
        if OPTIMIZER_FILE not in files or not isinstance(optimizer, dict) or \
                not isinstance(optimizer.get("param_groups"), list) or \
                not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in optimizer["param_groups"]) \
                or not isinstance(optimizer.get("scalars", {}), dict) or \
                not all(isinstance(v, dict) for v in optimizer.get("scalars", {}).values()):
            return "has an optimiser state of the wrong shape"
    if "name" in manifest and not is_plain_name(manifest["name"]):
        return (f"names the run {manifest['name'][:40]!r}, which is not a plain file name "
                f"(at most 100 characters, no / or control characters)" if isinstance(manifest["name"], str)
                else "has a run name that is not a string")
    if "run_id" in manifest and not (isinstance(manifest["run_id"], str) and re.fullmatch(r"[0-9a-f]{1,64}",
                                                                                          manifest["run_id"])):
        return "has a run id that is not hexadecimal"
    for key in _OBJECTS:
        if manifest.get(key) is not None and not isinstance(manifest[key], dict):
            return f"has {key} that is neither a JSON object nor null"
    return None


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
            if k not in ("format", "format_version", "step", "optimizer", "files", SELF_HASH)}
    return Checkpoint(step=int(manifest["step"]), model=model, optimizer=optimizer, rng=rng, meta=meta,
                      path=directory)


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
        data = read_plain_file(directory / name, expected["bytes"])
    except OSError as exc:
        raise CheckpointError(f"Corrupt checkpoint {directory}: cannot read {name} ({exc.strerror}).") from None
    if not manifests.matches(data, expected):
        raise CheckpointError(f"Corrupt checkpoint {directory}: {name} is {len(data)} bytes and does not match "
                              f"the {expected['bytes']} bytes recorded in {MANIFEST} (truncated or altered).")
    try:
        return load_tensors(data)
    except Exception as exc:  # safetensors raises its own error type for every malformed file
        raise CheckpointError(f"Corrupt checkpoint {directory}: {name} is not a safetensors file ({exc}).") from None


def _readable_run_id(directory: Path, run_id: str | None) -> bool | None:
    """Whether the committed checkpoint in ``directory`` was written by run ``run_id``; None when its
    manifest does not read (damaged: not recognised, so never removed)."""
    try:
        return read_manifest(directory).get("run_id") == run_id
    except CheckpointError:
        return None


def _remove_checkpoint(directory: Path, names: Any) -> None:
    """Uncommit (the manifest first), then remove hvae's own files and the folder if nothing else is left."""
    (directory / MANIFEST).unlink(missing_ok=True)
    for name in names:
        if name in TENSOR_FILES:
            (directory / name).unlink(missing_ok=True)
    remove_leftovers(directory, (MANIFEST, *TENSOR_FILES))
    try:
        directory.rmdir()
    except OSError:  # something hvae did not write is in it: leave it
        pass


def _prune(root: Path, keep: int, current: Path, run_id: str | None) -> None:
    """Remove this run's committed checkpoints but the newest ``keep``, and its uncommitted leftovers:
    ``step-N`` folders (not links) holding only files hvae writes. Nothing else is touched."""
    committed = list_checkpoints(root.parent)
    for directory in committed[:-keep]:
        if directory != current and _readable_run_id(directory, run_id):
            _remove_checkpoint(directory, read_manifest(directory)["files"])
    ours = set(TENSOR_FILES)
    for directory in root.iterdir():
        if directory in committed or directory == current or not STEP_DIR.fullmatch(directory.name) or \
                directory.is_symlink() or not directory.is_dir():
            continue
        names = [entry.name for entry in directory.iterdir()]
        if all(name in ours or re.fullmatch(r"\.[a-z.]+\.tmp-[0-9]+", name) for name in names):
            _remove_checkpoint(directory, names)
