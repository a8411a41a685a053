"""Free-running sampling (the decoding core) of the reference's presets, in sequences/s."""

from __future__ import annotations

import pytest
import torch

import cases
import floors
import workloads
from hvae.device import autocast


@pytest.mark.parametrize("case", cases.SAMPLING, ids=lambda c: c.id)
def test_sampling(benchmark, case):
    model = workloads.model(case.preset).eval()
    z = torch.randn(case.batch, model.config.z_size, generator=torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(2)

    def sample() -> None:
        with torch.inference_mode(), autocast("cpu", enabled=case.precision == "bf16"):
            model.decode(z, temperature=1.0, generator=generator)

    benchmark.pedantic(sample, rounds=case.rounds, warmup_rounds=1)
    value = case.batch / benchmark.stats.stats.median
    floor = floors.measure(floors.plan_for(case, model), floors.dtype_of(case))
    cases.RESULTS.append(cases.Result(case, value, floor=case.batch / floor.seconds, rate=floor.rate))
    benchmark.extra_info.update(sequences_per_s=value, fraction_of_floor=value * floor.seconds / case.batch)
