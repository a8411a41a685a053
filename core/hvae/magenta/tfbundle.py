"""Read TensorFlow checkpoints (the V2 "tensor bundle" format) without TensorFlow.

A checkpoint ``PREFIX`` is two kinds of file:

- ``PREFIX.index``: an SSTable (LevelDB's table format) whose keys are tensor names, in sorted
  order. Its footer (the last 48 bytes) holds the index block's handle and a magic number; the
  index block lists the data blocks; each block is a run of prefix-compressed key/value entries
  followed by restart offsets, and carries a 5-byte trailer (compression type, masked CRC-32C).
  The value of the empty key is a ``BundleHeaderProto`` (shard count, endianness, version); every
  other value is a ``BundleEntryProto``: dtype, shape, shard, offset, size and the masked CRC-32C
  of the tensor's bytes.
- ``PREFIX.data-SSSSS-of-NNNNN``: the tensors' raw bytes, one file per shard.

The two protocol-buffer messages are decoded here field by field (a varint reader is all they
need). Every size, offset and checksum is verified before a tensor is returned, so a truncated or
altered file is a :class:`~hvae.errors.CheckpointError` naming the file, never a wrong tensor.

    bundle = read_bundle("model.ckpt-4000")        # {name: TensorInfo}, nothing read yet
    array = bundle.read("encoder/mu/kernel")        # numpy array, checked
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
import struct
from pathlib import Path

import numpy as np

from hvae.errors import CheckpointError
from hvae.safefiles import read_plain_file

TABLE_MAGIC = 0xDB4775248B80FB57  # LevelDB table footer magic, little-endian fixed64
FOOTER_BYTES = 48
BLOCK_TRAILER_BYTES = 5  # compression type (1 byte) + masked CRC-32C (4 bytes)
NO_COMPRESSION = 0
CRC_MASK_DELTA = 0xA282EAD8
HEADER_KEY = b""
# TensorFlow's DataType enum values this reader knows, with their numpy types.
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64,
          10: np.bool_, 19: np.float16}
DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
               9: "int64", 10: "bool", 14: "bfloat16", 19: "float16", 20: "resource", 21: "variant"}
BFLOAT16 = 14
INDEX_LIMIT = 16 << 20  # bytes of PREFIX.index read at most (a released checkpoint's is a few kilobytes)


def masked_crc32c(data: bytes | memoryview) -> int:
    """CRC-32C of ``data``, masked as LevelDB and TensorFlow store it."""
    import google_crc32c

    crc = google_crc32c.value(bytes(data))
    return (((crc >> 15) | (crc << 17)) + CRC_MASK_DELTA) & 0xFFFFFFFF


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lies in the bundle."""

    name: str
    dtype: int  # TensorFlow's DataType enum value
    shape: tuple[int, ...]
    shard: int
    offset: int  # bytes into the shard's data file
    size: int  # bytes
    crc32c: int | None  # masked CRC-32C of the bytes; None when the entry has none

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES.get(self.dtype, f"DataType {self.dtype}")


@dataclasses.dataclass(frozen=True)
class Bundle:
    """A checkpoint's table of contents; :meth:`read` reads and checks one tensor."""

    prefix: Path
    tensors: dict[str, TensorInfo]
    shards: int

    def data_file(self, shard: int) -> Path:
        return self.prefix.with_name(f"{self.prefix.name}.data-{shard:05d}-of-{self.shards:05d}")

    def read(self, name: str) -> np.ndarray:
        """The tensor ``name`` as a numpy array (bfloat16 widened to float32), its bytes verified."""
        info = self.tensors[name]
        if info.dtype not in DTYPES and info.dtype != BFLOAT16:
            raise CheckpointError(f"{self.prefix}: variable {name} has dtype {info.dtype_name}, which hvae "
                                  f"cannot read (float, integer and bool tensors only).")
        path = self.data_file(info.shard)
        try:
            with open(path, "rb") as f:
                f.seek(info.offset)
                data = f.read(info.size)
        except OSError as exc:
            raise CheckpointError(f"Cannot read {path}: {exc.strerror or exc}.") from None
        if len(data) != info.size:
            raise CheckpointError(f"{path} is truncated: variable {name} needs bytes {info.offset} to "
                                  f"{info.offset + info.size}, the file ends at {info.offset + len(data)}.")
        if info.crc32c is not None and masked_crc32c(data) != info.crc32c:
            raise CheckpointError(f"{path}: the bytes of variable {name} do not match their checksum "
                                  f"(the file is corrupt or altered).")
        if info.dtype == BFLOAT16:
            widened = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
            return widened.view(np.float32).reshape(info.shape)
        dtype = np.dtype(DTYPES[info.dtype]).newbyteorder("<")
        return np.frombuffer(data, dtype=dtype).reshape(info.shape).astype(dtype.newbyteorder("="))


