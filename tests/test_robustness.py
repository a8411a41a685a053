"""Killed runs, damaged checkpoints and caches, and two runs on one directory lose nothing.

Spec: ``hvae train`` killed with SIGKILL at random points (in steps, in checkpoint writes) and
resumed each time ends with the weights, Adam moments and metrics of a run never interrupted; a
checkpoint write that dies at any file leaves the previous checkpoint committed and readable; a
corrupt checkpoint is reported, moved aside, and resuming uses the one before; a corrupt cache is
reported and rebuilt when training; a second run on a run directory in use is refused with the
holder's pid; a start that fails leaves no directory behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import hvae
import hvae.checkpoint as checkpoint_module
import hvae.manifest as manifest_module
from hvae.checkpoint import list_checkpoints, read_checkpoint
from hvae.data import DEMO_DIR, load_split, prepare_dataset
from hvae.errors import CheckpointError
from hvae.presets import get_preset
from hvae.rundir import METRICS_FILE, RunConfig, TrainConfig
from hvae.runlock import RunInUseError
from sessions import new_session, resumed_session, train_new, train_on
from clihelp import invoke

HVAE = str(Path(sys.executable).parent / "hvae")
# The demo preset shrunk to 16-unit LSTMs on one thread: a step takes tens of milliseconds.
TINY = ["--preset", "demo", "-m", "z_size=8", "-m", "encoder.rnn_sizes=16", "-m", "decoder.rnn_sizes=16",
        "--batch-size", "16", "--threads", "1", "--no-progress", "--log-every", "1"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """The demo preset's windows of the bundled demo subset, prepared once."""
    preset = get_preset("demo")
    out = tmp_path_factory.mktemp("cache") / "drums"
    prepare_dataset(hvae.get_converter(preset.converter, **preset.converter_options), DEMO_DIR, out, workers=2,
                    progress=False)
    return out


