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

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from hvae.safefiles import foreign_entries, write_atomic
from hvae.errors import CheckpointError

MANIFEST = "weights_manifest.json"
CONFIG = "config.json"
SHARD_BYTES = 4 * 1024 * 1024  # TensorFlow.js's default shard size
SHARD = re.compile(r"group\d+-shard\d+of\d+(\.bin)?")  # TensorFlow.js's names of shard files
DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
QUANTIZED = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}


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


def read_js_folder(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every weight of a magenta.js checkpoint folder as a float32 (or integer) array, checked:
    shard paths inside the folder, byte counts exact, dtypes known."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    manifest = _read_json(manifest_path)
    if not isinstance(manifest, list):
        raise CheckpointError(f"{manifest_path} is not a weights manifest (a JSON list of groups).")
    variables: dict[str, np.ndarray] = {}
    for number, group in enumerate(manifest):
        if not isinstance(group, dict) or not isinstance(group.get("paths"), list) \
                or not isinstance(group.get("weights"), list):
            raise CheckpointError(f"{manifest_path}: group {number} has no 'paths' and 'weights' lists.")
        data = b"".join(_read_shard(folder, path, manifest_path) for path in group["paths"])
        position = 0
        for weight in group["weights"]:
            name, array, size = _decode_weight(weight, data, position, manifest_path)
            if name in variables:
                raise CheckpointError(f"{manifest_path} lists weight {name} twice.")
            variables[name] = array
            position += size
        if position != len(data):
            raise CheckpointError(f"{manifest_path}: group {number}'s shards hold {len(data)} bytes; its weights "
                                  f"need {position}.")
    return variables


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not readable JSON ({exc}).") from None


def _read_shard(folder: Path, name: Any, manifest_path: Path) -> bytes:
    if not isinstance(name, str) or not name or os.path.isabs(name) or ".." in Path(name).parts:
        raise CheckpointError(f"{manifest_path} names shard {name!r}, which is not a file inside {folder}.")
    path = folder / name
    try:
        resolved = path.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        raise CheckpointError(f"Shard {path} named in {manifest_path} is missing.") from None
    if folder.resolve() not in resolved.parents:
        raise CheckpointError(f"{manifest_path} names shard {name!r}, which leads outside {folder}.")
    try:
        return resolved.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"Cannot read shard {path}: {exc.strerror or exc}.") from None


def _decode_weight(weight: Any, data: bytes, position: int, manifest_path: Path) -> tuple[str, np.ndarray, int]:
    if not isinstance(weight, dict) or not isinstance(weight.get("name"), str):
        raise CheckpointError(f"{manifest_path} has a weight entry without a name: {weight!r:.80}.")
    name, shape = weight["name"], weight.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise CheckpointError(f"{manifest_path}: weight {name} has no valid shape ({shape!r}).")
    dtype = weight.get("dtype", "float32")
    quantization = weight.get("quantization")
    count = int(np.prod(shape, dtype=np.int64))
    if quantization is not None:
        stored = quantization.get("dtype") if isinstance(quantization, dict) else None
        if stored not in QUANTIZED:
            raise CheckpointError(f"{manifest_path}: weight {name} is quantised as {stored!r}; hvae reads "
                                  f"{', '.join(QUANTIZED)}.")
        storage = np.dtype(QUANTIZED[stored]).newbyteorder("<")
    elif dtype in DTYPES:
        storage = np.dtype(DTYPES[dtype]).newbyteorder("<")
    else:
        raise CheckpointError(f"{manifest_path}: weight {name} has dtype {dtype!r}; hvae reads "
                              f"{', '.join(DTYPES)}.")
    size = count * storage.itemsize
    if position + size > len(data):
        raise CheckpointError(f"{manifest_path}: weight {name} {shape} needs bytes {position} to {position + size} "
                              f"of its group; the shards hold {len(data)}.")
    values = np.frombuffer(data, dtype=storage, count=count, offset=position).reshape(shape)
    if quantization is not None and storage.kind == "u":
        try:
            scale, minimum = float(quantization["scale"]), float(quantization["min"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{manifest_path}: weight {name} is quantised without a numeric scale "
                                  f"and min.") from None
        values = (values.astype(np.float32) * np.float32(scale) + np.float32(minimum)).astype(np.float32)
    elif storage.kind == "f":
        values = values.astype(np.float32)
    else:
        values = values.astype(storage.newbyteorder("="))
    return name, values, size


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
