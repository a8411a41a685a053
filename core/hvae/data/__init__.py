"""Data sets: MIDI folders converted once into a per-split cache of windows, and read back.

::

    import hvae
    from hvae.data import prepare_dataset, load_split, default_cache_dir

    conv = hvae.get_converter("drums", slice_bars=4)
    report = prepare_dataset(conv, "groove/", default_cache_dir("groove/", conv.name, conv.options))
    train = load_split(report.cache_dir, "train")      # WindowSet: len(train), train.inputs[:32], ...

Splits come from the data set's own table (GMD ``info.csv``, MAESTRO ``maestro-v3.0.0.csv``)
or a hash of each file's path; see :mod:`hvae.data.splits`. A large corpus can be prepared in
shards (``prepare_dataset(..., shard=Shard(k, n))``) joined by :func:`merge_caches`.
"""

from pathlib import Path

from hvae.data.cache import CacheError, cache_root, default_cache_dir, read_manifest
from hvae.data.merge import merge_caches
from hvae.data.prepare import FileRecord, PrepareReport, SplitSummary, prepare_dataset
from hvae.data.splits import SPLITS, Shard, find_midi_files, hash_split
from hvae.data.windows import WindowArray, WindowDataset, WindowSet, load_split

DEMO_DIR = Path(__file__).resolve().parents[1] / "demo" / "groove"  # the bundled 64-file GMD subset

__all__ = [
    "CacheError", "DEMO_DIR", "FileRecord", "PrepareReport", "SPLITS", "Shard", "SplitSummary", "WindowArray",
    "WindowDataset", "WindowSet", "cache_root", "default_cache_dir", "find_midi_files", "hash_split",
    "load_split", "merge_caches", "prepare_dataset", "read_manifest",
]
