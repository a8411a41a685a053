"""The trio converter: melody, bass and drums in, the reference's windows and three named tracks out.

References, made by experiments/reference_trio.py with the reference's own TrioConverter (every window
kept, in its order):

- ``tests/data/trio/reference.npz``: the real trio files beside it (Bach chorales' voices over Groove MIDI
  Dataset drummers, see SOURCES.md), 16-bar windows (trio_16bar) and 4-bar ones;
- ``tests/data/trio/random_reference.npz``: 60 random multi-track files (tests/multitrack.py) at five
  window lengths and gaps, gap 0 included.
"""

from __future__ import annotations

from pathlib import Path

import miditoolkit
import numpy as np
import pytest

import hvae
from hvae.errors import ConversionError, HvaeError
from hvae.model import DataSpec
from hvae.music import read_midi
from hvae.plugins import make_converter
from hvae_converters.trio import TrioConverter

import multitrack

DATA = Path(__file__).parent / "data" / "trio"
FILES = sorted(DATA.glob("*.mid"))
DEPTHS = (90, 90, 512)


def classes(examples: list[hvae.Example]) -> np.ndarray | None:
    """Each step's class in each part, (W, T, 3), as the references store them; None for no window."""
    if not examples:
        return None
    edges = np.cumsum((0,) + DEPTHS)
    for e in examples:
        assert np.array_equal(e.inputs, e.outputs)
        assert e.controls.shape == (len(e.outputs), 0) and e.length == len(e.outputs)
        for a, b in zip(edges[:-1], edges[1:]):
            assert np.all(e.outputs[:, a:b].sum(axis=1) == 1)  # every part of every step is one-hot
    return np.stack([np.stack([e.outputs[:, a:b].argmax(axis=1) for a, b in zip(edges[:-1], edges[1:])], axis=1)
                     for e in examples])


def assert_same(got: np.ndarray | None, reference: np.lib.npyio.NpzFile, key: str) -> None:
    want = reference[key] if key in reference.files else None
    if want is None or got is None:
        assert got is None and want is None, f"{key}: hvae {None if got is None else len(got)} windows, " \
                                             f"reference {None if want is None else len(want)}"
        return
    assert got.shape == want.shape, f"{key}: hvae {got.shape}, reference {want.shape}"
    assert np.array_equal(got, want), f"{key}: windows differ at {np.argwhere(got != want)[:3].tolist()}"


@pytest.mark.parametrize("bars", [16, 4])
def test_real_trios_equal_the_reference_window_for_window(bars):
    reference = np.load(DATA / "reference.npz")
    converter = make_converter("trio", {"slice_bars": bars, "gap_bars": 2, "steps_per_quarter": 4})
    assert len(FILES) == 10
    for path in FILES:
        assert_same(classes(converter.to_tensors(path)), reference, f"{path.stem}/{bars}")
    # what the files are there for: several melodies make more trios, rests and late entries fewer
    counts = {p.stem: len(converter.to_tensors(p)) for p in FILES}
    assert counts["no_bass"] == counts["three_four"] == 0
    assert sum(c > 0 for c in counts.values()) == 8 and counts["two_melodies"] > counts["plain"]


def test_random_multitrack_files_equal_the_reference(tmp_path):
    reference = np.load(DATA / "random_reference.npz")
    paths = multitrack.write_files(tmp_path)
    assert multitrack.digest(paths) == str(reference["digest"]), "tests/multitrack.py no longer writes the files " \
        "the reference converted: run experiments/reference_trio.py again"
    compared = 0
    for bars, gap in multitrack.SETTINGS:
        converter = TrioConverter(slice_bars=bars, gap_bars=gap)
        for path in paths:
            assert_same(classes(converter.to_tensors(path)), reference, f"{path.stem}/{bars}/{gap}")
            compared += 1
    assert compared == 300 and len(reference.files) > 60  # a fair share of the files are trios


def test_windows_are_the_three_parts_side_by_side():
    converter = make_converter("trio", {})
    assert converter.output_kind == "onehot-parts"
    assert converter.parts == (("melody", 90), ("bass", 90), ("drums", 512))
    assert (converter.input_depth, converter.output_depth, converter.steps) == (692, 692, 256)
    assert DataSpec.of(converter).parts == converter.parts


def test_from_tensors_writes_three_named_tracks_that_read_back_the_same(tmp_path):
    converter = make_converter("trio", {})
    examples = converter.convert(DATA / "plain.mid")
    for example in examples[:5]:
        path = hvae.write_midi(converter.from_tensors(example.outputs, qpm=94), tmp_path / "trio.mid")
        ns = read_midi(path)
        tracks = {(n.instrument, n.program, n.is_drum) for n in ns.notes}
        assert sorted(p for _, p, drum in tracks if not drum) == [0, 33] and sum(d for *_, d in tracks) == 1
        names = [i.name for i in miditoolkit.MidiFile(path).instruments]
        assert names == ["melody", "bass", "drums"]
        again = converter.convert(path)
        assert np.array_equal(again[0].outputs, example.outputs)  # the file is the window, bar for bar


def test_what_makes_no_trio_is_said_in_one_line():
    converter = make_converter("trio", {})
    with pytest.raises(ConversionError, match=r"^no bass part \(a trio needs melody, bass and drums\)$"):
        converter.convert(DATA / "no_bass.mid")
    with pytest.raises(ConversionError, match=r"^3/4 time: 12 steps per bar, 16 needed$"):
        converter.convert(DATA / "three_four.mid")
    with pytest.raises(ConversionError, match="no 32 bars where melody, bass and drums all play"):
        TrioConverter(slice_bars=32).convert(DATA / "gaps.mid")
    with pytest.raises(HvaeError, match="slice_bars of converter 'trio' must be at least 1"):
        TrioConverter(slice_bars=0)
    with pytest.raises(HvaeError, match="gap_bars of converter 'trio' must not be negative"):
        TrioConverter(gap_bars=-1)


def test_max_tensors_per_notesequence_draws_a_seeded_subset():
    every = classes(TrioConverter().convert(DATA / "two_melodies.mid"))
    drawn = classes(TrioConverter(max_tensors_per_notesequence=5).convert(DATA / "two_melodies.mid"))
    assert len(drawn) == 5 and all(any(np.array_equal(w, v) for v in every) for w in drawn)
    assert np.array_equal(drawn, classes(TrioConverter(max_tensors_per_notesequence=5).convert(DATA / "two_melodies.mid")))
