"""One training step (forward, backward, clip, Adam) of the reference's presets, in examples/s, and
the peak resident memory of a fresh process that runs only that case (getrusage's max RSS)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import cases
import floors
import workloads

WORKER = Path(__file__).with_name("train_worker.py")


class Worker:
    """train_worker.py in its own process: builds the case's model, then steps on command."""

    def __init__(self, preset: str, batch: int):
        self.process = subprocess.Popen([sys.executable, str(WORKER), preset, str(batch)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, cwd=WORKER.parent)
        self._expect("ready")

    def _ask(self, command: str) -> str:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def _expect(self, answer: str) -> None:
        line = self.process.stdout.readline().strip()
        if line != answer:
            raise RuntimeError(f"training worker answered {line!r} (exit code {self.process.poll()})")

    def step(self) -> None:
        if self._ask("step") != "done":
            raise RuntimeError(f"training worker failed (exit code {self.process.poll()})")

    def memory(self) -> dict[str, int]:
        return json.loads(self._ask("rss"))

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.mark.parametrize("case", cases.TRAINING, ids=lambda c: c.id)
def test_training_step(benchmark, case):
    worker = Worker(case.preset, case.batch)
    try:
        benchmark.pedantic(worker.step, rounds=case.rounds, warmup_rounds=1)
        memory = worker.memory()
    finally:
        worker.close()
    value = case.batch / benchmark.stats.stats.median
    floor = floors.measure(floors.plan_for(case, workloads.model(case.preset)))
    cases.RESULTS.append(cases.Result(case, value, floor=case.batch / floor.seconds, rate=floor.rate,
                                      peak_rss=memory["peak_rss"]))
    benchmark.extra_info.update(examples_per_s=value, fraction_of_floor=value * floor.seconds / case.batch,
                                **memory)
