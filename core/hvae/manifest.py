"""Manifests: the JSON file that commits a folder of files hvae wrote, and checks them when read back.

A checkpoint (``checkpoint.json``, :mod:`hvae.checkpoint`) and a data cache (``manifest.json``,
:mod:`hvae.data.cache`) are each a folder of data files and one manifest that lists them with their size
and SHA-256. The manifest is written last, so a folder without it (a process killed mid-write) is not
committed, and it carries a checksum of itself (``manifest_sha256``, over its other keys written
canonically), so a damaged or altered manifest is told from a good one before anything trusts it.

Durability: every file goes through :func:`hvae.safefiles.write_atomic` (a temporary file, fsynced and
renamed). :func:`commit` fsyncs the folder before the manifest is renamed in, so the data files' names
are on disk before a manifest can name them, and again after, so the commit itself is. A folder fsync
that fails raises, like a failed file fsync, because the files may then not be on disk, except where the
file system cannot fsync a folder at all (Windows cannot open one; some network file systems answer
EINVAL or ENOTSUP): there it is passed over, since renames there are as durable as they get. Either
way a torn commit is caught on reading, by the sizes and checksums.

What each manifest holds beyond that is its format's business; this module has the parts both share.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from hvae.safefiles import read_plain_file, write_atomic

SELF_HASH = "manifest_sha256"  # the manifest's checksum of itself (of its other keys, canonically written)
# What reading a manifest that is missing, too large, not UTF-8, not JSON or nested too deeply raises
READ_ERRORS = (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError)
# A folder fsync failing with these means the file system cannot fsync folders, not that data was lost
_NO_FOLDER_FSYNC = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF}


def is_count(value: Any) -> bool:
    """Whether a JSON value is a count: a whole number (not a bool), 0 or more."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_sha256(value: Any) -> bool:
    """Whether a JSON value is a SHA-256 hex digest: 64 lower-case hexadecimal digits."""
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def is_file_entry(value: Any) -> bool:
    """Whether a JSON value records a file as a manifest does: an object with its ``bytes`` and ``sha256``."""
    return isinstance(value, dict) and is_count(value.get("bytes")) and is_sha256(value.get("sha256"))


def file_entry(data: bytes) -> dict[str, Any]:
    """What a manifest records of a file holding ``data``: its SHA-256 and size in bytes."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of the file at ``path``, hex, read in blocks (for files too large to hold twice)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def matches(data: bytes, entry: Mapping[str, Any]) -> bool:
    """Whether ``data`` is the file ``entry`` (:func:`is_file_entry`) records: its size and checksum."""
    return len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"]


def self_hash(manifest: Mapping[str, Any]) -> str:
    """The checksum of a manifest's keys other than :data:`SELF_HASH`, written canonically (sorted, compact)."""
    body = {k: v for k, v in manifest.items() if k != SELF_HASH}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def is_intact(manifest: Mapping[str, Any]) -> bool:
    """Whether ``manifest`` matches the checksum of itself it carries."""
    return manifest.get(SELF_HASH) == self_hash(manifest)


def load(path: str | os.PathLike, limit: int) -> Any:
    """The JSON in the plain file ``path`` (at most ``limit`` bytes), not yet checked in any way.
    Raises one of :data:`READ_ERRORS`; each format words its own message."""
    return json.loads(read_plain_file(path, limit).decode("utf-8"))


def commit(folder: Path, name: str, manifest: Mapping[str, Any], *, indent: int) -> dict[str, Any]:
    """Write ``manifest``, with its own checksum added, as ``folder/name``: the commit point of the files
    in ``folder`` it lists (see the module's note on durability). Returns what was written."""
    signed = {k: v for k, v in manifest.items() if k != SELF_HASH}
    signed[SELF_HASH] = self_hash(signed)
    fsync_folder(folder)
    write_atomic(folder / name, (json.dumps(signed, indent=indent, sort_keys=True) + "\n").encode("utf-8"))
    fsync_folder(folder)
    return signed


def fsync_folder(folder: Path) -> None:
    """Make the names in ``folder`` (files renamed in, removed) durable; see the module's note on failures."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except PermissionError:
        if os.name == "nt":  # a folder cannot be opened on Windows: nothing to fsync
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_FOLDER_FSYNC:
            raise
    finally:
        os.close(fd)
