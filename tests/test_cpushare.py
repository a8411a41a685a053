"""hvae takes the cores other processes leave free (hvae.cpushare): with every core kept busy by
other processes, a command starts PyTorch on one thread, and a training drops to one thread at its
next look; an explicit choice (OMP_NUM_THREADS, --threads) is left alone. Real processes load the
machine; nothing is simulated."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import pytest
import torch

from hvae import cpushare, training

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="hvae reads the CPU's load from /proc/stat (Linux)")

BUSY = "import time\nend = time.time() + 30\nwhile time.time() < end: pass"


@contextlib.contextmanager
def every_core_busy():
    """One busy process per core (each ends by itself after 30 s if left behind)."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(cpushare.usable_cores())]
    try:
        time.sleep(0.3)  # let them start
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_a_command_on_a_busy_machine_starts_pytorch_on_one_thread():
    script = ("from hvae import cpushare; chosen = cpushare.choose_for_process(0.5); import os, torch; "
              "print(chosen, os.environ.get('OMP_NUM_THREADS'), torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    with every_core_busy():
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    chosen, variable, threads = out.stdout.split()
    assert chosen == "1" and threads == "1"
    assert variable == ("1" if cpushare.usable_cores() > 1 else "None")


def test_a_users_choice_of_threads_is_left_alone(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpushare.choose_for_process(0.0) is None
    assert os.environ["OMP_NUM_THREADS"] == "3"
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cpushare.choose_for_process(0.0) is None  # PyTorch is loaded here: it would not read the variable
    assert "OMP_NUM_THREADS" not in os.environ


def test_a_training_drops_to_the_free_cores_at_its_next_look_and_restores_its_threads(monkeypatch):
    monkeypatch.setattr(training, "ADAPT_THREADS_S", 0.0)
    before = torch.get_num_threads()
    torch.set_num_threads(cpushare.usable_cores())
    try:
        with training._cpu_threads(None) as adapt:
            with every_core_busy():
                time.sleep(0.5)
                adapt()
                assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == cpushare.usable_cores()
        with training._cpu_threads(2) as adapt:  # a number given: kept, whatever the load
            with every_core_busy():
                time.sleep(0.3)
                adapt()
                assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
