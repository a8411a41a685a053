"""magenta.js checkpoint folders: ``config.json``, ``weights_manifest.json`` and binary shards.

The manifest is TensorFlow.js's weights manifest: a list of groups, each with the shard files
(``paths``, relative to the folder) whose bytes, concatenated, hold the group's ``weights`` one
after another, each ``{name, shape, dtype}`` stored little-endian, or quantised: ``quantization:
{dtype: "uint8" | "uint16", scale, min}`` stores ``round((value - min) / scale)`` and reads back
``q * scale + min`` (Magenta's ``*_q2`` checkpoints), or ``{dtype: "float16"}``.

    variables = read_js_folder("drums_2bar_lokl_small")          # {name: float32 array}
    write_js_folder(out, variables, {"type": "MusicVAE", ...})   # float32 shards of <= 4 MB
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from hvae.errors import CheckpointError
from hvae.safefiles import foreign_entries, read_plain_file, write_atomic

MANIFEST = "weights_manifest.json"
CONFIG = "config.json"
SHARD_BYTES = 4 * 1024 * 1024  # TensorFlow.js's default shard size
SHARD = re.compile(r"group\d+-shard\d+of\d+(\.bin)?")  # TensorFlow.js's names of shard files
DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
QUANTIZED = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}
JSON_LIMIT = 4 << 20  # bytes of config.json or the manifest read at most (a released model's are a few kilobytes)
MAX_RANK = 8  # dimensions of a weight (MusicVAE's have 1 or 2)


def is_js_folder(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def unlike_js_folder(path: Path) -> str | None:
    """None for a folder holding a magenta.js checkpoint and nothing else (its config, manifest and
    shards); else what it holds instead."""
    if not is_js_folder(path):
        return f"it has no {MANIFEST}"
    return foreign_entries(path, lambda name: name in (CONFIG, MANIFEST) or bool(SHARD.fullmatch(name)))


def read_js_config(folder: Path) -> dict[str, Any]:
    """The folder's ``config.json`` (empty when it has none)."""
    path = folder / CONFIG
    if not path.exists():
        return {}
    config = _read_json(path)
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} is not a magenta.js model configuration (not a JSON object).")
    return config


@dataclasses.dataclass(frozen=True)
class _Weight:
    """One weight of a manifest, checked: where its values lie in its group's bytes, and how they are stored."""

    name: str
    shape: tuple[int, ...]
    storage: np.dtype  # as stored, little-endian
    scale: tuple[float, float] | None  # (scale, min) of a weight quantised to integers; None otherwise

    @property
    def bytes(self) -> int:
        return math.prod(self.shape) * self.storage.itemsize


def read_js_folder(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every weight of a magenta.js checkpoint folder as a float32 (or integer) array, checked before a
    shard is read: the manifest's entries (names, shapes, dtypes), shard paths inside the folder, and the
    bytes each group's weights need against the sizes of its shards."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    groups = [_check_group(folder, group, number, manifest_path)
              for number, group in enumerate(_read_manifest(manifest_path))]
    seen: set[str] = set()
    for weight in (weight for _, weights in groups for weight in weights):
        if weight.name in seen:
            raise CheckpointError(f"{manifest_path} lists weight {weight.name} twice.")
        seen.add(weight.name)
    variables: dict[str, np.ndarray] = {}
    for shards, weights in groups:
        data = b"".join(_read_shard(path, size) for path, size in shards)
        position = 0
        for weight in weights:
            variables[weight.name] = _decode(weight, data, position)
            position += weight.bytes
    return variables


def shard_names(folder: Path) -> set[str]:
    """The shard paths the folder's manifest names (whether they are files inside it is checked on reading)."""
    return {path for group in _read_manifest(folder / MANIFEST) for path in group["paths"] if isinstance(path, str)}


def _read_manifest(path: Path) -> list[dict[str, list]]:
    """The manifest's groups, each a JSON object with the lists 'paths' and 'weights'."""
    manifest = _read_json(path)
    if not isinstance(manifest, list):
        raise CheckpointError(f"{path} is not a weights manifest (a JSON list of groups).")
    for number, group in enumerate(manifest):
        if not isinstance(group, dict) or not isinstance(group.get("paths"), list) \
                or not isinstance(group.get("weights"), list):
            raise CheckpointError(f"{path}: group {number} has no 'paths' and 'weights' lists.")
    return manifest


def _read_json(path: Path) -> Any:
    try:
        return json.loads(read_plain_file(path, JSON_LIMIT).decode("utf-8"))
    except OSError as exc:
        raise CheckpointError(f"{path} is not readable JSON ({exc.strerror or exc}).") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not readable JSON ({exc}).") from None
    except RecursionError:
        raise CheckpointError(f"{path} is not readable JSON (nested too deeply).") from None


