"""What the hostile-file tests share: manifests edited on purpose (their own checksum made to fit) and
damaged at random."""

from __future__ import annotations

import hashlib
import json
import random
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
