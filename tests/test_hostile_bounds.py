"""Every documented maximum finishes in minutes with bounded memory (issue 24, item 7): samples are written as
they are drawn and an interrupted call keeps them, pictures draw at most MAX_PANELS rolls however long the
interpolation, and a report's counts are bounded before any work. Bounded work (counts, sizes, peak memory),
never wall-clock time."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clihelp import invoke
from hostile import PEAK_LIMIT_MB, peak_mb
from hvae.data import DEMO_DIR
from hvae.errors import InvalidArgument
from hvae.generation import write_samples
from hvae.report.pianoroll import MAX_PANELS
from hvae.report.run import MAX_SAMPLES, ReportOptions, write_run_report
from hvae.rundir import open_run

FUNK = DEMO_DIR / "drummer1/session1/2_funk_80_beat_4-4.mid"
ROCK = DEMO_DIR / "drummer1/session3/9_rock_135_beat_4-4.mid"
BATCH = 256  # files hvae sample writes at a time


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, from its header."""
    return struct.unpack(">II", path.read_bytes()[16:24])


# hvae sample: streamed, progress, kept on interruption

def test_samples_are_written_batch_by_batch_under_one_attempts_names(trained_drums, tmp_path):
    loaded, batches = open_run(trained_drums), []
    (tmp_path / "taken_sample_2000-01-01_000000-000-of-010.mid").write_bytes(b"theirs")
    os.environ["SOURCE_DATE_EPOCH"] = str(int(time.mktime((2000, 1, 1, 0, 0, 0, 0, 0, -1))))
    try:
        drawn = write_samples(loaded.model, loaded.converter, tmp_path, "taken", n=10, batch_size=4, seed=0,
                              written=lambda paths: batches.append([p.exists() for p in paths]))
    finally:
        del os.environ["SOURCE_DATE_EPOCH"]
    assert batches == [[True] * 4, [True] * 4, [True] * 2]  # each batch on disk when it is reported
    assert [p.name for p in drawn.paths] == [f"taken_sample_2000-01-01_000000-2-{k:03d}-of-010.mid" for k in range(10)]
    assert (tmp_path / "taken_sample_2000-01-01_000000-000-of-010.mid").read_bytes() == b"theirs"


def test_an_interrupted_sample_keeps_what_it_wrote_and_says_how_many(trained_drums, tmp_path):
    out = tmp_path / "samples"
    process = subprocess.Popen([sys.executable, "-m", "hvae.cli", "sample", str(trained_drums), "-n", "5000",
                                "--no-redraw", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    while process.poll() is None and len(list(out.glob("*.mid"))) < BATCH:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    kept = sorted(out.glob("*.mid"))
    assert process.returncode == 143, stderr
    assert BATCH <= len(kept) < 5000 and len(kept) % BATCH == 0
    assert stderr.strip().splitlines()[-1] == f"Interrupted: kept the {len(kept):,} of 5,000 samples written (in {out})."
    assert sorted(stdout.split()) == [str(p) for p in kept]  # each path printed as it was written
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left


def test_the_number_of_samples_is_bounded_with_the_reason_in_the_help(trained_drums):
    assert invoke("sample", trained_drums, "-n", "10001").exit_code == 2
    assert "at most 10,000: a few minutes at ~30 ms a file" in " ".join(invoke("sample", "--help").output.split())


# interpolate: the picture is capped, memory bounded

def test_an_interpolation_picture_draws_at_most_max_panels_rolls_and_says_so(trained_drums, tmp_path):
    sizes = {}
    for steps in (MAX_PANELS - 2, 100):
        result = invoke("interpolate", trained_drums, FUNK, ROCK, "--steps", steps, "--out", tmp_path / str(steps))
        assert result.exit_code == 0, result.output
        sizes[steps] = png_size(next((tmp_path / str(steps)).glob("*.png")))
        assert len(list((tmp_path / str(steps)).glob("*-of-*.mid"))) == steps
    assert sizes[100] == sizes[MAX_PANELS - 2]  # 24 rolls each: the 2 inputs and 22 steps, or 24 of 102
    assert f"The picture draws {MAX_PANELS} of the 102 rolls, evenly spread" in result.stderr


def test_a_long_interpolation_stays_within_the_memory_of_a_short_one(trained_drums, tmp_path):
    """Measured (Linux x86-64, CPU torch, the tiny model): 2 steps peak at 305 MB, 200 steps at 418 MB, 1,000
    steps at 917 MB in 51 s (the issue measured 2.2 GB and 197 s, with a 1200 x 245,500-pixel picture; now
    1200 x 5,890)."""
    from hvae.generation import MAX_INTERPOLATION

    assert MAX_INTERPOLATION == 256  # the longest allowed: its memory is about 200 steps'
    assert peak_mb("interpolate", trained_drums, FUNK, ROCK, "--steps", MAX_INTERPOLATION, "--out", tmp_path) \
        < PEAK_LIMIT_MB
    too_long = invoke("interpolate", trained_drums, FUNK, ROCK, "--steps", MAX_INTERPOLATION + 1)
    assert too_long.exit_code == 2 and "2<=x<=256" in too_long.output


# report: counts bounded before any work

def test_a_report_refuses_more_samples_than_a_page_shows_before_any_work(trained_drums):
    assert invoke("report", trained_drums, "-n", MAX_SAMPLES + 1).exit_code == 2
    with pytest.raises(InvalidArgument, match=f"A report's samples must be from 0 to {MAX_SAMPLES}, got 1,000,000."):
        write_run_report(trained_drums, ReportOptions(samples=10 ** 6))
    assert not (trained_drums / "report").exists() or not any((trained_drums / "report").glob("*.partial-*"))


def test_training_steps_are_bounded(trained_drums):
    result = invoke("train", "--resume", trained_drums, "--steps", 2 ** 62)
    assert result.exit_code == 1 and "must be at most 1,000,000,000,000" in result.output