def _check_group(folder: Path, group: dict[str, list], number: int,
                 manifest_path: Path) -> tuple[list[tuple[Path, int]], list[_Weight]]:
    """A manifest's group checked: its shards (path, bytes) and its weights, whose bytes are those of the shards."""
    shards = [_shard(folder, path, manifest_path) for path in group["paths"]]
    weights = [_check_weight(weight, manifest_path) for weight in group["weights"]]
    held, needed = sum(size for _, size in shards), sum(weight.bytes for weight in weights)
    if held != needed:
        raise CheckpointError(f"{manifest_path}: group {number}'s shards hold {held:,} bytes; its weights "
                              f"need {needed:,}.")
    return shards, weights


def _shard(folder: Path, name: Any, manifest_path: Path) -> tuple[Path, int]:
    """A shard named in the manifest: its path inside ``folder`` and its size in bytes."""
    if not isinstance(name, str) or not name or os.path.isabs(name) or ".." in Path(name).parts:
        raise CheckpointError(f"{manifest_path} names shard {str(name)[:80]!r}, which is not a file inside {folder}.")
    path = folder / name
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise CheckpointError(f"Shard {path} named in {manifest_path} is missing.") from None
    if folder.resolve() not in resolved.parents:
        raise CheckpointError(f"{manifest_path} names shard {name!r}, which leads outside {folder}.")
    info = resolved.stat()
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"Shard {path} named in {manifest_path} is not a plain file.")
    return resolved, info.st_size


def _read_shard(path: Path, size: int) -> bytes:
    try:
        data = read_plain_file(path, size)
    except OSError as exc:
        raise CheckpointError(f"Cannot read shard {path}: {exc.strerror or exc}.") from None
    if len(data) != size:
        raise CheckpointError(f"Shard {path} changed while it was read.")
    return data


def _check_weight(weight: Any, manifest_path: Path) -> _Weight:
    """A manifest's weight entry checked field by field (nothing of it is used before)."""
    if not isinstance(weight, dict) or not isinstance(weight.get("name"), str):
        raise CheckpointError(f"{manifest_path} has a weight entry without a name: {str(weight)[:80]}.")
    name, shape = weight["name"][:200], weight.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_RANK or \
            not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise CheckpointError(f"{manifest_path}: weight {name} has no valid shape ({str(shape)[:80]}).")
    dtype, quantization = weight.get("dtype", "float32"), weight.get("quantization")
    if quantization is not None:
        stored = quantization.get("dtype") if isinstance(quantization, dict) else None
        if not isinstance(stored, str) or stored not in QUANTIZED:
            raise CheckpointError(f"{manifest_path}: weight {name} is quantised as {str(stored)[:40]!r}; hvae "
                                  f"reads {', '.join(QUANTIZED)}.")
        storage = np.dtype(QUANTIZED[stored]).newbyteorder("<")
    elif isinstance(dtype, str) and dtype in DTYPES:
        storage = np.dtype(DTYPES[dtype]).newbyteorder("<")
    else:
        raise CheckpointError(f"{manifest_path}: weight {name} has dtype {str(dtype)[:40]!r}; hvae reads "
                              f"{', '.join(DTYPES)}.")
    scale = None
    if quantization is not None and storage.kind == "u":
        scale = tuple(quantization.get(key) for key in ("scale", "min"))
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in scale):
            raise CheckpointError(f"{manifest_path}: weight {name} is quantised without a finite numeric scale "
                                  f"and min.")
    return _Weight(name, tuple(shape), storage, scale)


def _decode(weight: _Weight, data: bytes, position: int) -> np.ndarray:
    """The values of ``weight`` from its group's bytes (checked to be long enough)."""
    values = np.frombuffer(data, dtype=weight.storage, count=math.prod(weight.shape), offset=position)
    values = values.reshape(weight.shape)
    if weight.scale is not None:
        scale, minimum = weight.scale
        return (values.astype(np.float32) * np.float32(scale) + np.float32(minimum)).astype(np.float32)
    if weight.storage.kind == "f":
        return values.astype(np.float32)
    return values.astype(weight.storage.newbyteorder("="))


def write_js_folder(folder: str | os.PathLike, variables: Mapping[str, np.ndarray],
                    config: Mapping[str, Any]) -> list[Path]:
    """Write ``variables`` (float32) as one weights group in shards of at most 4 MB, its manifest and
    ``config``; returns the files written. The folder must not hold a checkpoint already."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = b"".join(np.ascontiguousarray(v, dtype="<f4").tobytes() for v in variables.values())
    shards = max(1, -(-len(data) // SHARD_BYTES))
    names = [f"group1-shard{i + 1}of{shards}" for i in range(shards)]
    written = []
    for i, name in enumerate(names):
        write_atomic(folder / name, data[i * SHARD_BYTES:(i + 1) * SHARD_BYTES])
        written.append(folder / name)
    manifest = [{"paths": names, "weights": [{"name": k, "shape": list(np.shape(v)), "dtype": "float32"}
                                             for k, v in variables.items()]}]
    write_atomic(folder / MANIFEST, json.dumps(manifest).encode())
    write_atomic(folder / CONFIG, (json.dumps(config, indent=2) + "\n").encode())
    return written + [folder / MANIFEST, folder / CONFIG]
