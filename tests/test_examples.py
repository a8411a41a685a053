"""The examples/ scripts run as a user runs them, on real MIDI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_the_latent_tools_notebook_writes_every_steps_files(gmd_dir, tmp_path):
    beats = sorted((gmd_dir / "drummer1" / "eval_session").glob("*_beat_4-4.mid"))[:4]
    done = subprocess.run([sys.executable, str(EXAMPLES / "latent_tools.py"), *map(str, beats), "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    sections = [line[2:].split(" (")[0] for line in done.stdout.splitlines() if line.startswith("# ")]
    assert sections == ["density sweep", "more hats, fewer cymbals", "similar", "mean", "grid", "drumify", "humanize"]
    written = [Path(line) for line in done.stdout.splitlines() if line.endswith(".mid")]
    assert len(written) >= 14 and all(path.is_file() and path.is_relative_to(tmp_path) for path in written)
    densities = [float(x) for x in done.stdout.split("hits per bar: ")[1].split(")")[0].split(", ")]
    assert densities == sorted(densities) and densities[-1] > densities[0]  # sparser to denser
