"""Shared fixtures: where the real data sets and the reference tensors are.

Tests that need the full data sets read ``../shared`` (or ``$HVAE_SHARED``) and skip with
a clear reason where it is absent. The bundled demo subset is always there.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from hvae.device import ask_for_thread_independent_products

# What a training session asks for, asked for the whole test process before its first product: the
# trainings the tests run in this process compute what `hvae train` computes, on any number of threads.
ask_for_thread_independent_products()

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HVAE_SHARED", REPO.parent / "shared"))
GMD = SHARED / "data" / "groove"
MAESTRO = SHARED / "data" / "maestro"
REFERENCE = SHARED / "reference"

pytest_plugins = ["hvae.testing"]


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``cuda`` need a CUDA GPU: without one they are skipped, saying so."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none is visible to this PyTorch)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (set HVAE_SHARED to the folder holding data/ and reference/)")
    return path


@pytest.fixture(scope="session")
def gmd_dir() -> Path:
    """The full Groove MIDI Dataset v1.0.0 (1,150 files + info.csv)."""
    return _need(GMD / "info.csv", "the Groove MIDI Dataset").parent


@pytest.fixture(scope="session")
def maestro_dir() -> Path:
    """MAESTRO v3.0.0, the 2015 subset."""
    return _need(MAESTRO, "MAESTRO")


@pytest.fixture(scope="session")
def reference():
    """``reference("gmd_drums_4bar")`` -> dict of the reference implementation's arrays."""
    cache: dict[str, dict] = {}

    def load(name: str) -> dict:
        if name not in cache:
            path = _need(REFERENCE / f"{name}.npz", "the reference tensors")
            with np.load(path) as data:
                cache[name] = {k: data[k] for k in data.files}
        return cache[name]

    return load


# Tiny models trained once per session for the evaluation, latent-space and report tests (through `hvae train`).
TINY_MODEL = ["-m", "z_size=16", "-m", "encoder.rnn_sizes=32", "--batch-size", "32", "--threads", "1",
              "--no-progress"]


def _train(out: Path, cache: Path, *args: str) -> Path:
    from click.testing import CliRunner

    from hvae.cli import main

    result = CliRunner().invoke(main, ["train", *TINY_MODEL, *args, "--cache", str(cache), "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def trained_drums(tmp_path_factory) -> Path:
    """Run directory of a tiny hier-drums-4bar (32-unit LSTMs) trained 40 steps on the demo subset."""
    root = tmp_path_factory.mktemp("trained-drums")
    return _train(root / "run", root / "cache", "--preset", "hier-drums-4bar", "-m", "decoder.rnn_sizes=32",
                  "--steps", "40")


@pytest.fixture(scope="session")
def trained_humanizer(tmp_path_factory) -> Path:
    """Run directory of a small GrooVAE trained with humanize=True, 300 steps on the demo subset: enough to
    decode hits with varied velocities and off-grid timing."""
    root = tmp_path_factory.mktemp("trained-humanizer")
    return _train(root / "run", root / "cache", "--preset", "groovae_4bar", "-o", "humanize=true",
                  "-m", "decoder.rnn_sizes=64", "-m", "learning_rate=0.005", "-m", "dropout=0", "--steps", "300")


MAESTRO_FEW = 3  # MAESTRO files a tiny melody model trains on (the smallest of the 2015 ones)


@pytest.fixture(scope="session")
def maestro_files(maestro_dir, tmp_path_factory) -> list[Path]:
    """The smallest MAESTRO files, linked into a folder of their own (MAESTRO is never copied into the repo)."""
    folder = tmp_path_factory.mktemp("maestro-few")
    smallest = sorted((maestro_dir / "2015").glob("*.midi"), key=lambda p: p.stat().st_size)[:MAESTRO_FEW]
    for path in smallest:
        (folder / path.name).symlink_to(path)
    return sorted(folder.iterdir())


@pytest.fixture(scope="session")
def maestro_file(maestro_files) -> Path:
    return maestro_files[0]


@pytest.fixture(scope="session")
def trained_melody(maestro_files, tmp_path_factory) -> Path:
    """Run directory of a tiny hier-mel-4bar (32-unit LSTMs) trained 20 steps on a few MAESTRO files."""
    root = tmp_path_factory.mktemp("trained-melody")
    return _train(root / "run", root / "cache", "--preset", "hier-mel-4bar", "-m", "decoder.rnn_sizes=32",
                  "--steps", "20", "--data", str(maestro_files[0].parent))
