"""What is benchmarked, the reference's figures and hvae's targets (DESIGN.md, "Speed"), and the results table.

The reference is TensorFlow MusicVAE measured on a 2-core machine like this one. Sampling figures
are sequences/s, training figures examples/s (the reference's hierdec-mel_16bar training is given
in seconds per step; its examples/s is the batch over that).
"""

from __future__ import annotations

import dataclasses
import os

GB = 1e9


@dataclasses.dataclass(frozen=True)
class Case:
    work: str  # "sample" or "train"
    preset: str
    batch: int
    reference: float  # the reference's sequences/s (sample) or examples/s (train)
    target: float  # hvae's target: at least this multiple of the reference
    rounds: int  # timed rounds (each after one warm-up round)
    precision: str = "fp32"  # "fp32" or "bf16" (autocast, opt-in)
    reference_memory_gb: float | None = None  # the reference's resident memory
    memory_limit_gb: float | None = None  # hvae's target for its peak resident memory

    @property
    def id(self) -> str:
        suffix = "" if self.precision == "fp32" else f"-{self.precision}"
        return f"{self.preset}-b{self.batch}{suffix}"

    @property
    def unit(self) -> str:
        return "seq/s" if self.work == "sample" else "ex/s"


SAMPLING = [
    Case("sample", "cat-drums_2bar_small", 1, reference=83, target=3.0, rounds=60),
    Case("sample", "cat-drums_2bar_small", 64, reference=850, target=3.0, rounds=30),
    Case("sample", "groovae_4bar", 1, reference=47, target=3.0, rounds=40),
    Case("sample", "groovae_4bar", 64, reference=600, target=3.0, rounds=20),
    Case("sample", "hierdec-mel_16bar", 1, reference=1.3, target=1.0, rounds=5),
    Case("sample", "hierdec-mel_16bar", 1, reference=1.3, target=1.8, rounds=5, precision="bf16"),
    Case("sample", "hierdec-mel_16bar", 64, reference=17, target=1.7, rounds=3),
]

TRAINING = [
    Case("train", "cat-drums_2bar_small", 64, reference=175, target=1.7, rounds=10),
    Case("train", "groovae_4bar", 64, reference=100, target=1.6, rounds=8),
    Case("train", "hierdec-mel_16bar", 2, reference=2 / 34, target=3.0, rounds=3,
         reference_memory_gb=13, memory_limit_gb=4),
    Case("train", "hierdec-mel_16bar", 64, reference=64 / 100, target=1.3, rounds=1,
         reference_memory_gb=18, memory_limit_gb=8),
]


@dataclasses.dataclass(frozen=True)
class Result:
    case: Case
    value: float  # sequences/s or examples/s (median round)
    floor: float | None  # the same unit: what the matrix products alone allow
    rate: float | None  # FLOP/s of those products at the shapes used
    peak_rss: float | None = None  # bytes

    @property
    def ratio(self) -> float:
        return self.value / self.case.reference

    @property
    def fraction(self) -> float | None:
        return None if self.floor is None else self.value / self.floor

    @property
    def meets_target(self) -> bool:
        memory_ok = self.case.memory_limit_gb is None or (
            self.peak_rss is not None and self.peak_rss <= self.case.memory_limit_gb * GB)
        return self.ratio >= self.case.target and memory_ok


@dataclasses.dataclass(frozen=True)
class Conversion:
    converter: str
    files: int
    windows: int
    seconds: float  # median round

    @property
    def files_per_second(self) -> float:
        return self.files / self.seconds


RESULTS: list[Result] = []
CONVERSIONS: list[Conversion] = []


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _figure(result: Result) -> str:
    text = f"{_number(result.value)} {result.case.unit}"
    if result.case.work == "train" and result.value < 10:
        text += f" ({result.case.batch / result.value:.1f} s/step)"
    return text


def table(load_before: tuple[float, ...], load_after: tuple[float, ...]) -> list[str]:
    """The results as Markdown lines."""
    lines = [f"Load average (1, 5, 15 min) at start {', '.join(f'{x:.2f}' for x in load_before)}; "
             f"at end {', '.join(f'{x:.2f}' for x in load_after)}. CPUs: {os.cpu_count()}.", ""]
    if RESULTS:
        lines += ["| work | hvae | reference | ratio | target | floor | of floor | matmul rate | peak RSS |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in RESULTS:
            c = r.case
            memory = "" if r.peak_rss is None else f"{r.peak_rss / GB:.2f} GB"
            if c.memory_limit_gb is not None:
                memory += f" (≤ {c.memory_limit_gb:g}; ref. {c.reference_memory_gb:g})"
            floor = "" if r.floor is None else f"{_number(r.floor)}"
            fraction = "" if r.fraction is None else f"{r.fraction:.0%}"
            rate = "" if r.rate is None else f"{r.rate / 1e9:.0f} GFLOP/s"
            mark = "" if r.meets_target else " ✗"
            lines.append(f"| {c.work} {c.id} | {_figure(r)} | {_number(c.reference)} | {r.ratio:.2f}×{mark} | "
                         f"≥ {c.target:g}× | {floor} | {fraction} | {rate} | {memory} |")
    if CONVERSIONS:
        lines += ["", "| conversion of the whole GMD, 4 bars | files | windows | seconds | files/s |",
                  "|---|---|---|---|---|"]
        for c in CONVERSIONS:
            lines.append(f"| {c.converter} | {c.files} | {c.windows} | {c.seconds:.1f} | {c.files_per_second:.0f} |")
    return lines
