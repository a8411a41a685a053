"""Preparing a data set: MIDI folders -> per-split window caches, and reading them back.

Spec: every file goes to its data set's split (or a path-hash split), files that cannot be
converted are skipped with their name and reason, the cache is reused while nothing changed
and rebuilt when an option, a file or a cache file changed, and a killed run loses nothing.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import miditoolkit
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import hvae
from hvae.cli import main
from hvae.data import (DEMO_DIR, SPLITS, CacheError, default_cache_dir, find_midi_files, hash_split, load_split,
                       prepare_dataset, read_manifest)
from hvae.hookspecs import hookimpl
from hvae_converters.drums import DrumsConverter

HVAE = str(Path(sys.executable).parent / "hvae")


def csv_splits(folder: Path, table: str = "info.csv") -> dict[str, str]:
    with (folder / table).open(newline="") as f:
        return {row["midi_filename"]: row["split"] for row in csv.DictReader(f)}


def drums(**options) -> DrumsConverter:
    return hvae.get_converter("drums", **options)


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    """The demo subset prepared with drums, 4 bars, two workers."""
    out = tmp_path_factory.mktemp("demo-drums4")
    report = prepare_dataset(drums(slice_bars=4), DEMO_DIR, out, workers=2, progress=False)
    return report


@pytest.fixture
def demo_cache_copy(demo_cache, tmp_path):
    """A copy of the demo cache that a test may change."""
    return Path(shutil.copytree(demo_cache.cache_dir, tmp_path / "cache"))


SMALL = DEMO_DIR / "drummer5"  # six demo files: four train, one validation, one test


@pytest.fixture
def small_cache(tmp_path):
    """A fresh cache of the six drummer5 demo files, drums, 4 bars."""
    return prepare_dataset(drums(slice_bars=4), SMALL, tmp_path / "small", workers=2, progress=False)


def prepare_small(cache_dir: Path):
    return prepare_dataset(drums(slice_bars=4), SMALL, cache_dir, workers=2, progress=False)


# --- splits ---------------------------------------------------------------------------------------------------

def test_every_demo_file_goes_to_its_info_csv_split(demo_cache):
    expected = csv_splits(DEMO_DIR)
    assert {f.path: f.split for f in demo_cache.files} == expected
    assert {f.split_from for f in demo_cache.files} == {"table"}
    assert [demo_cache.splits[s].files for s in SPLITS] == [48, 8, 8]


def test_windows_per_split_are_the_windows_of_that_splits_files(demo_cache):
    expected = csv_splits(DEMO_DIR)
    for split in SPLITS:
        windows = load_split(demo_cache.cache_dir, split)
        per_file = sum(f.windows for f in demo_cache.files if expected[f.path] == split)
        assert len(windows) == demo_cache.splits[split].windows == per_file > 0
        assert {expected[windows.source(i)] for i in range(len(windows))} == {split}


def test_cached_windows_are_exactly_the_converters_windows(demo_cache):
    converter = drums(slice_bars=4)
    for split in SPLITS:
        windows = load_split(demo_cache.cache_dir, split)
        first_file = windows.source(0)
        mine = np.flatnonzero(windows.sources == windows.sources[0])
        direct = converter.to_tensors(DEMO_DIR / first_file)
        assert len(mine) == len(direct)
        np.testing.assert_array_equal(windows.inputs[mine], np.stack([e.inputs for e in direct]))
        np.testing.assert_array_equal(windows.outputs[mine], np.stack([e.outputs for e in direct]))
        assert windows.lengths[mine].tolist() == [e.length for e in direct]


def test_groove_windows_with_velocities_and_offsets_round_trip_exactly(tmp_path):
    converter = hvae.get_converter("groove", split_bars=4)
    report = prepare_dataset(converter, DEMO_DIR / "drummer5", tmp_path / "cache", workers=2, progress=False)
    windows = load_split(tmp_path / "cache", "train")
    assert windows.outputs.encoded.kind == "dense" and len({windows.source(i) for i in range(len(windows))}) == 4
    direct = [e for f in report.converted if f.split == "train" for e in converter.to_tensors(report.data_dir / f.path)]
    np.testing.assert_array_equal(np.asarray(windows.inputs), np.stack([e.inputs for e in direct]))
    np.testing.assert_array_equal(np.asarray(windows.outputs), np.stack([e.outputs for e in direct]))


def test_a_split_table_above_the_data_folder_is_used():
    files, table = find_midi_files(DEMO_DIR / "drummer1")
    expected = csv_splits(DEMO_DIR)
    assert table is not None and table.path == DEMO_DIR / "info.csv"
    assert files and all(f.split == expected[f"drummer1/{f.relpath}"] for f in files)


def test_files_without_a_split_table_are_split_by_a_hash_of_their_path(tmp_path):
    for source in sorted(DEMO_DIR.rglob("*.mid"))[:12]:
        target = tmp_path / source.relative_to(DEMO_DIR)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    files, table = find_midi_files(tmp_path)
    assert table is None and len(files) == 12
    assert all(f.split == hash_split(f.relpath) and f.split_from == "hash" for f in files)
    assert [f.split for f in find_midi_files(tmp_path)[0]] == [f.split for f in files]


def test_the_hash_split_is_about_80_10_10(gmd_dir):
    paths = list(csv_splits(gmd_dir))
    counts = {s: sum(hash_split(p) == s for p in paths) for s in SPLITS}
    assert 0.75 < counts["train"] / len(paths) < 0.85
    assert 0.06 < counts["validation"] / len(paths) < 0.14
    assert 0.06 < counts["test"] / len(paths) < 0.14


def test_maestro_files_follow_maestro_csv(maestro_dir):
    files, table = find_midi_files(maestro_dir)
    expected = csv_splits(maestro_dir, "maestro-v3.0.0.csv")
    assert table is not None and table.path.name == "maestro-v3.0.0.csv"
    assert files and all(f.relpath.lower().endswith(".midi") for f in files)
    assert all(f.split == expected[f.relpath] for f in files)


# --- reading the cache back -----------------------------------------------------------------------------------

def test_a_split_reads_back_as_a_torch_dataset_and_as_tensors(demo_cache):
    windows = load_split(demo_cache.cache_dir, "validation")
    batch = next(iter(torch.utils.data.DataLoader(windows.dataset(), batch_size=8)))
    assert batch["inputs"].shape == (8, 64, 10) and batch["outputs"].shape == (8, 64, 512)
    assert batch["controls"].shape == (8, 64, 0) and batch["lengths"].tolist() == [64] * 8
    tensors = windows.as_tensors()
    assert tensors["outputs"].shape == (len(windows), 64, 512)
    assert torch.equal(tensors["outputs"].sum(-1), torch.ones(len(windows), 64))
    assert torch.equal(tensors["inputs"][:8], batch["inputs"])


def test_load_split_refuses_a_corrupt_file(demo_cache_copy):
    with (demo_cache_copy / "test.npz").open("r+b") as f:
        f.seek(200)
        f.write(b"\xff" * 64)
    with pytest.raises(CacheError, match="test.npz does not match its checksum"):
        load_split(demo_cache_copy, "test")


def test_load_split_of_a_folder_that_is_no_cache_says_so(tmp_path):
    with pytest.raises(CacheError, match="not an hvae data cache"):
        load_split(tmp_path, "train")


# --- when the cache is reused and when it is rebuilt ----------------------------------------------------------

def test_a_second_run_finds_the_cache_up_to_date(demo_cache):
    before = {p.name: p.stat().st_mtime_ns for p in demo_cache.cache_dir.iterdir()}
    again = prepare_dataset(drums(slice_bars=4), DEMO_DIR, demo_cache.cache_dir, workers=2, progress=False)
    assert again.cached and again.rebuild_reason is None
    assert again.seconds < 2.0
    assert again.splits == demo_cache.splits
    assert {p.name: p.stat().st_mtime_ns for p in demo_cache.cache_dir.iterdir()} == before


def test_changing_an_option_rebuilds(small_cache):
    report = prepare_dataset(drums(slice_bars=2), SMALL, small_cache.cache_dir, workers=2, progress=False)
    assert not report.cached and report.rebuild_reason == "converter options changed: slice_bars 4 -> 2"
    assert load_split(small_cache.cache_dir, "train").outputs.shape[1] == 32
    assert report.splits != small_cache.splits


@pytest.mark.parametrize("damage, reason", [("corrupt", "does not match its checksum"), ("truncate", "truncated")])
def test_a_damaged_cache_file_is_detected_and_rebuilt(small_cache, damage, reason):
    path = small_cache.cache_dir / "train.npz"
    if damage == "corrupt":
        with path.open("r+b") as f:
            f.seek(path.stat().st_size // 2)
            f.write(b"\x00\x01\x02\x03" * 16)
    else:
        os.truncate(path, path.stat().st_size // 3)
    report = prepare_small(small_cache.cache_dir)
    assert not report.cached and "train.npz" in report.rebuild_reason and reason in report.rebuild_reason
    assert report.splits == small_cache.splits
    assert len(load_split(small_cache.cache_dir, "train")) == small_cache.splits["train"].windows


def test_a_run_killed_while_writing_is_detected_and_its_leftovers_removed(small_cache):
    folder = small_cache.cache_dir
    (folder / ".hvae-tmp-k1ll3d.npz").write_bytes(b"PK\x03\x04 half")  # a temp file half written
    shutil.copy(folder / "validation.npz", folder / "test.npz")  # renamed into place, manifest not yet written
    report = prepare_small(folder)
    assert report.rebuild_reason.startswith("test.npz is ") and "(truncated or replaced)" in report.rebuild_reason
    assert report.splits == small_cache.splits
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".hvae-tmp-")]


def test_a_changed_or_added_midi_file_rebuilds(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    sources = sorted(DEMO_DIR.rglob("*.mid"))[:4]
    for source in sources[:3]:
        shutil.copy(source, data / source.name)
    out = tmp_path / "cache"
    first = prepare_dataset(drums(slice_bars=4), data, out, workers=1, progress=False)
    shutil.copy(sources[3], data / sources[3].name)
    added = prepare_dataset(drums(slice_bars=4), data, out, workers=1, progress=False)
    assert "1 added" in added.rebuild_reason and len(added.files) == len(first.files) + 1
    with (data / sources[0].name).open("ab") as f:
        f.write(b"\x00")
    changed = prepare_dataset(drums(slice_bars=4), data, out, workers=1, progress=False)
    assert "1 modified" in changed.rebuild_reason


def test_an_unreadable_manifest_is_reported_and_rebuilt(small_cache):
    (small_cache.cache_dir / "manifest.json").write_text('{"format": 1, "conv')
    report = prepare_small(small_cache.cache_dir)
    assert report.rebuild_reason == "manifest.json is unreadable (JSONDecodeError)"
    assert report.splits == small_cache.splits


def test_a_cache_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "a-file").write_text("")
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sorted(DEMO_DIR.rglob("*.mid"))[0], data)
    result = prepare_cli("-c", "drums", "--data", str(data), "--out", str(tmp_path / "a-file" / "cache"))
    assert result.exit_code == 1
    assert result.output == f"Error: Cannot write the cache in {tmp_path / 'a-file' / 'cache'}: Not a directory.\n"


def test_without_out_the_cache_goes_under_hvae_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HVAE_CACHE", str(tmp_path / "caches"))
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sorted(DEMO_DIR.rglob("*.mid"))[0], data)
    result = prepare_cli("-c", "drums", "--data", str(data))
    assert result.exit_code == 0, result.output
    expected = default_cache_dir(data, "drums", drums().options)
    assert expected.parent == tmp_path / "caches" and f"Cache:     {expected}\n" in result.output
    assert read_manifest(expected)["converter"]["name"] == "drums"


def test_default_cache_dirs_differ_by_data_converter_and_options(tmp_path, monkeypatch):
    monkeypatch.setenv("HVAE_CACHE", str(tmp_path))
    four, two = drums(slice_bars=4), drums(slice_bars=2)
    here = default_cache_dir(DEMO_DIR, "drums", four.options)
    assert here.parent == tmp_path and here.name.startswith("drums-")
    assert here == default_cache_dir(DEMO_DIR, "drums", four.options)
    assert here != default_cache_dir(DEMO_DIR, "drums", two.options)
    assert here != default_cache_dir(DEMO_DIR / "drummer1", "drums", four.options)


def test_a_run_killed_mid_way_leaves_the_previous_cache_intact(demo_cache, demo_cache_copy):
    command = [HVAE, "data", "prepare", "-c", "drums", "-o", "slice_bars=4", "--data", str(DEMO_DIR),
               "--out", str(demo_cache_copy), "--workers", "1", "--force", "--progress"]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = b""
    while b"windows=" not in seen:  # the progress bar: conversion is under way, nothing written yet
        chunk = os.read(run.stderr.fileno(), 4096)
        assert chunk, f"the run ended before it could be killed: {seen!r}"
        seen += chunk
    run.send_signal(signal.SIGKILL)
    run.wait()
    run.stderr.close()
    report = prepare_dataset(drums(slice_bars=4), DEMO_DIR, demo_cache_copy, workers=2, progress=False)
    assert report.cached and report.splits == demo_cache.splits


# --- files that cannot be converted ---------------------------------------------------------------------------

BAD_FILES = {
    "bad/random-bytes.mid": ("unreadable", "not a readable MIDI file"),
    "bad/truncated.mid": ("unreadable", "MIDI"),
    "bad/empty.MID": ("unreadable", "MIDI"),
    "bad/waltz_3-4.mid": ("unusable", "3/4 time"),
    "bad/melody-only.midi": ("unusable", "no drum notes"),
}


def write_bad_files(folder: Path, gmd_dir: Path) -> None:
    (folder / "bad").mkdir(parents=True)
    (folder / "bad/random-bytes.mid").write_bytes(np.random.default_rng(0).bytes(3000))
    real = sorted(DEMO_DIR.rglob("*.mid"))[0].read_bytes()
    (folder / "bad/truncated.mid").write_bytes(real[:len(real) // 2])
    (folder / "bad/empty.MID").write_bytes(b"")
    waltz = next(p for p in sorted(gmd_dir.rglob("*_beat_3-4.mid")))
    shutil.copy(waltz, folder / "bad/waltz_3-4.mid")
    midi = miditoolkit.MidiFile(ticks_per_beat=480)
    piano = miditoolkit.Instrument(program=0, is_drum=False, name="piano")
    piano.notes = [miditoolkit.Note(80, 60 + (i % 12), i * 240, i * 240 + 200) for i in range(64)]
    midi.instruments = [piano]
    midi.dump(str(folder / "bad/melody-only.midi"))
    (folder / "bad/notes.txt").write_text("not MIDI, and not named like it: ignored")


@pytest.fixture
def mixed_folder(tmp_path, gmd_dir):
    """Two good demo files and five bad ones."""
    data = tmp_path / "mixed"
    write_bad_files(data, gmd_dir)
    for source in sorted(DEMO_DIR.rglob("*.mid"))[:2]:
        shutil.copy(source, data / source.name)
    return data


def prepare_cli(*args: str):
    return CliRunner().invoke(main, ["data", "prepare", "--no-progress", *args])


def test_bad_files_are_skipped_with_their_name_and_reason_and_good_ones_converted(mixed_folder, tmp_path):
    result = prepare_cli("-c", "drums", "-o", "slice_bars=4", "--data", str(mixed_folder),
                         "--out", str(tmp_path / "out"), "--workers", "2")
    assert result.exit_code == 0, result.output
    assert "Skipped 5 of 7 files" in result.output
    records = {f["path"]: f for f in read_manifest(tmp_path / "out")["files"]}
    for path, (status, reason) in BAD_FILES.items():
        assert records[path]["status"] == status and reason in records[path]["reason"]
        assert path in result.output and records[path]["reason"] in result.output
    good = [r for r in records.values() if r["status"] == "converted"]
    assert len(good) == 2 and all(r["windows"] > 0 for r in good)
    assert "bad/notes.txt" not in records


def test_a_folder_of_only_bad_files_fails_with_a_clear_message(tmp_path, gmd_dir):
    write_bad_files(tmp_path / "bad-only", gmd_dir)
    result = prepare_cli("-c", "drums", "--data", str(tmp_path / "bad-only"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "Error: No usable windows: none of the 5 MIDI files" in result.output
    assert "Traceback" not in result.output


def test_a_folder_without_midi_files_fails_with_a_clear_message(tmp_path):
    (tmp_path / "readme.txt").write_text("no MIDI here")
    result = prepare_cli("-c", "drums", "--data", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: No MIDI files (*.mid, *.midi) under {tmp_path}."


class FragileDrums(DrumsConverter):
    """A third-party converter with a bug: it crashes on the jazz files."""

    name = "fragile-drums"

    def convert(self, source):
        if "_jazz_" in Path(source).name:
            raise ZeroDivisionError("division by zero")
        return super().convert(source)


class FragilePlugin:
    @hookimpl
    def hvae_register_converters(self, register):
        register(FragileDrums)


def test_a_crashing_third_party_converter_skips_the_file_with_the_exception_type(hvae_plugin, tmp_path):
    hvae_plugin(FragilePlugin(), name="fragile")
    data = tmp_path / "data"
    data.mkdir()
    for source in sorted(DEMO_DIR.rglob("*.mid"))[:6]:
        shutil.copy(source, data / source.name)
    crashing = sorted(p.name for p in data.iterdir() if "_jazz_" in p.name)
    assert crashing and len(crashing) < 6
    report = prepare_dataset(hvae.get_converter("fragile-drums", slice_bars=4), data, tmp_path / "out",
                             workers=2, progress=False)
    assert sorted(f.path for f in report.skipped) == crashing
    assert {(f.status, f.reason) for f in report.skipped} == {("failed", "ZeroDivisionError: division by zero")}
    assert len(report.converted) == 6 - len(crashing)


# --- the command line summary ---------------------------------------------------------------------------------

def test_prepare_prints_windows_per_split_and_says_when_the_cache_is_reused(demo_cache):
    result = prepare_cli("-c", "drums", "-o", "slice_bars=4", "--out", str(demo_cache.cache_dir))
    assert result.exit_code == 0, result.output
    for split in SPLITS:
        s = demo_cache.splits[split]
        assert f"{split:<12}{s.files:>8}{s.converted:>11}{s.windows:>10}" in result.output
    assert "Converter: drums (hvae-converters 0.1.0), options: slice_bars=4" in result.output
    assert "splits from info.csv" in result.output
    assert "Cache up to date" in result.output


def test_info_summarises_a_cache_and_checks_its_files(demo_cache, demo_cache_copy):
    result = CliRunner().invoke(main, ["data", "info", str(demo_cache_copy)])
    assert result.exit_code == 0, result.output
    assert f"total{'':<7}{64:>8}{64:>11}{demo_cache.windows:>10}" in result.output
    assert "Checksums: all split files intact." in result.output
    as_json = json.loads(CliRunner().invoke(main, ["data", "info", "--json", str(demo_cache_copy)]).output)
    assert as_json["converter"]["options"]["slice_bars"] == 4
    os.truncate(demo_cache_copy / "validation.npz", 100)
    damaged = CliRunner().invoke(main, ["data", "info", str(demo_cache_copy)])
    assert damaged.exit_code == 1 and "Error: Damaged cache: validation.npz is 100 bytes" in damaged.output


def test_skipped_files_beyond_the_first_five_per_reason_are_listed_with_verbose(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(7):
        (data / f"noise-{i}.mid").write_bytes(b"")
    (data / "good.mid").write_bytes(sorted(DEMO_DIR.rglob("*.mid"))[0].read_bytes())
    short = prepare_cli("-c", "drums", "--data", str(data), "--out", str(tmp_path / "out"), "--workers", "1")
    assert short.exit_code == 0, short.output
    assert sum(f"noise-{i}.mid" in short.output for i in range(7)) == 5
    assert "... and 2 more (--verbose lists every file)" in short.output
    full = prepare_cli("-c", "drums", "--data", str(data), "--out", str(tmp_path / "out"), "--verbose")
    assert all(f"noise-{i}.mid" in full.output for i in range(7))


# --- the full Groove MIDI Dataset -----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("converter_name", ["drums", "groove"])
def test_full_gmd_4_bars_reports_windows_per_split(gmd_dir, tmp_path, converter_name):
    option = {"drums": "slice_bars", "groove": "split_bars"}[converter_name]
    converter = hvae.get_converter(converter_name, **{option: 4})
    started = time.perf_counter()
    report = prepare_dataset(converter, gmd_dir, tmp_path / "cache", workers=2, progress=False)
    seconds = time.perf_counter() - started
    expected = csv_splits(gmd_dir)
    assert len(report.files) == 1150
    assert all(f.split == expected[f.path] for f in report.files)
    assert all(report.splits[s].windows > 0 for s in SPLITS)
    assert report.splits["train"].windows > report.splits["validation"].windows
    meters = {f.reason for f in report.skipped if f.path.endswith("_3-4.mid")}
    assert meters and all("3/4" in m for m in meters)
    print(f"\nfull GMD, {converter_name} 4 bars, 2 workers: "
          f"{ {s: report.splits[s].windows for s in SPLITS} } windows, "
          f"{len(report.converted)} files converted, {len(report.skipped)} skipped, {seconds:.1f} s")
