"""One piece of hvae's benchmarked work in a fresh process, timed as tf_speed.py times the reference's:

    python points.py --_point sample:groovae_4bar:64 --threads 2 --warmup 2 --reps 7 --budget 20

A point is ``sample:PRESET:BATCH[:bf16]``, ``train_step:PRESET:BATCH`` (cases.py) or ``convert:CONVERTER``
(the whole GMD, ``$HVAE_SHARED/data/groove``). Prints one line, ``POINT_RESULT {json}``: the median
seconds of the timed runs, sequences/s or examples/s (or the conversion's files and windows), the
process's peak resident memory in MiB, and the floor of the work, timed in this process after it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

import cases
import floors
import workloads
from hvae.data import prepare_dataset
from hvae.device import autocast, set_up_training_process
from hvae.plugins import make_converter
from hvae.presets import get_preset

GMD = Path(os.environ.get("HVAE_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data" / "groove"


def peak_rss_mb() -> float:
    """Peak resident memory so far in MiB, as tf_speed.py reports it (Linux's getrusage gives KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timeit(run: Callable[[], None], warmup: int, reps: int, budget_s: float, min_reps: int = 3) -> dict:
    """``warmup`` runs, then up to ``reps`` timed runs, stopping after ``min_reps`` once ``budget_s`` is spent
    (tf_speed.py's rule)."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < reps:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
        if len(times) >= min(min_reps, reps) and time.perf_counter() - started > budget_s:
            break
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n_timed": len(times)}


def sampler(case: cases.Case, model) -> Callable[[], None]:
    """Decodes a fresh N(0, 1) z each run, as the reference's point feeds one."""
    model.eval()
    generator = torch.Generator().manual_seed(2)

    def sample() -> None:
        z = torch.randn(case.batch, model.config.z_size, generator=generator)
        with torch.inference_mode(), autocast("cpu", enabled=case.precision == "bf16"):
            model.decode(z, temperature=1.0, generator=generator)

    return sample


def work_of(case: cases.Case, model) -> Callable[[], None]:
    """What one timed run of ``case`` calls: a sampling call, or a training step on a random batch."""
    if case.work == "sample":
        return sampler(case, model)
    return workloads.TrainingStep(model, workloads.random_batch(model, case.batch))


def measure_case(case: cases.Case, warmup: int, reps: int, budget_s: float) -> dict:
    model = workloads.model(case.preset)
    run = work_of(case, model)
    if case.work == "sample":
        result = timeit(run, warmup, reps, budget_s)
        result["seqs_per_s"] = case.batch / result["median_s"]
    else:  # as tf_speed.py: one warm-up run fewer for training
        result = timeit(run, max(1, warmup - 1), reps, budget_s)
        result["examples_per_s"] = case.batch / result["median_s"]
    result["peak_rss_mb"] = peak_rss_mb()
    floor = floors.measure(floors.plan_for(case, model), floors.dtype_of(case))
    result.update(floor_per_s=case.batch / floor.seconds, floor_flops_per_s=floor.rate)
    return result


def measure_conversion(converter: str, threads: int) -> dict:
    if not (GMD / "info.csv").exists():
        raise SystemExit(f"the Groove MIDI Dataset is not at {GMD} (set HVAE_SHARED)")
    preset = get_preset(cases.CONVERTERS[converter])
    made = make_converter(preset.converter, preset.converter_options)
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        report = prepare_dataset(made, GMD, cache, workers=threads, progress=False, force=True)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "files": len(report.files), "windows": report.windows, "peak_rss_mb": peak_rss_mb()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--_point", dest="point", required=True)
    p.add_argument("--threads", type=int, default=workloads.THREADS)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--budget", type=float, default=60.0, help="seconds of timed runs (at least 3 runs)")
    args = p.parse_args(argv)
    if args.point.startswith("train_step:"):
        set_up_training_process()  # as hvae train does, before MKL's first product
    torch.set_num_threads(args.threads)
    what, _, name = args.point.partition(":")
    if what == "convert":
        result = measure_conversion(name, args.threads)
    else:
        try:
            case = cases.case_of(args.point)
        except KeyError as e:
            raise SystemExit(e.args[0]) from None
        result = measure_case(case, args.warmup, args.reps, args.budget)
    result.update(point=args.point, threads=args.threads)
    print("POINT_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
