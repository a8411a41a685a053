"""The chord-conditioned multi-instrument performance converter (option ``chord_encoding="triad"``, the
reference's hier-multiperf_vel_1bar_*_chords): the reference's windows and, per row, its chords.

Reference ``tests/data/multiperf/chords_reference.npz``, made by ``experiments/reference_multiperf.py --chords``
with the reference's own MultiInstrumentPerformanceConverter and TriadChordOneHotEncoding (chords inferred
by the reference; every window kept, in its order) at the three CHORD_SETTINGS of tests/multiperf_files.py,
on the real trio files (tests/data/trio/SOURCES.md) and the random files of tests/multitrack.py and
tests/multiperf_files.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hvae.errors import HvaeError
from hvae_converters import chords
from hvae_converters.multiperf import MultiperfConverter

import multiperf_files
import multitrack

REFERENCE = Path(__file__).parent / "data" / "multiperf" / "chords_reference.npz"
TRIO_FILES = sorted((Path(__file__).parent / "data" / "trio").glob("*.mid"))
REAL_WINDOWS, RANDOM_WINDOWS = 81, 1285  # the reference's windows of those files at the three settings


def rows(array: np.ndarray) -> np.ndarray:
    """Each row's class (-1: a padding row of zeros), ``(T,)``; every row one-hot or zero."""
    assert set(np.unique(array.sum(axis=1))) <= {0.0, 1.0}
    return np.where(array.sum(axis=1) == 1, array.argmax(axis=1), -1)


def compare(paths: list[Path], key) -> int:
    """Assert every file's windows, segment lengths and chord controls equal the reference's under every chord
    setting; the windows compared."""
    reference = np.load(REFERENCE)
    compared = 0
    for name, options in multiperf_files.CHORD_SETTINGS.items():
        converter = MultiperfConverter(**options)
        for path in paths:
            examples = converter.to_tensors(path)
            k = f"{key(path)}/{name}"
            if k not in reference.files or not examples:
                assert not examples and k not in reference.files, \
                    f"{k}: hvae {len(examples)} windows, reference {len(reference[k]) if k in reference.files else 0}"
                continue
            tokens = np.stack([rows(e.outputs) for e in examples])
            triads = np.stack([rows(e.controls) for e in examples])
            lengths = np.stack([converter.segment_lengths(e.outputs) for e in examples])
            assert all(np.array_equal(e.inputs, e.outputs) for e in examples)
            assert tokens.shape == reference[k].shape, f"{k}: hvae {tokens.shape}, reference {reference[k].shape}"
            assert np.array_equal(tokens, reference[k]), f"{k}: windows differ at {np.argwhere(tokens != reference[k])[:3]}"
            assert np.array_equal(lengths, reference[f"{k}/lengths"]), f"{k}: segment lengths differ"
            assert np.array_equal(triads, reference[f"{k}/chords"]), \
                f"{k}: chords differ at {np.argwhere(triads != reference[f'{k}/chords'])[:3]}"
            compared += len(tokens)
    return compared


def test_real_files_equal_the_reference_window_for_window_chords_included():
    assert compare(TRIO_FILES, lambda p: p.stem) == REAL_WINDOWS


def test_random_files_equal_the_reference_window_for_window_chords_included(tmp_path):
    reference = np.load(REFERENCE)
    trio_paths = multitrack.write_files(tmp_path / "trio")
    perf_paths = multiperf_files.write_files(tmp_path / "perf")
    assert multitrack.digest(trio_paths) == str(reference["multitrack_digest"])
    assert multitrack.digest(perf_paths) == str(reference["multiperf_digest"])
    assert compare(trio_paths + perf_paths, lambda p: "random_" + p.stem) == RANDOM_WINDOWS

