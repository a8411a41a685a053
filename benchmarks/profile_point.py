"""Where one benchmarked point's time goes: the point's work (as ``points.py`` runs it) under torch.profiler.

    python benchmarks/profile_point.py sample:groovae_4bar:1 --threads 2 --calls 20 --rows 25

Prints the median seconds of a call without the profiler, then the operations by self CPU time over
``--calls`` profiled calls (after the same warm-up as points.py): count per call, microseconds per
call, share of the call. Run it on an otherwise idle machine; benchmarks/RESULTS.md quotes its tables.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

import cases
import points
import workloads
from hvae.device import set_up_training_process


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("point", help="a benchmarked point, e.g. sample:cat-drums_2bar_small:1 (cases.py)")
    p.add_argument("--threads", type=int, default=workloads.THREADS)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--calls", type=int, default=20, help="profiled calls (and as many timed ones before)")
    p.add_argument("--rows", type=int, default=25, help="operations listed")
    args = p.parse_args(argv)
    if args.point.startswith("train_step:"):  # as points.py and hvae train do
        set_up_training_process()
    torch.set_num_threads(args.threads)
    try:
        case = cases.case_of(args.point)
    except KeyError as e:
        raise SystemExit(e.args[0]) from None
    run = points.work_of(case, workloads.model(case.preset))
    for _ in range(args.warmup):
        run()
    seconds = []
    for _ in range(args.calls):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    call_us = statistics.median(seconds) * 1e6
    print(f"{args.point}: {call_us / 1e3:.3f} ms a call (median of {args.calls}, no profiler), "
          f"{case.batch / statistics.median(seconds):,.1f} {case.unit}, {args.threads} threads")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.calls):
            run()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) / args.calls
    print(f"profiled: {total / 1e3:.3f} ms of self CPU time a call (the profiler's own cost included)")
    print(f"{'operation':<44} {'count/call':>10} {'us/call':>10} {'share':>7}")
    for e in events[:args.rows]:
        per_call = e.self_cpu_time_total / args.calls
        print(f"{e.key[:44]:<44} {e.count / args.calls:>10.1f} {per_call:>10.1f} {per_call / total:>7.1%}")


if __name__ == "__main__":
    main(sys.argv[1:])
