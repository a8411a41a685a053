"""What the hostile-file tests share: manifests edited on purpose (their own checksum made to fit) and
damaged at random, and the processes a command started (Linux: from /proc)."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Iterator


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
