"""``merge_caches``: the caches of shards ``0/N`` to ``N-1/N`` joined into the cache of the whole folder.

Each shard is checked first — written by ``hvae data prepare --shard K/N`` with the same converter,
options and hvae version as the others, complete (its manifest, the commit point, is there) and
intact (its split files match their checksums) — and every shard of the ``N`` must be given once.
The merged cache holds every file's record and every window in the order one unsharded
``prepare_dataset`` writes them (files by path, windows in file order), so it is the same cache,
and ``prepare_dataset`` on the whole folder finds it up to date.
"""

from __future__ import annotations

import datetime
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from hvae.data import cache
from hvae.data.encoding import Encoded, concatenate
from hvae.data.prepare import FileRecord, PrepareReport, write_cache
from hvae.data.splits import SPLITS, Shard
from hvae.errors import HvaeError

SAME_IN_EVERY_SHARD = ("format", "hvae_version", "converter")  # manifest entries the shards must share
ENCODED = {"inputs": "input_depth", "outputs": "output_depth", "controls": "control_depth"}  # arrays stored
# encoded (see hvae.data.encoding), with the manifest's converter entry that gives their depth


def _read_shard(folder: Path) -> tuple[Shard, dict[str, Any]]:
    """A shard cache's shard and manifest, its split files verified."""
    try:
        manifest = cache.read_manifest(folder)
    except cache.CacheError:
        raise cache.CacheError(f"{folder} is not a finished shard (no readable {cache.MANIFEST}): run its "
                               f"'hvae data prepare --shard K/N' again; it converts only what is missing.") from None
    shard = Shard.from_json(manifest.get("shard"))
    if shard is None:
        raise HvaeError(f"{folder} holds a whole data folder, not a shard: give the folders written by "
                        f"'hvae data prepare --shard K/N'.")
    for split in SPLITS:
        problem = cache.split_file_problem(folder, manifest["splits"][split])
        if problem:
            raise cache.CacheError(f"Shard {shard} in {folder} is damaged: {problem}. Run 'hvae data prepare "
                                   f"--shard {shard}' with the same options again to rebuild it.")
    return shard, manifest


def _check_complete(shards: Sequence[tuple[Path, Shard, Mapping[str, Any]]]) -> None:
    """Every shard of the same N once, all built the same way."""
    counts = sorted({shard.count for _, shard, _ in shards})
    if len(counts) > 1:
        raise HvaeError(f"The shards split the folder in different numbers of parts ({', '.join(map(str, counts))}); "
                        f"give the shards of one split.")
    count = counts[0]
    seen: dict[int, Path] = {}
    for folder, shard, _ in shards:
        if shard.index in seen:
            raise HvaeError(f"Shard {shard} is given twice: {seen[shard.index]} and {folder}.")
        seen[shard.index] = folder
    missing = [f"{index}/{count}" for index in range(count) if index not in seen]
    if missing:
        raise HvaeError(f"Shard{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing: prepare "
                        f"{'each' if len(missing) > 1 else 'it'} with 'hvae data prepare --shard {missing[0]}' "
                        f"(and the options of the others), then merge all {count}.")
    first_folder, first_shard, first = shards[0]
    for folder, shard, manifest in shards[1:]:
        for entry in SAME_IN_EVERY_SHARD:
            if manifest.get(entry) != first.get(entry):
                raise HvaeError(f"Shard {shard} ({folder}) and shard {first_shard} ({first_folder}) were prepared "
                                f"differently ({entry} differs): prepare every shard with the same converter, "
                                f"options and hvae.")


def _load(folder: Path, entry: Mapping[str, Any]) -> dict[str, np.ndarray]:
    with np.load(folder / entry["file"], allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _merged_split(shards: Sequence[tuple[Path, Shard, Mapping[str, Any]]], split: str,
                  position: Mapping[str, int], converter: Mapping[str, Any]
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One split's arrays: the shards' windows, their sources renumbered, in the order of the files."""
    parts = []
    for folder, _, manifest in shards:
        entry = manifest["splits"][split]
        if entry["windows"]:
            arrays = _load(folder, entry)
            renumber = np.array([position[f["path"]] for f in manifest["files"]], dtype=np.int32)
            parts.append((arrays, renumber[arrays["sources"]], entry["encodings"]))
    sources = np.concatenate([p[1] for p in parts] or [np.zeros(0, np.int32)])
    order = np.argsort(sources, kind="stable")  # files by path; a file's windows keep their order
    arrays = {"lengths": np.concatenate([p[0]["lengths"] for p in parts] or [np.zeros(0, np.int32)])[order],
              "sources": sources[order]}
    encodings = {}
    for what, depth in ENCODED.items():
        joined = concatenate([Encoded(p[2][what]["kind"], p[2][what]["depth"], p[0][what]) for p in parts],
                             converter["steps"], converter[depth])
        arrays[what] = joined.data[order]
        encodings[what] = {"kind": joined.kind, "depth": joined.depth}
    return arrays, encodings


def merge_caches(out_dir: str | os.PathLike, shard_dirs: Sequence[str | os.PathLike]) -> PrepareReport:
    """Join the shard caches in ``shard_dirs`` (every shard of one ``--shard K/N`` split, in any order)
    into one cache in ``out_dir``, as one unsharded preparation of the folder would have written it.

    Raises :class:`HvaeError` for a missing, repeated, unfinished, damaged or differently prepared shard.
    """
    started = time.perf_counter()
    if not shard_dirs:
        raise HvaeError("No shard folders to merge.")
    folders = [Path(folder).expanduser().resolve() for folder in shard_dirs]
    shards = [(folder, *_read_shard(folder)) for folder in folders]
    _check_complete(shards)
    shards.sort(key=lambda s: s[1].index)
    records = sorted((FileRecord(**f) for _, _, m in shards for f in m["files"]), key=lambda r: r.path)
    position = {record.path: index for index, record in enumerate(records)}
    first = shards[0][2]
    timing = {name: round(sum(m["timing"][name] for _, _, m in shards), 3) for name in ("scan_s", "convert_s")}
    header = {
        **{k: first[k] for k in ("format", "hvae_version")}, "shard": None, "converter": first["converter"],
        "data_dir": first["data_dir"], "split_table": first["split_table"],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "workers": sum(m["workers"] for _, _, m in shards), "timing": timing,
        "totals": dict(sum((Counter(m["totals"]) for _, _, m in shards), Counter())),
        "merged_from": [{"shard": str(shard), "cache_dir": str(folder), "created": m["created"]}
                        for folder, shard, m in shards],
    }
    cache_dir = Path(out_dir).expanduser().resolve()
    try:
        manifest = write_cache(cache_dir, header, records,
                               lambda split: _merged_split(shards, split, position, first["converter"]))
    except OSError as exc:
        raise cache.CacheError(f"Cannot write the cache in {cache_dir}: {exc.strerror or exc}.") from None
    return PrepareReport.from_manifest(cache_dir, manifest, cached=False,
                                       rebuild_reason=f"merged {len(shards)} shards",
                                       seconds=time.perf_counter() - started)
