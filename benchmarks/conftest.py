"""Benchmarks of hvae against this machine's floor: ``pytest benchmarks/ --benchmark-only``.

Every benchmark runs on 2 threads (the machine's cores). At the end of the run a table gives each
figure, the floor (what the matrix products alone allow, timed in the same run) and the fraction
of it reached, with the machine and the load average the run saw. The reference is not timed
here: samerun.py (``make bench``) times it and hvae alternately in the same run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import cases
import workloads

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HVAE_SHARED", REPO.parent / "shared"))
GMD = SHARED / "data" / "groove"

torch.set_num_threads(workloads.THREADS)
_load_before: tuple[float, ...] = ()


def pytest_sessionstart(session) -> None:
    global _load_before
    _load_before = os.getloadavg()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not (cases.RESULTS or cases.CONVERSIONS):
        return
    terminalreporter.section("hvae against the floor")
    for line in cases.table(_load_before, os.getloadavg(), ("Reference: not timed (make bench times it).",)):
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def gmd_dir() -> Path:
    """The full Groove MIDI Dataset (``$HVAE_SHARED/data/groove``)."""
    if not (GMD / "info.csv").exists():
        pytest.skip(f"the Groove MIDI Dataset is not at {GMD} (set HVAE_SHARED)")
    return GMD
