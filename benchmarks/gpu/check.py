"""hvae on one CUDA GPU, in one prepared run: correctness, speed beside the floors, and quality.

    python3 benchmarks/gpu/check.py --out "$OUT" --carry .gpu     # on the GPU machine (see RESULTS.md)
    python3 benchmarks/gpu/check.py --device cpu --tiny --out /tmp/c # developers: every path in seconds, on CPU

Phases, each time-boxed so that the whole run ends within --budget seconds (default 540, which fits
one 10-minute device call):

0. set-up: hvae and its plugins installed from this working tree (``pip --no-deps --no-index``) with
   the wheels carried in ``<carry>/wheels`` into a folder, where hvae is not importable already; the
   GPU, the software, and the device's two ceilings (matmul rate, copy bandwidth);
1. correctness: ``pytest -m cuda tests/test_cuda.py`` (every decoder x fitting loss on CUDA against
   float64 on the CPU, bf16 autocast, the fast paths, no host syncs, NCCL where two GPUs);
2. speed: training examples/s at batch 512 (float32, bf16 autocast) and sampling sequences/s at batch
   1, 64 and 1,024 (eager and replayed from a CUDA graph) for four presets, each beside its floor,
   with peak GPU memory;
3. quality: hier-drums-4bar and groovae_4bar trained on the full GMD (``<carry>/gmd``) for the time
   left, split evenly, each in bf16 where phase 2 found it faster and phase 1 passed, then
   ``hvae evaluate`` on the test split.

Writes to --out (default $OUT): summary.md (the tables), results.json (every figure), log.txt (all
output), pytest.log, profile.txt, quality-<preset>.json, quality.png, and runs/gmd/<preset>/ (the
checkpoints; three folders down, so the device tool brings back the eight files above instead). Prints
the tables last. Without a CUDA GPU (and without --device cpu) it says so in one line and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]
PLUGINS = ("plugins/converters", "plugins/decoders", "plugins/losses")
PHASES = ("correctness", "speed", "quality")
# Shares of the budget the first phases may take at most; quality takes what is left.
CORRECTNESS_SHARE, SPEED_SHARE = 0.25, 0.25
RESERVE_SECONDS = 20  # for the table and files at the end


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-check")),
                        help="folder for the results (default: $OUT, else ./gpu-check)")
    parser.add_argument("--carry", type=Path, default=REPO / ".gpu",
                        help="folder of wheels/ (miditoolkit, mido) and gmd/ (the GMD): 'make gpu-prepare' fills it")
    parser.add_argument("--data", type=Path, default=None, help="MIDI folder for phase 3 (default: <carry>/gmd)")
    parser.add_argument("--budget", type=float, default=540.0, help="seconds the whole run may take (default 540)")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, of {', '.join(PHASES)}")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                        help="cuda (default); cpu only to try the script's paths (with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes and the bundled demo data: seconds, not minutes")
    parser.add_argument("--site", type=Path, default=Path("/tmp/hvae-site"),
                        help="where hvae is installed when it is not importable (default /tmp/hvae-site)")
    args = parser.parse_args(argv)
    unknown = set(args.phases.split(",")) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(sorted(unknown))}; phases: {', '.join(PHASES)}")
    return args


class Log:
    """Lines to stdout and to log.txt as they come."""

    def __init__(self, path: Path):
        self.file = path.open("a", encoding="utf-8")

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


def install(site: Path, wheels: Path, note: Callable[[str], None]) -> None:
    """hvae, its plugins (from this tree) and the carried wheels into ``site``, offline; then importable."""
    found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
               "--target", str(site), str(REPO), *(str(REPO / p) for p in PLUGINS), *map(str, found)]
    note(f"Installing hvae, {len(PLUGINS)} plugins and {len(found)} wheels into {site}")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"Installing hvae failed:\n{done.stderr[-2000:]}")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))


def ensure_hvae(site: Path, wheels: Path, note: Callable[[str], None]) -> None:
    try:
        import hvae  # noqa: F401  (already installed, as in a developer's virtual environment)
        import miditoolkit  # noqa: F401
    except ImportError:
        install(site, wheels, note)


def machine(device) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "device": str(device), "cpus": os.cpu_count()}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(gpu=properties.name, gpu_memory_gb=properties.total_memory / 1e9,
                    multiprocessors=properties.multi_processor_count, gpus=torch.cuda.device_count())
    return info


def correctness(deadline: float, out: Path, note: Callable[[str], None]) -> dict:
    """The CUDA-marked tests, in a child process stopped at the deadline; their summary counts."""
    command = [sys.executable, "-m", "pytest", str(REPO / "tests" / "test_cuda.py"), "-m", "cuda", "-q", "-rfEs",
               "-p", "no:cacheprovider", "--rootdir", str(REPO)]
    note("$ " + " ".join(command[1:]))
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                              timeout=max(deadline - started, 30.0))
        output, returncode = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:  # (its partial output is bytes, whatever text= says)
        output, returncode = (exc.stdout or b"").decode(errors="replace") + "\n(stopped: out of time)", None
    (out / "pytest.log").write_text(output, encoding="utf-8")
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", output)}
    failures = [line for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))]
    for line in failures:
        note("  " + line)
    summary = ", ".join(f"{n} {w}" for w, n in counts.items()) or "no summary"
    note(f"  {summary} in {time.perf_counter() - started:.0f} s")
    ran = returncode is not None and counts.get("passed", 0) > 0
    return {"returncode": returncode, "counts": counts, "failures": failures,
            "amp_passed": ran and not any("bfloat16" in line for line in failures)}


def amp_choice(speed_results: list[dict], checks: dict | None, presets: tuple[str, ...]) -> dict[str, bool]:
    """bf16 for a quality run where its training was at least 1.2x faster than float32 and the bf16
    tests did not fail (float32 where either is unknown)."""
    rates = {(r["preset"], r["precision"]): r.get("rate") for r in speed_results if r["work"] == "train"}
    trusted = checks is not None and checks["amp_passed"]
    return {p: bool(trusted and rates.get((p, "bf16")) and rates.get((p, "fp32"))
                    and rates[p, "bf16"] >= 1.2 * rates[p, "fp32"]) for p in presets}


def rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def tables(report: dict) -> list[str]:
    """The short tables printed last (Markdown)."""
    import quality

    lines = []
    info, ceilings = report["machine"], report.get("ceilings")
    lines.append(f"## {info.get('gpu', info['device'])}: torch {info['torch']}, CUDA {info['cuda']}, "
                 f"cuDNN {info['cudnn']}")
    if ceilings:
        lines.append(f"Ceilings (measured): matmul fp32 {ceilings['matmul']['fp32'] / 1e12:.3g} TFLOP/s, bf16 "
                     f"{ceilings['matmul']['bf16'] / 1e12:.3g} TFLOP/s; copy {ceilings['bandwidth'] / 1e9:,.0f} GB/s")
    checks = report.get("correctness")
    if checks:
        counts = ", ".join(f"{n} {w}" for w, n in checks["counts"].items()) or "no summary (see pytest.log)"
        lines += ["", f"Correctness (pytest -m cuda): {counts}"] + [f"  {f}" for f in checks["failures"]]
    if report.get("speed"):
        lines += ["", "| work | preset | batch | precision | rate | floor | of floor | bound | peak GB | CUDA graph |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in report["speed"]:
            if "error" in r:
                lines.append(f"| {r['work']} | {r['preset']} | {r['batch']} | {r['precision']} | {r['error']} |"
                             " | | | | |")
                continue
            graph = "—"
            if r.get("graph_rate"):
                differs = "" if r["graph_equal"] else ", DIFFERS"
                graph = f"{rate(r['graph_rate'])} ({r['graph_rate'] / r['rate']:.2f}x{differs})"
            elif r.get("graph_error"):
                graph = r["graph_error"][:60]
            peak = "—" if r.get("peak_gb") is None else f"{r['peak_gb']:.2f}"
            lines.append(f"| {r['work']} | {r['preset']} | {r['batch']} | {r['precision']} | {rate(r['rate'])} "
                         f"{r['unit']} | {rate(r['floor_rate'])} | {r['of_floor']:.0%} | {r['bound']} | {peak} "
                         f"| {graph} |")
    if report.get("quality"):
        lines += ["", "| model | steps | minutes | amp | accuracy tf / sampled | hit F1 tf / sampled | "
                      "velocity MAE tf / sampled | timing MAE ms tf / sampled |", "|---|---|---|---|---|---|---|---|"]
        for q in report["quality"]:
            if "error" in q:
                lines.append(f"| {q['preset']} | {q['error']} | | | | | | |")
                continue
            value = lambda mode, metric: "—" if q[mode].get(metric) is None else f"{q[mode][metric]:.3f}"
            cells = [f"{value('teacher_forced', metric)} / {value('sampled', metric)}" for metric in quality.METRICS]
            precision = "bf16" if q["amp"] else "fp32"
            lines.append(f"| {q['preset']} | {q['step']:,} | {q['train_seconds'] / 60:.1f} | {precision} | "
                         + " | ".join(cells) + " |")
    stopped = [name for name in PHASES if name + "_error" in report]
    lines += [f"\n{name.capitalize()} stopped: {report[name + '_error']}" for name in stopped]
    lines += ["", f"Total {report['seconds']:.0f} s of a {report['budget']:.0f} s budget."]
    return lines


def save(report: dict, out: Path, started: float) -> list[str]:
    """Write results.json and summary.md as the report stands; the summary's lines."""
    report["seconds"] = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    summary = tables(report)
    (out / "summary.md").write_text("\n".join(summary) + "\n", encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    started = time.perf_counter()
    deadline = started + args.budget - RESERVE_SECONDS
    try:
        import torch
    except ImportError:
        print(f"No PyTorch in {sys.executable}, so no CUDA GPU to use: nothing measured.")
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"No CUDA GPU visible to torch {torch.__version__}: nothing measured (run this on a GPU machine).")
        return 0
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    note = Log(out / "log.txt")
    phases = args.phases.split(",")
    ensure_hvae(args.site, args.carry / "wheels", note)
    sys.path.insert(0, str(REPO / "benchmarks"))
    sys.path.insert(0, str(REPO / "benchmarks" / "gpu"))
    import quality
    import speed
    from hvae.data import DEMO_DIR
    from hvae.device import resolve_device

    device = resolve_device(args.device)  # on CUDA this also sets the backends (hvae.device.configure_cuda)
    if device.type == "cpu":
        torch.set_num_threads(1)  # a trial of the paths, on a machine others share: no figure here means much
    report: dict = {"machine": machine(device), "budget": args.budget, "phases": phases}
    note(f"== set-up: {json.dumps(report['machine'])}")
    report["ceilings"] = dataclasses.asdict(speed.measure_ceilings(device, args.tiny))

    def run_phase(name: str, work: Callable[[], object]) -> None:
        """One phase, its result (or the error that stopped it) saved with the report as soon as it ends,
        so a run cut short still leaves what it measured."""
        note(f"== {name} (at {time.perf_counter() - started:.0f} s)")
        try:
            report[name] = work()
        except Exception as exc:
            report[name + "_error"] = f"{type(exc).__name__}: {exc}"
            note(f"  {name} stopped: {report[name + '_error']}")
        save(report, out, started)

    if "correctness" in phases:
        run_phase("correctness", lambda: correctness(
            min(deadline, time.perf_counter() + CORRECTNESS_SHARE * args.budget), out, note))
    if "speed" in phases:
        run_phase("speed", lambda: speed.run(device, speed.Ceilings(**report["ceilings"]),
                                             min(deadline, time.perf_counter() + SPEED_SHARE * args.budget),
                                             args.tiny, note, out / "profile.txt"))
    if "quality" in phases:
        data = Path(DEMO_DIR if args.tiny else (args.data or args.carry / "gmd"))
        cache = out / "runs" / "cache" if args.tiny else Path("/tmp/hvae-gpu-cache")  # (the GMD's windows stay behind)

        def train_and_evaluate() -> list[dict]:
            if not (data / "info.csv").exists():
                raise FileNotFoundError(f"no GMD at {data} (run 'make gpu-prepare' where the run is sent from)")
            amp = amp_choice(report.get("speed", []), report.get("correctness"), quality.PRESETS)
            results = quality.run(data, out, cache, args.device, deadline, amp, args.tiny, note,
                                  keep=lambda so_far: save({**report, "quality": so_far}, out, started))
            quality.curves(out, results, out / "quality.png")
            return results

        run_phase("quality", train_and_evaluate)
    note("")
    for line in save(report, out, started):
        note(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
