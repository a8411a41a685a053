"""``prepare_dataset``: a folder of MIDI files, converted once into a per-split cache.

The cache is reused while it is up to date — same hvae and converter versions, same
converter options, same shard, same files (path, size, modification time, split) and split
files that match their checksums — and rebuilt otherwise, with the reason in the report.

A large corpus can be prepared in shards, on several machines or one after another: shard
``K/N`` converts the files :class:`hvae.data.splits.Shard` assigns it, into a cache of its own,
and :func:`hvae.data.merge.merge_caches` joins the shards into the cache one unsharded run
would have written.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

import hvae
from hvae.data import cache
from hvae.data.convert import CONVERTED, FileResult, convert_files, default_workers
from hvae.data.encoding import concatenate
from hvae.data.splits import SPLITS, MidiFile, Shard, find_midi_files
from hvae.errors import HvaeError
from hvae.interfaces import Converter
from hvae.plugins import Registration, registry


@dataclasses.dataclass(frozen=True)
class FileRecord:
    """One source file as the manifest records it."""

    path: str  # POSIX, relative to the data folder
    bytes: int
    mtime_ns: int
    split: str  # one of SPLITS
    split_from: str  # "table" or "hash"
    status: str  # converted, unreadable, unusable or failed
    reason: str  # why it was skipped; "" when converted
    windows: int

    @property
    def converted(self) -> bool:
        return self.status == CONVERTED


@dataclasses.dataclass(frozen=True)
class SplitSummary:
    """Totals of one split."""

    files: int  # MIDI files assigned to the split
    converted: int  # of which gave at least one window
    windows: int


@dataclasses.dataclass(frozen=True)
class PrepareReport:
    """What :func:`prepare_dataset` found or built (also read back from a cache's manifest)."""

    cache_dir: Path
    data_dir: Path  # absolute, as prepared
    converter: str  # registered name
    options: Mapping[str, Any]  # the converter's full options
    distribution: str | None  # the distribution that registered the converter
    version: str | None  # its version
    split_table: str | None  # path of the split table used, None when every split was hashed
    files: tuple[FileRecord, ...]
    splits: Mapping[str, SplitSummary]  # by split name, in SPLITS order
    conversion_seconds: float  # wall time of the run that built the cache (the shards' total when merged)
    workers: int  # processes that built it
    cached: bool  # True: the cache was already up to date and nothing was converted
    rebuild_reason: str | None  # why it was (re)built; None when cached
    seconds: float  # wall time of this call
    shard: Shard | None = None  # the shard of the data folder it holds; None: every file

    @property
    def windows(self) -> int:
        return sum(s.windows for s in self.splits.values())

    @property
    def converted(self) -> list[FileRecord]:
        return [f for f in self.files if f.converted]

    @property
    def skipped(self) -> list[FileRecord]:
        return [f for f in self.files if not f.converted]

    def skipped_by_reason(self) -> dict[str, list[str]]:
        """Skipped files' paths grouped by reason, the most frequent reason first."""
        groups: dict[str, list[str]] = {}
        for record in self.skipped:
            groups.setdefault(record.reason, []).append(record.path)
        return dict(sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])))

    @classmethod
    def from_manifest(cls, cache_dir: Path, manifest: Mapping[str, Any], cached: bool,
                      rebuild_reason: str | None, seconds: float) -> PrepareReport:
        converter = manifest["converter"]
        return cls(
            cache_dir=Path(cache_dir), data_dir=Path(manifest["data_dir"]), converter=converter["name"],
            options=converter["options"], distribution=converter["distribution"], version=converter["version"],
            split_table=manifest["split_table"], files=tuple(FileRecord(**f) for f in manifest["files"]),
            splits={name: SplitSummary(**{k: s[k] for k in ("files", "converted", "windows")})
                    for name, s in manifest["splits"].items()},
            conversion_seconds=manifest["timing"]["total_s"], workers=manifest["workers"], cached=cached,
            rebuild_reason=rebuild_reason, seconds=seconds, shard=Shard.from_json(manifest.get("shard")))