def train_lines(run: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock figures."""
    lines = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "examples_per_s"} for line in lines]


def assert_same_state(a: Path, b: Path) -> None:
    """The newest checkpoints of two runs hold the same step, weights and Adam state, bit for bit."""
    first, second = read_checkpoint(a), read_checkpoint(b)
    assert first.step == second.step
    assert first.model.keys() == second.model.keys()
    for key in first.model:
        assert torch.equal(first.model[key], second.model[key]), key
    for index, moments in first.optimizer["state"].items():
        for key, value in moments.items():
            assert torch.equal(value, second.optimizer["state"][index][key]), (index, key)


def wait_for(condition, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def logged_steps(run: Path) -> int:
    path = run / METRICS_FILE
    return path.read_text().count("\n") if path.exists() else 0


# --- SIGKILL at random points -----------------------------------------------------------------------------------

STEPS = 60


def test_a_run_killed_at_random_points_and_resumed_ends_as_an_uninterrupted_one(cache, tmp_path):
    straight = tmp_path / "straight"
    args = [*TINY, "--steps", str(STEPS), "--checkpoint-every", "1", "--cache", str(cache)]
    done = subprocess.run([HVAE, "train", *args, "--out", str(straight)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    killed = tmp_path / "killed"
    chance = random.Random(7)
    kills, command = 0, [HVAE, "train", *args, "--out", str(killed)]
    while kills < 6:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if kills == 0:  # the first kill before any checkpoint: while the data loads or the model is built
            time.sleep(chance.uniform(0.5, 2.0))
        else:  # then during training: a step, a metrics line, or a checkpoint being written
            before = logged_steps(killed)
            wait_for(lambda: logged_steps(killed) > before or process.poll() is not None, process)
            time.sleep(chance.uniform(0.0, 0.15))
        if process.poll() is not None:  # finished before the kill
            break
        process.kill()
        process.communicate()
        kills += 1
        if (killed / "config.json").exists():  # what a user does next: resume, or start again if it never began
            command = [HVAE, "train", "--resume", str(killed), "--no-progress"]
        for checkpoint in list_checkpoints(killed):  # every committed checkpoint is whole
            read_checkpoint(checkpoint)
    finished = subprocess.run(command, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert "Traceback" not in finished.stderr
    assert kills == 6
    assert_same_state(straight, killed)
    assert train_lines(killed) == train_lines(straight)
    assert not list(killed.rglob("*.tmp-*"))


def test_a_run_stopped_before_its_first_checkpoint_begins_again_from_step_0(cache, tmp_path):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    for run in (straight, stopped):
        result = invoke("train", *TINY, "--steps", 4, "--cache", cache, "--out", run)
        assert result.exit_code == 0, result.output
    for checkpoint in list_checkpoints(stopped):  # as if killed before the first one was written
        shutil.rmtree(checkpoint)
    resumed = invoke("train", "--resume", stopped, "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert "stopped before its first checkpoint: beginning again from step 0" in resumed.stderr
    assert_same_state(straight, stopped)
    assert train_lines(stopped) == train_lines(straight)


# --- checkpoint writes that die ---------------------------------------------------------------------------------

def tiny_config(cache: Path, **train) -> RunConfig:
    preset = get_preset("demo")
    model = dataclasses.replace(preset.model, z_size=8, encoder_options={"rnn_sizes": (16,)},
                                decoder_options={"rnn_sizes": (16,), "level_lengths": (4, 16)})
    settings = dict(batch_size=16, steps=4, log_every=1, eval_every=0, checkpoint_every=2, eval_examples=32,
                    threads=1)
    return RunConfig(name="tiny", converter=preset.converter, converter_options=dict(preset.converter_options),
                     model=model, train=TrainConfig(**{**settings, **train}), data_dir=str(DEMO_DIR),
                     cache_dir=str(cache))


class Crash(BaseException):
    """Stands for the process dying (not an Exception: nothing may catch it)."""


# model, rng, optimizer files; the folder fsync before the manifest, the manifest file; then the fsync after it
@pytest.mark.parametrize("fatal", range(6))
def test_a_checkpoint_write_dying_at_any_file_leaves_the_previous_checkpoint(cache, tmp_path, monkeypatch, fatal):
    run = tmp_path / "run"
    train_new(run, tiny_config(cache, steps=2))
    good = list_checkpoints(run)
    calls = {"n": 0}
    real_write, real_fsync = checkpoint_module.write_atomic, manifest_module.fsync_folder

    def dying_write(path, data):
        if calls["n"] == fatal:
            path.with_name(f".{path.name}.tmp-{os.getpid()}").write_bytes(data[: len(data) // 2])  # half written
            raise Crash
        calls["n"] += 1
        real_write(path, data)

    def dying_fsync(directory):
        if calls["n"] == fatal:
            raise Crash
        calls["n"] += 1
        real_fsync(directory)

    monkeypatch.setattr(checkpoint_module, "write_atomic", dying_write)
    monkeypatch.setattr(manifest_module, "write_atomic", dying_write)
    monkeypatch.setattr(manifest_module, "fsync_folder", dying_fsync)
    with pytest.raises(Crash), resumed_session(run, steps=4) as session:
        session.train()
    monkeypatch.undo()
    committed = list_checkpoints(run)
    assert committed[: len(good)] == good
    newest = read_checkpoint(run)  # the newest committed one reads and verifies
    assert newest.step == (4 if fatal == 5 else 2)  # only the fsync after the manifest comes too late to matter
    train_on(run)
    straight = tmp_path / "straight"
    train_new(straight, tiny_config(cache))
    assert_same_state(straight, run)
    assert not list(run.rglob("*.tmp-*"))


# --- corrupt checkpoints and caches ---------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["flip a byte of the weights", "truncate the manifest", "delete the rng file"])
def test_a_corrupt_newest_checkpoint_is_reported_moved_aside_and_the_previous_one_used(cache, tmp_path, damage):
    run, straight = tmp_path / "run", tmp_path / "straight"
    for out in (run, straight):
        assert invoke("train", *TINY, "--steps", 6, "--checkpoint-every", 2, "--cache", cache, "--out",
                      out).exit_code == 0
    newest = list_checkpoints(run)[-1]
    assert newest.name == "step-00000006"
    if damage == "flip a byte of the weights":
        data = bytearray((newest / "model.safetensors").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (newest / "model.safetensors").write_bytes(bytes(data))
    elif damage == "truncate the manifest":
        text = (newest / "checkpoint.json").read_text()
        (newest / "checkpoint.json").write_text(text[: len(text) // 2])
    else:
        (newest / "rng.safetensors").unlink()
    result = invoke("train", "--resume", run, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    note = [line for line in result.stderr.splitlines() if "Corrupt checkpoint" in line]
    assert len(note) == 1 and f"Moved it to {run / 'corrupt' / 'step-00000006'}" in note[0], result.stderr
    assert (run / "corrupt" / "step-00000006").is_dir()
    assert "Train:  steps 4 -> 6" in result.stdout
    assert_same_state(straight, run)
    assert train_lines(run) == train_lines(straight)


def test_when_every_checkpoint_is_corrupt_resume_says_so_in_one_line(cache, tmp_path):
    run = tmp_path / "run"
    assert invoke("train", *TINY, "--steps", 2, "--checkpoint-every", 1, "--cache", cache, "--out", run).exit_code == 0
    for checkpoint in list_checkpoints(run):
        (checkpoint / "model.safetensors").write_bytes(b"not a safetensors file")
    result = invoke("train", "--resume", run, "--no-progress")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: No readable checkpoint in {run}: Corrupt checkpoint")


@pytest.mark.parametrize("damage, reason", [("corrupt", "train.npz does not match its checksum (corrupt)"),
                                            ("truncate", "train.npz is ")])
def test_a_damaged_cache_is_reported_and_rebuilt_when_training(cache, tmp_path, damage, reason):
    own = tmp_path / "cache"
    shutil.copytree(cache, own)
    data = bytearray((own / "train.npz").read_bytes())
    if damage == "corrupt":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[len(data) // 2:]
    (own / "train.npz").write_bytes(bytes(data))
    result = invoke("train", *TINY, "--steps", 2, "--cache", own, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert f"Note:   Data cache {own} rebuilt: {reason}" in result.stderr
    rebuilt, original = load_split(own, "train"), load_split(cache, "train")  # verified against the checksums
    assert np.array_equal(rebuilt.lengths, original.lengths) and len(rebuilt) == len(original)


# --- one run per directory ------------------------------------------------------------------------------------------

def test_a_second_run_on_a_directory_in_use_is_refused_and_the_first_is_untouched(cache, tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen([HVAE, "train", *TINY, "--steps", "100000", "--checkpoint-every", "5", "--cache",
                              str(cache), "--out", str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    wait_for(lambda: bool(list_checkpoints(run)), first)
    for second in (["train", "--resume", run, "--no-progress"],
                   ["train", *TINY, "--steps", 10, "--cache", cache, "--out", run],
                   ["run", *TINY, "--steps", 10, "--cache", cache, "--out", run]):
        result = invoke(*second)
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1, result.output
        assert lines[0].startswith(f"Error: {run} is in use by another hvae run (pid {first.pid} on "), lines[0]
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 130, stderr
    steps = [line["step"] for line in train_lines(run) if line["split"] == "train"]
    assert steps == list(range(1, len(steps) + 1))  # one writer: no line twice, none out of order
    resumed = invoke("train", "--resume", run, "--steps", steps[-1] + 1, "--no-progress")  # free again
    assert resumed.exit_code == 0, resumed.output


def test_the_lock_is_held_from_entering_the_session_until_leaving_it(cache, tmp_path):
    run = tmp_path / "run"
    with new_session(run, tiny_config(cache, steps=2)) as session:
        with pytest.raises(RunInUseError, match=f"pid {os.getpid()} on "):
            resumed_session(run).__enter__()
        session.train()
        with pytest.raises(RunInUseError, match=f"pid {os.getpid()} on "):  # trained, still held
            resumed_session(run).__enter__()
    train_on(run, steps=3)
    assert read_checkpoint(run).step == 3


def test_a_start_that_fails_leaves_no_run_directory(tmp_path):
    empty = tmp_path / "no-midi"
    empty.mkdir()
    (empty / "silence.mid").write_bytes(b"")
    run = tmp_path / "run"
    result = invoke("train", *TINY, "--steps", 2, "--data", empty, "--cache", tmp_path / "cache", "--out", run)
    assert result.exit_code == 1
    assert not run.exists()


def test_resume_refuses_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(CheckpointError, match="is not an hvae run directory"):
        train_on(tmp_path)

