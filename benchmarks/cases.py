"""What is benchmarked, hvae's targets (the table at the top of benchmarks/RESULTS.md), and the results table.

The targets are relative, never figures from another machine: ahead of the reference TensorFlow
MusicVAE timed on the same machine in the same run (samerun.py), and at least FLOOR_TARGET of
the floor (the matrix products the work needs, timed in the same run). Sampling figures are
sequences/s, training figures examples/s; converting the whole GMD has an absolute target.
"""

from __future__ import annotations

import dataclasses
import os
import platform

GB = 1e9
FLOOR_TARGET = 0.8  # hvae's target: at least this fraction of the floor, in float32
CONVERSION_LIMIT_S = 60.0  # converting the whole GMD: seconds, not minutes


@dataclasses.dataclass(frozen=True)
class Case:
    work: str  # "sample" or "train"
    preset: str
    batch: int
    rounds: int  # timed runs in one process (each after warm-up)
    precision: str = "fp32"  # "fp32" or "bf16" (autocast, opt-in)
    memory_limit_gb: float | None = None  # hvae's target for its peak resident memory

    @property
    def id(self) -> str:
        suffix = "" if self.precision == "fp32" else f"-{self.precision}"
        return f"{self.preset}-b{self.batch}{suffix}"

    @property
    def unit(self) -> str:
        return "seq/s" if self.work == "sample" else "ex/s"

    @property
    def reference_point(self) -> str:
        """The reference's point, as ``tf_speed.py --_point`` spells it (the reference runs float32 only)."""
        what = "sample" if self.work == "sample" else "train_step"
        return f"{what}:{self.preset}:{self.batch}"

    @property
    def point(self) -> str:
        """hvae's point, as ``points.py --_point`` spells it."""
        return self.reference_point + ("" if self.precision == "fp32" else f":{self.precision}")


SAMPLING = [
    Case("sample", "cat-drums_2bar_small", 1, rounds=60),
    Case("sample", "cat-drums_2bar_small", 64, rounds=30),
    Case("sample", "groovae_4bar", 1, rounds=40),
    Case("sample", "groovae_4bar", 64, rounds=20),
    Case("sample", "hierdec-mel_16bar", 1, rounds=5),
    Case("sample", "hierdec-mel_16bar", 1, rounds=5, precision="bf16"),
    Case("sample", "hierdec-mel_16bar", 64, rounds=3),
]

TRAINING = [
    Case("train", "cat-drums_2bar_small", 64, rounds=10),
    Case("train", "groovae_4bar", 64, rounds=8),
    Case("train", "hierdec-mel_16bar", 2, rounds=3, memory_limit_gb=4),
    Case("train", "hierdec-mel_16bar", 64, rounds=1, memory_limit_gb=8),
]

# The 4-bar presets whose converters are timed on the whole GMD: one-hot drums and groove tensors.
CONVERTERS = {"drums": "hier-drums-4bar", "groove": "groovae_4bar"}


def case_of(point: str) -> Case:
    """The case whose hvae point is ``point`` (e.g. ``sample:groovae_4bar:64``)."""
    for case in SAMPLING + TRAINING:
        if case.point == point:
            return case
    raise KeyError(f"no benchmarked case is point {point!r}")


@dataclasses.dataclass(frozen=True)
class Result:
    case: Case
    value: float | None  # sequences/s or examples/s (median); None when every hvae run failed
    floor: float | None  # the same unit: what the matrix products alone allow
    rate: float | None  # FLOP/s of those products at the shapes used
    peak_rss: float | None = None  # bytes
    reference: float | None = None  # the reference's figure in the same run, the same unit
    reference_peak_rss: float | None = None  # bytes
    reference_failure: str | None = None  # why the reference has no figure although it ran (every round failed)

    @property
    def ratio(self) -> float | None:
        """hvae over the same-run reference."""
        return None if self.value is None or not self.reference else self.value / self.reference

    @property
    def fraction(self) -> float | None:
        return None if self.value is None or not self.floor else self.value / self.floor

    @property
    def ahead(self) -> bool:
        """Ahead of the same-run reference: faster, or it ran where the reference failed every round (the
        reference not timed at all counts as ahead: there is nothing to be behind)."""
        if self.reference is None:
            return self.value is not None
        return self.ratio is not None and self.ratio > 1

    @property
    def at_floor_target(self) -> bool:
        return self.fraction is not None and self.fraction >= FLOOR_TARGET

    @property
    def within_memory(self) -> bool:
        return self.case.memory_limit_gb is None or (
            self.peak_rss is not None and self.peak_rss <= self.case.memory_limit_gb * GB)

    @property
    def meets_target(self) -> bool:
        """Ahead of the same-run reference, at FLOOR_TARGET of the floor, within the memory limit."""
        return self.ahead and self.at_floor_target and self.within_memory


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


