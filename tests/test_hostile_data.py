"""Hostile files and faults while preparing data: each bad file is named, the rest converts, nothing hangs.

Spec: FIFOs, devices and dangling links in a data folder are named and skipped without being opened;
names that are not UTF-8 are handled; a MIDI file too large (50 MB) or one whose windows would not
fit the per-file memory bound is refused fast with one line; a file that kills the process converting
it is named and the others convert (with one worker too); killing ``hvae data prepare`` leaves no
worker behind; a cache manifest that is damaged, even as valid JSON, means a rebuild.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mido
import pytest

import hvae
from hvae.data import CacheError, DEMO_DIR, load_split, prepare_dataset, read_manifest
from hvae.errors import MidiReadError
from hvae.hookspecs import hookimpl
from hvae.music import read_midi
from hvae_converters.drums import DrumsConverter
from clihelp import invoke
from hostile import alive, bit_flips, children, rehashed

HVAE = str(Path(sys.executable).parent / "hvae")


@pytest.fixture
def data(tmp_path) -> Path:
    """Six demo drum files (two of them jazz) in a folder of their own."""
    folder = tmp_path / "data"
    folder.mkdir()
    for source in sorted(DEMO_DIR.rglob("*.mid"))[:6]:
        shutil.copy(source, folder / source.name)
    return folder


def prepare(*args) -> tuple[int, str]:
    result = invoke("data", "prepare", "--no-progress", "-c", "drums", *args)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


# --- what is not a file -------------------------------------------------------------------------------------------

def test_fifos_devices_and_dangling_links_are_named_and_skipped_without_hanging(data, tmp_path):
    os.mkfifo(data / "pipe.mid")
    (data / "zero.mid").symlink_to("/dev/zero")
    (data / "gone.mid").symlink_to(tmp_path / "nowhere.mid")
    done = subprocess.run([HVAE, "data", "prepare", "--no-progress", "-c", "drums", "--data", str(data), "--out",
                           str(tmp_path / "cache"), "-j", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Skipped 3 of 9 files" in done.stdout
    assert "is a FIFO, not a MIDI file (not opened)" in done.stdout
    assert "is a character device, not a MIDI file (not opened)" in done.stdout
    assert "no such file" in done.stdout
    for name in ("pipe.mid", "zero.mid", "gone.mid"):
        assert f"    {name}" in done.stdout


@pytest.mark.parametrize("given", ["the FIFO", "its folder"])
def test_a_fifo_given_to_reconstruct_is_named_not_read(trained_drums, tmp_path, given):
    (tmp_path / "in").mkdir()
    os.mkfifo(tmp_path / "in" / "pipe.mid")
    good = sorted(DEMO_DIR.rglob("*.mid"))[0]
    fifo = tmp_path / "in" / "pipe.mid" if given == "the FIFO" else tmp_path / "in"
    done = subprocess.run([HVAE, "reconstruct", str(trained_drums), str(fifo), str(good), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pipe.mid: is a FIFO, not a MIDI file (not opened)" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    assert {p.name.split("-w")[0] for p in (tmp_path / "out").iterdir()} == {good.stem}


def test_interpolating_from_a_fifo_is_one_line_not_a_hang(trained_drums, tmp_path):
    os.mkfifo(tmp_path / "pipe.mid")
    good = sorted(DEMO_DIR.rglob("*.mid"))[0]
    done = subprocess.run([HVAE, "interpolate", str(trained_drums), str(tmp_path / "pipe.mid"), str(good), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("Error: ") and "is a FIFO" in done.stderr


def test_names_that_are_not_utf8_are_converted_and_printed(data, tmp_path):
    odd = os.fsdecode(b"caf\xe9 \xff.mid")
    shutil.copy(next(data.iterdir()), data / odd)
    (data / os.fsdecode(b"bad\xfe.mid")).write_bytes(b"MThd")
    done = subprocess.run([HVAE, "data", "prepare", "--no-progress", "-c", "drums", "--data", str(data), "--out",
                           str(tmp_path / "cache"), "-j", "2"], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert b"Skipped 1 of 8 files" in done.stdout and b"Converted 7 of 8 files in " in done.stdout
    report = prepare_dataset(hvae.get_converter("drums"), data, tmp_path / "cache", progress=False)
    assert report.cached
    records = {f.path: f.status for f in report.files}
    assert records[odd] == "converted" and records[os.fsdecode(b"bad\xfe.mid")] == "unreadable"


# --- too large ------------------------------------------------------------------------------------------------------

def midi_bytes(events: bytes) -> bytes:
    """A type-0 MIDI file at 220 ticks per quarter holding one track of ``events``."""
    return b"MThd" + (6).to_bytes(4, "big") + b"\x00\x00\x00\x01\x00\xdc" + \
        b"MTrk" + (len(events) + 4).to_bytes(4, "big") + events + b"\x00\xff\x2f\x00"


def test_a_50_mb_midi_file_is_refused_fast_with_one_line(data, tmp_path):
    hit = b"\x00\x99\x24\x64\x10\x89\x24\x00"  # kick on, 16 ticks, kick off
    (data / "huge.mid").write_bytes(midi_bytes(hit * (50_000_000 // len(hit))))
    started = time.monotonic()
    code, output = prepare("--data", data, "--out", tmp_path / "cache", "-j", "1")
    assert time.monotonic() - started < 30
    assert code == 0, output
    assert "48 MiB, more than the 4 MiB a MIDI file may have" in output and "    huge.mid" in output


def test_the_densest_midi_file_allowed_reads_in_bounded_memory(tmp_path):
    """Just under the byte limit, every 4 bytes an event (a million of them, running status off): one read
    stays under 1 GB; a byte more is refused before parsing."""
    from hvae.music import MAX_MIDI_BYTES

    hit = b"\x01\x99\x24\x64\x01\x89\x24\x00"  # kick on, a tick, kick off, a tick
    events = hit * ((MAX_MIDI_BYTES - 30) // len(hit))
    path = tmp_path / "dense.mid"
    path.write_bytes(midi_bytes(events))
    assert path.stat().st_size <= MAX_MIDI_BYTES
    # the reader's peak in a process of its own, started from a small one (a child forked from this large test
    # process inherits its peak in ru_maxrss)
    read = "import sys; from hvae.music import read_midi; print(len(read_midi(sys.argv[1]).notes))"
    wrapper = ("import resource, subprocess, sys; out = subprocess.run([sys.executable, '-c', sys.argv[1], sys.argv[2]], "
               "capture_output=True, text=True, check=True).stdout.strip(); "
               "print(out, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)")
    found = subprocess.run([sys.executable, "-c", wrapper, read, str(path)], capture_output=True, text=True, check=True)
    notes, peak = map(int, found.stdout.split())
    assert notes == len(events) // len(hit) and peak < 1000
    path.write_bytes(midi_bytes(events + b"\x00" * (MAX_MIDI_BYTES - path.stat().st_size + 1)))
    with pytest.raises(MidiReadError, match="more than the 4 MiB a MIDI file may have"):
        read_midi(path)


def long_distinct_drums(bars: int) -> bytes:
    """Drums in 4/4: runs of 90 bars, two silent bars between runs, three hits in each bar (each bar its
    own choice of steps and drums), so every window is distinct: real MIDI of about 25 bytes a bar."""
    hits = list(itertools.combinations(itertools.product(range(16), (36, 38, 42, 46)), 3))
    messages, last = [mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0)], 0
    for bar in range(bars):
        for step in sorted({step for step, _ in hits[bar]}):
            tick = ((bar + 2 * (bar // 90)) * 16 + step) * 55
            pitches = [pitch for at, pitch in hits[bar] if at == step]
            for pitch in pitches:
                messages.append(mido.Message("note_on", channel=9, note=pitch, velocity=100, time=tick - last))
                last = tick
            for index, pitch in enumerate(pitches):
                messages.append(mido.Message("note_off", channel=9, note=pitch, velocity=0, time=10 * (index == 0)))
            last = tick + 10
    midi = mido.MidiFile(type=0, ticks_per_beat=220)
    midi.tracks.append(mido.MidiTrack(messages))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def test_a_file_whose_windows_would_not_fit_the_memory_bound_is_refused_before_allocating(data, tmp_path):
    (data / "endless.mid").write_bytes(long_distinct_drums(22_000))
    assert (data / "endless.mid").stat().st_size < 1_000_000
    code, output = prepare("--data", data, "--out", tmp_path / "cache", "-j", "1")
    assert code == 0, output
    assert "windows would take" in output and "more than the 1 GiB one file may take" in output
    assert "    endless.mid" in output


# --- processes that die -------------------------------------------------------------------------------------------

class CrashingDrums(DrumsConverter):
    """A converter whose native code crashes on the jazz files: the process converting them dies."""

    name = "crashing-drums"

    def convert(self, source):
        if "_jazz_" in Path(source).name:
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().convert(source)


class CrashingPlugin:
    @hookimpl
    def hvae_register_converters(self, register):
        register(CrashingDrums)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_file_that_kills_its_worker_is_named_and_the_rest_converts(hvae_plugin, data, tmp_path, workers):
    hvae_plugin(CrashingPlugin(), name="crashing")
    crashing = sorted(p.name for p in data.iterdir() if "_jazz_" in p.name)
    assert crashing and len(crashing) < 6
    result = invoke("data", "prepare", "--no-progress", "-c", "crashing-drums", "--data", data, "--out",
                    tmp_path / "cache", "-j", workers)
    assert result.exit_code == 0, result.output
    assert f"Skipped {len(crashing)} of 6 files" in result.output
    assert "the process converting it died" in result.output
    report = prepare_dataset(hvae.get_converter("crashing-drums"), data, tmp_path / "cache", progress=False)
    assert report.cached and sorted(f.path for f in report.skipped) == crashing
    assert len(report.converted) == 6 - len(crashing)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the workers")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_killing_prepare_leaves_no_worker_behind(gmd_dir, tmp_path, how):
    process = subprocess.Popen([HVAE, "data", "prepare", "--no-progress", "-c", "drums", "--data", str(gmd_dir),
                                "--out", str(tmp_path / "cache"), "-j", "2"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(workers := children(process.pid)) < 2:
        assert process.poll() is None and time.monotonic() < deadline, "no workers started"
        time.sleep(0.05)
    process.send_signal(how)
    process.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if alive(pid)]


# --- damaged cache manifests ----------------------------------------------------------------------------------------


DAMAGE = {
    "files is an object": lambda m: {**m, "files": {}},
    "a record without a path": lambda m: {**m, "files": [{k: v for k, v in m["files"][0].items() if k != "path"}]
                                          + m["files"][1:]},
    "a path that climbs out": lambda m: {**m, "files": [{**m["files"][0], "path": "../../etc/passwd"}]
                                         + m["files"][1:]},
    "an absolute path": lambda m: {**m, "files": [{**m["files"][0], "path": "/etc/passwd"}] + m["files"][1:]},
    "a negative window count": lambda m: {**m, "files": [{**m["files"][0], "windows": -3}] + m["files"][1:]},
    "an unknown status": lambda m: {**m, "files": [{**m["files"][0], "status": "great"}] + m["files"][1:]},
    "an unknown split": lambda m: {**m, "files": [{**m["files"][0], "split": "holdout"}] + m["files"][1:]},
    "a split file elsewhere": lambda m: {**m, "splits": {**m["splits"], "train": {**m["splits"]["train"],
                                                                                  "file": "../train.npz"}}},
    "a split missing": lambda m: {**m, "splits": {k: v for k, v in m["splits"].items() if k != "test"}},
    "a size that is a string": lambda m: {**m, "splits": {**m["splits"], "test": {**m["splits"]["test"],
                                                                                  "bytes": "12"}}},
    "no encodings": lambda m: {**m, "splits": {**m["splits"], "test": {**m["splits"]["test"], "encodings": None}}},
    "a short hash": lambda m: {**m, "splits": {**m["splits"], "test": {**m["splits"]["test"], "sha256": "abc"}}},
    "converter is a string": lambda m: {**m, "converter": "drums"},
    "timing without a total": lambda m: {**m, "timing": {}},
    "a shard beyond its count": lambda m: {**m, "shard": {"index": 4, "count": 2}},
    "workers is a float": lambda m: {**m, "workers": 1.5},
}


@pytest.fixture
def built(data, tmp_path) -> Path:
    cache = tmp_path / "cache"
    prepare_dataset(hvae.get_converter("drums"), data, cache, workers=2, progress=False)
    return cache


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_cache_manifest_damaged_as_valid_json_means_a_rebuild(data, built, damage):
    before = load_split(built, "train")
    manifest = json.loads((built / "manifest.json").read_text())
    (built / "manifest.json").write_text(json.dumps(rehashed(DAMAGE[damage](manifest))))
    with pytest.raises(CacheError, match="is damaged: "):
        read_manifest(built)
    code, output = prepare("--data", data, "--out", built)
    assert code == 0, output
    assert "(manifest.json is damaged: " in output
    assert len(load_split(built, "train")) == len(before)


def test_no_single_bit_flip_of_a_cache_manifest_is_accepted(built):
    path = built / "manifest.json"
    for damaged in bit_flips(path.read_bytes(), 400, seed=4):
        path.write_bytes(damaged)
        with pytest.raises(CacheError):
            read_manifest(built)


def test_training_on_a_damaged_cache_manifest_rebuilds_it_with_a_note(data, built, tmp_path):
    manifest = json.loads((built / "manifest.json").read_text())
    (built / "manifest.json").write_text(json.dumps(rehashed(DAMAGE["a path that climbs out"](manifest))))
    result = invoke("train", "--preset", "demo", "-m", "z_size=8", "-m", "encoder.rnn_sizes=16", "-m",
                    "decoder.rnn_sizes=16", "--batch-size", 8, "--threads", 1, "--no-progress", "--steps", 1,
                    "--data", data, "--cache", built, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert f"Data cache {built} rebuilt: " in result.stderr
