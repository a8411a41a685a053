"""The speed phase of check.py: the device's two ceilings, training and sampling rates, CUDA graphs.

Every figure stands beside its floor (benchmarks/RESULTS.md, "The floor"): the matrix products a
piece of work needs (:mod:`floors`' plans, counted the cheap way) over the device's measured matmul
rate, or the bytes those products must read and write over its measured memory bandwidth, whichever
is larger. Timing uses CUDA events on a GPU (host clocks on the CPU), after warm-up, median of the
timed calls; each case is time-boxed.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

import floors
import workloads
from hvae.device import autocast
from hvae.model import MusicVAE, build_model, clip_gradients, make_lr_schedule, make_optimizer
from hvae.plugins import make_converter
from hvae.presets import get_preset

PRESETS = ("cat-drums_2bar_small", "groovae_4bar", "hier-drums-4bar", "hierdec-mel_16bar")
TINY_SHAPES = {"z_size": 8, "encoder_options": {"rnn_sizes": (16,)}}  # --tiny: every model shrunk to this


@dataclasses.dataclass(frozen=True)
class Ceilings:
    """The device's own rates: dense matrix products (FLOP/s) by dtype, and copy bandwidth (bytes/s)."""

    matmul: dict[str, float]  # "fp32" (IEEE, no TF32), "bf16"
    bandwidth: float  # device-to-device copy, bytes read plus bytes written per second


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(call: Callable[[], object], device: torch.device, seconds: float, warmup: int = 1,
          at_most: int = 50) -> list[float]:
    """Seconds per call of ``call``: ``warmup`` calls, then calls until ``seconds`` have passed (at
    least one, at most ``at_most``), each timed with CUDA events on a GPU."""
    for _ in range(warmup):
        call()
    sync(device)
    times, started = [], time.perf_counter()
    while not times or (len(times) < at_most and time.perf_counter() - started < seconds):
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            call()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end) / 1e3)
        else:
            clock = time.perf_counter()
            call()
            times.append(time.perf_counter() - clock)
    return times


def measure_ceilings(device: torch.device, tiny: bool) -> Ceilings:
    """Matmul rate at n x n x n (8192 on a GPU) on random data, and a large device-to-device copy."""
    n = 256 if tiny else 8192
    rates = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        seconds = statistics.median(timed(lambda: a @ b, device, 0.5, warmup=3, at_most=20))
        rates[name] = 2 * n ** 3 / seconds
    size = (1 << 22) if tiny else (1 << 30)  # floats: 16 MiB or 4 GiB
    source = torch.randn(size, device=device)
    target = torch.empty_like(source)
    seconds = statistics.median(timed(lambda: target.copy_(source), device, 0.5, warmup=2, at_most=20))
    return Ceilings(rates, 2 * source.numel() * source.element_size() / seconds)


def preset_model(preset: str, device: torch.device, tiny: bool) -> MusicVAE:
    """``preset``'s model at its exact sizes (at toy sizes with ``tiny``), randomly initialised, on ``device``."""
    if not tiny:
        return workloads.model(preset).to(device)
    p = get_preset(preset)
    decoder_options = {**p.model.decoder_options, "rnn_sizes": (16,)}
    if "conductor_sizes" in decoder_options:
        decoder_options["conductor_sizes"] = None
    torch.manual_seed(0)
    config = dataclasses.replace(p.model, decoder_options=decoder_options, **TINY_SHAPES)
    return build_model(config, make_converter(p.converter, p.converter_options), force=p.force).to(device)


def floor_seconds(plan: floors.Plan, precision: str, ceilings: Ceilings) -> tuple[float, str]:
    """The plan's floor and what bounds it: its FLOPs over the matmul rate, or the bytes its products
    read and write (each operand once) over the bandwidth."""
    itemsize = 2 if precision == "bf16" else 4
    moved = sum(times * sum(p.m * p.k + p.k * p.n + p.m * p.n for p in chain) for times, chain in plan.chains)
    compute, memory = plan.flops / ceilings.matmul[precision], moved * itemsize / ceilings.bandwidth
    return (compute, "matmul") if compute >= memory else (memory, "bandwidth")