# AMD's CPU families by microarchitecture (family 25 is Zen 3 below model 0x10, Zen 4 from it).
AMD_FAMILIES = {23: "Zen/Zen 2", 26: "Zen 5"}


def _cpu_fields(cpuinfo: str) -> dict[str, str]:
    """The first processor's fields of ``cpuinfo`` (name: value)."""
    fields: dict[str, str] = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                if not line.strip():
                    break
                name, _, value = line.partition(":")
                fields[name.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name as the kernel reports it, with its family and model numbers (and AMD's
    microarchitecture) where the name alone does not tell which CPU it is: a virtual machine may report
    only "AMD EPYC", and the same name then covers CPUs of very different speed."""
    fields = _cpu_fields(cpuinfo)
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    if not fields.get("cpu family", "").isdigit():
        return name
    family, model = int(fields["cpu family"]), int(fields.get("model", "0") or 0)
    arch = ""
    if fields.get("vendor_id") == "AuthenticAMD":
        arch = AMD_FAMILIES.get(family) or ("Zen 4" if family == 25 and model >= 0x10 else
                                            "Zen 3" if family == 25 else "")
    simd = "AVX-512" if " avx512f" in f" {fields.get('flags', '')}" else ""
    details = ", ".join(x for x in (f"family {family} model {model}", arch, simd) if x)
    return f"{name} ({details})"


def machine_memory(meminfo: str = "/proc/meminfo") -> str:
    """The machine's memory (MemTotal) as "24 GiB", or "" where it cannot be read."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return ""


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _figure(value: float | None, case: Case) -> str:
    if value is None:
        return "failed"
    text = f"{_number(value)} {case.unit}"
    if case.work == "train" and value < 10:
        text += f" ({case.batch / value:.1f} s/step)"
    return text


def _memory(r: Result) -> str:
    text = "" if r.peak_rss is None else f"{r.peak_rss / GB:.2f} GB"
    if r.case.memory_limit_gb is not None:
        text += f" (≤ {r.case.memory_limit_gb:g})"
    if r.reference_peak_rss is not None:
        text += f"; ref. {r.reference_peak_rss / GB:.2f} GB"
    return text


def _reference(r: Result) -> str:
    if r.reference is not None:
        return _figure(r.reference, r.case)
    return f"failed: {r.reference_failure}" if r.reference_failure else "not timed"


def _loads(load: tuple[float, ...]) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


def table(load_before: tuple[float, ...], load_after: tuple[float, ...], notes: tuple[str, ...] = (),
          cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    """The results as Markdown lines, after the machine (CPU model, cores, load averages) and ``notes``."""
    memory = machine_memory()
    lines = [f"Machine: {cpu_model(cpuinfo)}, {os.cpu_count()} CPUs" + (f", {memory}" if memory else "")
             + f". Load average (1, 5, 15 min) at start {_loads(load_before)}; at end {_loads(load_after)}.",
             *notes, ""]
    if RESULTS:
        lines += ["| work | hvae | reference, same run | ratio | floor | of floor | matmul rate | peak RSS |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in RESULTS:
            c = r.case
            reference = _reference(r)
            ratio = "" if r.ratio is None else f"{r.ratio:.2f}×" + ("" if r.ahead else " ✗")
            floor = "" if r.floor is None else _number(r.floor)
            fraction = "" if r.fraction is None else f"{r.fraction:.0%}" + ("" if r.at_floor_target else " ✗")
            rate = "" if r.rate is None else f"{r.rate / 1e9:.0f} GFLOP/s"
            mark = "" if r.value is not None else " ✗"
            memory = _memory(r) + ("" if r.within_memory else " ✗")
            lines.append(f"| {c.work} {c.id} | {_figure(r.value, c)}{mark} | {reference} | {ratio} | {floor} | "
                         f"{fraction} | {rate} | {memory} |")
        lines += ["", f"✗ beside a figure: hvae failed; beside a ratio: not ahead of the same-run reference; beside "
                  f"a fraction: under {FLOOR_TARGET:.0%} of the floor; beside memory: over hvae's limit."]
    if CONVERSIONS:
        lines += ["", "| conversion of the whole GMD, 4 bars | files | windows | seconds | files/s |",
                  "|---|---|---|---|---|"]
        for c in CONVERSIONS:
            mark = "" if c.seconds <= CONVERSION_LIMIT_S else " ✗"
            lines.append(f"| {c.converter} | {c.files} | {c.windows} | {c.seconds:.1f}{mark} | "
                         f"{c.files_per_second:.0f} |")
    return lines