def _registration(converter: Converter) -> Registration:
    """The converter's registration; workers rebuild it by name, so it must be the registered class."""
    reg = registry().get("converters", converter.name)
    if reg.factory is not type(converter):
        raise HvaeError(f"Converter {converter.name!r} is a {type(converter).__qualname__}, but the name is "
                        f"registered to {reg.factory.__qualname__}; workers rebuild converters by name, so "
                        f"register the plugin that provides it (hvae.testing.registered_plugin in tests).")
    return reg


def cache_key(converter: Converter, shard: Shard | None = None) -> dict[str, Any]:
    """What a cache must have been built with to be reused: format, versions, converter, shard."""
    reg = _registration(converter)
    description = cache.json_normal(converter.describe())
    return {"format": cache.FORMAT, "hvae_version": hvae.__version__,
            "shard": None if shard is None else shard.to_json(),
            "converter": {"name": converter.name, "options": cache.options_dict(converter.options),
                          "distribution": reg.distribution, "version": reg.version,
                          **{k: description[k] for k in ("output_kind", "steps", "input_depth", "output_depth",
                                                         "control_depth")}}}


def _file_identity(f: Mapping[str, Any]) -> tuple:
    return f["path"], f["bytes"], f["mtime_ns"], f["split"]


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                     if old.get(k) != new.get(k))


def _why(exc: cache.CacheError) -> str:
    """The part of a manifest's CacheError that says what is wrong with it (after its path)."""
    return str(exc).split(f"{cache.MANIFEST} ", 1)[-1].split("; run 'hvae data prepare' again")[0]


def _stale_reason(cache_dir: Path, key: Mapping[str, Any], files: Sequence[MidiFile]) -> str | None:
    """Why the cache in ``cache_dir`` cannot be reused, or None when it is up to date."""
    if not (cache_dir / cache.MANIFEST).exists():
        return "no cache yet"
    try:
        manifest = cache.read_manifest(cache_dir)
    except cache.CacheError as exc:
        return f"{cache.MANIFEST} {_why(exc)}"
    if manifest.get("hvae_version") != key["hvae_version"]:
        return f"hvae version changed ({manifest.get('hvae_version')} -> {key['hvae_version']})"
    old, new = manifest.get("converter", {}), key["converter"]
    if old.get("name") != new["name"]:
        return f"converter changed ({old.get('name')} -> {new['name']})"
    if old.get("options") != new["options"]:
        return f"converter options changed: {_changes(old.get('options') or {}, new['options'])}"
    if old != new:
        return f"converter changed: {_changes(old, new)}"
    if manifest.get("shard") != key["shard"]:
        before, after = (Shard.from_json(k) or "every file" for k in (manifest.get("shard"), key["shard"]))
        return f"shard changed ({before} -> {after})"
    before = {_file_identity(f) for f in manifest.get("files", [])}
    now = {(f.relpath, f.size, f.mtime_ns, f.split) for f in files}
    if before != now:
        old_paths, new_paths = {f[0] for f in before}, {f[0] for f in now}
        added, removed = len(new_paths - old_paths), len(old_paths - new_paths)
        changed = len({f[0] for f in now - before} & old_paths)
        return f"MIDI files changed ({added} added, {removed} removed, {changed} modified or moved to another split)"
    for split in SPLITS:
        entry = manifest.get("splits", {}).get(split)
        problem = cache.split_file_problem(cache_dir, entry) if entry else f"{split}.npz is not in the manifest"
        if problem:
            return problem
    return None


