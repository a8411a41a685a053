"""benchmarks/gpu/check.py, the one prepared GPU run, on a machine without a GPU.

Spec: without CUDA it says so in one line, writes nothing and exits 0; with ``--device cpu --tiny`` it
goes through every phase in seconds (the CUDA tests collected and skipped, every speed case, two tiny
models trained until their time is up, stopped, and evaluated with ``hvae evaluate``) and writes the
files it promises, the tables printed last; its offline install puts hvae and its plugins (and any
carried wheels) in one folder that an interpreter imports them from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "benchmarks" / "gpu" / "check.py"
FILES = {"summary.md", "results.json", "log.txt", "pytest.log", "profile.txt", "quality-hier-drums-4bar.json",
         "quality-groovae_4bar.json", "quality.png"}  # all the device tool brings back: eight files


def check(*args: str, timeout: float = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=env)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_without_a_gpu_it_says_so_in_one_line_and_measures_nothing(tmp_path):
    done = check("--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1 and done.stdout.startswith("No CUDA GPU visible")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("gpu-check")
    return out, check("--device", "cpu", "--tiny", "--budget", "30", "--out", str(out))


@pytest.mark.slow
def test_a_tiny_cpu_run_goes_through_every_phase_and_prints_the_tables_last(tiny_run):
    out, done = tiny_run
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().splitlines()[-1].startswith("Total "), done.stdout[-3000:]
    assert "| train | hierdec-mel_16bar | 4 | bf16 |" in done.stdout
    assert "| groovae_4bar |" in done.stdout
    report = json.loads((out / "results.json").read_text())
    assert report["correctness"]["counts"].get("skipped", 0) > 0, (out / "pytest.log").read_text()
    assert not report["correctness"]["failures"]
    # Every point is timed or, on a machine too slow or too busy for the tiny budget, skipped for time, said so
    # in its row: which of them fit depends on the machine's load, not on the code.
    assert len(report["speed"]) == 4 * 2 + 4 * 2
    assert all(r.get("error") == "skipped: out of time" or (r["rate"] > 0 and r["floor_rate"] > 0)
               for r in report["speed"]), report["speed"]
    assert [q["preset"] for q in report["quality"]] == ["hier-drums-4bar", "groovae_4bar"]
    assert all(q["stopped_by_time"] and q["step"] > 0 and "error" not in q for q in report["quality"]), done.stdout


@pytest.mark.slow
def test_a_tiny_cpu_run_writes_its_files_and_checkpoints(tiny_run):
    out, _ = tiny_run
    assert {p.name for p in out.iterdir() if p.is_file()} == FILES
    assert "aten::" in (out / "profile.txt").read_text()
    evaluation = json.loads((out / "quality-groovae_4bar.json").read_text())
    assert evaluation["split"] == "test" and {"hit_f1", "velocity_mae", "timing_mae_ms"} <= set(evaluation["sampled"])
    step = json.loads((out / "quality-hier-drums-4bar.json").read_text())["step"]
    run = out / "runs" / "gmd" / "hier-drums-4bar"
    assert (run / "checkpoints" / f"step-{step:08d}" / "checkpoint.json").exists()
    assert (out / "summary.md").read_text() in (out / "log.txt").read_text()


@pytest.mark.slow
def test_the_offline_install_makes_hvae_and_its_plugins_importable_from_one_folder(tmp_path):
    site, wheels = tmp_path / "site", tmp_path / "wheels"  # (no wheels carried: hvae's own four alone)
    code = (f"import sys, pathlib; sys.path.insert(0, {str(CHECK.parent)!r}); import check; "
            f"check.install(pathlib.Path({str(site)!r}), pathlib.Path({str(wheels)!r}), print)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert {p.name.split("-")[0] for p in site.glob("*.dist-info")} == {"hvae", "hvae_converters", "hvae_decoders",
                                                                        "hvae_losses"}
    probe = "import hvae, hvae_decoders; print(hvae.__file__)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(site)})
    assert done.stdout.strip().startswith(str(site)), done.stderr
