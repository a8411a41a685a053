"""Shared fixtures: where the real data sets and the reference tensors are.

Tests that need the full data sets read ``../shared`` (or ``$HVAE_SHARED``) and skip with
a clear reason where it is absent. The bundled demo subset is always there.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HVAE_SHARED", REPO.parent / "shared"))
GMD = SHARED / "data" / "groove"
MAESTRO = SHARED / "data" / "maestro"
REFERENCE = SHARED / "reference"

pytest_plugins = ["hvae.testing"]


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
