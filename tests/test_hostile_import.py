"""Hostile checkpoints at the import door (issue 24): step counts of any size, crafted TensorFlow bundles,
magenta.js manifests and archives refused in one line before their claims are believed (no allocation, no
unpacking of what the checkpoint does not need), and nothing left behind by a killed import."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

import hvae
from clihelp import invoke, one_line_error
from conftest import REFERENCE
from hostile import write_bundle
from hvae.checkpoint import list_checkpoints
from hvae.errors import CheckpointError
from hvae.magenta import jsformat
from hvae.magenta.importing import import_checkpoint
from hvae.magenta.tfbundle import read_bundle

CHECKPOINTS = REFERENCE / "magenta-checkpoints"
PRESET = "cat-drums_2bar_small"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"the reference's checkpoints not found at {path} (set HVAE_SHARED)")
    return path


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    """cat-drums_2bar_small's variables (global_step 100), as the reference wrote them."""
    bundle = read_bundle(need(CHECKPOINTS / PRESET / "tf") / "model.ckpt")
    return {name: bundle.read(name) for name in bundle.tensors}


def bundle_with(folder: Path, arrays: dict, crafted: dict | None = None, **changed) -> Path:
    """A TF checkpoint folder holding ``arrays`` with ``changed`` ones replaced, and ``crafted`` entries."""
    folder.mkdir(parents=True)
    write_bundle(folder / "model.ckpt", {**arrays, **changed}, crafted)
    return folder


def refused(source: Path, out: Path, *words: str) -> str:
    message = one_line_error(invoke("import", source, "--preset", PRESET, "--out", out))
    assert all(w in message for w in words), message
    assert not out.exists()
    return message


# 1. A checkpoint's folder holds any step count.

def test_a_step_past_99_999_999_imports_and_every_command_finds_it(tmp_path, arrays):
    source = bundle_with(tmp_path / "tf", arrays, global_step=np.array(123_456_789, dtype=np.int64))
    result = invoke("import", source, "--preset", PRESET, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "checkpoints" / "step-123456789").is_dir()
    assert hvae.load_model(tmp_path / "run").step == 123_456_789
    sampled = invoke("sample", tmp_path / "run", "-n", "1", "--out", tmp_path / "samples")
    assert sampled.exit_code == 0, sampled.output


def test_checkpoints_are_ordered_by_their_step_not_their_name(tmp_path):
    for name in ("step-99999999", "step-100000000", "step-00000100"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
        (tmp_path / "checkpoints" / name / "checkpoint.json").write_text("{}")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000100", "step-99999999", "step-100000000"]


def test_a_checkpoint_under_a_name_hvae_does_not_know_is_named_not_replaced_by_fresh_weights(tmp_path, arrays):
    assert invoke("import", bundle_with(tmp_path / "tf", arrays), "--preset", PRESET,
                  "--out", tmp_path / "run").exit_code == 0
    (tmp_path / "run" / "checkpoints" / "step-00000100").rename(tmp_path / "run" / "checkpoints" / "step-100.old")
    for args in (["sample", tmp_path / "run", "-n", "1"], ["train", "--resume", tmp_path / "run", "--steps", "200"]):
        message = one_line_error(invoke(*args))
        assert "step-100.old" in message and "rename it" in message and "No checkpoint" not in message, message
    with pytest.raises(CheckpointError, match="step-100.old"):
        hvae.load_model(tmp_path / "run")
    assert not list((tmp_path / "run" / "checkpoints").glob("step-0*"))


def test_a_run_without_checkpoints_still_says_there_is_none(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    assert "No checkpoint in" in one_line_error(invoke("sample", tmp_path / "run", "-n", "1"))