def _split_arrays(converter: Converter, results: Sequence[FileResult], files: Sequence[MidiFile],
                  split: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays of one split's ``.npz`` and the encodings used."""
    mine = [r for r in results if r.status == CONVERTED and files[r.index].split == split]
    steps = converter.steps
    arrays: dict[str, np.ndarray] = {}
    encodings: dict[str, Any] = {}
    for what, depth in (("inputs", converter.input_depth), ("outputs", converter.output_depth),
                        ("controls", converter.control_depth)):
        joined = concatenate([getattr(r, what) for r in mine], steps, depth)
        arrays[what] = joined.data
        encodings[what] = {"kind": joined.kind, "depth": joined.depth}
    arrays["lengths"] = np.concatenate([r.lengths for r in mine] or [np.zeros(0, np.int32)]).astype(np.int32)
    arrays["sources"] = np.concatenate(
        [np.full(r.windows, r.index, dtype=np.int32) for r in mine] or [np.zeros(0, np.int32)])
    return arrays, encodings


def write_cache(cache_dir: Path, header: Mapping[str, Any], records: Sequence[FileRecord],
                arrays: Callable[[str], tuple[dict[str, np.ndarray], dict[str, Any]]]) -> dict[str, Any]:
    """Write each split's file (``arrays(split)``: its arrays and their encodings), then the manifest
    (the commit point: ``header`` plus splits, the file records and the time spent writing); returns it."""
    writing = time.perf_counter()
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache.remove_temp_files(cache_dir)
    splits: dict[str, Any] = {}
    for split in SPLITS:
        split_arrays, encodings = arrays(split)
        entry = cache.write_arrays(cache_dir / f"{split}.npz", split_arrays)
        in_split = [r for r in records if r.split == split]
        splits[split] = {**entry, "files": len(in_split), "converted": sum(r.converted for r in in_split),
                         "windows": int(len(split_arrays["lengths"])), "encodings": encodings}
    timing = dict(header["timing"])
    timing["write_s"] = round(time.perf_counter() - writing, 3)
    timing["total_s"] = round(timing["scan_s"] + timing["convert_s"] + timing["write_s"], 3)
    manifest = {**header, "timing": timing, "splits": splits, "files": [dataclasses.asdict(r) for r in records]}
    cache.write_manifest(cache_dir, manifest)
    return manifest


def prepare_dataset(converter: Converter, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                    workers: int | None = None, progress: bool = True, force: bool = False,
                    shard: Shard | None = None) -> PrepareReport:
    """Convert every MIDI file under ``data_dir`` with ``converter`` into a cache in ``out_dir``
    (with ``shard``, only the files of that shard).

    Splits follow the data set's own table or a path hash (see :mod:`hvae.data.splits`).
    ``workers`` processes convert (default: the CPUs available; 1 converts in this process);
    files that cannot be converted are skipped and recorded with their reason. Returns at
    once, with ``report.cached`` set, when the cache is already up to date, unless ``force``.

    Raises :class:`HvaeError` when ``data_dir`` holds no MIDI file or the converter is not
    registered.
    """
    started = time.perf_counter()
    files, table = find_midi_files(data_dir)
    if not files:
        raise HvaeError(f"No MIDI files (*.mid, *.midi) under {os.fspath(data_dir)}.")
    if shard is not None:
        files = [f for f in files if shard.holds(f.relpath)]
    cache_dir = Path(out_dir).expanduser().resolve()
    key = cache_key(converter, shard)
    reason = "forced" if force else _stale_reason(cache_dir, key, files)
    if reason is None:
        return PrepareReport.from_manifest(cache_dir, cache.read_manifest(cache_dir), cached=True,
                                           rebuild_reason=None, seconds=time.perf_counter() - started)
    scanned = time.perf_counter()
    workers = max(1, min(workers or default_workers(), len(files)))
    results = convert_files(converter, [os.fspath(f.path) for f in files], workers, progress=progress)
    header = {
        **key,
        "data_dir": str(Path(data_dir).expanduser().resolve()),
        "split_table": str(table.path) if table is not None else None,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "workers": workers,
        "timing": {"scan_s": round(scanned - started, 3), "convert_s": round(time.perf_counter() - scanned, 3)},
        "totals": dict(Counter(r.status for r in results)),
    }
    records = [FileRecord(f.relpath, f.size, f.mtime_ns, f.split, f.split_from, r.status, r.reason, r.windows)
               for f, r in zip(files, results)]
    try:
        manifest = write_cache(cache_dir, header, records,
                               lambda split: _split_arrays(converter, results, files, split))
    except OSError as exc:
        raise cache.CacheError(f"Cannot write the cache in {cache_dir}: {exc.strerror or exc}.") from None
    return PrepareReport.from_manifest(cache_dir, manifest, cached=False, rebuild_reason=reason,
                                       seconds=time.perf_counter() - started)
