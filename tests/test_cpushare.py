"""hvae takes the cores other processes leave free (hvae.cpushare): with every core kept busy by
other processes, a command starts PyTorch on one thread, and a training drops to one thread at its
next look; an explicit choice (OMP_NUM_THREADS, --threads) is left alone. A training's thread count
does not change its model: trainings on one thread and on two write the same weights, bit for bit.
Real processes load the machine; nothing is simulated."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import pytest
import torch

from safetensors.torch import load_file

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


@pytest.fixture
def threads_free_to_change(monkeypatch):
    """What a training started by hvae's command line may do: change its threads (its products do not
    depend on them: MKL's strict mode, asked for before MKL's first product; this process made its first
    long ago, so the check is answered here) and nobody has set OMP_NUM_THREADS."""
    monkeypatch.setattr(training, "products_independent_of_threads", lambda threads: True)
    monkeypatch.setattr(training, "ADAPT_THREADS_S", 0.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(cpushare.usable_cores())
    yield monkeypatch
    torch.set_num_threads(before)


def test_a_training_drops_to_the_free_cores_at_its_next_look_and_restores_its_threads(threads_free_to_change):
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


@pytest.mark.skipif(cpushare.usable_cores() < 2, reason="needs two cores to have a choice of threads")
def test_a_training_whose_products_depend_on_the_threads_keeps_every_core(threads_free_to_change):
    threads_free_to_change.setattr(training, "products_independent_of_threads", lambda threads: False)
    torch.set_num_threads(1)
    with training._cpu_threads(None) as adapt:
        assert torch.get_num_threads() == cpushare.usable_cores()
        with every_core_busy():
            time.sleep(0.3)
            adapt()
            assert torch.get_num_threads() == cpushare.usable_cores()


def test_a_training_keeps_the_threads_a_user_set(threads_free_to_change):
    threads_free_to_change.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)
    with training._cpu_threads(None) as adapt:
        with every_core_busy():
            time.sleep(0.3)
            adapt()
            assert torch.get_num_threads() == 2


@pytest.mark.skipif(cpushare.usable_cores() < 2, reason="needs two cores to have a choice of threads")
@pytest.mark.parametrize("preset", ["demo", "cat-drums_2bar_small", "groovae_2bar_humanize"])
def test_a_trainings_weights_do_not_depend_on_its_threads(preset, tmp_path):
    """Weight gradients sum over the batch and the steps: left to itself, MKL splits such sums between
    threads and the bits differ. The demo (MKL's products), scheduled sampling (cat-drums: the draws-first
    pass) and dropout on hvae's recurrence (GrooVAE), each 3 steps in fresh processes as hvae train runs."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_CBWR")}
    weights = []
    for threads in (1, 2):
        out = tmp_path / f"threads-{threads}"
        subprocess.run([sys.executable, "-m", "hvae.cli", "train", "--preset", preset, "--steps", "3",
                        "--batch-size", "16", "--threads", str(threads), "--no-progress",
                        "--cache", str(tmp_path / "cache"), "--out", str(out)],
                       env=env, check=True, capture_output=True)
        weights.append(load_file(next(out.glob("checkpoints/*/model.safetensors"))))
    assert weights[0].keys() == weights[1].keys()
    assert [name for name in weights[0] if not torch.equal(weights[0][name], weights[1][name])] == []