def peak_memory(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def training_step(model: MusicVAE, batch: int, precision: str, device: torch.device) -> Callable[[], None]:
    """One optimiser step on a random batch, as training runs it ("bf16": under bfloat16 autocast)."""
    data = workloads.random_batch(model.train(), batch).to(device)
    optimizer, state = make_optimizer(model, model.config), {"step": 0}
    schedule = make_lr_schedule(optimizer, model.config)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, enabled=precision == "bf16", dtype=torch.bfloat16):
            out = model(data, state["step"])
        out.loss.backward()
        clip_gradients(model, model.config)
        optimizer.step()
        schedule.step()
        state["step"] += 1

    return step


def train_case(preset: str, batch: int, precision: str, device: torch.device, ceilings: Ceilings,
               seconds: float, tiny: bool) -> dict:
    """Training examples/s at ``batch`` in ``precision`` ("fp32" or "bf16" autocast), beside its floor."""
    reset_memory(device)
    model = preset_model(preset, device, tiny)
    times = timed(training_step(model, batch, precision, device), device, seconds, warmup=1, at_most=20)
    floor, bound = floor_seconds(floors.training_plan(model, batch), precision, ceilings)
    per_step = statistics.median(times)
    return {"work": "train", "preset": preset, "batch": batch, "precision": precision, "rate": batch / per_step,
            "unit": "ex/s", "seconds_per_step": per_step, "steps_timed": len(times), "floor_rate": batch / floor,
            "of_floor": floor / per_step, "bound": bound, "peak_gb": peak_memory(device)}


def capture_sampling(model: MusicVAE, z: torch.Tensor, temperature: float) -> Callable[[], torch.Tensor]:
    """``model.decode(z, temperature)`` captured in a CUDA graph: the returned call replays it
    (same z buffer, the default generator's fresh draws) and gives the graph's output tensor."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm up off the capture: the sampler lays out its weights
        for _ in range(2):
            model.decode(z, temperature)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = model.decode(z, temperature)

    def replay() -> torch.Tensor:
        graph.replay()
        return out

    return replay


def sample_case(preset: str, batch: int, device: torch.device, ceilings: Ceilings, seconds: float,
                tiny: bool) -> dict:
    """Sampling sequences/s at ``batch`` (float32, temperature 0.5), beside its floor."""
    reset_memory(device)
    model = preset_model(preset, device, tiny).eval()
    z = torch.randn(batch, model.config.z_size, device=device)
    eager = statistics.median(timed(lambda: model.decode(z, 0.5), device, seconds, warmup=1))
    floor, bound = floor_seconds(floors.sampling_plan(model, batch), "fp32", ceilings)
    return {"work": "sample", "preset": preset, "batch": batch, "precision": "fp32", "rate": batch / eager,
            "unit": "seq/s", "floor_rate": batch / floor, "of_floor": floor / eager, "bound": bound,
            "peak_gb": peak_memory(device), "graph_rate": None, "graph_equal": None}


def graph_case(result: dict, device: torch.device, seconds: float) -> None:
    """Add to a sampling ``result`` the rate of the same work replayed from a CUDA graph, after
    checking that the graph's greedy draws are the eager ones."""
    model = preset_model(result["preset"], device, False).eval()
    z = torch.randn(result["batch"], model.config.z_size, device=device)
    greedy = capture_sampling(model, z, 0.0)
    result["graph_equal"] = bool(torch.equal(greedy(), model.decode(z, 0.0)))
    replay = capture_sampling(model, z, 0.5)
    result["graph_rate"] = result["batch"] / statistics.median(timed(replay, device, seconds, warmup=1))


