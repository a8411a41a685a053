"""The on-disk cache of a prepared data set: one ``.npz`` per split plus ``manifest.json``.

Layout of a cache folder::

    train.npz  validation.npz  test.npz   # inputs, outputs, controls, lengths, sources
    manifest.json                          # what was converted, how, from which files; checksums

Every file is written atomically (temp file, fsync, rename), the manifest last: a run killed
half-way leaves either the previous cache or a new one, and a split file that does not match
its checksum in the manifest (corrupt, truncated, replaced) is detected.
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

from hvae.errors import HvaeError

MANIFEST = "manifest.json"
FORMAT = 1  # bump when the layout changes; older caches are then rebuilt
TEMP_PREFIX = ".hvae-tmp-"
FILE_MODE = 0o644  # cache files are readable by all, like any other written file


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
        os.chmod(tmp, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
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
    text = json.dumps(manifest, indent=1, default=repr) + "\n"
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
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CacheError(f"{path} is unreadable ({type(exc).__name__}); run 'hvae data prepare' again.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CacheError(f"{path} is not a format-{FORMAT} hvae manifest; run 'hvae data prepare' again.")
    return manifest


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
