"""Reading a prepared split back: :func:`load_split` and the :class:`WindowSet` it returns.

The arrays stay in their compact encoding (:mod:`hvae.data.encoding`) and are decoded to
float32 only for the rows asked for, so a whole data set fits in memory.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from hvae.data import cache
from hvae.data.encoding import ENCODINGS, Encoded, decode
from hvae.data.splits import SPLITS
from hvae.errors import HvaeError
from hvae.interfaces import Example


class WindowArray:
    """An ``(N, T, D)`` float32 array kept encoded; indexing the first axis decodes those rows.

    ``array[i]`` is ``(T, D)``; ``array[a:b]`` or ``array[[i, j]]`` is ``(B, T, D)``;
    ``np.asarray(array)`` decodes everything. ``encoded`` gives the compact form itself,
    e.g. the class indices of one-hot outputs (``encoded.kind == "onehot"``).
    """

    def __init__(self, encoded: Encoded):
        self.encoded = encoded

    def __len__(self) -> int:
        return len(self.encoded)

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.encoded), self.encoded.steps, self.encoded.depth

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def __getitem__(self, index: int | slice | np.ndarray | list) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return decode(self.encoded, [int(index)])[0]
        return decode(self.encoded, index)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        array = decode(self.encoded)
        return array if dtype is None else array.astype(dtype)

    def __repr__(self) -> str:
        return f"WindowArray(shape={self.shape}, encoding={self.encoded.kind!r})"


@dataclasses.dataclass(frozen=True)
class WindowSet:
    """The windows of one split: ``inputs``, ``outputs``, ``controls`` ``(N, T, D)``, ``lengths`` ``(N,)``.

    ``sources[i]`` is the index in ``files`` of the MIDI file window ``i`` came from.
    """

    split: str
    inputs: WindowArray  # (N, T, input_depth)
    outputs: WindowArray  # (N, T, output_depth)
    controls: WindowArray  # (N, T, control_depth)
    lengths: np.ndarray  # (N,) int32, steps used
    sources: np.ndarray  # (N,) int32, index into files
    files: tuple[str, ...]  # every file of the data folder, POSIX paths relative to it
    converter: Mapping[str, Any]  # name, options, depths, steps and output_kind it was built with

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> Example:
        return Example(self.inputs[index], self.outputs[index], self.controls[index], int(self.lengths[index]))

    def source(self, index: int) -> str:
        """The path (relative to the data folder) of the file window ``index`` came from."""
        return self.files[int(self.sources[index])]

    def as_tensors(self) -> dict[str, torch.Tensor]:
        """Everything decoded: ``inputs``/``outputs``/``controls`` float32 ``(N, T, D)``, ``lengths`` int64 ``(N,)``."""
        return {"inputs": torch.from_numpy(np.asarray(self.inputs)),
                "outputs": torch.from_numpy(np.asarray(self.outputs)),
                "controls": torch.from_numpy(np.asarray(self.controls)),
                "lengths": torch.from_numpy(self.lengths.astype(np.int64))}

    def dataset(self) -> WindowDataset:
        """A ``torch.utils.data.Dataset`` view, decoding one window at a time."""
        return WindowDataset(self)


class WindowDataset(torch.utils.data.Dataset):
    """Items are dicts of tensors: inputs, outputs, controls ``(T, D)`` and lengths (a 0-d int64)."""

    def __init__(self, windows: WindowSet):
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        w = self.windows
        return {"inputs": torch.from_numpy(w.inputs[index]), "outputs": torch.from_numpy(w.outputs[index]),
                "controls": torch.from_numpy(w.controls[index]),
                "lengths": torch.tensor(int(w.lengths[index]), dtype=torch.int64)}


def load_split(cache_dir: str | os.PathLike, split: str, verify: bool = True) -> WindowSet:
    """One split of a cache written by :func:`hvae.data.prepare_dataset`.

    With ``verify`` the split file is checked against the manifest's checksum first.
    Raises :class:`hvae.data.CacheError` for a missing, stale-format or corrupt cache.
    """
    if split not in SPLITS:
        raise HvaeError(f"Unknown split {split!r}. Splits: {', '.join(SPLITS)}.")
    folder = Path(cache_dir)
    manifest = cache.read_manifest(folder)
    entry = manifest["splits"][split]
    if verify:
        problem = cache.split_file_problem(folder, entry)
        if problem:
            raise cache.CacheError(f"{folder}: {problem}. Run 'hvae data prepare' again to rebuild it.")
    try:
        with np.load(folder / entry["file"], allow_pickle=False) as data:
            arrays = {name: data[name] for name in ("inputs", "outputs", "controls", "lengths", "sources")}
    except (OSError, ValueError, KeyError) as exc:
        raise cache.CacheError(f"{folder / entry['file']} is unreadable ({type(exc).__name__}: {exc}). "
                               f"Run 'hvae data prepare' again to rebuild it.") from None
    encoded = {}
    for what in ("inputs", "outputs", "controls"):
        kind, depth = entry["encodings"][what]["kind"], entry["encodings"][what]["depth"]
        if kind not in ENCODINGS:
            raise cache.CacheError(f"{folder / entry['file']}: unknown encoding {kind!r} for {what}.")
        encoded[what] = WindowArray(Encoded(kind, depth, arrays[what]))
    return WindowSet(split=split, lengths=arrays["lengths"], sources=arrays["sources"],
                     files=tuple(f["path"] for f in manifest["files"]), converter=manifest["converter"],
                     **encoded)