def read_bundle(prefix: str | os.PathLike) -> Bundle:
    """The table of contents of the checkpoint ``prefix`` (``PREFIX.index`` beside its data files).

    Raises :class:`CheckpointError` for a missing, truncated or foreign index, a checkpoint of an
    unsupported version or byte order, or a data file missing or too short for its tensors.
    """
    prefix = Path(prefix)
    index = prefix.with_name(prefix.name + ".index")
    try:
        table = read_plain_file(index, INDEX_LIMIT)
    except FileNotFoundError:
        raise CheckpointError(f"No TensorFlow checkpoint index {index}.") from None
    except OSError as exc:
        raise CheckpointError(f"Cannot read {index}: {exc.strerror or exc}.") from None
    entries = dict(_table_entries(table, index))
    if HEADER_KEY not in entries:
        raise CheckpointError(f"{index} has no bundle header: not a TensorFlow V2 checkpoint index.")
    shards = _check_header(_fields(entries.pop(HEADER_KEY), index), index)
    tensors = {}
    for key, value in entries.items():
        name = key.decode("utf-8", errors="replace")
        tensors[name] = _entry(name, _fields(value, index), index, shards)
    bundle = Bundle(prefix=prefix, tensors=tensors, shards=shards)
    _check_data_sizes(bundle)
    return bundle


def _check_header(fields: dict[int, list], index: Path) -> int:
    shards = _one(fields, 1, 1)
    endianness = _one(fields, 2, 0)
    if endianness != 0:
        raise CheckpointError(f"{index} is a big-endian checkpoint; hvae reads little-endian ones.")
    version = _fields(_one(fields, 3, b""), index) if 3 in fields else {}
    producer, min_consumer = _one(version, 1, 0), _one(version, 2, 0)
    if min_consumer > 1 or producer > 1:
        raise CheckpointError(f"{index} is tensor-bundle version {producer} (needs a reader of version "
                              f"{min_consumer}); hvae reads version 1.")
    if not 1 <= shards <= 100_000:
        raise CheckpointError(f"{index} claims {shards} data shards: not a readable checkpoint.")
    return shards


def _entry(name: str, fields: dict[int, list], index: Path, shards: int) -> TensorInfo:
    if 7 in fields:
        raise CheckpointError(f"{index}: variable {name} is stored in slices (a partitioned variable), "
                              f"which hvae does not read.")
    shape_fields = _fields(_one(fields, 2, b""), index)
    shape = []
    for dim in shape_fields.get(2, []):
        size = _one(_fields(dim, index), 1, 0)
        if size < 0:
            raise CheckpointError(f"{index}: variable {name} has an unknown dimension.")
        shape.append(size)
    shard = _one(fields, 3, 0)
    if not 0 <= shard < shards:
        raise CheckpointError(f"{index}: variable {name} lies in shard {shard} of {shards}.")
    crc = fields.get(6, [None])[-1]
    info = TensorInfo(name=name, dtype=_one(fields, 1, 0), shape=tuple(shape), shard=shard,
                      offset=_one(fields, 4, 0), size=_one(fields, 5, 0), crc32c=crc)
    if info.offset < 0 or info.size < 0:
        raise CheckpointError(f"{index}: variable {name} lies at a negative offset or size.")
    itemsize = _itemsize(info.dtype)
    if itemsize is not None and info.size != itemsize * math.prod(info.shape):
        raise CheckpointError(f"{index}: variable {name} holds {info.size:,} bytes; shape {list(info.shape)} of "
                              f"{info.dtype_name} needs {itemsize * math.prod(info.shape):,}.")
    return info


def _itemsize(dtype: int) -> int | None:
    """Bytes per value of a TensorFlow dtype this reader knows (bfloat16: 2); None for others."""
    if dtype == BFLOAT16:
        return 2
    return np.dtype(DTYPES[dtype]).itemsize if dtype in DTYPES else None


