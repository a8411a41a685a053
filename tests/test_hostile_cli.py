"""Hostile options, files and faults at the command line: one line, no traceback, nothing half made.

Spec: numbers are checked at the edge (finite, in range) before any folder is made; a model whose
outputs are not finite gives an error, not a sample; an OSError anywhere (disk full, a folder hvae
may not write, a name too long) is one line naming the path; Ctrl-C exits 130 at any point; a plugin
that exits while importing or registers something that is not a class does not take hvae down.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hvae.checkpoint import MANIFEST, MODEL_FILE, list_checkpoints
from hvae.data import DEMO_DIR
from hvae.hookspecs import hookimpl
from clihelp import invoke, one_line_error
from hostile import children, rehashed
from test_robustness import TINY

HVAE = str(Path(sys.executable).parent / "hvae")


# --- options --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--seed", str(2 ** 64)], "is not in the range 0<=x<=18446744073709551615"),
    (["--seed", "-1"], "is not in the range 0<=x<="),
    (["-m", "learning_rate=nan"], "Option learning_rate: 'nan' is not a finite number"),
    (["-m", "learning_rate=inf"], "Option learning_rate: 'inf' is not a finite number"),
    (["-m", "learning_rate=-1"], "Model option learning_rate must be a finite number above 0"),
    (["-m", "dropout=1.5"], "Model option dropout must be a finite number at least 0 and at most 1"),
    (["-m", "z_size=1000000000"], "Model option z_size must be a whole number from 1 to 65536"),
    (["-m", "z_size=0"], "Model option z_size must be a whole number from 1 to 65536"),
    (["--batch-size", str(10 ** 12)], "Training option batch_size must be at most 1,048,576"),
    (["--batch-size", "900000"], "more than this machine's"),
    (["-m", "z_size=65536", "-m", "decoder.rnn_sizes=16384,16384"], "more than this machine's"),
    (["-o", "gap_bars=nan"], "Option gap_bars: 'nan' is not a finite number"),
    (["--threads", "100000"], "100000 is not in the range 1<=x<=256"),
])
@pytest.mark.parametrize("command", ["train", "run"])
def test_out_of_range_numbers_are_refused_before_any_folder_is_made(tmp_path, command, args, message):
    result = invoke(command, *args, "--steps", 1, "--no-progress", "--cache", tmp_path / "cache", "--out",
                    tmp_path / "run")
    assert result.exit_code in (1, 2), result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("args, message", [
    (["--qpm", "nan"], "'nan' is not a finite number"),
    (["--qpm", "inf"], "inf is not in the range 3.57"),
    (["--qpm", "3.5"], "3.5 is not in the range 3.57"),
    (["--qpm", "1e9"], "is not in the range"),
    (["-t", "nan"], "'nan' is not a finite number"),
    (["-t", "inf"], "'inf' is not a finite number"),
    (["--seed", str(2 ** 64)], "is not in the range 0<=x<=18446744073709551615"),
])
def test_out_of_range_sampling_numbers_are_refused_before_anything_is_written(trained_drums, tmp_path, args,
                                                                               message):
    result = invoke("sample", trained_drums, *args, "--out", tmp_path / "samples")
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "samples").exists()


def test_an_interpolation_of_a_hundred_million_steps_is_refused_not_attempted(trained_drums, tmp_path):
    midi = sorted(DEMO_DIR.rglob("*.mid"))[0]
    result = invoke("interpolate", trained_drums, midi, midi, "--steps", 10 ** 8, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "100000000 is not in the range 2<=x<=256" in result.output
    assert not (tmp_path / "out").exists()


# --- outputs that are not numbers -----------------------------------------------------------------------------------

def test_a_model_with_nan_weights_gives_an_error_not_a_sample(trained_drums, tmp_path):
    run = Path(shutil.copytree(trained_drums, tmp_path / "run"))
    newest = list_checkpoints(run)[-1]
    weights = load_file(newest / MODEL_FILE)
    name = sorted(weights)[0]
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, newest / MODEL_FILE)
    data = (newest / MODEL_FILE).read_bytes()
    manifest = json.loads((newest / MANIFEST).read_text())
    manifest["files"][MODEL_FILE] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (newest / MANIFEST).write_text(json.dumps(rehashed(manifest)))
    line = one_line_error(invoke("sample", run, "--out", tmp_path / "samples", "-n", 2))
    assert "weights that are not finite numbers" in line and name in line
    assert not (tmp_path / "samples").exists()


# --- OSError at the edge --------------------------------------------------------------------------------------------

def test_a_full_disk_while_sampling_is_one_line_naming_the_file(trained_drums, tmp_path):
    out = tmp_path / "samples"
    done = subprocess.run(["bash", "-c", f"ulimit -f 0 && exec {HVAE} sample {trained_drums} -n 2 --out {out}"],
                          capture_output=True, text=True, timeout=120)  # no file may grow: a full disk
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"Error: {out}: File too large"]
    assert list(out.iterdir()) == []  # no half file, no temporary file


def test_a_folder_hvae_may_not_write_is_one_line_naming_it(trained_drums):
    line = one_line_error(invoke("sample", trained_drums, "--out", "/sys/hvae-samples", "-n", 1))
    assert line == "Error: /sys/hvae-samples: Operation not permitted"


def test_a_working_folder_hvae_may_not_write_is_one_line_naming_the_run_folder(tmp_path):
    done = subprocess.run([HVAE, "train", *TINY, "--steps", "1", "--cache", str(tmp_path / "cache")], cwd="/sys",
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: runs") and lines[0].endswith("Operation not permitted")


def test_an_input_name_too_long_for_its_outputs_is_one_line(trained_drums, tmp_path):
    long = tmp_path / ("n" * 240 + ".mid")
    shutil.copy(sorted(DEMO_DIR.rglob("*.mid"))[0], long)
    line = one_line_error(invoke("reconstruct", trained_drums, long, "--out", tmp_path / "out"))
    assert line.startswith(f"Error: {tmp_path / 'out'}/nnnn") and line.endswith("File name too long")


# --- Ctrl-C ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("when", [0.3, 1.5, 3.0])
def test_ctrl_c_while_preparing_data_exits_130(gmd_dir, tmp_path, when):
    process = subprocess.Popen([HVAE, "data", "prepare", "-c", "drums", "--data", str(gmd_dir), "--out",
                                str(tmp_path / "cache"), "-j", "2", "--no-progress"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(when)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Aborted!" not in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("when", [0.2, 0.8])
def test_ctrl_c_during_start_up_exits_130(tmp_path, when):
    process = subprocess.Popen([HVAE, "train", *TINY, "--steps", "1000", "--cache", str(tmp_path / "cache"),
                                "--out", str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    time.sleep(when)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Aborted!" not in stderr and "Traceback" not in stderr


def test_ctrl_c_while_sampling_exits_130(trained_drums, tmp_path):
    process = subprocess.Popen([HVAE, "sample", str(trained_drums), "-n", "10000", "--out", str(tmp_path / "s")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Aborted!" not in stderr and "Traceback" not in stderr


# --- plugins --------------------------------------------------------------------------------------------------------

def test_a_plugin_that_exits_while_importing_is_reported_and_the_others_work(tmp_path):
    site = tmp_path / "site"
    (site / "hvae_exits-0.1.dist-info").mkdir(parents=True)
    (site / "hvae_exits.py").write_text("import sys\nsys.exit(3)\n")
    (site / "hvae_exits-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: hvae-exits\n"
                                                                 "Version: 0.1\n")
    (site / "hvae_exits-0.1.dist-info" / "entry_points.txt").write_text("[hvae]\nexits = hvae_exits\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([HVAE, "plugins"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "import failed: SystemExit: 3" in done.stdout + done.stderr
    assert "drums" in done.stdout


class Careless:
    """A plugin that registers an instance, a function and a number where classes belong."""

    @hookimpl
    def hvae_register_converters(self, register):
        register(lambda: None, name="lambda-drums")
        register(42)

    @hookimpl
    def hvae_register_losses(self, register):
        register(textwrap, name="module-loss")


class Exits:
    @hookimpl
    def hvae_register_decoders(self, register):
        sys.exit(4)


def test_registrations_that_are_not_classes_are_reported_not_used(hvae_plugin):
    hvae_plugin(Careless(), name="careless")
    hvae_plugin(Exits(), name="exits")
    listing = invoke("plugins")
    assert listing.exit_code == 0, listing.output
    assert "registered a converter that is not a class" in listing.output
    assert "registered a loss that is not a class" in listing.output
    assert "decoders hook failed: SystemExit(4)" in listing.output
    line = one_line_error(invoke("train", "--converter", "lambda-drums", "--steps", 1))
    assert line.startswith("Error: Unknown converter 'lambda-drums'. Installed: drums, groove, melody, multiperf, trio.")


def test_an_unknown_loss_is_called_a_loss():
    line = one_line_error(invoke("train", "--loss", "nope", "--steps", 1))
    assert line.startswith("Error: Unknown loss 'nope'. Installed: ")


# --- a process of a distributed run that dies -----------------------------------------------------------------------

def rank_of(pid: int) -> int | None:
    """The torchrun rank of process ``pid`` (from its environment), None if it has none."""
    for entry in (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0"):
        if entry.startswith(b"RANK="):
            return int(entry[5:])
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the ranks")
def test_when_one_rank_dies_the_other_says_so_in_one_line(tmp_path):
    process = subprocess.Popen([HVAE, "train", "--nproc", "2", *TINY, "--workers", "1", "--steps", "100000",
                                "--checkpoint-every", "5", "--cache", str(tmp_path / "cache"), "--out",
                                str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list_checkpoints(tmp_path / "run"):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    victim = next(pid for pid in children(process.pid) if rank_of(pid) == 1)
    os.kill(victim, signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "Traceback" not in stderr and "GLHF" not in stderr
    assert "Error: Another process of this run stopped (its own message says why), so this one stops too" in stderr
    assert "Training process 1 of 2 failed (exit status -9)" in stderr


def test_an_absurd_number_of_samples_is_refused_before_any_work(trained_drums, tmp_path):
    started = time.perf_counter()
    result = invoke("sample", trained_drums, "-n", 10 ** 9, "--out", tmp_path / "samples")
    assert result.exit_code == 2 and "100000" in result.output.replace(",", "")
    assert time.perf_counter() - started < 30 and not (tmp_path / "samples").exists()