def run(device: torch.device, ceilings: Ceilings, deadline: float, tiny: bool, note: Callable[[str], None],
        profile_to: Path) -> list[dict]:
    """Every training and sampling case, each given an equal share of the time left before ``deadline``
    (a case not begun by then is skipped), then a profile of two of them into ``profile_to``. On a GPU
    the CUDA-graph replays come after the eager cases: a capture that fails can leave the process's
    CUDA context unusable, and then only they (and the profile) are lost."""
    train_batch, sample_batches = (4, (1, 4)) if tiny else (512, (1, 64, 1024))
    cases = [("train", preset, train_batch, precision) for preset in PRESETS for precision in ("fp32", "bf16")]
    cases += [("sample", preset, batch, "fp32") for preset in PRESETS for batch in sample_batches]
    graphs = len(PRESETS) * len(sample_batches) if device.type == "cuda" else 0
    results = []
    for index, (work, preset, batch, precision) in enumerate(cases):
        result = {"work": work, "preset": preset, "batch": batch, "precision": precision}
        share = (deadline - time.perf_counter()) / (len(cases) + graphs - index) / 2  # half: set-up, warm-up
        try:
            if share <= 0:
                result["error"] = "skipped: out of time"
            elif work == "train":
                result = train_case(preset, batch, precision, device, ceilings, share, tiny)
            else:
                result = sample_case(preset, batch, device, ceilings, share, tiny)
        except Exception as exc:  # out of memory, a kernel refused: say so in the table and go on
            result["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        results.append(result)
        note(describe(result))
    sampled = [r for r in results if r["work"] == "sample" and "error" not in r] if graphs else []
    for index, result in enumerate(sampled):
        share = (deadline - time.perf_counter()) / (len(sampled) - index) / 2
        try:
            if share <= 0:
                result["graph_error"] = "skipped: out of time"
            else:
                graph_case(result, device, share)
            torch.cuda.synchronize(device)
        except Exception as exc:  # a capture PyTorch refuses is a finding, not the end of the run
            result["graph_error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            try:
                torch.cuda.synchronize(device)
            except Exception:
                for later in sampled[index + 1:]:
                    later["graph_error"] = "skipped: the CUDA context failed in an earlier capture"
                note(describe(result))
                break
        note(describe(result))
    try:
        profile(device, profile_to, tiny)
    except Exception as exc:  # the profiler is a diagnosis: without it the figures still stand
        note(f"profile: {type(exc).__name__}: {exc}".splitlines()[0])
    return results


def profile(device: torch.device, path: Path, tiny: bool) -> None:
    """The operators of one hier-drums-4bar training step at batch 512 (float32) and of one
    groovae_4bar sampling call at batch 1, by their total time on the device, written to ``path``."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    hier, groove = (preset_model(p, device, tiny) for p in ("hier-drums-4bar", "groovae_4bar"))
    z, batch = torch.randn(1, groove.config.z_size, device=device), 4 if tiny else 512
    works = {f"train hier-drums-4bar, batch {batch}, fp32": training_step(hier, batch, "fp32", device),
             "sample groovae_4bar, batch 1, fp32": lambda: groove.eval().decode(z, 0.5)}
    sections = []
    for title, work in works.items():
        work()  # warm-up
        sync(device)
        with profiler(activities=activities) as run:
            work()
            sync(device)
        events = run.key_averages()
        key = "cpu_time_total" if device.type != "cuda" else "device_time_total" \
            if hasattr(events[0], "device_time_total") else "cuda_time_total"
        sections.append(f"## {title} (sorted by {key})\n{events.table(sort_by=key, row_limit=25)}")
    path.write_text("\n\n".join(sections) + "\n", encoding="utf-8")


def describe(result: dict) -> str:
    """One line for the log: the rate beside its floor."""
    head = f"{result['work']} {result['preset']} b{result['batch']} {result['precision']}"
    if "error" in result:
        return f"{head}: {result['error']}"
    line = (f"{head}: {result['rate']:,.1f} {result['unit']} (floor {result['floor_rate']:,.1f}, "
            f"{result['of_floor']:.0%} of it, {result['bound']}-bound)")
    if result.get("peak_gb") is not None:
        line += f", peak {result['peak_gb']:.2f} GB"
    if result.get("graph_rate"):
        line += (f"; CUDA graph {result['graph_rate']:,.1f} {result['unit']} "
                 f"(greedy draws equal: {result['graph_equal']})")
    if result.get("graph_error"):
        line += f"; CUDA graph: {result['graph_error']}"
    return line
