"""What the hostile-file tests share: manifests edited on purpose (their own checksum made to fit) and
damaged at random, the processes a command started (Linux: from /proc), and TensorFlow checkpoints written
field by field (:func:`write_bundle`), to say what a crafted one says; the peak memory of a command
(:func:`peak_mb`)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import numpy as np


def rehashed(manifest: dict) -> dict:
    """``manifest`` (a checkpoint's or a data cache's) with its ``manifest_sha256`` recomputed, as someone
    who edits it deliberately can: what is left to catch the edit is the schema."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return {**body, "manifest_sha256": digest}


def bit_flips(data: bytes, count: int, seed: int) -> Iterator[bytes]:
    """``count`` copies of ``data``, each with one bit flipped at a seeded random place."""
    chance = random.Random(seed)
    for _ in range(count):
        flipped = bytearray(data)
        flipped[chance.randrange(len(flipped))] ^= 1 << chance.randrange(8)
        yield bytes(flipped)


def children(pid: int) -> set[int]:
    """Live processes whose parent is ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    """One protocol-buffer field: a varint, or length-delimited bytes."""
    if isinstance(value, bytes):
        return _varint(number << 3 | 2) + _varint(len(value)) + value
    return _varint(number << 3) + _varint(value)


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    """An SSTable block: every key written whole (one restart point), then the restart array."""
    body = b"".join(_varint(0) + _varint(len(k)) + _varint(len(v)) + k + v for k, v in entries)
    return body + struct.pack("<II", 0, 1)


def write_bundle(prefix: Path, arrays: dict, crafted: dict | None = None) -> None:
    """A TensorFlow V2 checkpoint ``prefix`` (``.index`` and one data file) as TensorFlow writes it: ``arrays``
    ({name: numpy array}) stored one after another, and ``crafted`` entries ({name: (dtype enum, shape, offset,
    size)}) whose fields say whatever the test needs, without bytes of their own."""
    from hvae.magenta.tfbundle import DTYPES, TABLE_MAGIC, masked_crc32c

    codes = {np.dtype(v): k for k, v in DTYPES.items()}
    data, entries = bytearray(), {}
    for name, array in arrays.items():
        raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        entries[name] = (codes[array.dtype], array.shape, len(data), len(raw), masked_crc32c(raw))
        data += raw
    for name, (dtype, shape, offset, size) in (crafted or {}).items():
        entries[name] = (dtype, shape, offset, size, None)
    records = [(b"", _field(1, 1) + _field(2, 0) + _field(3, _field(1, 1)))]
    for name in sorted(entries):
        dtype, shape, offset, size, crc = entries[name]
        value = _field(1, dtype) + _field(2, b"".join(_field(2, _field(1, d)) for d in shape)) + \
            _field(3, 0) + _field(4, offset) + _field(5, size)
        records.append((name.encode(), value + (_varint(6 << 3 | 5) + struct.pack("<I", crc) if crc else b"")))
    table = bytearray()
    handles = []
    for block in (_block(records), _block([])):
        handles.append((len(table), len(block)))
        table += block + b"\0" + struct.pack("<I", masked_crc32c(block + b"\0"))
    index = _block([(records[-1][0], _varint(handles[0][0]) + _varint(handles[0][1]))])
    handles.append((len(table), len(index)))
    table += index + b"\0" + struct.pack("<I", masked_crc32c(index + b"\0"))
    footer = b"".join(_varint(n) for handle in (handles[1], handles[2]) for n in handle)
    table += footer.ljust(40, b"\0") + struct.pack("<Q", TABLE_MAGIC)
    prefix.with_name(prefix.name + ".index").write_bytes(bytes(table))
    prefix.with_name(prefix.name + ".data-00000-of-00001").write_bytes(bytes(data))


PEAK = """
import resource, subprocess, sys
subprocess.run([sys.executable, "-m", "hvae.cli", *sys.argv[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
"""
PEAK_LIMIT_MB = 500  # the whole process, torch included; see the figures in test_peak_memory_of_refused_imports


def peak_mb(*args: object) -> int:
    """The peak resident memory (MB) of ``hvae ARGS...`` run in a process of its own."""
    found = subprocess.run([sys.executable, "-c", PEAK, *map(str, args)], capture_output=True, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
    return int(found.stdout.split()[-1])
