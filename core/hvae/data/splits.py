"""Which MIDI files a data folder holds, and which split each one belongs to.

Files: every ``*.mid`` / ``*.midi`` (any case) under the data folder, recursively, in order
of their POSIX path relative to it. Entries that are not plain files (FIFOs, devices, dangling
links) are listed too, so that preparing names each one as skipped (without opening it); names
that are not UTF-8 are kept as the file system gives them (Python's surrogate escapes).

Splits, in this order of precedence:

1. The data set's own split table, found in the data folder or the nearest folder above it:
   the Groove MIDI Dataset's ``info.csv`` or MAESTRO's ``maestro-v3.0.0.csv``. Both map
   ``midi_filename`` (a path relative to the table's folder) to ``split``
   (``train``, ``validation`` or ``test``).
2. Any file the table does not list, and every file when there is no table, is split by a
   hash of its path relative to the table's folder (or to the data folder): the first eight
   hex digits of its SHA-256, modulo 10 — 0 to 7 train, 8 validation, 9 test (about
   80/10/10). The same file always lands in the same split, on any machine, and adding or
   removing files never moves another file.

Shards, for preparing a large corpus in parts (:class:`Shard`): a file belongs to shard
``int(sha256(relpath)[8:24], 16) % N`` of ``N``, from its POSIX path relative to the data folder
— other digits than the split's, so shards and hash splits are independent.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
from pathlib import Path

from hvae.errors import HvaeError

SPLITS = ("train", "validation", "test")
SPLIT_TABLES = ("info.csv", "maestro-v3.0.0.csv")
MIDI_SUFFIXES = (".mid", ".midi")


@dataclasses.dataclass(frozen=True)
class SplitTable:
    """A data set's own split assignment."""

    path: Path  # the csv file
    splits: dict[str, str]  # midi_filename (POSIX, relative to path.parent) -> split

    @property
    def root(self) -> Path:
        return self.path.parent


@dataclasses.dataclass(frozen=True)
class MidiFile:
    """One MIDI file found under the data folder."""

    path: Path  # absolute
    relpath: str  # POSIX path relative to the data folder
    size: int  # bytes (-1 when the entry cannot be read)
    mtime_ns: int  # modification time, nanoseconds since the epoch (-1 when unreadable)
    split: str  # one of SPLITS
    split_from: str  # "table" (the data set's csv) or "hash"


def _name_bytes(path: str) -> bytes:
    """A path as the bytes the file system holds (a name that is not UTF-8 arrives with surrogates)."""
    return path.encode("utf-8", "surrogateescape")


def hash_split(key: str) -> str:
    """The split of a file not listed in a split table, from its relative POSIX path."""
    bucket = int(hashlib.sha256(_name_bytes(key)).hexdigest()[:8], 16) % 10
    return "train" if bucket < 8 else ("validation" if bucket == 8 else "test")


@dataclasses.dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based, written ``K/N``): the files whose path hash picks it."""

    index: int  # 0 to count - 1
    count: int  # shards the data folder is split into

    def __post_init__(self) -> None:
        if self.count < 1:
            raise HvaeError(f"Shard {self}: the number of shards must be at least 1.")
        if not 0 <= self.index < self.count:
            raise HvaeError(f"Shard {self} does not exist: the shards of {self.count} are numbered 0/{self.count} "
                            f"to {self.count - 1}/{self.count}.")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"K/N"`` as a shard, e.g. ``"0/4"`` for the first of four."""
        index, slash, count = text.strip().partition("/")
        if not slash or not index.strip().isdigit() or not count.strip().isdigit():
            raise HvaeError(f"Shard {text!r} is not K/N, e.g. 0/4 for the first of four shards (K from 0 to N - 1).")
        return cls(int(index), int(count))

    def holds(self, relpath: str) -> bool:
        """Whether the file at ``relpath`` (POSIX, relative to the data folder) belongs to this shard."""
        return int(hashlib.sha256(_name_bytes(relpath)).hexdigest()[8:24], 16) % self.count == self.index

    def to_json(self) -> dict[str, int]:
        """As a manifest records it (a cache of every file records None)."""
        return {"index": self.index, "count": self.count}

    @classmethod
    def from_json(cls, data: dict[str, int] | None) -> "Shard | None":
        return None if data is None else cls(int(data["index"]), int(data["count"]))


def _read_split_table(path: Path) -> SplitTable | None:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"midi_filename", "split"} <= set(reader.fieldnames):
                return None
            rows = {Path(row["midi_filename"]).as_posix(): row["split"].strip().lower() for row in reader}
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return SplitTable(path, {name: split for name, split in rows.items() if split in SPLITS})


def find_split_table(data_dir: Path) -> SplitTable | None:
    """The split table in ``data_dir`` or the nearest folder above it, if any."""
    for folder in (data_dir, *data_dir.parents):
        for name in SPLIT_TABLES:
            candidate = folder / name
            if candidate.is_file():
                table = _read_split_table(candidate)
                if table is not None:
                    return table
    return None


def find_midi_files(data_dir: str | os.PathLike) -> tuple[list[MidiFile], SplitTable | None]:
    """Every MIDI file under ``data_dir`` with its split, and the split table used (if any).

    Raises :class:`HvaeError` when ``data_dir`` is not a folder.
    """
    root = Path(data_dir).expanduser().resolve()
    if not root.is_dir():
        raise HvaeError(f"Data folder {os.fspath(data_dir)!r} does not exist or is not a folder.")
    table = find_split_table(root)
    key_root = table.root if table is not None else root
    found: list[MidiFile] = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in filenames:
            if not filename.lower().endswith(MIDI_SUFFIXES):
                continue
            path = Path(folder) / filename
            try:
                stat = path.stat()
                size, mtime_ns = stat.st_size, stat.st_mtime_ns
            except OSError:  # a dangling link or an unreadable entry: kept, so its conversion says why
                size, mtime_ns = -1, -1
            key = path.relative_to(key_root).as_posix()
            listed = table.splits.get(key) if table is not None else None
            found.append(MidiFile(path=path, relpath=path.relative_to(root).as_posix(), size=size,
                                  mtime_ns=mtime_ns, split=listed or hash_split(key),
                                  split_from="table" if listed else "hash"))
    found.sort(key=lambda f: f.relpath)
    return found, table
