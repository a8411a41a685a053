"""Compact, exact storage of window arrays ``(N, T, D)``.

Three encodings, from most to least compact:

- ``onehot``: every step has at most one 1 and the rest 0 — stored as the index of the 1
  per step, ``(N, T)``, with -1 for an all-zero step. A 4-bar drums window (64 steps over
  512 classes) is 128 KB as float32 and 128 bytes this way.
- ``bits``: only zeros and ones (multi-hot rolls) — stored bit-packed, ``(N, T, ceil(D / 8))``.
- ``dense``: anything else (velocities, offsets) — float32, ``(N, T, D)``.

Decoding gives back exactly the float32 array that was encoded.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

ENCODINGS = ("onehot", "bits", "dense")  # most compact first


@dataclasses.dataclass(frozen=True)
class Encoded:
    """An ``(N, T, D)`` float32 array in one of :data:`ENCODINGS`."""

    kind: str  # one of ENCODINGS
    depth: int  # D
    data: np.ndarray  # onehot: (N, T) int16/int32; bits: (N, T, ceil(D/8)) uint8; dense: (N, T, D) float32

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def steps(self) -> int:
        return int(self.data.shape[1])


def _index_dtype(depth: int) -> type:
    return np.int16 if depth <= np.iinfo(np.int16).max else np.int32


def best_encoding(array: np.ndarray) -> str:
    """The most compact encoding that holds ``array`` exactly."""
    if array.size == 0:
        return "dense"
    if not np.all((array == 0) | (array == 1)):
        return "dense"
    return "onehot" if np.all(array.sum(axis=-1) <= 1) else "bits"


def encode_as(array: np.ndarray, kind: str) -> Encoded:
    """``array`` ``(N, T, D)`` in encoding ``kind``; it must fit (see :func:`best_encoding`)."""
    depth = int(array.shape[-1])
    if kind == "onehot":
        index = np.argmax(array, axis=-1).astype(_index_dtype(depth))
        index[array.max(axis=-1, initial=0) == 0] = -1
        return Encoded(kind, depth, index)
    if kind == "bits":
        return Encoded(kind, depth, np.packbits(array.astype(bool), axis=-1))
    if kind == "dense":
        return Encoded(kind, depth, np.ascontiguousarray(array, dtype=np.float32))
    raise ValueError(f"unknown encoding {kind!r}")


def encode(array: np.ndarray) -> Encoded:
    """``array`` ``(N, T, D)`` in its most compact exact encoding."""
    return encode_as(array, best_encoding(array))


def decode(encoded: Encoded, rows: slice | np.ndarray | Sequence[int] = slice(None)) -> np.ndarray:
    """Rows ``rows`` of the encoded array as float32 ``(B, T, D)``."""
    data = encoded.data[rows]
    if encoded.kind == "dense":
        return np.array(data, dtype=np.float32)
    if encoded.kind == "bits":
        return np.unpackbits(data, axis=-1, count=encoded.depth).astype(np.float32)
    out = np.zeros(data.shape + (encoded.depth,), dtype=np.float32)
    windows, steps = np.nonzero(data >= 0)
    out[windows, steps, data[windows, steps]] = 1.0
    return out


def concatenate(parts: Sequence[Encoded], steps: int, depth: int) -> Encoded:
    """Parts joined along N, in the least compact of their encodings; empty: ``(0, steps, depth)``."""
    if not parts:
        return Encoded("dense", depth, np.zeros((0, steps, depth), dtype=np.float32))
    kind = max((p.kind for p in parts), key=ENCODINGS.index)
    same = [p if p.kind == kind else encode_as(decode(p), kind) for p in parts]
    return Encoded(kind, depth, np.concatenate([p.data for p in same], axis=0))
