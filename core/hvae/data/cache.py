"""The on-disk cache of a prepared data set: one ``.npz`` per split plus ``manifest.json``.

Layout of a cache folder::

    train.npz  validation.npz  test.npz   # inputs, outputs, controls, lengths, sources
    manifest.json                          # what was converted, how, from which files; checksums

Every file is written atomically (temp file, fsync, rename), the manifest last: a run killed
half-way leaves either the previous cache or a new one, and a split file that does not match
its checksum in the manifest (corrupt, truncated, replaced) is detected. The manifest carries
its own checksum and is checked against its schema (types, ranges, split files that are plain
names in the cache folder) before anything reads it: a damaged one is a cache to rebuild.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from hvae.data.splits import SPLITS
from hvae.errors import HvaeError
from hvae.safefiles import read_plain_file, shared_mode

MANIFEST = "manifest.json"
FORMAT = 2  # bump when the layout changes; older caches are then rebuilt (2: the manifest's own checksum)
MANIFEST_LIMIT = 1 << 30  # bytes of manifest.json read at most (a million files' records are ~300 MB)
SELF_HASH = "manifest_sha256"  # the manifest's checksum of its other keys, canonically written
STATUSES = ("converted", "unreadable", "unusable", "failed")  # a file's outcome (hvae.data.convert)
TEMP_PREFIX = ".hvae-tmp-"


class CacheError(HvaeError):
    """A data cache that is missing, unreadable, corrupt or of another format."""


def json_normal(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=repr))


def options_dict(options: Any) -> dict[str, Any]:
    """Converter options (a dataclass or a mapping) as JSON-ready data."""
    if dataclasses.is_dataclass(options):
        options = dataclasses.asdict(options)
    return json_normal(dict(options))


def cache_root() -> Path:
    """Where default caches live: ``$HVAE_CACHE``, else ``$XDG_CACHE_HOME/hvae``, else ``~/.cache/hvae``."""
    if os.environ.get("HVAE_CACHE"):
        return Path(os.environ["HVAE_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "hvae"


def default_cache_dir(data_dir: str | os.PathLike, converter_name: str, options: Any) -> Path:
    """The cache folder for one data folder, converter and options: ``<cache root>/<name>-<hash>``.

    ``options`` is the converter's full options (``converter.options``, a dataclass, or a
    mapping); the hash covers the data folder's absolute path, the converter name and the
    options, so each combination has its own cache. The root is :func:`cache_root`.
    """
    key = json.dumps({"data": str(Path(data_dir).expanduser().resolve()), "converter": converter_name,
                      "options": options_dict(options)}, sort_keys=True)
    return cache_root() / f"{converter_name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def file_digest(path: Path) -> str:
    """SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write) -> None:
    """Call ``write(binary file)`` on a temp file beside ``path``, fsync, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            os.chmod(tmp, shared_mode())  # as the umask gives any new file (mkstemp's is owner-only)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Write ``arrays`` as an uncompressed ``.npz`` atomically; returns its size and checksum."""
    _atomic_write(path, lambda f: np.savez(f, **arrays))
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": file_digest(path)}


def write_manifest(cache_dir: Path, manifest: Mapping[str, Any]) -> None:
    manifest = json_normal(manifest)
    manifest[SELF_HASH] = _self_hash(manifest)
    text = json.dumps(manifest, indent=1) + "\n"
    _atomic_write(cache_dir / MANIFEST, lambda f: f.write(text.encode("utf-8")))


def remove_temp_files(cache_dir: Path) -> None:
    """Delete temp files a killed run left behind."""
    for leftover in cache_dir.glob(f"{TEMP_PREFIX}*"):
        leftover.unlink(missing_ok=True)


