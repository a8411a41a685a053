"""This machine's matrix-product rate at the shapes each benchmark uses: the floors of the other benchmarks.

Each case's floor is timed here (every chain of its plan, see floors.py); the benchmark shown is the
chain that takes the longest per batch (for most cases, one step of the recurrence).
"""

from __future__ import annotations

import pytest

import cases
import floors
import workloads


@pytest.mark.parametrize("case", cases.SAMPLING + cases.TRAINING, ids=lambda c: f"{c.work}-{c.id}")
def test_matmul_rate(benchmark, case):
    model = workloads.model(case.preset)
    plan, dtype = floors.plan_for(case, model), floors.dtype_of(case)
    floor = floors.measure(plan, dtype)
    times, chain = max(plan.chains, key=lambda c: c[0] * floors.chain_seconds(c[1], dtype))
    run = floors.runner(chain, dtype)
    benchmark.pedantic(run, rounds=max(3, min(200, int(0.5 / floors.chain_seconds(chain, dtype)))), warmup_rounds=1)
    seconds = benchmark.stats.stats.median
    benchmark.extra_info.update(
        chain=" ".join(f"({p.m}x{p.k})@({p.k}x{p.n})" for p in chain), runs_per_batch=times,
        chain_gflops_per_s=floors.capped_flops(chain) / seconds / 1e9,
        plan_gflop=floor.flops / 1e9, plan_gflops_per_s=floor.rate / 1e9, floor_seconds=floor.seconds)
