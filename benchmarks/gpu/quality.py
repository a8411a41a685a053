"""The quality phase of check.py: train the report's two GMD models for a fixed time, evaluate on the test split.

Each model trains through ``hvae train`` (its preset, the full GMD, the preset's batch of 512), and
is stopped by SIGTERM once its time has passed since training began (after the data was prepared):
hvae finishes the step under way and writes a checkpoint. ``hvae evaluate`` then measures it on the
test split (teacher-forced and sampled from mu, greedy), as the papers do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

PRESETS = ("hier-drums-4bar", "groovae_4bar")
TINY_RUN = ["-m", "z_size=8", "-m", "encoder.rnn_sizes=16", "-m", "decoder.rnn_sizes=16", "--batch-size", "8",
            "--threads", "1"]  # --tiny: toy models (stopped by time all the same)
STOP_GRACE_SECONDS = 120  # after SIGTERM: the step under way and the checkpoint
# Run directories go to <out>/runs/gmd/<preset>/: three folders down, so that the device tool, which brings
# back at most 8 files from at most two folders down, brings back the summary files rather than these.
RUNS = ("runs", "gmd")
STARTUP_SECONDS = 90  # at most before training begins (start-up, preparing the data); then it is stopped
METRICS = ("accuracy", "hit_f1", "velocity_mae", "timing_mae_ms")  # what the table shows, where a model has it


def hvae(*args: str) -> list[str]:
    return [sys.executable, "-m", "hvae.cli", *args]


def train_for(preset: str, seconds: float, latest: float, data: Path, out: Path, cache: Path, device: str,
              amp: bool, tiny: bool, note: Callable[[str], None]) -> dict:
    """Train ``preset`` into ``out`` for ``seconds`` once training has begun (data preparation not
    counted), and stop it at ``latest`` (a ``time.perf_counter()`` time) whatever happens."""
    command = hvae("train", "--preset", preset, "--data", str(data), "--cache", str(cache), "--out", str(out),
                   "--device", device, "--eval-every", "0", "--checkpoint-every", "1000000", "--log-every", "50",
                   "--workers", str(os.cpu_count() or 1), "--no-progress", "--amp" if amp else "--no-amp",
                   *(TINY_RUN if tiny else ()))
    note("$ " + " ".join(command[1:]))
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})  # its lines as they come
    training = threading.Event()

    def echo() -> None:
        for line in process.stdout:
            note("  " + line.rstrip())
            if line.startswith("Train:"):
                training.set()
        training.set()  # ended before training (an error): stop waiting

    reader = threading.Thread(target=echo, daemon=True)
    reader.start()
    training.wait(timeout=max(latest - time.perf_counter(), 0.0))
    began = time.perf_counter()
    try:
        process.wait(timeout=max(min(began + seconds, latest) - began, 0.0))
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    reader.join(timeout=10)
    stopped = process.returncode == 128 + signal.SIGTERM  # hvae's exit once it has written the checkpoint
    return {"preset": preset, "amp": amp, "returncode": process.returncode, "stopped_by_time": stopped,
            "ok": process.returncode == 0 or stopped, "prepare_seconds": began - started,
            "train_seconds": time.perf_counter() - began}


def evaluate(run: Path, output: Path, device: str, note: Callable[[str], None]) -> dict:
    """``hvae evaluate`` on the test split; its JSON (also written to ``output``)."""
    command = hvae("evaluate", str(run), "--split", "test", "--json", "-o", str(output), "--device", device,
                   "--batch-size", "1024", "--no-progress")
    note("$ " + " ".join(command[1:]))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [""])[-1]
        raise RuntimeError(f"hvae evaluate exited with {done.returncode}: {last}")
    return json.loads(output.read_text())


def run(data: Path, out: Path, cache: Path, device: str, deadline: float, amp: dict[str, bool], tiny: bool,
        note: Callable[[str], None], keep: Callable[[list[dict]], None]) -> list[dict]:
    """Both models, each given an equal share of the time left before ``deadline`` (less its evaluation);
    ``keep`` is handed the results so far after each."""
    results: list[dict] = []
    for index, preset in enumerate(PRESETS):
        left = deadline - time.perf_counter()
        seconds = max(left / (len(PRESETS) - index) - (6.0 if tiny else 45.0), 4.0 if tiny else 30.0)
        latest = time.perf_counter() + seconds + STARTUP_SECONDS  # (start-up, data preparation: 45 s above)
        result = train_for(preset, seconds, latest, data, out.joinpath(*RUNS, preset), cache / preset, device,
                           amp.get(preset, False), tiny, note)
        if result["ok"]:
            try:
                evaluation = evaluate(out.joinpath(*RUNS, preset), out / f"quality-{preset}.json", device, note)
                result.update(step=evaluation["step"], windows=evaluation["windows"],
                              teacher_forced=evaluation["teacher_forced"], sampled=evaluation["sampled"])
            except (RuntimeError, ValueError, KeyError) as exc:
                result["error"] = str(exc)
        else:
            result["error"] = f"hvae train exited with {result['returncode']} (see log.txt)"
        results.append(result)
        keep(results)
    return results


def curves(out: Path, results: list[dict], path: Path) -> Path | None:
    """Training loss against step for each model that trained, as one PNG (None when none did)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.5), squeeze=False)
    drawn = False
    for axis, result in zip(axes[0], results):
        metrics = out.joinpath(*RUNS, result["preset"], "metrics.jsonl")
        if not metrics.exists():
            continue
        lines = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        train = [line for line in lines if line.get("split") == "train"]
        axis.plot([line["step"] for line in train], [line["loss"] for line in train])
        axis.set(title=result["preset"], xlabel="step", ylabel="training loss (nats per window)")
        drawn = True
    if not drawn:
        plt.close(figure)
        return None
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
