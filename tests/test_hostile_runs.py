"""Hostile files in a run directory: nothing outside the run is touched, nothing of the user's is lost.

Spec: everything a run writes (``.lock``, ``metrics.jsonl``, checkpoints) is created without following
links, inside the run's own folders, and a link is refused with one line; pruning removes only the
checkpoints this run wrote; a checkpoint.json that is damaged (even as valid JSON) is never used — the
previous checkpoint is, with a note — and its ``name`` never decides where samples go; resuming says
which configuration it uses when config.json differs from the checkpoint, and needs no config.json;
metrics.jsonl after a SIGKILL (or Ctrl-C) and a resume holds exactly the lines of a run never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hvae.checkpoint import MANIFEST, list_checkpoints, read_checkpoint, read_manifest, write_checkpoint
from hvae.errors import CheckpointError, UnsafePathError
from clihelp import invoke, one_line_error
from hostile import bit_flips, rehashed
from test_robustness import HVAE, TINY, assert_same_state, cache, train_lines, wait_for  # noqa: F401 (fixture)

DECOY = b"a file of the user's that hvae must never write\n"


def trained(cache: Path, run: Path, *args) -> Path:
    result = invoke("train", *TINY, "--steps", 4, "--checkpoint-every", 2, "--cache", cache, "--out", run, *args)
    assert result.exit_code == 0, result.output
    return run


def decoy(tmp_path: Path) -> Path:
    path = tmp_path / "decoy.txt"
    path.write_bytes(DECOY)
    return path


# --- links and things in the way ---------------------------------------------------------------------------------

def test_a_lock_file_that_is_a_link_is_refused_and_its_target_untouched(cache, tmp_path):
    run = trained(cache, tmp_path / "run")
    target = decoy(tmp_path)
    (run / ".lock").unlink()
    (run / ".lock").symlink_to(target)
    line = one_line_error(invoke("train", "--resume", run, "--no-progress"))
    assert f"{run / '.lock'} is a symbolic link" in line
    assert target.read_bytes() == DECOY


def test_a_new_run_whose_folder_holds_a_lock_link_is_refused_and_the_target_untouched(cache, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    target = decoy(tmp_path)
    (run / ".lock").symlink_to(target)
    line = one_line_error(invoke("train", *TINY, "--steps", 2, "--cache", cache, "--out", run))
    assert "is a symbolic link" in line
    assert target.read_bytes() == DECOY


def test_a_lock_that_is_a_folder_is_one_line(cache, tmp_path):
    run = trained(cache, tmp_path / "run")
    (run / ".lock").unlink()
    (run / ".lock").mkdir()
    assert "is not a plain file" in one_line_error(invoke("train", "--resume", run, "--no-progress"))


def test_a_metrics_file_that_is_a_link_is_refused_and_its_target_untouched(cache, tmp_path):
    run = trained(cache, tmp_path / "run")
    target = decoy(tmp_path)
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(target)
    line = one_line_error(invoke("train", "--resume", run, "--steps", 6, "--no-progress"))
    assert f"{run / 'metrics.jsonl'} is a symbolic link" in line
    assert target.read_bytes() == DECOY


def test_a_linked_checkpoints_folder_is_refused_and_the_folder_it_points_to_untouched(cache, tmp_path):
    shared = tmp_path / "shared-models"
    (shared / "step-00000001").mkdir(parents=True)
    (shared / "step-00000001" / "model.safetensors").write_bytes(DECOY)
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").symlink_to(shared)
    line = one_line_error(invoke("train", *TINY, "--steps", 3, "--checkpoint-every", 1, "--cache", cache,
                                 "--out", run))
    assert f"{run / 'checkpoints'} is a symbolic link" in line
    assert sorted(p.name for p in shared.rglob("*")) == ["model.safetensors", "step-00000001"]
    assert (shared / "step-00000001" / "model.safetensors").read_bytes() == DECOY


@pytest.mark.parametrize("what", ["config.json as a FIFO", "checkpoint.json as a FIFO", "weights as /dev/zero"])
def test_a_fifo_or_device_in_place_of_a_run_file_is_passed_over_not_read(cache, tmp_path, what):
    run, straight = trained(cache, tmp_path / "run"), trained(cache, tmp_path / "straight", "--steps", 6)
    newest = list_checkpoints(run)[-1]
    if what == "config.json as a FIFO":
        (run / "config.json").unlink()
        os.mkfifo(run / "config.json")
    elif what == "checkpoint.json as a FIFO":
        (newest / MANIFEST).unlink()
        os.mkfifo(newest / MANIFEST)
    else:
        (newest / "model.safetensors").unlink()
        (newest / "model.safetensors").symlink_to("/dev/zero")
    done = subprocess.run([HVAE, "train", "--resume", str(run), "--steps", "6", "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert_same_state(straight, run)


def test_a_samples_folder_that_is_a_link_is_refused(cache, tmp_path):
    run = trained(cache, tmp_path / "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run / "samples").symlink_to(elsewhere)
    line = one_line_error(invoke("sample", run, "-n", 1))
    assert f"{run / 'samples'} is a symbolic link" in line
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("theirs", ["metrics.jsonl", "checkpoints"])
def test_a_new_run_in_a_folder_holding_files_it_would_write_is_refused(cache, tmp_path, theirs):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_bytes(DECOY) if theirs == "metrics.jsonl" else (run / "checkpoints").mkdir()
    line = one_line_error(invoke("train", *TINY, "--steps", 2, "--cache", cache, "--out", run))
    assert f"{run} holds {theirs} but no config.json: not an hvae run" in line
    assert sorted(p.name for p in run.iterdir()) == [".lock", theirs]


def test_a_checkpoints_file_in_the_way_is_refused_before_training(cache, tmp_path):
    run = trained(cache, tmp_path / "run")
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").write_bytes(DECOY)
    line = one_line_error(invoke("train", "--resume", run, "--no-progress"))
    assert f"{run / 'checkpoints'} is in the way" in line
    assert (run / "checkpoints").read_bytes() == DECOY


# --- pruning --------------------------------------------------------------------------------------------------------

def test_pruning_removes_only_this_runs_checkpoints(cache, tmp_path):
    other = trained(cache, tmp_path / "other", "--seed", 1)
    run = tmp_path / "run"
    assert invoke("train", *TINY, "--steps", 2, "--checkpoint-every", 2, "--cache", cache, "--out",
                  run).exit_code == 0
    (run / "checkpoints" / "best").mkdir()
    (run / "checkpoints" / "best" / "model.safetensors").write_bytes(DECOY)
    others = (list_checkpoints(other)[-1] / MANIFEST).read_bytes()
    os.rename(list_checkpoints(other)[-1], run / "checkpoints" / "step-00000001")  # another run's, in the way
    (run / "checkpoints" / "step-00000003").mkdir()
    (run / "checkpoints" / "step-00000003" / "notes.txt").write_bytes(DECOY)  # not a checkpoint at all
    result = invoke("train", "--resume", run, "--steps", 8, "--no-progress")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["best", "step-00000001", "step-00000003", "step-00000004", "step-00000006", "step-00000008"]
    assert (run / "checkpoints" / "best" / "model.safetensors").read_bytes() == DECOY
    assert (run / "checkpoints" / "step-00000003" / "notes.txt").read_bytes() == DECOY
    assert (run / "checkpoints" / "step-00000001" / MANIFEST).read_bytes() == others


def test_a_step_folder_holding_another_runs_checkpoint_is_not_overwritten(cache, tmp_path):
    run = trained(cache, tmp_path / "run")
    theirs = list_checkpoints(run)[0]
    before = (theirs / MANIFEST).read_bytes()
    ours = read_checkpoint(theirs)
    mine = dataclasses.replace(ours, meta={**ours.meta, "run_id": "0123abcd"})  # another run, same step
    with pytest.raises(UnsafePathError, match=f"{theirs} holds a checkpoint of another run"):
        write_checkpoint(run, mine)
    assert (theirs / MANIFEST).read_bytes() == before


# --- damaged checkpoint.json ----------------------------------------------------------------------------------------

DAMAGE = {
    "step is a string": lambda m: {**m, "step": "4"},
    "step is negative": lambda m: {**m, "step": -1},
    "step of another folder": lambda m: {**m, "step": 2},
    "step is true": lambda m: {**m, "step": True},
    "files is a list": lambda m: {**m, "files": []},
    "a size is a string": lambda m: {**m, "files": {**m["files"], "rng.safetensors": {
        **m["files"]["rng.safetensors"], "bytes": "many"}}},
    "a hash is a number": lambda m: {**m, "files": {**m["files"], "model.safetensors": {
        **m["files"]["model.safetensors"], "sha256": 7}}},
    "an extra file": lambda m: {**m, "files": {**m["files"], "../../evil": m["files"]["rng.safetensors"]}},
    "no optimiser groups": lambda m: {**m, "optimizer": {"scalars": {}}},
    "name climbs out": lambda m: {**m, "name": "../../x/pwn"},
    "name is absolute": lambda m: {**m, "name": "/tmp/pwn"},
    "name with NUL": lambda m: {**m, "name": "a\u0000b"},
    "name too long": lambda m: {**m, "name": "n" * 300},
    "run is a list": lambda m: {**m, "run": []},
    "model is a string": lambda m: {**m, "model": "big"},
    "format version 99": lambda m: {**m, "format_version": 99},
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_checkpoint_json_damaged_as_valid_json_falls_back_to_the_previous_checkpoint(cache, tmp_path, damage):
    run, straight = trained(cache, tmp_path / "run"), trained(cache, tmp_path / "straight")
    newest = list_checkpoints(run)[-1]
    manifest = json.loads((newest / MANIFEST).read_text())
    (newest / MANIFEST).write_text(json.dumps(rehashed(DAMAGE[damage](manifest))))
    result = invoke("train", "--resume", run, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("Note:") and str(newest) in line]
    assert len(notes) == 1 and notes[0].endswith(f"Moved it to {run / 'corrupt' / newest.name}."), result.stderr
    assert_same_state(straight, run)


def test_a_hand_edit_without_fixing_the_checksum_is_detected(cache, tmp_path):
    run = trained(cache, tmp_path / "run")
    newest = list_checkpoints(run)[-1]
    manifest = json.loads((newest / MANIFEST).read_text())
    manifest["run"]["train"]["seed"] = 5
    (newest / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="does not match its own checksum"):
        read_manifest(newest)


def test_no_single_bit_flip_of_checkpoint_json_changes_what_is_read(cache, tmp_path):
    """Every flip is refused, except one that leaves every value as it was: the checksum covers the
    values, so a flip of a number's exponent letter (``1e-05`` to ``1E-05``) reads the same manifest."""
    run = trained(cache, tmp_path / "run")
    path = list_checkpoints(run)[-1] / MANIFEST
    original = path.read_bytes()
    unchanged = json.loads(original)
    refused = 0
    for damaged in bit_flips(original, 200, seed=12):
        path.write_bytes(damaged)
        try:
            manifest = read_manifest(path.parent)
        except CheckpointError:
            refused += 1
            continue
        assert manifest == unchanged, damaged.decode("utf-8", "replace")
        assert damaged.lower() == original.lower()  # the one kind of flip that keeps the values
    assert refused >= 190