def read_manifest(cache_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a cache folder. Raises :class:`CacheError` when there is none or it is unreadable."""
    path = Path(cache_dir) / MANIFEST
    if not path.is_file():
        raise CacheError(f"{os.fspath(cache_dir)} is not an hvae data cache (no {MANIFEST}). "
                         f"Create one with 'hvae data prepare'.")
    try:
        manifest = json.loads(read_plain_file(path, MANIFEST_LIMIT).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CacheError(f"{path} is unreadable ({type(exc).__name__}); run 'hvae data prepare' again.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CacheError(f"{path} is not a format-{FORMAT} hvae manifest; run 'hvae data prepare' again.")
    if manifest.get(SELF_HASH) != _self_hash(manifest):
        raise CacheError(f"{path} does not match its own checksum (damaged); run 'hvae data prepare' again.")
    problem = _manifest_problem(manifest)
    if problem:
        raise CacheError(f"{path} is damaged: {problem}; run 'hvae data prepare' again.")
    return manifest


def _self_hash(manifest: Mapping[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != SELF_HASH}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _shape_problem(value: Any, schema: Mapping[str, Any], where: str) -> str | None:
    """Why the JSON object ``value`` does not have ``schema``'s keys, each passing its check, or None."""
    if not isinstance(value, dict):
        return f"{where} is not an object"
    for key, check in schema.items():
        if key not in value or not check(value[key]):
            return f"{where}{'.' if where else ''}{key} is missing or {str(value.get(key))[:40]!r}"
    return None


def _relative_posix(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and not value.startswith("/") and \
        ".." not in value.split("/") and "\0" not in value


_HEX64 = lambda v: isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)  # noqa: E731
_STR = lambda v: isinstance(v, str)  # noqa: E731
_NUMBER = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
_ENCODING = lambda v: _shape_problem(v, {"kind": _STR, "depth": _count}, "") is None  # noqa: E731
FILE_SCHEMA = {"path": _relative_posix, "bytes": lambda v: isinstance(v, int) and not isinstance(v, bool),
               "mtime_ns": lambda v: isinstance(v, int) and not isinstance(v, bool), "split": lambda v: v in SPLITS,
               "split_from": lambda v: v in ("table", "hash"), "status": lambda v: v in STATUSES, "reason": _STR,
               "windows": _count}
SPLIT_SCHEMA = {"bytes": _count, "sha256": _HEX64, "files": _count, "converted": _count, "windows": _count,
                "encodings": lambda v: isinstance(v, dict) and all(_ENCODING(v.get(k)) for k in
                                                                   ("inputs", "outputs", "controls"))}
MANIFEST_SCHEMA = {"hvae_version": _STR, "data_dir": _STR, "created": _STR,
                   "split_table": lambda v: v is None or isinstance(v, str), "workers": _count,
                   "converter": lambda v: isinstance(v, dict) and isinstance(v.get("name"), str) and
                   isinstance(v.get("options"), dict),
                   "timing": lambda v: isinstance(v, dict) and _NUMBER(v.get("total_s")),
                   "shard": lambda v: v is None or (isinstance(v, dict) and _count(v.get("index")) and
                                                    _count(v.get("count")) and v["index"] < v["count"]),
                   "files": lambda v: isinstance(v, list), "splits": lambda v: isinstance(v, dict)}


def _manifest_problem(manifest: Mapping[str, Any]) -> str | None:
    """What is wrong with a cache manifest's shape, or None."""
    problem = _shape_problem(manifest, MANIFEST_SCHEMA, "")
    if problem:
        return problem
    for index, record in enumerate(manifest["files"]):
        if not isinstance(record, dict) or set(record) != set(FILE_SCHEMA):
            return f"files[{index}] is not a file record"
        problem = _shape_problem(record, FILE_SCHEMA, f"files[{index}]")
        if problem:
            return problem
    for split in SPLITS:
        entry = manifest["splits"].get(split)
        problem = _shape_problem(entry, SPLIT_SCHEMA, f"splits.{split}")
        if problem:
            return problem
        if entry.get("file") != f"{split}.npz":
            return f"splits.{split}.file is {str(entry.get('file'))[:40]!r}, not {split}.npz"
        if entry["converted"] > entry["files"]:
            return f"splits.{split} has more converted files than files"
    return None


def split_file_problem(cache_dir: Path, entry: Mapping[str, Any]) -> str | None:
    """Why a split file does not match its manifest entry (missing, truncated, corrupt), or None."""
    path = cache_dir / entry["file"]
    if not path.is_file():
        return f"{entry['file']} is missing"
    size = path.stat().st_size
    if size != entry["bytes"]:
        return f"{entry['file']} is {size} bytes, {entry['bytes']} expected (truncated or replaced)"
    if file_digest(path) != entry["sha256"]:
        return f"{entry['file']} does not match its checksum (corrupt)"
    return None