def _check_data_sizes(bundle: Bundle) -> None:
    """Every data file exists and is long enough for the tensors it should hold, which do not overlap (so
    reading them all reads each byte once: no more than the data files hold)."""
    needed: dict[int, tuple[int, str]] = {}
    for info in sorted(bundle.tensors.values(), key=lambda info: (info.shard, info.offset)):
        end, before = info.offset + info.size, needed.get(info.shard, (0, ""))
        if info.size and info.offset < before[0]:
            raise CheckpointError(f"{bundle.prefix}.index is corrupt: variables {before[1]} and {info.name} "
                                  f"share bytes of data file {info.shard}.")
        if end > before[0]:
            needed[info.shard] = (end, info.name)
    for shard, (end, name) in needed.items():
        path = bundle.data_file(shard)
        try:
            found = path.stat()
        except FileNotFoundError:
            raise CheckpointError(f"The checkpoint's data file {path} is missing.") from None
        if not stat.S_ISREG(found.st_mode):
            raise CheckpointError(f"The checkpoint's data file {path} is not a plain file.")
        size = found.st_size
        if size < end:
            raise CheckpointError(f"{path} is truncated: {size} bytes, but variable {name} ends at byte {end}.")


def _table_entries(table: bytes, index: Path):
    """The (key, value) entries of an SSTable held in ``table``, in key order."""
    if len(table) < FOOTER_BYTES:
        raise CheckpointError(f"{index} is truncated ({len(table)} bytes): not a TensorFlow checkpoint index.")
    footer = table[-FOOTER_BYTES:]
    if struct.unpack("<Q", footer[-8:])[0] != TABLE_MAGIC:
        raise CheckpointError(f"{index} is not a TensorFlow checkpoint index (no table magic number at its end).")
    position = 0
    for _ in range(2):  # the metaindex handle, then the index handle
        index_offset, position = _varint(footer, position, index)
        index_size, position = _varint(footer, position, index)
    for _, handle in _block_entries(_block(table, index_offset, index_size, index), index):
        offset, at = _varint(handle, 0, index)
        size, _ = _varint(handle, at, index)
        yield from _block_entries(_block(table, offset, size, index), index)


def _block(table: bytes, offset: int, size: int, index: Path) -> memoryview:
    end = offset + size + BLOCK_TRAILER_BYTES
    if offset < 0 or end > len(table) - FOOTER_BYTES:
        raise CheckpointError(f"{index} is truncated or corrupt: a block runs past the end of the file.")
    block = memoryview(table)[offset:offset + size]
    kind = table[offset + size]
    stored_crc = struct.unpack("<I", table[offset + size + 1:end])[0]
    if masked_crc32c(table[offset:offset + size + 1]) != stored_crc:
        raise CheckpointError(f"{index} is corrupt: a block does not match its checksum.")
    if kind != NO_COMPRESSION:
        raise CheckpointError(f"{index} uses block compression {kind}; TensorFlow checkpoints are uncompressed.")
    return block


def _block_entries(block: memoryview, index: Path):
    if len(block) < 4:
        raise CheckpointError(f"{index} is corrupt: a block is too short.")
    restarts = struct.unpack("<I", block[-4:])[0]
    end = len(block) - 4 - 4 * restarts
    if end < 0:
        raise CheckpointError(f"{index} is corrupt: a block's restart array does not fit in it.")
    position, key = 0, b""
    while position < end:
        shared, position = _varint(block, position, index)
        unshared, position = _varint(block, position, index)
        value_size, position = _varint(block, position, index)
        if shared > len(key) or position + unshared + value_size > end:
            raise CheckpointError(f"{index} is corrupt: a table entry runs past its block.")
        key = key[:shared] + bytes(block[position:position + unshared])
        position += unshared
        yield key, bytes(block[position:position + value_size])
        position += value_size


def _varint(data: bytes | memoryview, position: int, source: Path) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise CheckpointError(f"{source} is corrupt: a number runs past its record.")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def _fields(message: bytes, source: Path) -> dict[int, list]:
    """A protocol-buffer message as {field number: [values]}: varints as int, fixed32 as int,
    length-delimited fields as bytes (nested messages are decoded by the caller)."""
    fields: dict[int, list] = {}
    position = 0
    while position < len(message):
        tag, position = _varint(message, position, source)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, position = _varint(message, position, source)
            if value >= 1 << 63:  # a negative int64 / int32 on the wire
                value -= 1 << 64
        elif wire == 1 and position + 8 <= len(message):
            value, position = struct.unpack("<Q", message[position:position + 8])[0], position + 8
        elif wire == 2:
            size, position = _varint(message, position, source)
            value, position = bytes(message[position:position + size]), position + size
        elif wire == 5 and position + 4 <= len(message):
            value, position = struct.unpack("<I", message[position:position + 4])[0], position + 4
        else:
            raise CheckpointError(f"{source} is corrupt: a record of wire type {wire} does not fit its message.")
        if position > len(message):
            raise CheckpointError(f"{source} is corrupt: a record runs past its end.")
        fields.setdefault(number, []).append(value)
    return fields


def _one(fields: dict[int, list], number: int, default):
    return fields.get(number, [default])[-1]