@pytest.mark.parametrize("name", ["../../x/pwn", "/tmp/hvae-pwn", "a\u0000b", "n" * 300])
def test_a_checkpoint_name_never_decides_where_samples_go(cache, tmp_path, name):
    run = trained(cache, tmp_path / "work" / "run")
    newest = list_checkpoints(run)[-1]
    manifest = json.loads((newest / MANIFEST).read_text())
    (newest / MANIFEST).write_text(json.dumps(rehashed({**manifest, "name": name})))
    before = sorted(tmp_path.rglob("*"))
    line = one_line_error(invoke("sample", newest, "--out", tmp_path / "samples", "-n", 1))
    assert "not a plain file name" in line
    assert sorted(tmp_path.rglob("*")) == before
    assert not Path("/tmp/hvae-pwn_sample").exists()


# --- config.json and the checkpoint ---------------------------------------------------------------------------------

def test_a_changed_seed_in_config_json_is_named_and_the_checkpoints_used(cache, tmp_path):
    run, straight = trained(cache, tmp_path / "run"), trained(cache, tmp_path / "straight", "--steps", 6)
    config = json.loads((run / "config.json").read_text())
    config["train"]["seed"] = 5
    (run / "config.json").write_text(json.dumps(config))
    result = invoke("train", "--resume", run, "--steps", 6, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "train.seed 0 in the checkpoint, 5 in config.json" in result.stderr
    assert "resuming with the checkpoint's" in result.stderr
    assert_same_state(straight, run)


@pytest.mark.parametrize("damage", ["deleted", "not JSON", "a list", "seed is a string"])
def test_resume_needs_no_readable_config_json(cache, tmp_path, damage):
    run, straight = trained(cache, tmp_path / "run"), trained(cache, tmp_path / "straight", "--steps", 6)
    config = run / "config.json"
    if damage == "deleted":
        config.unlink()
    elif damage == "not JSON":
        config.write_bytes(b"\xff{")
    elif damage == "a list":
        config.write_text("[]")
    else:
        config.write_text(json.dumps({**json.loads(config.read_text()), "train": {"seed": "zero"}}))
    result = invoke("train", "--resume", run, "--steps", 6, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "resuming with the configuration saved in" in result.stderr
    assert_same_state(straight, run)
    assert json.loads(config.read_text())["train"]["seed"] == 0  # written again, whole


# --- metrics.jsonl ------------------------------------------------------------------------------------------------

def test_a_bad_byte_in_metrics_jsonl_neither_blocks_resume_nor_is_lost(cache, tmp_path):
    run = trained(cache, tmp_path / "run")
    metrics = run / "metrics.jsonl"
    damaged = metrics.read_bytes().replace(b'"split"', b'"spl\xfft"', 1)
    metrics.write_bytes(damaged)
    result = invoke("train", "--resume", run, "--steps", 6, "--no-progress")
    assert result.exit_code == 0, result.output
    assert metrics.read_bytes().startswith(damaged)


def newest_checkpoint(run: Path) -> str | None:
    found = list_checkpoints(run)
    return found[-1].name if found else None


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_metrics_after_stops_and_resumes_equal_an_uninterrupted_runs(cache, tmp_path, how):
    args = [*TINY, "--steps", "60", "--log-every", "3", "--checkpoint-every", "2", "--eval-every", "7",
            "--cache", str(cache)]
    straight = tmp_path / "straight"
    done = subprocess.run([HVAE, "train", *args, "--out", str(straight)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    killed = tmp_path / "killed"
    command, chance, kills = [HVAE, "train", *args, "--out", str(killed)], random.Random(3), 0
    while kills < 4:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        before = newest_checkpoint(killed)  # (the count stays at keep_checkpoints once pruning starts)
        wait_for(lambda: newest_checkpoint(killed) != before or process.poll() is not None, process)
        time.sleep(chance.uniform(0.0, 0.1))
        if process.poll() is not None:
            break
        process.send_signal(how)
        _, stderr = process.communicate()
        command = [HVAE, "train", "--resume", str(killed), "--no-progress"]
        if how == signal.SIGINT and process.returncode in (0, -how) and \
                list_checkpoints(killed)[-1].name == f"step-{60:08d}":
            break  # the signal came as the finished run was exiting (after Python's handlers are gone)
        assert process.returncode == (-how if how == signal.SIGKILL else 130), stderr
        kills += 1
    finished = subprocess.run(command, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert kills >= 2, finished.stdout  # (a loaded machine may train to the end before the fourth)
    assert train_lines(killed) == train_lines(straight)
