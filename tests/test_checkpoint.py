"""Checkpoints: safetensors and JSON only; a round trip rebuilds the same model; a pickle is refused
without being run; damage is reported; a write that fails half-way leaves the previous checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

import hvae
from hostile import rehashed
from hvae.checkpoint import MANIFEST, MODEL_FILE, Checkpoint, find_checkpoint, list_checkpoints, read_checkpoint, \
    write_checkpoint
from hvae.data import DEMO_DIR, prepare_dataset
from hvae.errors import CheckpointError
from hvae.presets import get_preset
from hvae.rundir import RunConfig, TrainConfig, open_run
from hvae.training import Trainer
from sessions import train_new


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trainer:
    """A tiny demo model trained 4 steps (checkpoints at steps 2 and 4), still in memory."""
    preset = get_preset("demo")
    converter = hvae.get_converter(preset.converter, **preset.converter_options)
    cache = tmp_path_factory.mktemp("drums-4bar")
    prepare_dataset(converter, DEMO_DIR, cache, workers=2, progress=False)
    model = dataclasses.replace(preset.model, z_size=8, encoder_options={"rnn_sizes": (16,)},
                                decoder_options={"rnn_sizes": (16,), "level_lengths": (4, 16)})
    config = RunConfig(name="tiny", converter=preset.converter, converter_options=dict(preset.converter_options),
                       model=model, train=TrainConfig(batch_size=16, steps=4, checkpoint_every=2, eval_examples=16,
                                                         threads=1),
                       data_dir=str(DEMO_DIR), cache_dir=str(cache), preset="demo")
    return train_new(tmp_path_factory.mktemp("runs") / "tiny", config)


@pytest.fixture
def run_dir(trained, tmp_path) -> Path:
    """A copy of the trained run that a test may damage."""
    return Path(shutil.copytree(trained.run_dir, tmp_path / "run"))


class RunsCode:
    """Unpickling this creates ``marker``: the proof that loading executed code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_a_round_trip_rebuilds_an_identical_model(trained, run_dir):
    loaded = open_run(run_dir)
    assert loaded.step == 4 and loaded.name == "tiny"
    assert loaded.model.config == trained.model.config and loaded.model.spec == trained.model.spec
    original = trained.model.state_dict()
    rebuilt = loaded.model.state_dict()
    assert original.keys() == rebuilt.keys()
    assert all(torch.equal(original[k], rebuilt[k]) for k in original)
    assert loaded.converter.describe() == trained.converter.describe()
    trained.model.eval()
    draw = lambda model: model.sample(3, 0.5, generator=torch.Generator().manual_seed(5))
    assert torch.equal(draw(trained.model), draw(loaded.model))


def test_the_optimiser_state_and_random_generators_round_trip(trained, run_dir):
    checkpoint = read_checkpoint(run_dir)
    saved = checkpoint.optimizer
    live = trained.optimizer.state_dict()
    assert saved["param_groups"] == live["param_groups"]
    for index, moments in live["state"].items():
        for key, value in moments.items():
            assert torch.equal(saved["state"][index][key], value), (index, key)
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(checkpoint.rng["cpu"])
        first = torch.rand(4)
        torch.set_rng_state(read_checkpoint(run_dir).rng["cpu"])
        assert torch.equal(torch.rand(4), first)


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_a_pickle_given_as_checkpoint_is_refused_and_nothing_runs(tmp_path, how):
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(RunsCode(proof)))
    assert proof.exists()  # the payload is live: unpickling it runs code

    marker = tmp_path / "ran"
    path = tmp_path / "model.ckpt"
    if how == "pickle":
        path.write_bytes(pickle.dumps({"state_dict": RunsCode(marker)}))
    else:
        torch.save({"state_dict": RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match="never unpickles"):
        open_run(path)
    assert not marker.exists()


def test_a_pickle_in_place_of_the_weights_is_refused_and_nothing_runs(run_dir, tmp_path):
    marker = tmp_path / "ran"
    directory = find_checkpoint(run_dir)
    payload = pickle.dumps({"state_dict": RunsCode(marker)})
    (directory / MODEL_FILE).write_bytes(payload)
    with pytest.raises(CheckpointError, match="truncated or altered"):
        open_run(run_dir)
    manifest = json.loads((directory / MANIFEST).read_text())  # an attacker who also fixes the hashes
    manifest["files"][MODEL_FILE] = {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    (directory / MANIFEST).write_text(json.dumps(rehashed(manifest)))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        open_run(run_dir)
    assert not marker.exists()


def test_truncated_weights_are_reported(run_dir):
    weights = find_checkpoint(run_dir) / MODEL_FILE
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model.safetensors is 1000 bytes .* \(truncated or altered\)"):
        read_checkpoint(run_dir)


def test_a_corrupt_manifest_is_reported(run_dir):
    manifest = find_checkpoint(run_dir) / MANIFEST
    manifest.write_text(manifest.read_text()[:200])
    with pytest.raises(CheckpointError, match="not readable JSON"):
        read_checkpoint(run_dir)


def test_a_folder_without_checkpoints_is_reported(tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint in"):
        open_run(tmp_path)


def test_a_write_that_fails_half_way_leaves_no_half_files_and_the_previous_checkpoint(trained, run_dir,
                                                                                     monkeypatch):
    before = [p.name for p in list_checkpoints(run_dir)]
    assert before == ["step-00000002", "step-00000004"]
    calls = []
    real_fsync = os.fsync

    def disk_full_on_the_second_file(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", disk_full_on_the_second_file)
    checkpoint = Checkpoint(step=6, model=trained.model.state_dict(), optimizer=trained.optimizer.state_dict(),
                            rng={"cpu": torch.get_rng_state()}, meta={"name": "tiny", "run_id": trained.run_id})
    with pytest.raises(OSError, match="No space left"):
        write_checkpoint(run_dir, checkpoint)
    monkeypatch.undo()

    assert [p.name for p in list_checkpoints(run_dir)] == before  # step 6 was never committed
    assert not list(run_dir.rglob("*.tmp-*"))  # no temporary file left behind
    assert not (run_dir / "checkpoints" / "step-00000006" / MANIFEST).exists()
    assert read_checkpoint(run_dir).step == 4
    write_checkpoint(run_dir, checkpoint, keep=2)  # the next write succeeds and clears what is stale
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-00000004", "step-00000006"]


def test_only_the_newest_checkpoints_are_kept(trained, run_dir):
    for step in (5, 6, 7):
        checkpoint = Checkpoint(step=step, model=trained.model.state_dict(), optimizer=None,
                                rng={"cpu": torch.get_rng_state()}, meta={"name": "tiny", "run_id": trained.run_id})
        write_checkpoint(run_dir, checkpoint, keep=2)
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-00000006", "step-00000007"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-00000006", "step-00000007"]
