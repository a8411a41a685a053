"""A fresh process that runs training steps on command, so each case's peak resident memory is its own.

    python train_worker.py PRESET BATCH

Reads one command per line on stdin and answers one line on stdout: ``step`` runs a training step
and answers ``done``; ``rss`` answers ``{"peak_rss": bytes, "setup_rss": bytes}`` (peak resident
memory so far, from getrusage, and the peak once the model, batch and optimiser were built).
"""

from __future__ import annotations

import json
import resource
import sys

import torch

import workloads
from hvae.device import set_up_training_process


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def main(preset: str, batch: int) -> None:
    set_up_training_process()  # as hvae train does, before MKL's first product
    torch.set_num_threads(workloads.THREADS)
    model = workloads.model(preset)
    step = workloads.TrainingStep(model, workloads.random_batch(model, batch))
    setup_rss = peak_rss()
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "step":
            step()
            print("done", flush=True)
        elif command == "rss":
            print(json.dumps({"peak_rss": peak_rss(), "setup_rss": setup_rss}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
