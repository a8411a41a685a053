"""A training keeps the memory it frees for its next step (hvae.device.keep_freed_memory): the blocks
a step frees serve the next step without fresh pages, where glibc would otherwise give them back to the
system and fault them in again page by page."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from hvae import device
from hvae.cli import main
from hvae.device import keep_freed_memory

# In a fresh process: an LSTM's training step (forward and backward, one thread) taken eight times (the
# heap grows for the first few), then the page faults of each of the next four.
REUSE = """
import resource, sys, torch
from hvae.device import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
torch.set_num_threads(1)
torch.manual_seed(0)
lstm, x = torch.nn.LSTM(64, 256), torch.randn(32, 256, 64)
def step():
    lstm(x)[0].square().sum().backward()
for _ in range(8):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    step()
print(kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 4)
"""
FRESH = (32 << 20) // 4096  # the 4 KiB pages of 32 MiB: a step's gates alone are that


def faults_per_block(how: str, **env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", REUSE, how], env={**clean, **env}, check=True,
                         capture_output=True, text=True).stdout.split()
    return out[0], int(out[1])


@pytest.fixture(scope="module")
def glibc() -> None:
    if not keep_freed_memory():
        pytest.skip("this C library has no glibc mallopt: nothing to keep memory with")


def test_a_training_step_reuses_the_memory_of_the_last_one(glibc):
    assert faults_per_block("plain")[1] > FRESH  # glibc's default: each large block a fresh mapping
    kept, faults = faults_per_block("keep")
    assert kept == "True" and faults < FRESH // 4  # 0 in most fresh processes here, 512 at most


def test_a_users_malloc_settings_stand(glibc):
    kept, faults = faults_per_block("keep", MALLOC_MMAP_THRESHOLD_=str(128 << 10))
    assert faults > FRESH  # blocks from 128 KiB on still get their own mappings, as the user asked


def test_hvae_train_keeps_freed_memory(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(device, "keep_freed_memory", lambda: calls.append(True) or True)
    result = CliRunner().invoke(main, ["train", "--preset", "demo", "--steps", "1", "--batch-size", "4",
                                       "--threads", "1", "--no-progress", "--cache", str(tmp_path / "cache"),
                                       "--out", str(tmp_path / "run")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert calls == [True]
